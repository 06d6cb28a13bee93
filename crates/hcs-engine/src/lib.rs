//! The engine traits: the only way the HCS host (`hcs-host`) drives virtual machines.
//!
//! ```text
//!  hcs-host ── VmPlan ──> [Engine, Engine, ...]  the first whose `accepts` says yes builds it
//!                              │ create
//!                              v
//!                         dyn EngineVm: start, pause, resume, stop, NMI, power button
//!                              │ the guest ends itself / resets
//!                              v
//!                         ExitHandler(EngineExit) / ResetHandler
//! ```
//!
//! An engine is plain and synchronous: it builds a VM from a [`VmPlan`] (already checked and
//! translated from the HCS document by the host), and exposes start, pause, resume, stop
//! and NMI. It reports the guest ending itself through the exit handler given at creation,
//! and a guest that reboots in place ([`VmPlan::reboot_in_place`]) through the reset
//! handler. Engines know nothing of HCS: no JSON, no HRESULTs, no states; the host maps
//! [`EngineError`] to HRESULTs in one place.
//!
//! The engines implement these traits themselves (`hcs-kvm`'s `KvmEngine`, `hcs-qemu`'s
//! `QemuEngine`), as OpenVMM's `virt_kvm` implements `virt`: no adapter layer, no copied
//! types. A new engine implements [`Engine`] and [`EngineVm`], says in [`Engine::accepts`]
//! which plans it builds, and is added to the host's engine list
//! (`docs/architecture.md`, "Adding an engine").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What a VM is made of, in engine words. Built by the host from a `ComputeSystem`
/// document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    /// Guest RAM in MiB.
    pub memory_mb: u64,
    /// Number of virtual processors.
    pub vcpus: u32,
    /// What the vCPUs run first.
    pub firmware: Firmware,
    /// Serial ports (`ComPorts`), by guest index.
    pub serial_ports: Vec<SerialPort>,
    /// Block devices (`Scsi` attachments, then `VirtualPMem` devices), in guest order.
    pub disks: Vec<Disk>,
    /// A virtio-vsock device (`HvSocket` or `GuestConnection`); its host side is
    /// `<runtime_dir>/vsock.sock` (+ `_<port>` for connections the guest makes).
    pub vsock: bool,
    /// A private directory for the engine's sockets and logs, chosen by the host per VM;
    /// `None` for engines that need none.
    pub runtime_dir: Option<PathBuf>,
    /// A guest reset reboots the guest in place (reported through the [`ResetHandler`])
    /// instead of ending the VM (an [`EngineExit::Reset`]): `StopOnReset` false or absent.
    /// Engines that cannot reboot in place (the built-in VMM) end the VM all the same.
    pub reboot_in_place: bool,
}

impl VmPlan {
    /// The host side of the vsock device: guest connections to port `p` arrive on the
    /// Unix socket `<this path>_<p>`.
    pub fn vsock_uds(&self) -> Option<PathBuf> {
        match (&self.runtime_dir, self.vsock) {
            (Some(dir), true) => Some(dir.join("vsock.sock")),
            _ => None,
        }
    }
}

/// The boot method of a [`VmPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    /// The built-in firmware with nothing to boot: it idles until stopped (`"Uefi": {}`).
    Idle,
    /// A Linux kernel booted directly (`LinuxKernelDirect`).
    LinuxDirect {
        /// The kernel image (bzImage).
        kernel: PathBuf,
        /// The initial ramdisk, if any.
        initrd: Option<PathBuf>,
        /// The kernel command line.
        cmdline: String,
    },
}

/// One 16550 UART of a [`VmPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialPort {
    /// Guest index: 0 = ttyS0/COM1 (0x3f8), 1 = ttyS1/COM2 (0x2f8), 2, 3.
    pub index: u32,
    /// `Some(path)`: the engine listens on this Unix socket (server, no wait); a client may
    /// attach and detach at any time, and output while none is attached is dropped.
    /// `None`: the port exists in the guest but is connected to nothing.
    pub socket: Option<PathBuf>,
}

/// One block device of a [`VmPlan`] (virtio-blk: the guest sees `/dev/vda`, `/dev/vdb`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// A raw image file or a host block device.
    pub path: PathBuf,
    /// The guest cannot write it (opened read-only; the guest sees a read-only disk).
    pub read_only: bool,
}

