//! Guest code: the built-in idle firmware, raw protected-mode images, and the register state
//! every vCPU starts in.
//!
//! There is no BIOS and no real mode: every vCPU starts directly in 32-bit protected mode
//! with flat 4 GiB code and data segments (selectors 0x08 / 0x10, loaded straight into the
//! segment caches, so no GDT is needed in memory), paging off, and an empty IDT (base 0,
//! limit 0). Any exception or NMI therefore cannot be delivered and escalates to a triple
//! fault, which KVM reports as `KVM_EXIT_SHUTDOWN` ([`crate::VmExitReason::TripleFault`]).
//! (Protected mode matters on nested KVMs such as `kvm_pvm`, where an interrupt past the IDT
//! limit in real mode does not fault.)

use kvm_bindings::{kvm_mp_state, kvm_regs, kvm_segment, KVM_MP_STATE_RUNNABLE};
use kvm_ioctls::VcpuFd;
use vm_memory::GuestMemoryMmap;

use crate::error::Error;
use crate::memory;

/// What a VM runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestImage {
    /// The built-in idle firmware: every vCPU runs `cli; 1: hlt; jmp 1b` in 32-bit protected
    /// mode with an empty IDT (limit 0), loaded at [`IDLE_FIRMWARE_ADDRESS`]. It idles
    /// forever at no host CPU cost (the vCPUs block in the kernel in HLT); an NMI makes it
    /// triple-fault (it has no handler).
    IdleFirmware,
    /// Raw 32-bit protected-mode code (flat segments, paging off, interrupts off, empty IDT)
    /// loaded at `load_address` (which must lie in RAM below 3 GiB) and entered there on
    /// every vCPU. Each vCPU starts with its index in EAX, the vCPU count in EBX, and ESP at
    /// the top of low RAM minus 4 KiB per vCPU index (memory that is only touched if the code
    /// pushes). For tests and benchmarks.
    ProtectedModeCode {
        /// The code, copied verbatim.
        code: Vec<u8>,
        /// Where it is copied to and entered.
        load_address: u64,
    },
}

/// Where the idle firmware lives (page 1; page 0 is left untouched).
pub const IDLE_FIRMWARE_ADDRESS: u64 = 0x1000;

/// `cli; 1: hlt; jmp 1b`. The loop back to HLT (rather than `jmp .`) keeps a vCPU that is
/// woken by anything other than an NMI idle instead of spinning.
const IDLE_FIRMWARE: [u8; 4] = [0xfa, 0xf4, 0xeb, 0xfd];

/// Selector of the flat code segment.
const CODE_SELECTOR: u16 = 0x08;
/// Selector of the flat data segment.
const DATA_SELECTOR: u16 = 0x10;
/// CR0.PE: protected mode.
const CR0_PE: u64 = 1;
/// CR0.PG: paging.
const CR0_PG: u64 = 1 << 31;
/// RFLAGS bit 1 is always set; IF stays clear.
const RFLAGS_RESERVED: u64 = 0x2;
/// Stack space set aside per vCPU below the top of low RAM.
const STACK_PER_VCPU: u64 = 0x1000;

/// Copies `image` into guest memory and returns its entry point.
pub(crate) fn load(image: &GuestImage, memory: &GuestMemoryMmap, size: u64) -> Result<u64, Error> {
    let (code, address): (&[u8], u64) = match image {
        GuestImage::IdleFirmware => (&IDLE_FIRMWARE, IDLE_FIRMWARE_ADDRESS),
        GuestImage::ProtectedModeCode { code, load_address } => (code, *load_address),
    };
    if code.is_empty() {
        return Err(Error::InvalidConfig("the guest code is empty".into()));
    }
    let low_end = size.min(memory::LOW_MEMORY_END);
    let fits = address
        .checked_add(code.len() as u64)
        .is_some_and(|end| end <= low_end);
    if !fits {
        return Err(Error::InvalidConfig(format!(
            "guest code at {address:#x} (+{} bytes) does not fit in low RAM (0..{low_end:#x})",
            code.len()
        )));
    }
    memory::write(memory, address, code)?;
    Ok(address)
}

/// Puts vCPU `index` (of `count`) in flat 32-bit protected mode at `entry`, runnable.
pub(crate) fn setup_vcpu(
    vcpu: &VcpuFd,
    index: u32,
    count: u32,
    entry: u64,
    memory_size: u64,
) -> Result<(), Error> {
    let mut sregs = vcpu.get_sregs().map_err(Error::kvm("KVM_GET_SREGS"))?;
    let code = flat_segment(CODE_SELECTOR, 0xb);
    let data = flat_segment(DATA_SELECTOR, 0x3);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.cr0 = (sregs.cr0 | CR0_PE) & !CR0_PG;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.gdt.base = 0;
    sregs.gdt.limit = 0;
    vcpu.set_sregs(&sregs)
        .map_err(Error::kvm("KVM_SET_SREGS"))?;

    let stack_top = memory_size.min(memory::LOW_MEMORY_END);
    let regs = kvm_regs {
        rip: entry,
        rflags: RFLAGS_RESERVED,
        rax: u64::from(index),
        rbx: u64::from(count),
        rsp: stack_top.saturating_sub(u64::from(index) * STACK_PER_VCPU),
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(Error::kvm("KVM_SET_REGS"))?;

    // With in-kernel local APICs only the boot processor starts runnable; the others wait
    // for INIT/SIPI, which the idle firmware never sends.
    if index != 0 {
        let runnable = kvm_mp_state {
            mp_state: KVM_MP_STATE_RUNNABLE,
        };
        vcpu.set_mp_state(runnable)
            .map_err(Error::kvm("KVM_SET_MP_STATE"))?;
    }
    Ok(())
}

/// A flat, present, ring-0, 32-bit segment of 4 GiB with the given descriptor type.
fn flat_segment(selector: u16, type_: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}
