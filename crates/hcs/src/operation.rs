//! The operation state machine (`HCS_OPERATION`), in one file so that its rules can be
//! read together (HCS-API §2.2, rules 1–16 and 55).
//!
//! ```text
//!              arm (async call accepted)          complete (host reply)
//! NotStarted ───────────────────────────> Pending ─────────────────────> Completed
//!                                            ^                              │
//!                                            └────── arm again (O-7) ───────┘
//! ```
//!
//! * Get never blocks: `HCS_E_OPERATION_NOT_STARTED`, `HCS_E_OPERATION_PENDING`, or the
//!   tracked call's result (O-3, O-4, O-5). Wait blocks until completion or its deadline.
//! * A completion is routed exactly once: to the operation's own callback if it has one,
//!   else to the event callback of the handle it was made through (a system or process
//!   handle) when that handle enabled
//!   operation callbacks (now or, for an unread completion, later: rule 55).
//! * Callbacks run on dispatcher threads with no lock of ours held. `close` waits for a
//!   callback running on another thread, so that none runs after it returns (rule 12);
//!   from inside the callback itself it does not wait (rule 11).
//! * Re-arming a completed operation whose completion callback is still queued or running
//!   on another thread waits until that callback has returned (as close does), so that
//!   each tracked call gets its callback and sees its own result; from inside the callback
//!   itself the operation is re-armed at once.

use crate::sync::{current_thread, Condvar, Mutex, ThreadId};
use crate::types::{Context, HcsOperation, HcsProcess, OperationCompletion, OperationType};
use hcs_schema::HResult;
use std::task::Waker;
use std::time::{Duration, Instant, SystemTime};

/// Where an operation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    NotStarted,
    Pending,
    Completed,
}

/// Where the completion callback of the current tracked call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Nothing queued or running.
    Idle,
    /// Queued on the dispatcher.
    Queued,
    /// Running on this thread.
    Running(ThreadId),
}

struct State {
    context: Context,
    callback: Option<OperationCompletion>,
    phase: Phase,
    op_type: OperationType,
    /// The handle (system or process) the tracked call was made through: completions
    /// without a callback go to its event callback (§4.3).
    target: Option<u64>,
    /// The process the tracked call concerns (O-18), if any.
    process: Option<HcsProcess>,
    /// When the tracked call was accepted and when it completed.
    started_at: Option<SystemTime>,
    ended_at: Option<SystemTime>,
    result: HResult,
    document: Option<String>,
    /// Get or Wait observed the current completion.
    read: bool,
    /// The current completion was delivered as an `HcsEventOperationCallback`.
    reported: bool,
    closed: bool,
    delivery: Delivery,
    /// Counts tracked calls; a reply for an older call is ignored.
    generation: u64,
    wakers: Vec<Waker>,
}

/// One operation object.
pub(crate) struct Operation {
    pub handle: HcsOperation,
    state: Mutex<State>,
    changed: Condvar,
}

/// A snapshot of the tracked call, for `HcsGetOperationProperties`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OperationInfo {
    pub op_type: OperationType,
    pub started_at: Option<SystemTime>,
    pub ended_at: Option<SystemTime>,
    /// The result, once completed.
    pub result: Option<HResult>,
}

/// What became of a completion once recorded.
pub(crate) enum Route {
    /// Run the operation's own callback (generation given) on the dispatcher.
    Callback(u64),
    /// No own callback: offer it to the event callback of the handle it was made through.
    Event(Option<u64>),
    /// Closed, or stale: nobody is told.
    Nobody,
}

impl Operation {
    pub fn new(
        handle: HcsOperation,
        context: Context,
        callback: Option<OperationCompletion>,
    ) -> Self {
        Operation {
            handle,
            state: Mutex::new(State {
                context,
                callback,
                phase: Phase::NotStarted,
                op_type: OperationType::None,
                target: None,
                process: None,
                started_at: None,
                ended_at: None,
                result: HResult::S_OK,
                document: None,
                read: false,
                reported: false,
                closed: false,
                delivery: Delivery::Idle,
                generation: 0,
                wakers: Vec::new(),
            }),
            changed: Condvar::new(),
        }
    }

