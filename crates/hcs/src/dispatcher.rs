//! The threads that run user callbacks.
//!
//! Callbacks never run on the caller's stack inside the call that started the work, nor
//! under any lock of ours (HCS-API O-11): the client queues a job here and one of these
//! threads runs it. The pool keeps a few threads and grows when every thread is busy —
//! a callback may block (waiting for another operation, for instance) without starving
//! the others — and extra threads leave after a while idle. Growth is decided by a
//! watchdog that sees jobs waiting while no job has finished for a moment, so a burst of
//! short callbacks does not spawn threads, and blocked callbacks cannot starve the queue.

use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// Threads kept even when idle.
const CORE_THREADS: usize = 2;
/// Upper bound on threads, so that runaway blocking callbacks cannot exhaust the host.
const MAX_THREADS: usize = 256;
/// How long an extra thread waits for work before it leaves.
const IDLE_EXIT: Duration = Duration::from_secs(10);
/// How often the watchdog looks for a stalled queue.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(20);

pub(crate) struct Dispatcher {
    sender: Sender<Job>,
    shared: Arc<Shared>,
}

struct Shared {
    receiver: Receiver<Job>,
    threads: AtomicUsize,
    finished: AtomicU64,
}

impl Dispatcher {
    pub fn new() -> Dispatcher {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let dispatcher = Dispatcher {
            sender,
            shared: Arc::new(Shared {
                receiver,
                threads: AtomicUsize::new(0),
                finished: AtomicU64::new(0),
            }),
        };
        for _ in 0..CORE_THREADS {
            spawn_thread(&dispatcher.shared);
        }
        let shared = Arc::clone(&dispatcher.shared);
        let _ = std::thread::Builder::new()
            .name("hcs-callback-watchdog".into())
            .spawn(move || watchdog(shared));
        dispatcher
    }

    /// Queues a job; it runs on a dispatcher thread, soon.
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) {
        if let Err(error) = self.sender.send(Box::new(job)) {
            // Unreachable while the dispatcher lives (it owns a receiver); run it here
            // rather than lose a completion.
            (error.into_inner())();
        }
    }
}

fn spawn_thread(shared: &Arc<Shared>) {
    let index = shared.threads.fetch_add(1, Ordering::SeqCst);
    let for_thread = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name(format!("hcs-callback-{index}"))
        .spawn(move || run(for_thread, index < CORE_THREADS));
    if spawned.is_err() {
        shared.threads.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Adds a thread whenever jobs wait and none finished during a whole period.
fn watchdog(shared: Arc<Shared>) {
    let mut last = shared.finished.load(Ordering::SeqCst);
    loop {
        std::thread::sleep(WATCHDOG_PERIOD);
        let now = shared.finished.load(Ordering::SeqCst);
        if now == last
            && !shared.receiver.is_empty()
            && shared.threads.load(Ordering::SeqCst) < MAX_THREADS
        {
            spawn_thread(&shared);
        }
        last = now;
    }
}

fn run(shared: Arc<Shared>, core: bool) {
    loop {
        let job = if core {
            shared.receiver.recv().ok()
        } else {
            shared.receiver.recv_timeout(IDLE_EXIT).ok()
        };
        match job {
            // A panicking callback must not take the thread (and later callbacks) with it.
            Some(job) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a callback panicked; the panic was contained");
                }
                shared.finished.fetch_add(1, Ordering::SeqCst);
            }
            None => break,
        }
    }
    shared.threads.fetch_sub(1, Ordering::SeqCst);
}
