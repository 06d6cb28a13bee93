//! QEMU as an HCS engine: [`QemuEngine`] implements `hcs_engine::Engine` for Linux guests
//! booted directly, with serial ports, virtio disks and vsock.

use hcs_engine::{
    Engine, EngineError, EngineExit, EngineLimits, EngineVm, ExitHandler, Firmware, ResetHandler,
    VmPlan,
};
use std::sync::Arc;
use std::time::Duration;

/// The `hcs-qemu` engine: one `qemu-system-x86_64` process per VM.
#[derive(Debug, Default)]
pub struct QemuEngine {
    settings: crate::QemuSettings,
}

impl QemuEngine {
    /// The engine with its settings (read once by the program: `QemuSettings::from_env`).
    pub fn new(settings: crate::QemuSettings) -> QemuEngine {
        QemuEngine { settings }
    }
}

fn engine_error(error: crate::Error) -> EngineError {
    match error {
        crate::Error::NotInstalled { .. } => EngineError::Unavailable(error.to_string()),
        crate::Error::Stopped => EngineError::Ended(error.to_string()),
        _ => EngineError::Failed(error.to_string()),
    }
}

impl Engine for QemuEngine {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn accepts(&self, plan: &VmPlan) -> Result<(), String> {
        match plan.firmware {
            Firmware::LinuxDirect { .. } => Ok(()),
            Firmware::Idle => Err("the QEMU engine boots Linux kernels only".into()),
        }
    }

    fn reboots_in_place(&self) -> bool {
        true
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
        let config = crate::VmConfig {
            memory_mb: plan.memory_mb,
            vcpus: plan.vcpus,
            kernel: kernel.clone(),
            initrd: initrd.clone(),
            cmdline: cmdline.clone(),
            serial_ports: plan.serial_ports.clone(),
            disks: plan.disks.clone(),
            vsock: plan.vsock_uds().map(|uds_path| crate::Vsock {
                guest_cid: 3,
                uds_path,
            }),
            accel: crate::Accel::Auto,
            // Without StopOnReset the guest reboots in place, as on Hyper-V.
            on_reset: if plan.reboot_in_place {
                crate::OnReset::Reboot
            } else {
                crate::OnReset::Exit
            },
            runtime_dir,
        };
        let handler: crate::ExitHandler = Box::new(move |exit| {
            on_exit(match exit {
                crate::Exit::PowerOff => EngineExit::PowerOff,
                crate::Exit::Reset => EngineExit::Reset,
                crate::Exit::GuestPanic => EngineExit::GuestPanic,
                crate::Exit::Died { detail } => EngineExit::ProcessDied(detail),
            })
        });
        let vm = crate::Vm::create_with(config, &self.settings, handler).map_err(engine_error)?;
        // Before the start: the paused VM cannot reset yet.
        vm.on_guest_reset(on_reset);
        Ok(Arc::new(QemuVm { vm }))
    }
}

struct QemuVm {
    vm: crate::Vm,
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
    fn cpu_time(&self) -> Duration {
        self.vm.cpu_time()
    }
}
