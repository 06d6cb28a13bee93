//! Part 2, completion latency: how long after the host completes an operation the client
//! learns of it, for each way of learning it.
//!
//! The host's completion instant is not exposed by the API, so the part times a cheap
//! request end to end, from issuing it to the moment the client's code runs again: a
//! `GetProperties` (no query) on one running empty VM, which the host answers from its
//! system worker thread without touching the VM. Styles:
//!
//! - `wait`: flat `HcsGetComputeSystemProperties` + `HcsWaitForOperationResult(INFINITE)`
//!   on one reused operation: the blocked thread returns. The baseline.
//! - `spin`: the same request, then `HcsGetOperationResult` in a busy loop until it is no
//!   longer pending. Nothing sleeps, so this is the closest observable point to the host's
//!   completion: `style - spin` estimates the cost of the notification itself.
//! - `callback`: an operation with a completion callback (fresh per request; created and
//!   closed outside the timed span); the time is taken as the callback starts, on its
//!   dispatcher thread.
//! - `Pending::wait`: the idiomatic `ComputeSystem::properties(None).wait()` (creates and
//!   closes its operation inside the timed span: the idiomatic baseline).
//! - `block_on`: `futures::executor::block_on` of `ComputeSystem::properties(None)`; the time
//!   is taken in the task right after the `.await` resumes.
//! - `tokio`: the same on a tokio current-thread runtime.
//!
//! The styles are interleaved request by request, in a fresh random order each round.
//!
//! Two rows time from the completion itself: a future's waker is called inside the client's
//! completion (right after the result is recorded and blocked waiters are notified), so a
//! waker that reads the clock marks the completion instant. `completion -> wait returns`
//! polls `ComputeSystem::properties(None)` once with such a waker, then blocks in
//! `Pending::wait`; `completion -> parked task resumes` polls it in a minimal
//! park/unpark executor (the mechanism of `futures::executor::block_on`).
//!
//! And two rows that are not HCS at all, this machine's floor for the same shape of work:
//! a round trip to a parked echo thread over two `std::sync::mpsc` channels (two thread
//! wake-ups, as a request to the host's worker and its answer to a blocked waiter need),
//! and a single wake-up of a parked thread (sent timestamp -> the woken thread's clock).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hcs::api;
use hcs::{ComputeSystem, HResult, HcsOperation, HcsSystem};

use crate::cli::{Options, Part};
use crate::stats::{goal_line, interleaved, table, Goal, Samples, Summary, Unit};
use crate::system::{check, issue, unique_id, wait_ok, EMPTY_VM_JSON};
use crate::{BenchError, Result};

/// The styles, in table order. The last two are not HCS: they are this machine's floor
/// for any design that hands a request to another thread and is told of the answer.
const STYLES: [&str; 10] = [
    "wait (flat, baseline)",
    "spin on GetOperationResult",
    "callback starts",
    "Pending::wait (idiomatic)",
    "block_on(.await) resumes",
    "tokio current-thread resumes",
    "machine: round trip to a thread",
    "machine: wake a parked thread",
    "completion -> wait returns",
    "completion -> parked task resumes",
];

/// The styles that are not HCS notifications, left out of the goal lines.
const NOT_NOTIFICATIONS: [usize; 3] = [1, 6, 7];

/// The styles timed from the completion itself.
const FROM_COMPLETION: [usize; 2] = [8, 9];

