//! The vCPU thread: one per vCPU, an explicit state machine around `KVM_RUN`.
//!
//! ```text
//!            register
//!               │
//!               v        kicked, phase Paused          phase Running
//!   ┌──────> Running ───────────────────────> Paused ───────────────┐
//!   │        │  │ exits: port I/O, MMIO                    │        │
//!   └────────┘  │ guest ends itself / stop                 │ stop / guest ended
//!               v                                          v        │
//!             Exited <─────────────────────────────────────┘ <──────┘
//! ```
//!
//! The thread owns its `VcpuFd` for its whole life and hands it back when joined, so the fd
//! (and its `kvm_run` page, which kickers write to) outlives every kick.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use kvm_bindings::{KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::os::unix::thread::JoinHandleExt;

use crate::io;
use crate::sys::{self, ImmediateExit, Kicker};
use crate::vm::{Control, ControlState, Phase, VmExitReason};

thread_local! {
    /// On a vCPU thread: the address of its VM's `Control` (0 elsewhere).
    static OWNER: Cell<usize> = const { Cell::new(0) };
}

/// Whether the calling thread is one of the vCPU threads of the VM that owns `control`.
pub(crate) fn is_vcpu_thread_of(control: &Arc<Control>) -> bool {
    OWNER.with(|owner| owner.get() == Arc::as_ptr(control) as usize)
}

/// Spawns the thread of vCPU `index`; returns its handle (which yields the fd back when
/// joined) and what it takes to kick it.
pub(crate) fn spawn(
    index: u32,
    mut fd: VcpuFd,
    control: Arc<Control>,
) -> std::io::Result<(JoinHandle<VcpuFd>, Kicker)> {
    let immediate_exit = ImmediateExit::of(&mut fd);
    let handle = std::thread::Builder::new()
        .name(format!("vcpu{index}"))
        .spawn(move || {
            OWNER.with(|owner| owner.set(Arc::as_ptr(&control) as usize));
            let mut vcpu = Vcpu {
                index,
                fd,
                immediate_exit,
                control,
            };
            vcpu.run();
            vcpu.fd
        })?;
    let kicker = Kicker::new(handle.as_pthread_t(), immediate_exit);
    Ok((handle, kicker))
}

/// Where the vCPU thread is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VcpuState {
    /// In (or about to enter) `KVM_RUN`.
    Running,
    /// Parked on the control condvar, outside `KVM_RUN`.
    Paused,
    /// Done: the VM stopped or the guest ended.
    Exited,
}

/// What one return from `KVM_RUN` means.
enum Outcome {
    /// Handled (port I/O, MMIO); run again.
    Continue,
    /// Interrupted by a kick (`EINTR`): look at the requests.
    Kicked,
    /// The guest ended itself.
    GuestEnded(VmExitReason),
    /// `KVM_EXIT_INTERNAL_ERROR`: the detail is in `kvm_run`.
    InternalError,
}

struct Vcpu {
    index: u32,
    fd: VcpuFd,
    immediate_exit: ImmediateExit,
    control: Arc<Control>,
}

impl Vcpu {
    /// The thread's body: the state machine, then leaving.
    fn run(&mut self) {
        let looped = catch_unwind(AssertUnwindSafe(|| {
            let mut state = self.register();
            loop {
                state = match state {
                    VcpuState::Running => self.running(),
                    VcpuState::Paused => self.paused(),
                    VcpuState::Exited => break,
                };
            }
        }));
        if looped.is_err() {
            let detail = format!("vCPU {} thread panicked", self.index);
            tracing::error!("{detail}");
            self.guest_ended(VmExitReason::InternalError(detail));
        }
        self.unregister();
    }

    /// Waits for `start` to finish, records the thread, and says what to do first.
    fn register(&mut self) -> VcpuState {
        sys::unblock_kick_signal();
        let tid = sys::current_tid();
        let mut st = self.control.lock();
        while st.phase == Phase::Starting {
            st = self.control.wait(st);
        }
        st.tids[self.index as usize] = Some(tid);
        st.ready += 1;
        self.control.changed.notify_all();
        next_state(&st)
    }

    fn unregister(&mut self) {
        let mut st = self.control.lock();
        st.tids[self.index as usize] = None;
        st.ended += 1;
        self.control.changed.notify_all();
    }

    /// Runs the guest until a kick or the guest's end.
    fn running(&mut self) -> VcpuState {
        loop {
            let outcome = match self.fd.run() {
                Ok(exit) => classify(exit),
                Err(e) if matches!(e.errno(), libc::EINTR | libc::EAGAIN) => Outcome::Kicked,
                Err(e) => Outcome::GuestEnded(VmExitReason::InternalError(format!(
                    "KVM_RUN failed on vCPU {}: {e}",
                    self.index
                ))),
            };
            match outcome {
                Outcome::Continue => {}
                Outcome::Kicked => match self.serve_kick() {
                    VcpuState::Running => {}
                    next => return next,
                },
                Outcome::GuestEnded(reason) => return self.guest_ended(reason),
                Outcome::InternalError => {
                    let detail = internal_error_detail(&mut self.fd);
                    let reason = VmExitReason::InternalError(format!(
                        "KVM internal error on vCPU {}: {detail}",
                        self.index
                    ));
                    return self.guest_ended(reason);
                }
            }
        }
    }

