//! The HCS enums and handle types of the client API, with their Windows values
//! (HCS-API §4.1 and §5).

use std::fmt;
use std::sync::Arc;

/// An operation handle (`HCS_OPERATION`): a number that stays invalid once closed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HcsOperation(pub u64);

/// A compute-system handle (`HCS_SYSTEM`): a number that stays invalid once closed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HcsSystem(pub u64);

/// A process handle (`HCS_PROCESS`): a number that stays invalid once closed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HcsProcess(pub u64);

impl fmt::Debug for HcsProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HCS_PROCESS({:#x})", self.0)
    }
}

impl HcsProcess {
    /// The null handle.
    pub const NULL: HcsProcess = HcsProcess(0);
}

impl fmt::Debug for HcsOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HCS_OPERATION({:#x})", self.0)
    }
}

impl fmt::Debug for HcsSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HCS_SYSTEM({:#x})", self.0)
    }
}

impl HcsOperation {
    /// The null handle.
    pub const NULL: HcsOperation = HcsOperation(0);
}

impl HcsSystem {
    /// The null handle.
    pub const NULL: HcsSystem = HcsSystem(0);
}

/// The caller's context pointer (`void*`), kept and handed back untouched.
pub type Context = usize;

/// `HCS_INVALID_OPERATION_ID`.
pub const HCS_INVALID_OPERATION_ID: u64 = u64::MAX;

/// `INFINITE`: a wait without a time limit.
pub const INFINITE: u32 = 0xFFFF_FFFF;

/// `GENERIC_ALL`, the only `requestedAccess` of `HcsOpenComputeSystem` (HCS-API rule 21).
pub const GENERIC_ALL: u32 = 0x1000_0000;

/// `HCS_OPERATION_COMPLETION`: runs once when a tracked call finishes.
pub type OperationCompletion = Arc<dyn Fn(HcsOperation, Context) + Send + Sync>;

/// `HCS_EVENT_CALLBACK`: runs for each event of a handle.
pub type EventCallback = Arc<dyn Fn(&Event, Context) + Send + Sync>;

/// `HCS_OPERATION_TYPE` (HCS-API §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum OperationType {
    /// Not used yet.
    None = -1,
    /// `HcsEnumerateComputeSystems`.
    Enumerate = 0,
    /// `HcsCreateComputeSystem`.
    Create = 1,
    /// `HcsStartComputeSystem`.
    Start = 2,
    /// `HcsShutDownComputeSystem`.
    Shutdown = 3,
    /// `HcsPauseComputeSystem`.
    Pause = 4,
    /// `HcsResumeComputeSystem`.
    Resume = 5,
    /// `HcsSaveComputeSystem`.
    Save = 6,
    /// `HcsTerminateComputeSystem`.
    Terminate = 7,
    /// `HcsModifyComputeSystem`.
    Modify = 8,
    /// `HcsGetComputeSystemProperties`.
    GetProperties = 9,
    /// `HcsCreateProcess`.
    CreateProcess = 10,
    /// `HcsSignalProcess` (and `HcsTerminateProcess`).
    SignalProcess = 11,
    /// `HcsGetProcessInfo`.
    GetProcessInfo = 12,
    /// `HcsGetProcessProperties`.
    GetProcessProperties = 13,
    /// `HcsModifyProcess`.
    ModifyProcess = 14,
    /// `HcsCrashComputeSystem`.
    Crash = 15,
}

/// `HCS_EVENT_TYPE` (HCS-API §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum EventType {
    /// Never delivered.
    Invalid = 0x0000_0000,
    /// The system stopped; data: `SystemExitStatus`.
    SystemExited = 0x0000_0001,
    /// The guest began to crash; data: `CrashReport`.
    SystemCrashInitiated = 0x0000_0002,
    /// The guest crash is complete; data: `CrashReport`.
    SystemCrashReport = 0x0000_0003,
    /// RDP enhanced mode changed (never raised here).
    SystemRdpEnhancedModeStateChanged = 0x0000_0004,
    /// Reserved (never raised here).
    SystemSiloJobCreated = 0x0000_0005,
    /// The guest connection closed.
    SystemGuestConnectionClosed = 0x0000_0006,
    /// A process exited; data: `ProcessStatus`.
    ProcessExited = 0x0001_0000,
    /// An operation completed (with `HcsEventOptionEnableOperationCallbacks`).
    OperationCallback = 0x0100_0000,
    /// The connection to the service was lost.
    ServiceDisconnect = 0x0200_0000,
    /// VM lifecycle group (not raised yet).
    GroupVmLifecycle = 0x8000_0002,
    /// Live migration group (not raised).
    GroupLiveMigration = 0x8000_0003,
    /// Operation information group.
    GroupOperationInfo = 0xC000_0001,
}

/// `HCS_OPERATION_OPTIONS` flags of `HcsCreateOperationWithNotifications` (HCS-API §5.3).
pub mod operation_options {
    /// `HcsOperationOptionNone`.
    pub const NONE: u32 = 0x0;
    /// `HcsOperationOptionProgressUpdate`.
    pub const PROGRESS_UPDATE: u32 = 0x1;
    /// `HcsOperationOptionReserved1`.
    pub const RESERVED1: u32 = 0x2;
    /// Every defined bit; others are refused.
    pub const ALL: u32 = 0x3;
}

/// `HCS_EVENT_OPTIONS` flags (HCS-API §4.1).
pub mod event_options {
    /// `HcsEventOptionNone`.
    pub const NONE: u32 = 0x0;
    /// `HcsEventOptionEnableOperationCallbacks`.
    pub const ENABLE_OPERATION_CALLBACKS: u32 = 0x1;
    /// `HcsEventOptionEnableVmLifecycle`.
    pub const ENABLE_VM_LIFECYCLE: u32 = 0x2;
    /// `HcsEventOptionEnableLiveMigrationEvents`.
    pub const ENABLE_LIVE_MIGRATION_EVENTS: u32 = 0x4;
    /// Every defined bit; others are refused with `E_INVALIDARG`.
    pub const ALL: u32 = 0x7;
}

/// `HCS_EVENT`: what an event callback receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's type.
    pub event_type: EventType,
    /// Its JSON data, valid during the callback only at the C ABI.
    pub event_data: Option<String>,
    /// The completed operation, for [`EventType::OperationCallback`].
    pub operation: Option<HcsOperation>,
}

/// The reserved `SECURITY_DESCRIPTOR` parameter: only `None` is accepted.
#[derive(Debug)]
pub struct SecurityDescriptor {
    _private: (),
}

/// `HCS_PROCESS_INFORMATION` (HCS-API §5.2, O-15, O-16): the guest pid and the host ends
/// of the process's stdio as file descriptors, each present only when its
/// `CreateStd*Pipe` was true. The caller owns the descriptors (close them when done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInformation {
    /// The process id in the guest.
    pub process_id: u32,
    /// Write end: the process's stdin.
    pub std_input: Option<std::os::fd::RawFd>,
    /// Read end: the process's stdout.
    pub std_output: Option<std::os::fd::RawFd>,
    /// Read end: the process's stderr.
    pub std_error: Option<std::os::fd::RawFd>,
}
