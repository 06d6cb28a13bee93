//! Guest memory: the physical layout, the anonymous mapping behind it, and its KVM slots.
//!
//! ```text
//!  guest physical                         host
//!  0 ─────────────── RAM (low) ──────────  one MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE
//!  min(size, 3 GiB)                        mapping per range; pages cost nothing
//!  3 GiB ─────────── MMIO hole ──────────  until the guest (or we) touch them
//!  4 GiB ─────────── RAM (high, the rest of size)
//!  1 TiB ─────────── end of the layout (MAX_MEMORY_MIB = 1 TiB − 1 GiB)
//! ```
//!
//! Nothing here zeroes or pre-faults memory: a fresh anonymous mapping already reads as
//! zeros, so creating a 1 GiB VM costs one `mmap` and one `KVM_SET_USER_MEMORY_REGION`.

use kvm_ioctls::VmFd;
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};

use crate::error::Error;

/// Where low RAM ends and the 32-bit MMIO hole begins (3 GiB).
pub const LOW_MEMORY_END: u64 = 0xC000_0000;
/// Where RAM above the MMIO hole begins (4 GiB).
pub const HIGH_MEMORY_START: u64 = 1 << 32;
/// The end of the guest physical address space this VMM lays out (1 TiB, 40 bits: within the
/// physical address width of every x86-64 host KVM runs on).
pub const GUEST_PHYS_END: u64 = 1 << 40;
/// The most RAM that fits in the layout, in MiB.
pub const MAX_MEMORY_MIB: u64 = (GUEST_PHYS_END - HIGH_MEMORY_START + LOW_MEMORY_END) >> 20;

/// The guest physical ranges `(start, length)` that hold `size` bytes of RAM.
pub(crate) fn ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    let low = size.min(LOW_MEMORY_END);
    let mut ranges = vec![(GuestAddress(0), low as usize)];
    if size > low {
        ranges.push((GuestAddress(HIGH_MEMORY_START), (size - low) as usize));
    }
    ranges
}

/// Maps `size_mib` MiB of guest RAM (unreserved, untouched).
pub(crate) fn create(size_mib: u64) -> Result<GuestMemoryMmap, Error> {
    if size_mib == 0 {
        return Err(Error::InvalidConfig("memory size is 0 MiB".into()));
    }
    if size_mib > MAX_MEMORY_MIB {
        return Err(Error::InvalidConfig(format!(
            "memory size {size_mib} MiB is more than the {MAX_MEMORY_MIB} MiB this VMM lays out"
        )));
    }
    GuestMemoryMmap::from_ranges(&ranges(size_mib << 20)).map_err(|e| Error::Memory {
        size_mib,
        detail: e.to_string(),
    })
}

/// Hands every range of `memory` to KVM as one memory slot each.
pub(crate) fn register(vm: &VmFd, memory: &GuestMemoryMmap) -> Result<(), Error> {
    for (slot, region) in memory.iter().enumerate() {
        let region_desc = kvm_bindings::kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the host range is a live mapping owned by `memory`, exactly
        // `region.len()` bytes long. The VM (and so the slot) is always dropped before the
        // mapping: `Vm::stop` closes the vCPU and VM fds first and unmaps memory last.
        unsafe { vm.set_user_memory_region(region_desc) }
            .map_err(Error::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// Copies `bytes` into guest memory at `gpa` (touches only the pages it writes).
pub(crate) fn write(memory: &GuestMemoryMmap, gpa: u64, bytes: &[u8]) -> Result<(), Error> {
    memory
        .write_slice(bytes, GuestAddress(gpa))
        .map_err(|_| Error::GuestAddress {
            gpa,
            len: bytes.len(),
        })
}

/// Reads the little-endian u64 at `gpa`.
pub(crate) fn read_u64(memory: &GuestMemoryMmap, gpa: u64) -> Result<u64, Error> {
    memory
        .read_obj::<u64>(GuestAddress(gpa))
        .map_err(|_| Error::GuestAddress { gpa, len: 8 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_memory_is_one_low_range() {
        assert_eq!(ranges(1 << 30), vec![(GuestAddress(0), 1 << 30)]);
    }

    #[test]
    fn memory_past_the_hole_goes_above_4_gib() {
        let r = ranges(5 << 30);
        assert_eq!(r[0], (GuestAddress(0), LOW_MEMORY_END as usize));
        assert_eq!(r[1], (GuestAddress(HIGH_MEMORY_START), 2usize << 30));
    }

    #[test]
    fn zero_and_too_much_memory_are_refused() {
        assert!(matches!(create(0), Err(Error::InvalidConfig(_))));
        assert!(matches!(
            create(MAX_MEMORY_MIB + 1),
            Err(Error::InvalidConfig(_))
        ));
    }
}
