//! The raw host pieces of kicking a vCPU out of `KVM_RUN`: the kick signal, the
//! `immediate_exit` flag in the vCPU's shared `kvm_run` page, and kernel thread ids.
//!
//! A kick sets `immediate_exit` first and then signals the vCPU thread. A signal that lands
//! while the thread is inside `KVM_RUN` makes it return `EINTR`; a signal that lands anywhere
//! else is harmless, and the flag makes the thread's next `KVM_RUN` return `EINTR` at once.
//! The thread clears the flag before it looks at why it was kicked, so no kick is lost.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use kvm_ioctls::VcpuFd;
use libc::{c_int, c_void, pthread_t, siginfo_t};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::error::Error;

/// The kick signal is `SIGRTMIN() + KICK_SIGNAL_OFFSET` (as in Firecracker and Cloud
/// Hypervisor). A process that embeds this crate must leave that signal to it.
pub const KICK_SIGNAL_OFFSET: c_int = 0;

/// The real-time signal used to kick vCPU threads.
pub fn kick_signal() -> c_int {
    SIGRTMIN() + KICK_SIGNAL_OFFSET
}

/// The kick signal's handler: its only job is to exist, so that the signal interrupts
/// `KVM_RUN` instead of killing the process.
extern "C" fn on_kick(_: c_int, _: *mut siginfo_t, _: *mut c_void) {}

/// Installs the kick signal handler, once per process.
pub(crate) fn install_kick_handler() -> Result<(), Error> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| register_signal_handler(kick_signal(), on_kick).map_err(|e| e.errno()))
        .map_err(|errno| Error::Host {
            op: "installing the vCPU kick signal handler",
            source: std::io::Error::from_raw_os_error(errno),
        })
}

/// Makes sure the calling thread (a vCPU thread) can receive the kick signal, whatever mask
/// it inherited from the thread that created it.
pub(crate) fn unblock_kick_signal() {
    if let Err(e) = vmm_sys_util::signal::unblock_signal(kick_signal()) {
        tracing::warn!(error = %e, "cannot unblock the vCPU kick signal");
    }
}

/// The kernel thread id of the calling thread.
pub(crate) fn current_tid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// The `immediate_exit` byte of one vCPU's `kvm_run` page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImmediateExit(*const AtomicU8);

// SAFETY: the pointer is into the vCPU's `kvm_run` mapping, which lives as long as the
// `VcpuFd`; `Vm` keeps every `VcpuFd` alive until after the last use of its `ImmediateExit`
// (kicks happen only while the vCPU threads are alive and not joined, and the fds are dropped
// after all of them are joined). The byte is only ever accessed atomically (and by the kernel).
unsafe impl Send for ImmediateExit {}
// SAFETY: as for Send: all accesses are atomic.
unsafe impl Sync for ImmediateExit {}

impl ImmediateExit {
    /// The flag of `vcpu`. Valid as long as `vcpu` is not dropped (moving it is fine: the
    /// page is a separate mapping).
    pub(crate) fn of(vcpu: &mut VcpuFd) -> Self {
        let byte: *mut u8 = &mut vcpu.get_kvm_run().immediate_exit;
        ImmediateExit(byte.cast::<AtomicU8>().cast_const())
    }

    fn flag(&self) -> &AtomicU8 {
        // SAFETY: the pointer is valid and aligned (AtomicU8 has alignment 1) for as long as
        // the VcpuFd lives (see the Send impl); the byte is shared with the kernel, which reads
        // it with READ_ONCE at KVM_RUN entry, and we only access it atomically.
        unsafe { &*self.0 }
    }

    /// Makes the next (or current) `KVM_RUN` return `EINTR`.
    pub(crate) fn set(&self) {
        self.flag().store(1, Ordering::SeqCst);
    }

    /// Lets `KVM_RUN` run again; the vCPU thread calls it before it reads its requests.
    pub(crate) fn clear(&self) {
        self.flag().store(0, Ordering::SeqCst);
    }
}

/// What it takes to kick one vCPU thread.
#[derive(Debug)]
pub(crate) struct Kicker {
    thread: pthread_t,
    immediate_exit: ImmediateExit,
}

// SAFETY: `thread` is the pthread of a vCPU thread that has not been joined: `Vm` only kicks
// under the control lock while the VM is not stopped, and joins its threads only after it
// marked the VM stopped under that same lock.
unsafe impl Killable for Kicker {
    fn pthread_handle(&self) -> pthread_t {
        self.thread
    }
}

impl Kicker {
    pub(crate) fn new(thread: pthread_t, immediate_exit: ImmediateExit) -> Self {
        Kicker {
            thread,
            immediate_exit,
        }
    }

    /// Gets the vCPU out of `KVM_RUN` (now, or at its next entry).
    pub(crate) fn kick(&self) {
        self.immediate_exit.set();
        if let Err(e) = self.kill(kick_signal()) {
            tracing::warn!(error = %e, "cannot signal a vCPU thread");
        }
    }
}
