//! The bare-ioctl floor: the least work KVM needs to bring up an empty VM and get each vCPU
//! to execute guest code, written directly against kvm-ioctls with no threads, no irqchip,
//! no state machine. [`crate::Vm`]'s lifecycle is measured against it (see
//! `benches/lifecycle.rs`; target: within 1.5x).

use std::time::{Duration, Instant};

use kvm_bindings::kvm_regs;
use kvm_ioctls::VcpuExit;

use crate::error::Error;
use crate::{kvm, memory};

/// `hlt`, at the same address as the idle firmware.
const HLT: [u8; 1] = [0xf4];
const CODE_ADDRESS: u64 = 0x1000;

/// One bare cycle, timed: open `/dev/kvm`, create a VM, map `memory_mib` MiB (unreserved) and
/// register it, copy one `hlt` into it, create `vcpus` vCPUs in flat protected mode, run
/// each (on the calling thread, one after the other) to its first HLT, and close
/// everything.
///
/// ```no_run
/// let floor = hcs_kvm::floor::bare_kvm_cycle(1024, 2)?;
/// println!("bare KVM cycle: {floor:?}");
/// # Ok::<(), hcs_kvm::Error>(())
/// ```
pub fn bare_kvm_cycle(memory_mib: u64, vcpus: u32) -> Result<Duration, Error> {
    let start = Instant::now();
    let kvm = kvm::open()?;
    let guest_memory = memory::create(memory_mib)?;
    let vm = kvm.create_vm().map_err(Error::kvm("KVM_CREATE_VM"))?;
    memory::register(&vm, &guest_memory)?;
    memory::write(&guest_memory, CODE_ADDRESS, &HLT)?;
    let mut fds = Vec::with_capacity(vcpus as usize);
    for index in 0..vcpus {
        let mut fd = vm
            .create_vcpu(u64::from(index))
            .map_err(Error::kvm("KVM_CREATE_VCPU"))?;
        let mut sregs = fd.get_sregs().map_err(Error::kvm("KVM_GET_SREGS"))?;
        for segment in [
            &mut sregs.cs,
            &mut sregs.ds,
            &mut sregs.es,
            &mut sregs.fs,
            &mut sregs.gs,
            &mut sregs.ss,
        ] {
            segment.base = 0;
            segment.limit = 0xffff_ffff;
            segment.g = 1;
            segment.db = 1;
        }
        sregs.cs.type_ = 0xb;
        sregs.cr0 |= 1;
        fd.set_sregs(&sregs).map_err(Error::kvm("KVM_SET_SREGS"))?;
        let regs = kvm_regs {
            rip: CODE_ADDRESS,
            rflags: 0x2,
            ..Default::default()
        };
        fd.set_regs(&regs).map_err(Error::kvm("KVM_SET_REGS"))?;
        match fd.run().map_err(Error::kvm("KVM_RUN"))? {
            VcpuExit::Hlt => {}
            other => {
                return Err(Error::InvalidConfig(format!(
                    "bare cycle: vCPU {index} exited with {other:?} instead of HLT"
                )))
            }
        }
        fds.push(fd);
    }
    drop(fds);
    drop(vm);
    drop(guest_memory);
    drop(kvm);
    Ok(start.elapsed())
}