    /// After `EINTR`: re-arm `KVM_RUN`, serve an NMI request, read the phase.
    fn serve_kick(&mut self) -> VcpuState {
        // Clear first, read the requests second: a kick that lands in between sets the
        // flag again and is seen at the next KVM_RUN.
        self.immediate_exit.clear();
        self.serve_nmi();
        next_state(&self.control.lock())
    }

    fn serve_nmi(&mut self) {
        if self.control.nmi_requested[self.index as usize].swap(false, Ordering::SeqCst) {
            if let Err(e) = self.fd.nmi() {
                tracing::warn!(vcpu = self.index, error = %e, "KVM_NMI failed");
            }
        }
    }

    /// Parked until resumed, stopped, or the guest ended on another vCPU.
    fn paused(&mut self) -> VcpuState {
        let mut st = self.control.lock();
        st.parked += 1;
        self.control.changed.notify_all();
        loop {
            let next = next_state(&st);
            if next != VcpuState::Paused {
                st.parked -= 1;
                self.control.changed.notify_all();
                return next;
            }
            if self.control.nmi_requested[self.index as usize].load(Ordering::SeqCst) {
                drop(st);
                self.serve_nmi();
                st = self.control.lock();
                continue;
            }
            st = self.control.wait(st);
        }
    }

    /// Records how the guest ended (if it is the first to say so and the VM is not being
    /// stopped), kicks the other vCPUs, and calls the exit handler outside the lock.
    fn guest_ended(&mut self, reason: VmExitReason) -> VcpuState {
        let first = {
            let mut st = self.control.lock();
            let first = st.exit.is_none() && st.phase != Phase::Stopped;
            if first {
                st.exit = Some(reason.clone());
                st.kick_all(Some(self.index as usize));
                self.control.changed.notify_all();
            }
            first
        };
        if first {
            tracing::debug!(vcpu = self.index, %reason, "guest ended");
            let on_exit = &self.control.on_exit;
            if catch_unwind(AssertUnwindSafe(|| on_exit(reason))).is_err() {
                tracing::error!("the VM exit handler panicked");
            }
        }
        VcpuState::Exited
    }
}

/// What the vCPU should do, given what the owner asked and whether the guest ended.
fn next_state(st: &ControlState) -> VcpuState {
    if st.exit.is_some() {
        return VcpuState::Exited;
    }
    match st.phase {
        Phase::Created | Phase::Starting | Phase::Running => VcpuState::Running,
        Phase::Paused => VcpuState::Paused,
        Phase::Stopped => VcpuState::Exited,
    }
}

/// Maps one `KVM_RUN` exit to what the vCPU thread does next, serving port I/O and MMIO.
fn classify(exit: VcpuExit<'_>) -> Outcome {
    match exit {
        VcpuExit::IoOut(port, data) => match io::port_write(port, data) {
            Some(reason) => Outcome::GuestEnded(reason),
            None => Outcome::Continue,
        },
        VcpuExit::IoIn(port, data) => {
            io::port_read(port, data);
            Outcome::Continue
        }
        VcpuExit::MmioRead(address, data) => {
            io::mmio_read(address, data);
            Outcome::Continue
        }
        VcpuExit::MmioWrite(address, data) => {
            io::mmio_write(address, data);
            Outcome::Continue
        }
        VcpuExit::Intr => Outcome::Kicked,
        VcpuExit::Shutdown => Outcome::GuestEnded(VmExitReason::TripleFault),
        VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, _) => {
            Outcome::GuestEnded(VmExitReason::PowerOff)
        }
        VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, _) => {
            Outcome::GuestEnded(VmExitReason::Reset)
        }
        VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_CRASH, data) => Outcome::GuestEnded(
            VmExitReason::InternalError(format!("guest crash system event {data:x?}")),
        ),
        VcpuExit::InternalError => Outcome::InternalError,
        VcpuExit::FailEntry(reason, cpu) => Outcome::GuestEnded(VmExitReason::InternalError(
            format!("VM entry failed (hardware reason {reason:#x}, host cpu {cpu})"),
        )),
        other => Outcome::GuestEnded(VmExitReason::InternalError(format!(
            "unexpected exit {other:?}"
        ))),
    }
}

/// The suberror and data words of a `KVM_EXIT_INTERNAL_ERROR`.
fn internal_error_detail(fd: &mut VcpuFd) -> String {
    let run = fd.get_kvm_run();
    // SAFETY: the last KVM_RUN returned with exit_reason KVM_EXIT_INTERNAL_ERROR, which is
    // what tells us `internal` is the live member of the union; it is plain old data.
    let internal = unsafe { run.__bindgen_anon_1.internal };
    let ndata = (internal.ndata as usize).min(internal.data.len());
    format!(
        "suberror {} data {:x?}",
        internal.suberror,
        &internal.data[..ndata]
    )
}