/// Runs part 2 and prints its table, differences and goals.
pub fn run(options: &Options) -> Result<Vec<(&'static str, Summary)>> {
    hcs_kvm::check_kvm().map_err(|e| format!("the latency part needs /dev/kvm: {e}"))?;
    println!("## 2. Completion latency: GetProperties on one running empty VM, issue -> notified");
    println!("reproduce: {}", options.reproduce(Part::Latency));

    let system = ComputeSystem::create(&unique_id("lat", 0, 0), EMPTY_VM_JSON)
        .wait()
        .map_err(|e| format!("create: {e}"))?;
    system.start().wait().map_err(|e| format!("start: {e}"))?;
    let outcome = measure(&system, options);
    let _ = system.terminate().wait();
    let samples = outcome?;

    let summaries: Vec<(&'static str, Summary)> = STYLES
        .iter()
        .zip(&samples)
        .filter_map(|(name, s)| s.summary().map(|summary| (*name, summary)))
        .collect();
    let rows: Vec<(&str, Option<Summary>)> =
        summaries.iter().map(|(n, s)| (*n, Some(*s))).collect();
    println!();
    print!("{}", table(Unit::Micros, &rows));
    print_differences(&summaries);
    Ok(summaries)
}

fn measure(system: &ComputeSystem, options: &Options) -> Result<Vec<Samples>> {
    let handle = system.handle();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let reused = api::create_operation(0, None);
    let (tx, rx) = mpsc::channel::<Instant>();
    let callback: hcs::OperationCompletion = Arc::new(move |_, _| {
        let _ = tx.send(Instant::now());
    });
    let echo = Echo::spawn()?;

    let measure_one = |style: usize| -> Result<Duration> {
        match style {
            0 => wait_style(handle, reused),
            1 => spin_style(handle, reused),
            2 => callback_style(handle, &callback, &rx),
            3 => {
                let start = Instant::now();
                system
                    .properties(None)
                    .wait()
                    .map_err(|e| format!("properties: {e}"))?;
                Ok(start.elapsed())
            }
            4 => {
                let start = Instant::now();
                let resumed = futures::executor::block_on(async {
                    let outcome = system.properties(None).await;
                    (Instant::now(), outcome)
                });
                finish_async(start, resumed)
            }
            8 => from_completion(system, false),
            9 => from_completion(system, true),
            6 => echo.round_trip(),
            7 => echo.wake_one_way(),
            _ => {
                let start = Instant::now();
                let resumed = runtime.block_on(async {
                    let outcome = system.properties(None).await;
                    (Instant::now(), outcome)
                });
                finish_async(start, resumed)
            }
        }
    };

    let outcome = interleaved(
        STYLES.len(),
        options.warmup.max(1) * 20,
        options.requests,
        measure_one,
    );
    api::close_operation(reused);
    outcome
}

fn wait_style(system: HcsSystem, operation: HcsOperation) -> Result<Duration> {
    let start = Instant::now();
    issue(
        api::get_compute_system_properties(system, operation, None),
        "GetProperties",
    )?;
    wait_ok(operation, "GetProperties")?;
    Ok(start.elapsed())
}

fn spin_style(system: HcsSystem, operation: HcsOperation) -> Result<Duration> {
    let start = Instant::now();
    issue(
        api::get_compute_system_properties(system, operation, None),
        "GetProperties",
    )?;
    loop {
        let (hresult, document) = api::get_operation_result(operation);
        if hresult != HResult::HCS_E_OPERATION_PENDING {
            let elapsed = start.elapsed();
            check(hresult, document, "GetProperties")?;
            return Ok(elapsed);
        }
        std::hint::spin_loop();
    }
}

/// The callback style, shared with the c-api part.
pub(crate) fn callback_style(
    system: HcsSystem,
    callback: &hcs::OperationCompletion,
    started: &mpsc::Receiver<Instant>,
) -> Result<Duration> {
    let operation = api::create_operation(0, Some(Arc::clone(callback)));
    let start = Instant::now();
    let outcome = issue(
        api::get_compute_system_properties(system, operation, None),
        "GetProperties",
    )
    .and_then(|()| {
        started
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| BenchError::from("the completion callback never ran"))
    });
    // Close waits for the callback to return.
    api::close_operation(operation);
    let called = outcome?;
    Ok(called.saturating_duration_since(start))
}

/// A waker that notes when it is first called and unparks the polling thread.
struct Stamp {
    at: std::sync::Mutex<Option<Instant>>,
    thread: std::thread::Thread,
}

impl std::task::Wake for Stamp {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let now = Instant::now();
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        at.get_or_insert(now);
        drop(at);
        self.thread.unpark();
    }
}

/// From the completion (the waker's call) to a blocked `wait` returning (`park = false`)
/// or to a parked task resuming (`park = true`). Retries the rare request that completes
/// before the first poll, which leaves nothing to time.
fn from_completion(system: &ComputeSystem, park: bool) -> Result<Duration> {
    use std::future::Future;
    use std::task::{Context, Poll};
    loop {
        let stamp = Arc::new(Stamp {
            at: std::sync::Mutex::new(None),
            thread: std::thread::current(),
        });
        let waker = std::task::Waker::from(Arc::clone(&stamp));
        let mut cx = Context::from_waker(&waker);
        let mut pending = system.properties(None);
        if let Poll::Ready(outcome) = std::pin::Pin::new(&mut pending).poll(&mut cx) {
            outcome.map_err(|e| format!("properties: {e}"))?;
            continue;
        }
        let notified = if park {
            loop {
                match std::pin::Pin::new(&mut pending).poll(&mut cx) {
                    Poll::Ready(outcome) => {
                        let now = Instant::now();
                        outcome.map_err(|e| format!("properties: {e}"))?;
                        break now;
                    }
                    Poll::Pending => std::thread::park(),
                }
            }
        } else {
            pending.wait().map_err(|e| format!("properties: {e}"))?;
            Instant::now()
        };
        // The client notifies blocked waiters just before it calls the wakers, so a
        // waiter may return before the stamp is taken: wait for it (then the sample is 0,
        // an under-estimate by the length of that notify).
        let give_up = Instant::now() + Duration::from_secs(1);
        let completed = loop {
            if let Some(at) = *stamp.at.lock().unwrap_or_else(|e| e.into_inner()) {
                break at;
            }
            if Instant::now() > give_up {
                return Err("the operation completed without calling its waker".into());
            }
            std::hint::spin_loop();
        };
        return Ok(notified.saturating_duration_since(completed));
    }
}

