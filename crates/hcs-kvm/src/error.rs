//! The crate's one error type.

use crate::vm::VmState;

/// Everything that can go wrong in the built-in VMM.
///
/// The variants that a host maps to its own error codes are the first two (no KVM at all) and
/// [`Error::InvalidConfig`] / [`Error::InvalidState`] (the caller asked for something
/// impossible); the rest carry the failing KVM or host call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `/dev/kvm` does not exist: this host has no KVM.
    #[error(
        "{path} not found: this host has no KVM; load the kvm module (kvm_intel, kvm_amd or \
         kvm_pvm) or enable hardware virtualization"
    )]
    KvmNotFound {
        /// The device path that was tried.
        path: String,
    },
    /// `/dev/kvm` exists but this process may not open it.
    #[error(
        "{path}: permission denied; run as root or add this user to the group that owns it \
         (usually `kvm`)"
    )]
    KvmAccessDenied {
        /// The device path that was tried.
        path: String,
    },
    /// `/dev/kvm` could not be opened for another reason.
    #[error("cannot open {path}: {source}")]
    KvmOpen {
        /// The device path that was tried.
        path: String,
        /// The error from open(2).
        #[source]
        source: std::io::Error,
    },
    /// The kernel speaks a KVM API version other than 12.
    #[error("KVM API version {0} is not supported (expected 12)")]
    KvmApiVersion(i32),
    /// A KVM capability this VMM needs is missing.
    #[error("this host's KVM lacks {0}, which the built-in VMM needs")]
    MissingCapability(&'static str),
    /// The configuration cannot be built (zero vCPUs, zero memory, code outside memory, ...).
    #[error("invalid VM configuration: {0}")]
    InvalidConfig(String),
    /// A KVM ioctl failed.
    #[error("{op} failed: {source}")]
    Kvm {
        /// The ioctl or step that failed (`KVM_CREATE_VM`, ...).
        op: &'static str,
        /// The errno it returned.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be mapped.
    #[error("cannot map {size_mib} MiB of guest memory: {detail}")]
    Memory {
        /// The size asked for.
        size_mib: u64,
        /// What vm-memory reported.
        detail: String,
    },
    /// A guest physical address outside guest memory.
    #[error("guest physical address {gpa:#x} (+{len}) is outside guest memory")]
    GuestAddress {
        /// The address.
        gpa: u64,
        /// The length of the access.
        len: usize,
    },
    /// A vCPU thread could not be spawned, or the kick signal could not be set up.
    #[error("{op} failed: {source}")]
    Host {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The operation does not apply in the VM's current state.
    #[error("cannot {op} a VM that is {state}")]
    InvalidState {
        /// The operation (`start`, `pause`, ...).
        op: &'static str,
        /// The state the VM was in.
        state: VmState,
    },
}

impl Error {
    pub(crate) fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
        move |source| Error::Kvm { op, source }
    }
}