/// How a guest ended itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineExit {
    /// The guest powered off (shutdown port / ACPI).
    PowerOff,
    /// The guest asked for a reset.
    Reset,
    /// The guest triple-faulted.
    TripleFault,
    /// The guest kernel panicked (reported through pvpanic).
    GuestPanic,
    /// The VMM failed while running the guest.
    Failed(String),
    /// The VMM's process died without being asked (killed, crashed); with what it said.
    ProcessDied(String),
}

impl std::fmt::Display for EngineExit {
    /// What a person reads in an error document or a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineExit::PowerOff => f.write_str("the guest powered off"),
            EngineExit::Reset => f.write_str("the guest reset itself"),
            EngineExit::TripleFault => f.write_str("the guest triple-faulted"),
            EngineExit::GuestPanic => f.write_str("the guest kernel panicked"),
            EngineExit::Failed(why) => write!(f, "the VMM failed: {why}"),
            EngineExit::ProcessDied(detail) => f.write_str(detail),
        }
    }
}

/// Called at most once per VM, from an engine thread, when the guest ends itself.
/// It must not call back into the VM (hand the work to another thread).
pub type ExitHandler = Box<dyn Fn(EngineExit) + Send + Sync>;

/// Called from an engine thread each time the guest resets itself and reboots in place
/// ([`VmPlan::reboot_in_place`]); the VM keeps running. It must not call back into the VM.
pub type ResetHandler = Box<dyn Fn() + Send + Sync>;

/// Engine failures, mapped to HRESULTs by the host.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The platform cannot run VMs at all (no usable /dev/kvm).
    #[error("{0}")]
    Unavailable(String),
    /// The host lacks the resources (memory, threads) for this VM.
    #[error("{0}")]
    OutOfResources(String),
    /// The VM ended while the call ran (its VMM process exited); the exit itself comes
    /// through the [`ExitHandler`].
    #[error("{0}")]
    Ended(String),
    /// Any other engine failure.
    #[error("{0}")]
    Failed(String),
}

/// What an engine can build on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Most vCPUs in one VM.
    pub max_vcpus: u32,
    /// Most guest RAM in one VM, in MiB.
    pub max_memory_mb: u64,
}

/// A VM factory.
pub trait Engine: Send + Sync {
    /// Short name shown in logs and properties ("kvm", "qemu").
    fn name(&self) -> &'static str;
    /// Whether this engine builds `plan` at all (its firmware, its devices), regardless
    /// of limits and of whether it can run on this host: `Err` says why not, in words a
    /// person reads when no engine accepts a plan.
    fn accepts(&self, plan: &VmPlan) -> Result<(), String>;
    /// What this engine can build here; `Unavailable` when it cannot run at all.
    fn limits(&self) -> Result<EngineLimits, EngineError>;
    /// Whether a guest reset can reboot the guest in place ([`VmPlan::reboot_in_place`]);
    /// engines that cannot end the VM with [`EngineExit::Reset`] instead.
    fn reboots_in_place(&self) -> bool {
        false
    }
    /// Builds a VM (memory mapped, vCPUs created, firmware loaded), not yet running.
    fn create(
        &self,
        plan: &VmPlan,
        on_exit: ExitHandler,
        on_reset: ResetHandler,
    ) -> Result<Arc<dyn EngineVm>, EngineError>;
}

/// One VM built by an [`Engine`]. Every method takes `&self` and may be called from any
/// thread; `stop` may run concurrently with any other call and makes it return promptly.
pub trait EngineVm: Send + Sync {
    /// Runs the vCPUs.
    fn start(&self) -> Result<(), EngineError>;
    /// Parks the vCPUs; guest state is kept.
    fn pause(&self) -> Result<(), EngineError>;
    /// Releases parked vCPUs.
    fn resume(&self) -> Result<(), EngineError>;
    /// Injects an NMI into the first vCPU (the guest's crash mechanism).
    fn inject_nmi(&self) -> Result<(), EngineError>;
    /// Presses the ACPI power button (a guest without an agent shuts down on it).
    fn power_button(&self) -> Result<(), EngineError> {
        Err(EngineError::Failed(
            "this virtual machine has no ACPI power button".into(),
        ))
    }
    /// How the vCPUs run, for logs and properties ("kvm", "qemu/tcg", ...).
    fn accelerator(&self) -> String;
    /// Stops the VM and frees everything it holds. Idempotent.
    fn stop(&self);
    /// Number of vCPUs.
    fn vcpu_count(&self) -> u32;
    /// Guest RAM in MiB.
    fn memory_mb(&self) -> u64;
    /// Host CPU time the vCPUs have used.
    fn cpu_time(&self) -> Duration;
}