    pub fn context(&self) -> Context {
        self.state.lock().context
    }

    /// O-14: the context may be replaced, except while the operation is pending.
    pub fn set_context(&self, context: Context) -> HResult {
        let mut state = self.state.lock();
        if state.phase == Phase::Pending {
            return HResult::HCS_E_OPERATION_ALREADY_STARTED;
        }
        state.context = context;
        HResult::S_OK
    }

    /// O-14: callback and context replaced together, except while pending.
    pub fn set_callback(&self, context: Context, callback: OperationCompletion) -> HResult {
        let mut state = self.state.lock();
        if state.phase == Phase::Pending || state.delivery == Delivery::Queued {
            return HResult::HCS_E_OPERATION_ALREADY_STARTED;
        }
        state.context = context;
        state.callback = Some(callback);
        HResult::S_OK
    }

    pub fn has_callback(&self) -> bool {
        self.state.lock().callback.is_some()
    }

    pub fn op_type(&self) -> OperationType {
        self.state.lock().op_type
    }

    /// O-2/O-18: the handle the tracked call was made through, while armed.
    pub fn target(&self) -> Option<u64> {
        let state = self.state.lock();
        match state.phase {
            Phase::NotStarted => None,
            _ => state.target,
        }
    }

    /// O-18: the process of the tracked call, while armed.
    pub fn process(&self) -> Option<HcsProcess> {
        let state = self.state.lock();
        match state.phase {
            Phase::NotStarted => None,
            _ => state.process,
        }
    }

    /// What `HcsGetOperationProperties` reports: the type, when the tracked call was
    /// accepted and completed, and its result once complete.
    pub fn info(&self) -> OperationInfo {
        let state = self.state.lock();
        OperationInfo {
            op_type: state.op_type,
            started_at: state.started_at,
            ended_at: state.ended_at,
            result: (state.phase == Phase::Completed).then_some(state.result),
        }
    }

    /// O-2, O-7, O-8: makes the operation track a new call made through handle `target`
    /// (about `process`, for the process functions). Returns the call's generation.
    pub fn arm(
        &self,
        op_type: OperationType,
        target: Option<u64>,
        process: Option<HcsProcess>,
    ) -> Result<u64, HResult> {
        let mut state = self.state.lock();
        let me = current_thread();
        loop {
            if state.closed {
                return Err(HResult::E_HANDLE);
            }
            if state.phase == Phase::Pending {
                return Err(HResult::HCS_E_OPERATION_ALREADY_STARTED);
            }
            let delivering = match state.delivery {
                Delivery::Idle => false,
                Delivery::Queued => true,
                // Re-arming from inside its own callback: that delivery has happened.
                Delivery::Running(thread) => thread != me,
            };
            if !delivering {
                break;
            }
            // The previous call's callback is queued or running on another thread: wait
            // for it to return, so that it runs exactly once and sees its own result.
            self.changed.wait(&mut state);
        }
        state.phase = Phase::Pending;
        state.op_type = op_type;
        state.target = target;
        state.process = process;
        state.started_at = Some(SystemTime::now());
        state.ended_at = None;
        state.result = HResult::S_OK;
        state.document = None;
        state.read = false;
        state.reported = false;
        state.generation += 1;
        Ok(state.generation)
    }

    /// Records the result of call `generation` and says who must be told (O-10, §4.3).
    pub fn complete(&self, generation: u64, result: HResult, document: Option<String>) -> Route {
        let (route, wakers) = {
            let mut state = self.state.lock();
            if state.generation != generation || state.phase != Phase::Pending {
                return Route::Nobody;
            }
            state.phase = Phase::Completed;
            state.ended_at = Some(SystemTime::now());
            state.result = result;
            state.document = document;
            let wakers = std::mem::take(&mut state.wakers);
            let route = if state.closed {
                Route::Nobody
            } else if state.callback.is_some() {
                state.delivery = Delivery::Queued;
                Route::Callback(generation)
            } else {
                Route::Event(state.target)
            };
            (route, wakers)
        };
        self.changed.notify_all();
        for waker in wakers {
            waker.wake();
        }
        route
    }

