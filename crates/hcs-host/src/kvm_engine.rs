//! The built-in VMM (`hcs-kvm`) behind the [`Engine`] trait.

use crate::engine::{
    Engine, EngineError, EngineExit, EngineLimits, EngineVm, ExitHandler, Firmware, ResetHandler,
    VmPlan,
};
use std::sync::Arc;

/// The `hcs-kvm` engine: empty VMs on /dev/kvm.
#[derive(Debug, Default)]
pub struct KvmEngine {
    /// KVM's limits do not change while the host runs: asked once, on first success.
    limits: std::sync::OnceLock<EngineLimits>,
}

impl KvmEngine {
    /// The engine; /dev/kvm is opened per VM.
    pub fn new() -> KvmEngine {
        KvmEngine::default()
    }
}

fn engine_error(error: hcs_kvm::Error) -> EngineError {
    use hcs_kvm::Error as E;
    match error {
        E::KvmNotFound { .. }
        | E::KvmAccessDenied { .. }
        | E::KvmOpen { .. }
        | E::KvmApiVersion(_)
        | E::MissingCapability(_) => EngineError::Unavailable(error.to_string()),
        E::Memory { .. } | E::Host { .. } => EngineError::OutOfResources(error.to_string()),
        _ => EngineError::Failed(error.to_string()),
    }
}

impl Engine for KvmEngine {
    fn name(&self) -> &'static str {
        "kvm"
    }

    fn limits(&self) -> Result<EngineLimits, EngineError> {
        if let Some(limits) = self.limits.get() {
            return Ok(*limits);
        }
        // A failure is not cached: /dev/kvm may become usable (module loaded, permissions).
        let info = hcs_kvm::check_kvm().map_err(engine_error)?;
        Ok(*self.limits.get_or_init(|| EngineLimits {
            max_vcpus: info.max_vcpus,
            max_memory_mb: info.max_memory_mib,
        }))
    }

    fn create(
        &self,
        plan: &VmPlan,
        on_exit: ExitHandler,
        // The built-in VMM cannot reboot in place: a reset ends the VM (EngineExit::Reset).
        _on_reset: ResetHandler,
    ) -> Result<Arc<dyn EngineVm>, EngineError> {
        let guest = match plan.firmware {
            Firmware::Idle => hcs_kvm::GuestImage::IdleFirmware,
            Firmware::LinuxDirect { .. } => {
                return Err(EngineError::Failed(
                    "the built-in VMM cannot boot a Linux kernel yet (the QEMU engine does)".into(),
                ))
            }
        };
        let config = hcs_kvm::VmConfig {
            memory_mib: plan.memory_mb,
            vcpus: plan.vcpus,
            guest,
        };
        let handler: hcs_kvm::ExitHandler = Box::new(move |reason| {
            on_exit(match reason {
                hcs_kvm::VmExitReason::PowerOff => EngineExit::PowerOff,
                hcs_kvm::VmExitReason::Reset => EngineExit::Reset,
                hcs_kvm::VmExitReason::TripleFault => EngineExit::TripleFault,
                hcs_kvm::VmExitReason::InternalError(detail) => EngineExit::Failed(detail),
            })
        });
        let vm = hcs_kvm::Vm::create(config, handler).map_err(engine_error)?;
        Ok(Arc::new(KvmVm { vm }))
    }
}

struct KvmVm {
    vm: hcs_kvm::Vm,
}

impl EngineVm for KvmVm {
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
    fn stop(&self) {
        self.vm.stop()
    }
    fn accelerator(&self) -> String {
        "kvm".into()
    }
    fn vcpu_count(&self) -> u32 {
        self.vm.vcpu_count()
    }
    fn memory_mb(&self) -> u64 {
        self.vm.memory_size() >> 20
    }
    fn cpu_time_100ns(&self) -> u64 {
        self.vm
            .vcpu_thread_ids()
            .into_iter()
            .map(thread_cpu_time_100ns)
            .sum()
    }
}

/// CPU time (user + system) of one thread of this process, from /proc, in 100 ns units.
fn thread_cpu_time_100ns(tid: libc::pid_t) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    ticks * 10_000_000 / hz
}
