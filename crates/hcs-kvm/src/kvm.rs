//! Opening `/dev/kvm` and checking that it has what the built-in VMM needs.

use std::sync::OnceLock;

use kvm_bindings::{kvm_enable_cap, KVM_CAP_SPLIT_IRQCHIP};
use kvm_ioctls::{Cap, Kvm, VmFd};

use crate::error::Error;
use crate::memory;

/// The KVM device.
pub const KVM_PATH: &str = "/dev/kvm";

/// The only KVM API version there has ever been.
const KVM_API_VERSION: i32 = 12;

/// Capabilities the VMM cannot run without, with the names used in error messages.
const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (
        Cap::Irqchip,
        "KVM_CAP_IRQCHIP (in-kernel interrupt controller)",
    ),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
    (Cap::MpState, "KVM_CAP_MP_STATE"),
];

/// What this host's KVM offers the built-in VMM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmInfo {
    /// `KVM_GET_API_VERSION` (always 12).
    pub api_version: i32,
    /// The most vCPUs one VM may have (`KVM_CAP_MAX_VCPUS`, else `KVM_CAP_NR_VCPUS`).
    pub max_vcpus: u32,
    /// The most guest memory [`crate::Vm::create`] accepts, in MiB: the RAM that fits in the
    /// guest physical address space this VMM lays out (see [`crate::memory`]).
    pub max_memory_mib: u64,
}

/// Checks that `/dev/kvm` exists, can be opened, and has every capability the VMM needs.
///
/// ```no_run
/// match hcs_kvm::check_kvm() {
///     Ok(info) => println!("KVM: up to {} vCPUs, {} MiB", info.max_vcpus, info.max_memory_mib),
///     Err(e) => eprintln!("no built-in VMM here: {e}"),
/// }
/// ```
pub fn check_kvm() -> Result<KvmInfo, Error> {
    let kvm = open()?;
    let caps = capabilities(&kvm)?;
    Ok(KvmInfo {
        api_version: kvm.get_api_version(),
        max_vcpus: caps.max_vcpus,
        max_memory_mib: memory::MAX_MEMORY_MIB,
    })
}

/// Opens `/dev/kvm`, turning "missing" and "not allowed" into their own errors.
pub(crate) fn open() -> Result<Kvm, Error> {
    open_path(KVM_PATH)
}

fn open_path(path: &str) -> Result<Kvm, Error> {
    let c_path =
        std::ffi::CString::new(path).map_err(|_| Error::KvmNotFound { path: path.into() })?;
    Kvm::new_with_path(&c_path).map_err(|e| match e.errno() {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => Error::KvmNotFound { path: path.into() },
        libc::EACCES | libc::EPERM => Error::KvmAccessDenied { path: path.into() },
        errno => Error::KvmOpen {
            path: path.into(),
            source: std::io::Error::from_raw_os_error(errno),
        },
    })
}

/// The host facts a VM is built against, checked once per process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Capabilities {
    pub max_vcpus: u32,
    /// `KVM_CAP_SPLIT_IRQCHIP`: local APICs in the kernel, PIC and IOAPIC (if any) in user
    /// space.
    pub split_irqchip: bool,
}

/// Checks the API version and the required capabilities on first use; later calls return
/// the cached answer (a host's KVM does not change under a running process).
pub(crate) fn capabilities(kvm: &Kvm) -> Result<Capabilities, Error> {
    static CAPS: OnceLock<Capabilities> = OnceLock::new();
    if let Some(caps) = CAPS.get() {
        return Ok(*caps);
    }
    let version = kvm.get_api_version();
    if version != KVM_API_VERSION {
        return Err(Error::KvmApiVersion(version));
    }
    for (cap, name) in REQUIRED_CAPS {
        if !kvm.check_extension(*cap) {
            return Err(Error::MissingCapability(name));
        }
    }
    let max_vcpus = u32::try_from(kvm.get_max_vcpus()).unwrap_or(u32::MAX);
    let split_irqchip = kvm.check_extension(Cap::SplitIrqchip);
    Ok(*CAPS.get_or_init(|| Capabilities {
        max_vcpus,
        split_irqchip,
    }))
}

/// IOAPIC pins reserved for a user-space IOAPIC with the split irqchip (the usual 24).
const SPLIT_IRQCHIP_IOAPIC_PINS: u64 = 24;

/// Gives the VM in-kernel local APICs, so that a vCPU in HLT blocks in the kernel instead of
/// exiting to us, and NMIs are delivered by KVM. Must come before the first vCPU.
///
/// The split irqchip (local APICs only, as Cloud Hypervisor uses it) is preferred: the full
/// one (`KVM_CREATE_IRQCHIP`, adding the PIC, IOAPIC and their I/O bus devices) makes VM
/// teardown much slower (about 15 ms instead of 0.2 ms on a nested `kvm_pvm` host, spent
/// unregistering the devices) and the built-in firmware needs neither PIC nor IOAPIC. The
/// full irqchip is the fallback for hosts without `KVM_CAP_SPLIT_IRQCHIP`.
pub(crate) fn create_irqchip(vm: &VmFd, caps: Capabilities) -> Result<(), Error> {
    if caps.split_irqchip {
        let mut cap = kvm_enable_cap {
            cap: KVM_CAP_SPLIT_IRQCHIP,
            ..Default::default()
        };
        cap.args[0] = SPLIT_IRQCHIP_IOAPIC_PINS;
        vm.enable_cap(&cap)
            .map_err(Error::kvm("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)"))
    } else {
        vm.create_irq_chip()
            .map_err(Error::kvm("KVM_CREATE_IRQCHIP"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_says_there_is_no_kvm() {
        let err = open_path("/nonexistent/kvm").unwrap_err();
        assert!(matches!(err, Error::KvmNotFound { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with("/nonexistent/kvm not found: this host has no KVM"),
            "{message}"
        );
    }

    #[test]
    fn the_layout_bounds_memory() {
        assert_eq!(memory::MAX_MEMORY_MIB, (1 << 20) - 1024);
    }
}
