//! The built-in VMM as an HCS engine: [`KvmEngine`] implements `hcs_engine::Engine` for the
//! plans it can build (the idle firmware: the empty VMs of the samples).

use hcs_engine::{
    Engine, EngineError, EngineExit, EngineLimits, EngineVm, ExitHandler, Firmware, ResetHandler,
    VmPlan,
};
use std::sync::Arc;
use std::time::Duration;

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

fn engine_error(error: crate::Error) -> EngineError {
    use crate::Error as E;
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

    fn accepts(&self, plan: &VmPlan) -> Result<(), String> {
        match plan.firmware {
            Firmware::Idle => Ok(()),
            Firmware::LinuxDirect { .. } => {
                Err("the built-in VMM cannot boot a Linux kernel yet".into())
            }
        }
    }

    fn limits(&self) -> Result<EngineLimits, EngineError> {
        if let Some(limits) = self.limits.get() {
            return Ok(*limits);
        }
        // A failure is not cached: /dev/kvm may become usable (module loaded, permissions).
        let info = crate::check_kvm().map_err(engine_error)?;
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
            Firmware::Idle => crate::GuestImage::IdleFirmware,
            Firmware::LinuxDirect { .. } => {
                return Err(EngineError::Failed(
                    "the built-in VMM cannot boot a Linux kernel yet (the QEMU engine does)".into(),
                ))
            }
        };
        let config = crate::VmConfig {
            memory_mib: plan.memory_mb,
            vcpus: plan.vcpus,
            guest,
        };
        let handler: crate::ExitHandler = Box::new(move |reason| {
            on_exit(match reason {
                crate::VmExitReason::PowerOff => EngineExit::PowerOff,
                crate::VmExitReason::Reset => EngineExit::Reset,
                crate::VmExitReason::TripleFault => EngineExit::TripleFault,
                crate::VmExitReason::InternalError(detail) => EngineExit::Failed(detail),
            })
        });
        let vm = crate::Vm::create(config, handler).map_err(engine_error)?;
        Ok(Arc::new(KvmVm { vm }))
    }
}

struct KvmVm {
    vm: crate::Vm,
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
    fn cpu_time(&self) -> Duration {
        self.vm
            .vcpu_thread_ids()
            .into_iter()
            .map(thread_cpu_time)
            .sum()
    }
}

/// CPU time (user + system) of one thread of this process, from /proc.
fn thread_cpu_time(tid: libc::pid_t) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return Duration::ZERO;
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
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}
