//! Booting the throw-away VM of `hcsctl run` so that SIGINT/SIGTERM interrupts the boot.
//!
//! ```text
//!  create ──> on_created (event callback, console socket) ──> start ──> Boot::Running
//!     │ signal: the create (short: the engine's work is in the start) completes first
//!     v                                                     │ signal: the start is abandoned
//!  Boot::Interrupted <──────────────────────────────────────┘
//! ```
//!
//! Under TCG the start takes seconds; waiting for it only between looks at the signals lets
//! a Ctrl-C terminate the VM at once instead of after the start. The caller terminates an
//! interrupted system (a start still running then fails with HCS_E_TERMINATED).

use crate::CliError;
use hcs::ComputeSystem;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// How often the waits look at signals.
const TICK: Duration = Duration::from_millis(100);

/// How a boot ended.
pub(crate) enum Boot {
    /// Created and started.
    Running(ComputeSystem),
    /// A signal came during the create or the start: created, not (fully) started; the
    /// caller terminates it.
    Interrupted(ComputeSystem),
}

/// Creates `id` from `document`, runs `on_created` on it, then starts it, unless
/// `interrupted` (asked every 100 ms) says a signal came first.
pub(crate) fn boot(
    id: &str,
    document: &str,
    on_created: impl FnOnce(&ComputeSystem) -> Result<(), CliError>,
    interrupted: impl Fn() -> bool,
) -> Result<Boot, CliError> {
    let mut creating = ComputeSystem::create(id, document);
    let system = match wait_unless(&mut creating, &interrupted) {
        Some(created) => created?,
        // The handle only comes with the create's end; the create is short.
        None => creating.wait()?,
    };
    if let Err(error) = on_created(&system) {
        let _ = system.terminate().wait_timeout(Duration::from_secs(10));
        return Err(error);
    }
    if interrupted() {
        return Ok(Boot::Interrupted(system));
    }
    let mut start = system.start();
    match wait_unless(&mut start, &interrupted) {
        Some(Ok(())) => Ok(Boot::Running(system)),
        // A Ctrl-C at a terminal reaches the engine's processes too (our process group): a
        // start that failed meanwhile failed because of it.
        Some(Err(_)) if interrupted() => Ok(Boot::Interrupted(system)),
        Some(Err(error)) => {
            let _ = system.terminate().wait_timeout(Duration::from_secs(10));
            Err(error.into())
        }
        None => Ok(Boot::Interrupted(system)),
    }
}

/// Waits on this thread for `future`; `None` as soon as `interrupted` (asked between
/// waits of at most 100 ms) says so, the future then still running.
pub(crate) fn wait_unless<F: Future + Unpin>(
    future: &mut F,
    interrupted: impl Fn() -> bool,
) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = Pin::new(&mut *future).poll(&mut context) {
            return Some(output);
        }
        if interrupted() {
            return None;
        }
        std::thread::park_timeout(TICK);
    }
}

/// Wakes the waiting thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Ready after `polls` polls; wakes itself so that the wait does not sit out a tick.
    struct After {
        polls: usize,
    }

    impl Future for After {
        type Output = &'static str;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
            if self.polls == 0 {
                return Poll::Ready("done");
            }
            self.polls -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn waits_for_the_future_unless_interrupted() {
        assert_eq!(wait_unless(&mut After { polls: 3 }, || false), Some("done"));
        let mut never = std::future::pending::<()>();
        let asked = AtomicBool::new(false);
        let interrupted = || asked.swap(true, Ordering::SeqCst);
        // Not interrupted at the first look, interrupted at the second, a tick later.
        assert_eq!(wait_unless(&mut never, interrupted), None);
    }
}