    /// Runs the completion callback of call `generation` (on a dispatcher thread).
    pub fn run_callback(&self, generation: u64) {
        let (callback, context) = {
            let mut state = self.state.lock();
            if state.closed || state.generation != generation || state.delivery != Delivery::Queued
            {
                state.delivery = Delivery::Idle;
                drop(state);
                self.changed.notify_all();
                return;
            }
            let Some(callback) = state.callback.clone() else {
                state.delivery = Delivery::Idle;
                drop(state);
                self.changed.notify_all();
                return;
            };
            state.delivery = Delivery::Running(current_thread());
            (callback, state.context)
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            callback(self.handle, context)
        }));
        {
            let mut state = self.state.lock();
            if state.delivery == Delivery::Running(current_thread()) {
                state.delivery = Delivery::Idle;
            }
        }
        self.changed.notify_all();
        if outcome.is_err() {
            tracing::error!(operation = ?self.handle, "an operation callback panicked");
        }
    }

    /// §4.3: marks the current completion as delivered through an event, if it may be:
    /// completed, open, without its own callback, not yet reported, and — when `unread_only`
    /// (a completion older than the registration, rule 55) — not read by Get or Wait.
    pub fn take_for_event(&self, target: u64, unread_only: bool) -> bool {
        let mut state = self.state.lock();
        let eligible = state.phase == Phase::Completed
            && !state.closed
            && state.callback.is_none()
            && !state.reported
            && state.target == Some(target)
            && !(unread_only && state.read);
        if eligible {
            state.reported = true;
        }
        eligible
    }

    /// Whether the operation is still worth tracking for a later registration.
    pub fn may_still_report(&self) -> bool {
        let state = self.state.lock();
        !state.closed
            && state.callback.is_none()
            && !state.reported
            && match state.phase {
                Phase::NotStarted => false,
                Phase::Pending => true,
                Phase::Completed => !state.read,
            }
    }

    /// O-3, O-4, O-5, O-9: the result without blocking. `None` document when there is none.
    pub fn get(&self) -> (HResult, Option<String>) {
        let mut state = self.state.lock();
        Self::read_locked(&mut state)
    }

    fn read_locked(state: &mut State) -> (HResult, Option<String>) {
        match state.phase {
            Phase::NotStarted => (HResult::HCS_E_OPERATION_NOT_STARTED, None),
            Phase::Pending => (HResult::HCS_E_OPERATION_PENDING, None),
            Phase::Completed => {
                state.read = true;
                (state.result, state.document.clone())
            }
        }
    }

    /// O-4: waits up to `timeout` (`None` = no limit) for the completion.
    pub fn wait(&self, timeout: Option<Duration>) -> (HResult, Option<String>) {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.state.lock();
        loop {
            if state.closed {
                return (HResult::E_HANDLE, None);
            }
            if state.phase != Phase::Pending {
                return Self::read_locked(&mut state);
            }
            match deadline {
                None => self.changed.wait(&mut state),
                Some(deadline) => {
                    if self.changed.wait_until(&mut state, deadline).timed_out()
                        && state.phase == Phase::Pending
                    {
                        return (HResult::HCS_E_OPERATION_TIMEOUT, None);
                    }
                }
            }
        }
    }

    /// For futures: ready result, or registers the waker.
    pub fn poll_result(&self, waker: &Waker) -> Option<(HResult, Option<String>)> {
        let mut state = self.state.lock();
        if state.closed {
            return Some((HResult::E_HANDLE, None));
        }
        if state.phase == Phase::Pending {
            if !state.wakers.iter().any(|w| w.will_wake(waker)) {
                state.wakers.push(waker.clone());
            }
            return None;
        }
        Some(Self::read_locked(&mut state))
    }

    /// O-12: closes the operation. The work goes on; its result is dropped. Waits for a
    /// callback of this operation running on another thread.
    pub fn close(&self) {
        let me = current_thread();
        let wakers = {
            let mut state = self.state.lock();
            state.closed = true;
            while matches!(state.delivery, Delivery::Running(thread) if thread != me) {
                self.changed.wait(&mut state);
            }
            std::mem::take(&mut state.wakers)
        };
        self.changed.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn op() -> Operation {
        Operation::new(HcsOperation(1), 7, None)
    }

    #[test]
    fn rule_2_never_used_operation_is_not_started() {
        let op = op();
        assert_eq!(op.get().0, HResult::HCS_E_OPERATION_NOT_STARTED);
        assert_eq!(op.wait(None).0, HResult::HCS_E_OPERATION_NOT_STARTED);
        assert_eq!(
            op.wait(Some(Duration::ZERO)).0,
            HResult::HCS_E_OPERATION_NOT_STARTED
        );
    }

    #[test]
    fn rule_3_and_4_pending_get_and_wait_timeout() {
        let op = op();
        op.arm(OperationType::Start, None, None).unwrap();
        assert_eq!(op.get().0, HResult::HCS_E_OPERATION_PENDING);
        let started = Instant::now();
        assert_eq!(
            op.wait(Some(Duration::from_millis(30))).0,
            HResult::HCS_E_OPERATION_TIMEOUT
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn rule_8_pending_operation_cannot_be_armed_again() {
        let op = op();
        let generation = op.arm(OperationType::Start, None, None).unwrap();
        assert_eq!(
            op.arm(OperationType::Pause, None, None),
            Err(HResult::HCS_E_OPERATION_ALREADY_STARTED)
        );
        assert_eq!(op.op_type(), OperationType::Start);
        assert!(matches!(
            op.complete(generation, HResult::S_OK, None),
            Route::Event(None)
        ));
        assert_eq!(op.get().0, HResult::S_OK);
    }

    #[test]
    fn rule_7_completed_operation_is_rearmed_with_fresh_results() {
        let op = op();
        let g = op.arm(OperationType::Create, None, None).unwrap();
        op.complete(g, HResult::E_FAIL, Some("{}".into()));
        let g = op.arm(OperationType::Start, None, None).unwrap();
        assert_eq!(op.get(), (HResult::HCS_E_OPERATION_PENDING, None));
        op.complete(g, HResult::S_OK, None);
        assert_eq!(op.get(), (HResult::S_OK, None));
        assert_eq!(op.op_type(), OperationType::Start);
    }

    #[test]
    fn rule_16_repeated_reads_return_the_same_result() {
        let op = op();
        let g = op.arm(OperationType::GetProperties, None, None).unwrap();
        op.complete(g, HResult::S_OK, Some("{\"Id\":\"x\"}".into()));
        assert_eq!(op.get(), op.wait(None));
    }

    #[test]
    fn stale_generation_is_ignored() {
        let op = op();
        let g = op.arm(OperationType::Start, None, None).unwrap();
        assert!(matches!(
            op.complete(g + 1, HResult::S_OK, None),
            Route::Nobody
        ));
        assert_eq!(op.get().0, HResult::HCS_E_OPERATION_PENDING);
    }

    #[test]
    fn rule_12_close_waits_for_a_running_callback_on_another_thread() {
        let entered = Arc::new(std::sync::Barrier::new(2));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (e, d) = (Arc::clone(&entered), Arc::clone(&done));
        let op = Arc::new(Operation::new(
            HcsOperation(9),
            0,
            Some(Arc::new(move |_, _| {
                e.wait();
                std::thread::sleep(Duration::from_millis(50));
                d.store(true, std::sync::atomic::Ordering::SeqCst);
            })),
        ));
        let g = op.arm(OperationType::Start, None, None).unwrap();
        assert!(matches!(
            op.complete(g, HResult::S_OK, None),
            Route::Callback(_)
        ));
        let runner = Arc::clone(&op);
        let thread = std::thread::spawn(move || runner.run_callback(g));
        entered.wait();
        op.close();
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
        thread.join().unwrap();
    }
}

/// Model checks of the completion protocol under every interleaving loom explores
/// (`RUSTFLAGS="--cfg loom" cargo test -p hcs --lib --release loom`).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use loom::sync::Arc;

    /// An operation whose callback counts its runs, and counts as a violation any run
    /// seen after `closed` was set (a panic would be contained by `run_callback`).
    fn counting_operation(calls: &Arc<AtomicUsize>, closed: &Arc<AtomicBool>) -> Arc<Operation> {
        let (calls, closed) = (Arc::clone(calls), Arc::clone(closed));
        Arc::new(Operation::new(
            HcsOperation(1),
            0,
            Some(std::sync::Arc::new(move |_, _| {
                if closed.load(Ordering::SeqCst) {
                    calls.fetch_add(1000, Ordering::SeqCst);
                }
                calls.fetch_add(1, Ordering::SeqCst);
            })),
        ))
    }

    /// Rules 10 and 12: a completion racing a close is delivered at most once, and never
    /// after `close` has returned.
    #[test]
    fn completion_races_close() {
        loom::model(|| {
            let calls = Arc::new(AtomicUsize::new(0));
            let closed = Arc::new(AtomicBool::new(false));
            let op = counting_operation(&calls, &closed);
            let generation = op.arm(OperationType::Start, None, None).unwrap();
            let host = {
                let op = Arc::clone(&op);
                loom::thread::spawn(move || {
                    if let Route::Callback(g) = op.complete(generation, HResult::S_OK, None) {
                        op.run_callback(g);
                    }
                })
            };
            op.close();
            closed.store(true, Ordering::SeqCst);
            host.join().unwrap();
            assert!(calls.load(Ordering::SeqCst) <= 1);
        });
    }

    /// Rule 10: without a close, the callback runs exactly once, and a waiter sees the
    /// final result.
    #[test]
    fn completion_reaches_callback_and_waiter_exactly_once() {
        loom::model(|| {
            let calls = Arc::new(AtomicUsize::new(0));
            let closed = Arc::new(AtomicBool::new(false));
            let op = counting_operation(&calls, &closed);
            let generation = op.arm(OperationType::Start, None, None).unwrap();
            let host = {
                let op = Arc::clone(&op);
                loom::thread::spawn(move || {
                    if let Route::Callback(g) = op.complete(generation, HResult::E_FAIL, None) {
                        op.run_callback(g);
                    }
                })
            };
            assert_eq!(op.wait(None).0, HResult::E_FAIL);
            host.join().unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        });
    }

    /// O-7: re-arming races the delivery of the previous completion: the re-arm waits
    /// until the callback was delivered, which happens exactly once.
    #[test]
    fn rearm_races_callback_delivery() {
        loom::model(|| {
            let calls = Arc::new(AtomicUsize::new(0));
            let closed = Arc::new(AtomicBool::new(false));
            let op = counting_operation(&calls, &closed);
            let generation = op.arm(OperationType::Start, None, None).unwrap();
            let route = op.complete(generation, HResult::S_OK, None);
            let dispatcher = {
                let op = Arc::clone(&op);
                loom::thread::spawn(move || {
                    if let Route::Callback(g) = route {
                        op.run_callback(g);
                    }
                })
            };
            op.arm(OperationType::Pause, None, None).unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1, "armed before delivery");
            dispatcher.join().unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        });
    }

    /// §4.3: a completion offered to an event registration and taken by a concurrent
    /// registration scan is reported exactly once.
    #[test]
    fn event_report_is_taken_once() {
        loom::model(|| {
            let op = Arc::new(Operation::new(HcsOperation(2), 0, None));
            let system = 7;
            let generation = op.arm(OperationType::Create, Some(system), None).unwrap();
            op.complete(generation, HResult::S_OK, None);
            let other = {
                let op = Arc::clone(&op);
                loom::thread::spawn(move || op.take_for_event(system, false))
            };
            let mine = op.take_for_event(system, true);
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "reported exactly once");
        });
    }
}
