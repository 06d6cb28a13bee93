//! QEMU (`hcs-qemu`) behind the [`Engine`] trait: Linux guests booted directly, with serial
//! ports, virtio disks and vsock.

use crate::engine::{
    Engine, EngineError, EngineExit, EngineLimits, EngineVm, ExitHandler, Firmware, ResetHandler,
    VmPlan,
};
use std::sync::Arc;

/// The `hcs-qemu` engine: one `qemu-system-x86_64` process per VM.
#[derive(Debug, Default)]
pub struct QemuEngine {}

impl QemuEngine {
    /// The engine; QEMU is found per VM (`HCS_QEMU`, else `PATH`).
    pub fn new() -> QemuEngine {
        QemuEngine::default()
    }
}

fn engine_error(error: hcs_qemu::Error) -> EngineError {
    match error {
        hcs_qemu::Error::NotInstalled { .. } => EngineError::Unavailable(error.to_string()),
        hcs_qemu::Error::Stopped => EngineError::Ended(error.to_string()),
        _ => EngineError::Failed(error.to_string()),
    }
}

impl Engine for QemuEngine {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn limits(&self) -> Result<EngineLimits, EngineError> {
        // QEMU's own ceilings for the q35 machine; the host's memory is the real bound.
        Ok(EngineLimits {
            max_vcpus: 288,
            max_memory_mb: 1 << 20,
        })
    }

    fn create(
        &self,
        plan: &VmPlan,
        on_exit: ExitHandler,
        on_reset: ResetHandler,
    ) -> Result<Arc<dyn EngineVm>, EngineError> {
        let Firmware::LinuxDirect {
            kernel,
            initrd,
            cmdline,
        } = &plan.firmware
        else {
            return Err(EngineError::Failed(
                "the QEMU engine boots Linux kernels only (LinuxKernelDirect)".into(),
            ));
        };
        let runtime_dir = plan.runtime_dir.clone().ok_or_else(|| {
            EngineError::Failed("internal error: no runtime directory for the VM".into())
        })?;
        // ComPort sockets live in the pipe directory (or wherever an absolute NamedPipe
        // says): QEMU binds them, so their directories must exist.
        for socket in plan.serial_ports.iter().filter_map(|p| p.socket.as_ref()) {
            if let Some(dir) = socket.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    EngineError::Failed(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let config = hcs_qemu::VmConfig {
            memory_mb: plan.memory_mb,
            vcpus: plan.vcpus,
            kernel: kernel.clone(),
            initrd: initrd.clone(),
            cmdline: cmdline.clone(),
            serial_ports: plan
                .serial_ports
                .iter()
                .map(|p| hcs_qemu::SerialPort {
                    index: p.index,
                    socket: p.socket.clone(),
                })
                .collect(),
            disks: plan
                .disks
                .iter()
                .map(|d| hcs_qemu::Disk {
                    path: d.path.clone(),
                    read_only: d.read_only,
                })
                .collect(),
            vsock: plan.vsock_uds().map(|uds_path| hcs_qemu::Vsock {
                guest_cid: 3,
                uds_path,
            }),
            accel: hcs_qemu::Accel::Auto,
            // Without StopOnReset the guest reboots in place, as on Hyper-V.
            on_reset: if plan.reboot_in_place {
                hcs_qemu::OnReset::Reboot
            } else {
                hcs_qemu::OnReset::Exit
            },
            runtime_dir,
        };
        let handler: hcs_qemu::ExitHandler = Box::new(move |exit| {
            on_exit(match exit {
                hcs_qemu::Exit::PowerOff => EngineExit::PowerOff,
                hcs_qemu::Exit::Reset => EngineExit::Reset,
                hcs_qemu::Exit::GuestPanic => EngineExit::GuestPanic,
                hcs_qemu::Exit::Died { detail } => EngineExit::ProcessDied(detail),
            })
        });
        let vm = hcs_qemu::Vm::create(config, handler).map_err(engine_error)?;
        // Before the start: the paused VM cannot reset yet.
        vm.on_guest_reset(on_reset);
        Ok(Arc::new(QemuVm { vm }))
    }
}

struct QemuVm {
    vm: hcs_qemu::Vm,
}

impl EngineVm for QemuVm {
    fn start(&self) -> Result<(), EngineError> {
        self.vm.start().map_err(engine_error)
    }
    fn pause(&self) -> Result<(), EngineError> {
        self.vm.pause().map_err(engine_error)
    }
    fn resume(&self) -> Result<(), EngineError> {
        self.vm.resume().map_err(engine_error)
    }
    fn inject_nmi(&self) -> Result<(), EngineError> {
        self.vm.inject_nmi().map_err(engine_error)
    }
    fn power_button(&self) -> Result<(), EngineError> {
        self.vm.power_button().map_err(engine_error)
    }
    fn accelerator(&self) -> String {
        format!("qemu/{}", self.vm.accel())
    }
    fn stop(&self) {
        self.vm.stop()
    }
    fn vcpu_count(&self) -> u32 {
        self.vm.vcpu_count()
    }
    fn memory_mb(&self) -> u64 {
        self.vm.memory_mb()
    }
    fn cpu_time_100ns(&self) -> u64 {
        self.vm.cpu_time_100ns()
    }
}