/// A parked thread that answers at once: the machine's floor for a thread hop.
struct Echo {
    requests: mpsc::Sender<Instant>,
    replies: mpsc::Receiver<Duration>,
}

impl Echo {
    fn spawn() -> Result<Echo> {
        let (requests, inbox) = mpsc::channel::<Instant>();
        let (outbox, replies) = mpsc::channel::<Duration>();
        std::thread::Builder::new()
            .name("bench-echo".into())
            .spawn(move || {
                while let Ok(sent) = inbox.recv() {
                    if outbox.send(sent.elapsed()).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("spawning the echo thread: {e}"))?;
        Ok(Echo { requests, replies })
    }

    fn exchange(&self, sent: Instant) -> Result<Duration> {
        self.requests
            .send(sent)
            .map_err(|_| BenchError::from("the echo thread is gone"))?;
        self.replies
            .recv()
            .map_err(|_| BenchError::from("the echo thread is gone"))
    }

    /// Request to the parked thread and its answer back to this (blocked) one.
    fn round_trip(&self) -> Result<Duration> {
        let start = Instant::now();
        self.exchange(start)?;
        Ok(start.elapsed())
    }

    /// From the send to the parked thread's first look at the clock.
    fn wake_one_way(&self) -> Result<Duration> {
        self.exchange(Instant::now())
    }
}

fn finish_async(
    start: Instant,
    (resumed, outcome): (Instant, std::result::Result<String, hcs::Error>),
) -> Result<Duration> {
    outcome.map_err(|e| format!("properties: {e}"))?;
    Ok(resumed.saturating_duration_since(start))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn notification(name: &str) -> bool {
    !NOT_NOTIFICATIONS.iter().any(|&i| STYLES[i] == name) && !from_completion_row(name)
}

fn from_completion_row(name: &str) -> bool {
    FROM_COMPLETION.iter().any(|&i| STYLES[i] == name)
}

fn print_differences(summaries: &[(&'static str, Summary)]) {
    let find = |name: &str| summaries.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
    let (Some(wait), Some(spin)) = (find(STYLES[0]), find(STYLES[1])) else {
        return;
    };
    println!();
    println!("differences (us; median - median, p99 - p99):");
    println!(
        "  {:<30} {:>12} {:>12} {:>14} {:>14}",
        "style", "p50 - wait", "p99 - wait", "p50 - spin", "p99 - spin"
    );
    for (name, s) in summaries.iter().filter(|(n, _)| !from_completion_row(n)) {
        println!(
            "  {:<30} {:>12.1} {:>12.1} {:>14.1} {:>14.1}",
            name,
            us(s.median) - us(wait.median),
            us(s.p99) - us(wait.p99),
            us(s.median) - us(spin.median),
            us(s.p99) - us(spin.median),
        );
    }
    println!();
    println!("goals (host completion -> notified: p50 < 10 us, p99 < 100 us):");
    println!("  measured from the completion (waker-timed)");
    for (name, s) in summaries.iter().filter(|(n, _)| from_completion_row(n)) {
        println!(
            "{}",
            goal_line(
                &format!("{name} p50"),
                us(s.median),
                "us",
                Goal::AtMost(10.0)
            )
        );
        println!(
            "{}",
            goal_line(&format!("{name} p99"), us(s.p99), "us", Goal::AtMost(100.0))
        );
    }
    println!("  end to end (an upper bound: includes the request's way to the host and back)");
    for (name, s) in summaries.iter().filter(|(n, _)| notification(n)) {
        println!(
            "{}",
            goal_line(
                &format!("{name} p50"),
                us(s.median),
                "us",
                Goal::AtMost(10.0)
            )
        );
        println!(
            "{}",
            goal_line(&format!("{name} p99"), us(s.p99), "us", Goal::AtMost(100.0))
        );
    }
    println!("  estimate: minus the spin-poll median (the closest observable completion)");
    for (name, s) in summaries.iter().filter(|(n, _)| notification(n)) {
        println!(
            "{}",
            goal_line(
                &format!("{name} p50"),
                us(s.median) - us(spin.median),
                "us",
                Goal::AtMost(10.0)
            )
        );
        println!(
            "{}",
            goal_line(
                &format!("{name} p99"),
                us(s.p99) - us(spin.median),
                "us",
                Goal::AtMost(100.0)
            )
        );
    }
    println!();
}
