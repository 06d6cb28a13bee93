//! The built-in VMM: one virtual machine on `/dev/kvm`, built on the rust-vmm crates
//! (kvm-ioctls, kvm-bindings, vm-memory, vmm-sys-util), in the family of Firecracker and
//! Cloud Hypervisor.
//!
//! It owns a VM's KVM objects, guest memory, vCPU threads and the few ports a guest uses to
//! end itself. It knows nothing of HCS: no documents, no HRESULTs, no compute-system states;
//! `hcs-host` wraps it behind its `Engine` trait and maps [`Error`] and [`VmExitReason`] to
//! HCS terms.
//!
//! ```text
//!   owner threads (any)                 Vm
//!   create/start/pause/resume/   ┌──────────────────────────────────────────────┐
//!   inject_nmi/stop ───────────> │ ops lock: VM fd, vCPU join handles            │
//!                                │ Control (shared with vCPU threads):           │
//!                                │   phase, exit reason, parked/ended, kickers   │
//!                                └──────┬──────────────────────┬────────────────┘
//!                    kick = immediate_exit=1 + SIGRTMIN         │ condvar
//!                                       v                      v
//!      thread "vcpu0" … "vcpuN-1":  KVM_RUN ──exit──> io bus (0x604 power off,
//!        Running ⇄ Paused → Exited     ^  │          0x64/0xCF9 reset, rest: ~0)
//!                                      │  └─ SHUTDOWN → triple fault ──┐
//!                                      └── HLT blocks in the kernel    v
//!                                          (in-kernel LAPIC)     first vCPU to see the
//!                                                                 end kicks the others and
//!                                                                 calls on_exit(reason) once
//!   guest physical memory (MAP_NORESERVE, untouched until used; see [`memory`]):
//!   0 ── RAM ── 3 GiB ── MMIO hole ── 4 GiB ── RAM ── … 1 TiB
//!               └ firmware page at 0x1000 (idle firmware: cli; hlt loop, protected mode)
//! ```
//!
//! The guest runs in 32-bit protected mode from its first instruction (see [`firmware`]):
//! no BIOS, no real mode. The vCPU thread is a small state machine (see `vcpu.rs`):
//! `Running` (in `KVM_RUN`), `Paused` (parked on a condvar), `Exited`.
//!
//! The process must leave the real-time signal [`kick_signal`] to this crate.

mod engine;
mod error;
pub mod firmware;
pub mod floor;
pub mod io;
mod kvm;
pub mod memory;
mod sys;
mod vcpu;
mod vm;

pub use engine::KvmEngine;
pub use error::Error;
pub use firmware::GuestImage;
pub use kvm::{check_kvm, KvmInfo, KVM_PATH};
pub use sys::{kick_signal, KICK_SIGNAL_OFFSET};
pub use vm::{ExitHandler, Vm, VmConfig, VmExitReason, VmState};

#[cfg(test)]
mod tests {
    #[test]
    fn vm_is_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::Vm>();
        send_sync::<crate::Error>();
    }
}
