//! One compute system inside the host: its lifecycle state machine, its request queue and
//! worker thread, its handles, and how it stops.
//!
//! ```text
//!            Create ok            Start             Pause
//! Creating ───────────> Created ───────> Running ───────> Paused
//!    │ create fails        │                │  <─────────────┘ Resume
//!    v                     └──── Terminate, last-handle close, guest exit ────> Stopping ──> Stopped
//! Failed                                   (from Created, Running or Paused)
//! ```
//!
//! Requests on a system run one at a time, in arrival order, on the system's worker thread
//! (as Hyper-V runs each VM in its own worker). Stopping is the exception: a terminate, a
//! last-handle close or the guest ending itself stops the VM on a thread of its own at once
//! (HCS-API rule 54), and every request still queued or running then completes with the
//! code of rule 53. The state lock is only held to read or change state, never across an
//! engine call or a message delivery.
//!
//! A guest that resets itself without `StopOnReset` reboots in place (QEMU): no state
//! changes, the engine's reset handler runs `System::guest_reset` on a thread of its own,
//! which ends the guest connection of the old boot (`GuestConnectionClosed`, processes lost)
//! and waits there for the new boot's agent. Processes are keyed by the guest boot as well
//! as the pid, since a new boot reuses pids.

use crate::engine::{EngineExit, EngineVm, VmPlan};
use crate::error::Failure;
use crate::guest::{ControlListener, GuestConnection, GuestEvents};
use crate::host::{HostInner, SessionShared};
use crate::plan::SystemSettings;
use crate::processes::{Ending, ProcessKey, ProcessTable};
use crate::properties;
use crate::protocol::{HostMessage, Notification, Reply, SystemHandle, SystemRequest};
use crate::protocol::{ProcessHandle, ProcessRequest};
use crossbeam_channel::{Receiver, Sender};
use hcs_guest_protocol as proto;
use hcs_schema::HResult;
use parking_lot::{Condvar, Mutex};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

/// How long Start waits for the guest agent unless `HCS_GUEST_CONNECT_TIMEOUT_MS` says.
const DEFAULT_GUEST_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a graceful shutdown may take before the operation gives up on it.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a shutdown without a guest agent presses the power button again.
const BUTTON_REPEAT: Duration = Duration::from_secs(3);

fn guest_connect_timeout() -> Duration {
    std::env::var("HCS_GUEST_CONNECT_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_GUEST_CONNECT_TIMEOUT)
}

/// Where a system is in its life (HCS-API §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    Creating,
    Created,
    Running,
    Paused,
    Stopping,
    Stopped,
    /// The create failed: the system never existed.
    Failed,
}

/// Why a system stopped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StopCause {
    Terminate,
    LastHandleClosed,
    Guest(EngineExit),
}

impl StopCause {
    /// The code given to requests still pending when the system stops (rule 53).
    fn pending_result(&self, request: Option<&SystemRequest>, stop_on_reset: bool) -> HResult {
        match self {
            StopCause::Terminate | StopCause::LastHandleClosed => HResult::HCS_E_TERMINATED,
            StopCause::Guest(exit) => match request {
                Some(SystemRequest::Start) => HResult::HCS_E_TERMINATED_DURING_START,
                Some(SystemRequest::Shutdown(_)) if is_graceful(exit, stop_on_reset) => {
                    HResult::S_OK
                }
                _ => HResult::HCS_E_UNEXPECTED_EXIT,
            },
        }
    }
}

fn is_graceful(exit: &EngineExit, stop_on_reset: bool) -> bool {
    matches!(exit, EngineExit::PowerOff) || (matches!(exit, EngineExit::Reset) && stop_on_reset)
}

/// Who asked, so that the reply reaches them.
#[derive(Clone)]
pub(crate) struct Requester {
    pub session: Weak<SessionShared>,
    pub request_id: u64,
}

impl Requester {
    pub fn reply(&self, result: HResult, document: Option<String>) {
        if let Some(session) = self.session.upgrade() {
            session.deliver(HostMessage::Reply(Reply {
                id: self.request_id,
                result,
                document,
            }));
        }
    }

    pub fn reply_outcome(&self, outcome: Result<Option<String>, Failure>, phase: &str) {
        if let Some(session) = self.session.upgrade() {
            session.deliver(crate::host::reply_message(self.request_id, outcome, phase));
        }
    }
}

enum JobKind {
    Create,
    Request(SystemRequest),
    /// Stop asked while the system was still being created.
    Stop(StopCause),
    /// The system has stopped: answer what is left and end the worker.
    Quit,
    /// Blocks the worker until the sender is dropped (see [`crate::Host::hold_system`]).
    Hold(Receiver<()>),
}

struct Job {
    /// Keeps the system alive while the job waits: every accepted request is answered.
    system: Arc<System>,
    seq: u64,
    requester: Option<Requester>,
    kind: JobKind,
}

struct State {
    life: Life,
    vm: Option<Arc<dyn EngineVm>>,
    /// Every handle bound to this system, in every session.
    handles: Vec<(Weak<SessionShared>, u64, SystemHandle)>,
    next_seq: u64,
    /// Jobs numbered below this were pending when the system began to stop.
    cut_before: u64,
    stop_cause: Option<StopCause>,
    started_at: Option<(Instant, SystemTime)>,
    exit_type: Option<&'static str>,
    /// The agent's control listener, bound from create until the agent connects.
    control: Option<ControlListener>,
    /// The agent's connection once Start (or the agent's return after a reboot) made it.
    guest: Option<Arc<GuestConnection>>,
    /// How many times the guest has reset itself and rebooted in place: the boot its
    /// processes and agent connection belong to.
    boot: u64,
    /// Agent connections of earlier boots, abandoned but not closed yet: closing one while
    /// the guest's vsock device resets leaves `vhost-device-vsock` unable to take the new
    /// boot's connections, so they are closed once the new agent has connected (or not
    /// come in time, or the system stops).
    stale_guests: Vec<Arc<GuestConnection>>,
    /// Set once the exit is recorded and told to every handle.
    exit_told: bool,
    /// A stop the last request asked for, begun after its reply.
    stop_after_reply: Option<StopCause>,
}

/// The end of the agent's connection as the handles are told of it
/// (`GuestConnectionClosed`, once per connection: a guest that reboots in place connects
/// again, and this starts afresh for its new connection).
#[derive(Default)]
struct GuestClose {
    /// Start made the agent's connection the system's.
    connected: bool,
    /// The connection's reader saw it end.
    ended: bool,
    /// Told, or the system has stopped: never (again).
    done: bool,
}

/// One compute system.
pub(crate) struct System {
    pub id: String,
    pub runtime_id: String,
    pub settings: SystemSettings,
    pub plan: VmPlan,
    host: Weak<HostInner>,
    state: Mutex<State>,
    /// Signalled when `exit_told` becomes true, when `boot` changes and when an agent
    /// connection becomes the system's.
    exit_told: Condvar,
    /// Held while the end of the guest connection is told, so that the stop's exit,
    /// told after it, never overtakes it. Taken before `state`, never inside it.
    guest_close: Mutex<GuestClose>,
    /// Held to bind the agent's listener after a reset, so that the listener of a boot
    /// that is already over never replaces the current one's.
    relisten: Mutex<()>,
    jobs: Sender<Job>,
    /// Guest processes created through this system.
    pub processes: ProcessTable,
}

impl System {
    /// A system in the Creating state with its worker thread running; the caller queues
    /// the create with [`System::submit_create`].
    pub fn spawn(
        id: String,
        settings: SystemSettings,
        plan: VmPlan,
        host: Weak<HostInner>,
    ) -> std::io::Result<Arc<System>> {
        let (jobs, receiver) = crossbeam_channel::unbounded();
        let system = Arc::new(System {
            id,
            runtime_id: new_guid(),
            settings,
            plan,
            host,
            state: Mutex::new(State {
                life: Life::Creating,
                vm: None,
                handles: Vec::new(),
                next_seq: 0,
                cut_before: 0,
                stop_cause: None,
                started_at: None,
                exit_type: None,
                control: None,
                guest: None,
                boot: 0,
                stale_guests: Vec::new(),
                exit_told: false,
                stop_after_reply: None,
            }),
            exit_told: Condvar::new(),
            guest_close: Mutex::new(GuestClose::default()),
            relisten: Mutex::new(()),
            jobs,
            processes: ProcessTable::default(),
        });
        std::thread::Builder::new()
            .name(format!("hcs-sys-{}", short(&system.id)))
            .spawn(move || worker(receiver))?;
        Ok(system)
    }

    pub fn life(&self) -> Life {
        self.state.lock().life
    }

    /// Binds a session's handle to this system.
    pub fn add_handle(&self, session: &Arc<SessionShared>, handle: SystemHandle) {
        self.state
            .lock()
            .handles
            .push((Arc::downgrade(session), session.id, handle));
    }

    /// Releases a handle; with `ShouldTerminateOnLastHandleClosed`, the last one stops the
    /// system (HCS-API rule 28) when `may_terminate` (a session abandoned by a restarting
    /// service releases its handles without that).
    pub fn remove_handle(
        self: &Arc<Self>,
        session_id: u64,
        handle: SystemHandle,
        may_terminate: bool,
    ) {
        let last = {
            let mut state = self.state.lock();
            state
                .handles
                .retain(|(_, s, h)| !(*s == session_id && *h == handle));
            state.handles.is_empty()
        };
        if last && may_terminate && self.settings.terminate_on_last_handle_closed {
            self.request_stop(StopCause::LastHandleClosed, None);
        }
    }

    fn enqueue(self: &Arc<Self>, state: &mut State, requester: Option<Requester>, kind: JobKind) {
        let seq = state.next_seq;
        state.next_seq += 1;
        // The worker only ends after a Quit, which is sent after every other job.
        let _ = self.jobs.send(Job {
            system: Arc::clone(self),
            seq,
            requester,
            kind,
        });
    }

    /// Queues a job that keeps the worker busy until the returned sender is dropped, so
    /// that requests behind it stay pending. `None` once the system has stopped.
    pub fn hold(self: &Arc<Self>) -> Option<Sender<()>> {
        let mut state = self.state.lock();
        if matches!(state.life, Life::Stopping | Life::Stopped | Life::Failed) {
            return None;
        }
        let (release, held) = crossbeam_channel::bounded(0);
        self.enqueue(&mut state, None, JobKind::Hold(held));
        Some(release)
    }

    pub fn submit_create(self: &Arc<Self>, requester: Requester) {
        let mut state = self.state.lock();
        self.enqueue(&mut state, Some(requester), JobKind::Create);
    }

    /// Accepts one request: queued for the worker, or answered at once when the state
    /// already decides it.
    pub fn submit(self: &Arc<Self>, requester: Requester, request: SystemRequest) {
        let is_stop = matches!(request, SystemRequest::Terminate);
        let mut state = self.state.lock();
        match state.life {
            Life::Failed => {
                drop(state);
                requester.reply_outcome(Err(self.not_found()), request.phase());
            }
            Life::Stopping | Life::Stopped => {
                drop(state);
                let failure = match request {
                    SystemRequest::Shutdown(_) | SystemRequest::Terminate => Failure::new(
                        HResult::HCS_E_SYSTEM_ALREADY_STOPPED,
                        format!("compute system '{}' has already stopped", self.id),
                    ),
                    _ => self.not_found(),
                };
                requester.reply_outcome(Err(failure), request.phase());
            }
            Life::Created | Life::Running | Life::Paused if is_stop => {
                drop(state);
                self.request_stop(StopCause::Terminate, Some(requester));
            }
            _ => self.enqueue(&mut state, Some(requester), JobKind::Request(request)),
        }
    }

    fn not_found(&self) -> Failure {
        Failure::new(
            HResult::HCS_E_SYSTEM_NOT_FOUND,
            format!(
                "compute system '{}' does not exist (it has stopped or was never created)",
                self.id
            ),
        )
    }

    /// Begins a stop. The VM is stopped on a thread of its own so that neither the caller
    /// nor the worker waits for it; `requester` is answered once the exit is recorded and
    /// told to every handle.
    pub fn request_stop(self: &Arc<Self>, cause: StopCause, requester: Option<Requester>) {
        let vm = {
            let mut state = self.state.lock();
            match state.life {
                Life::Creating => {
                    // Stop after the create, in order.
                    let kind = JobKind::Stop(cause);
                    self.enqueue(&mut state, requester, kind);
                    return;
                }
                Life::Stopping | Life::Stopped | Life::Failed => {
                    drop(state);
                    if let Some(requester) = requester {
                        requester.reply_outcome(
                            Err(Failure::new(
                                HResult::HCS_E_SYSTEM_ALREADY_STOPPED,
                                format!("compute system '{}' has already stopped", self.id),
                            )),
                            "Terminate",
                        );
                    }
                    return;
                }
                Life::Created | Life::Running | Life::Paused => {}
            }
            state.life = Life::Stopping;
            state.cut_before = state.next_seq;
            state.stop_cause = Some(cause.clone());
            state.vm.clone()
        };
        let system = Arc::clone(self);
        let stopper: Box<dyn FnOnce() + Send> = Box::new(move || {
            if let Some(vm) = vm {
                vm.stop();
            }
            system.finish_stop(cause, requester);
        });
        // Keep the task reachable so that it can run inline if no thread can be had.
        let task = Arc::new(Mutex::new(Some(stopper)));
        let for_thread = Arc::clone(&task);
        let spawned = std::thread::Builder::new()
            .name("hcs-stop".into())
            .spawn(move || {
                if let Some(stop) = for_thread.lock().take() {
                    stop();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "no thread for the stop; stopping inline");
            if let Some(stop) = task.lock().take() {
                stop();
            }
        }
    }

    /// Records the exit, frees the id, tells every handle, then answers the requester.
    fn finish_stop(self: &Arc<Self>, cause: StopCause, requester: Option<Requester>) {
        let (status, exit_type) = properties::exit_status(&cause, self.settings.stop_on_reset);
        let (targets, had_vm, guests) = {
            let mut state = self.state.lock();
            state.life = Life::Stopped;
            state.exit_type = Some(exit_type);
            state.control = None;
            let had_vm = state.vm.take().is_some();
            let mut guests = std::mem::take(&mut state.stale_guests);
            guests.extend(state.guest.take());
            (state.handles.clone(), had_vm, guests)
        };
        for guest in guests {
            guest.close();
        }
        // The connection's end before the exit, whichever thread sees it first; nothing
        // of it after the exit.
        self.tell_guest_closed(&mut self.guest_close.lock());
        let lost = cause.pending_result(None, self.settings.stop_on_reset);
        self.processes.lose_all(if lost.succeeded() {
            HResult::HCS_E_CONNECTION_CLOSED
        } else {
            lost
        });
        if let Some(dir) = &self.plan.runtime_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(host) = self.host.upgrade() {
            host.forget(self, had_vm);
        }
        tracing::info!(id = %self.id, ?cause, exit_type, "compute system exited");
        for (session, _, handle) in targets {
            if let Some(session) = session.upgrade() {
                session.deliver(HostMessage::Notification(Notification::SystemExited {
                    handle,
                    status: status.clone(),
                }));
            }
        }
        {
            let mut state = self.state.lock();
            state.exit_told = true;
            self.exit_told.notify_all();
        }
        if let Some(requester) = requester {
            requester.reply(HResult::S_OK, None);
        }
        let mut state = self.state.lock();
        self.enqueue(&mut state, None, JobKind::Quit);
    }

    /// Tells every handle bound now that the agent's connection ended, if it was the
    /// system's and this was not told yet; called with `guest_close` held. Marks it done
    /// either way, so that nothing follows a stop.
    fn tell_guest_closed(&self, close: &mut GuestClose) {
        if std::mem::replace(&mut close.done, true) || !close.connected {
            return;
        }
        let targets = self.state.lock().handles.clone();
        for (session, _, handle) in targets {
            if let Some(session) = session.upgrade() {
                session.deliver(HostMessage::Notification(
                    Notification::GuestConnectionClosed { handle },
                ));
            }
        }
    }

    /// The reader of the agent's connection of `boot` saw it end; false (and nothing
    /// done) when the guest has rebooted since: that end was told at the reset.
    fn guest_connection_ended(&self, boot: u64) -> bool {
        let mut close = self.guest_close.lock();
        if self.state.lock().boot != boot {
            return false;
        }
        close.ended = true;
        if close.connected {
            self.tell_guest_closed(&mut close);
        }
        true
    }

    /// Waits until the exit is recorded and told, or the guest has reset itself since
    /// boot `boot`, at most `timeout`. Whether either happened.
    fn wait_exit_or_reset(&self, boot: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        while !state.exit_told && state.boot == boot {
            if self.exit_told.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.exit_told || state.boot != boot
    }

    /// Waits until the exit is recorded and told to every handle, at most `timeout`.
    fn wait_exit_told(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        while !state.exit_told {
            if self.exit_told.wait_until(&mut state, deadline).timed_out() {
                return state.exit_told;
            }
        }
        true
    }

    /// Runs one job on the worker thread.
    fn run(self: &Arc<Self>, job: Job) -> bool {
        // A request that was pending when the system began to stop gets the code of rule
        // 53, whether it was still queued or the engine was working on it.
        if let (Some(cause), JobKind::Request(request)) = (self.cut_cause(job.seq), &job.kind) {
            if let Some(requester) = &job.requester {
                self.reply_cut(requester, &cause, request);
            }
            return true;
        }
        match job.kind {
            JobKind::Quit => return false,
            JobKind::Hold(held) => {
                // Returns when the hold's sender is dropped.
                let _ = held.recv();
            }
            JobKind::Create => {
                let outcome = self.create_vm();
                if let Some(requester) = job.requester {
                    requester.reply_outcome(outcome, "Construct");
                }
            }
            JobKind::Stop(cause) => self.request_stop(cause, job.requester),
            JobKind::Request(SystemRequest::Terminate) => {
                self.request_stop(StopCause::Terminate, job.requester)
            }
            JobKind::Request(SystemRequest::CreateProcess {
                process,
                parameters,
            }) => self.create_process(job.seq, job.requester, process, &parameters),
            JobKind::Request(request) => {
                let outcome = self.execute(&request);
                if let Some(requester) = job.requester {
                    // The system may have begun to stop while the engine worked. A crash
                    // that was delivered is not cut by the exit it causes: that exit is
                    // what it asked for, and it can win the race to the state lock.
                    let delivered_crash =
                        matches!(request, SystemRequest::Crash(_)) && outcome.is_ok();
                    match self.cut_cause(job.seq) {
                        Some(cause) if !delivered_crash => {
                            self.reply_cut(&requester, &cause, &request)
                        }
                        _ => requester.reply_outcome(outcome, request.phase()),
                    }
                }
                let stop = self.state.lock().stop_after_reply.take();
                if let Some(cause) = stop {
                    self.request_stop(cause, None);
                }
            }
        }
        true
    }

    /// Why job `seq` was cut short: the system began to stop after it was accepted.
    fn cut_cause(&self, seq: u64) -> Option<StopCause> {
        let state = self.state.lock();
        let stopping = matches!(state.life, Life::Stopping | Life::Stopped);
        if stopping && seq < state.cut_before {
            state.stop_cause.clone()
        } else {
            None
        }
    }

    /// Answers a request cut short by a stop (rule 53).
    fn reply_cut(&self, requester: &Requester, cause: &StopCause, request: &SystemRequest) {
        let result = cause.pending_result(Some(request), self.settings.stop_on_reset);
        if result.succeeded() {
            requester.reply(result, None);
        } else {
            requester.reply_outcome(
                Err(Failure::new(result, self.cut_message(cause))),
                request.phase(),
            );
        }
    }

    fn cut_message(&self, cause: &StopCause) -> String {
        match cause {
            StopCause::Terminate => format!("compute system '{}' was terminated", self.id),
            StopCause::LastHandleClosed => format!(
                "compute system '{}' was terminated when its last handle closed",
                self.id
            ),
            StopCause::Guest(exit) => {
                format!("compute system '{}' exited unexpectedly: {exit}", self.id)
            }
        }
    }

    fn create_vm(self: &Arc<Self>) -> Result<Option<String>, Failure> {
        let Some(host) = self.host.upgrade() else {
            return Err(Failure::new(HResult::E_FAIL, "the host is shutting down"));
        };
        let weak = Arc::downgrade(self);
        let on_exit = Box::new(move |exit: EngineExit| {
            if let Some(system) = weak.upgrade() {
                match &exit {
                    // What a dying VMM said is the operator's only clue: log it whole.
                    EngineExit::ProcessDied(_) | EngineExit::Failed(_) => {
                        tracing::warn!(id = %system.id, "guest exit: {exit}")
                    }
                    _ => tracing::debug!(id = %system.id, %exit, "guest exit"),
                }
                system.request_stop(StopCause::Guest(exit), None);
            }
        });
        let weak = Arc::downgrade(self);
        let on_reset = Box::new(move || {
            let Some(system) = weak.upgrade() else {
                return;
            };
            // Not on the engine's thread: the reset closes the connection and waits for
            // the agent's return.
            let spawned = std::thread::Builder::new()
                .name(format!("hcs-reset-{}", short(&system.id)))
                .spawn(move || system.guest_reset());
            if let Err(error) = spawned {
                tracing::warn!(%error, "no thread for a guest reset");
            }
        });
        let engine = host.engine_for(&self.plan);
        match engine.create(&self.plan, on_exit, on_reset) {
            Ok(vm) => {
                // The agent may connect as soon as the VM runs: listen before Start.
                let control = match (self.settings.guest_connection, self.plan.vsock_uds()) {
                    (true, Some(uds)) => match ControlListener::bind(&uds) {
                        Ok(listener) => Some(listener),
                        Err(failure) => {
                            vm.stop();
                            self.state.lock().life = Life::Failed;
                            host.forget(self, false);
                            let mut state = self.state.lock();
                            self.enqueue(&mut state, None, JobKind::Quit);
                            return Err(failure);
                        }
                    },
                    _ => None,
                };
                let mut state = self.state.lock();
                if state.life == Life::Creating {
                    state.life = Life::Created;
                    state.vm = Some(vm);
                    state.control = control;
                    host.vm_created();
                    Ok(None)
                } else {
                    drop(state);
                    vm.stop();
                    Err(self.not_found())
                }
            }
            Err(error) => {
                self.state.lock().life = Life::Failed;
                host.forget(self, false);
                let hresult = match error {
                    crate::engine::EngineError::Unavailable(_) => {
                        HResult::HCS_E_HYPERV_NOT_INSTALLED
                    }
                    crate::engine::EngineError::OutOfResources(_) => HResult::E_OUTOFMEMORY,
                    crate::engine::EngineError::Ended(_) => HResult::HCS_E_UNEXPECTED_EXIT,
                    crate::engine::EngineError::Failed(_) => HResult::E_FAIL,
                };
                let mut state = self.state.lock();
                self.enqueue(&mut state, None, JobKind::Quit);
                Err(Failure::new(
                    hresult,
                    format!("could not build the virtual machine: {error}"),
                ))
            }
        }
    }

    fn vm(&self) -> Option<Arc<dyn EngineVm>> {
        self.state.lock().vm.clone()
    }

    fn invalid_state(&self, request: &str, life: Life) -> Failure {
        Failure::new(
            HResult::HCS_E_INVALID_STATE,
            format!(
                "cannot {request} compute system '{}' while it is {}",
                self.id,
                properties::state_name(life)
            ),
        )
    }

    /// Moves from `from` to `to` around an engine call, per HCS-API §3.3.
    fn transition(
        &self,
        verb: &str,
        from: Life,
        to: Life,
        call: impl FnOnce(&dyn EngineVm) -> Result<(), crate::engine::EngineError>,
    ) -> Result<Option<String>, Failure> {
        let life = self.life();
        if life != from {
            return Err(self.invalid_state(verb, life));
        }
        let vm = self.vm().ok_or_else(|| self.not_found())?;
        call(vm.as_ref()).map_err(|e| self.engine_failure(verb, e))?;
        let mut state = self.state.lock();
        if state.life == from {
            state.life = to;
            if to == Life::Running && from == Life::Created {
                state.started_at = Some((Instant::now(), SystemTime::now()));
            }
            Ok(None)
        } else {
            Err(self.not_found())
        }
    }

    fn execute(self: &Arc<Self>, request: &SystemRequest) -> Result<Option<String>, Failure> {
        match request {
            SystemRequest::Start => {
                self.transition("start", Life::Created, Life::Running, |vm| vm.start())?;
                self.connect_guest()
            }
            SystemRequest::Pause(options) => {
                if let Some(options) = options {
                    hcs_schema::parse::<hcs_schema::PauseOptions>(options)?;
                }
                self.transition("pause", Life::Running, Life::Paused, |vm| vm.pause())
            }
            SystemRequest::Resume => {
                self.transition("resume", Life::Paused, Life::Running, |vm| vm.resume())
            }
            SystemRequest::Save(options) => {
                if let Some(options) = options {
                    hcs_schema::parse::<hcs_schema::SaveOptions>(options)?;
                }
                match self.life() {
                    Life::Paused => Err(Failure::new(
                        HResult::ERROR_NOT_SUPPORTED,
                        "saving a virtual machine is not supported by the built-in VMM yet",
                    )),
                    life => Err(self.invalid_state("save", life)),
                }
            }
            SystemRequest::Shutdown(options) => {
                if let Some(options) = options {
                    hcs_schema::parse::<hcs_schema::ShutdownOptions>(options)?;
                }
                let linux = matches!(
                    self.plan.firmware,
                    crate::engine::Firmware::LinuxDirect { .. }
                );
                match self.life() {
                    Life::Running if !self.settings.guest_connection && !linux => {
                        Err(Failure::new(
                            HResult::HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
                            format!(
                                "compute system '{}' has no guest to shut down: it has no \
                             GuestConnection and its firmware has no power button; use \
                             HcsTerminateComputeSystem to stop it",
                                self.id
                            ),
                        ))
                    }
                    Life::Running => self.shut_down(options.as_deref()),
                    life => Err(self.invalid_state("shut down", life)),
                }
            }
            SystemRequest::Crash(options) => {
                if let Some(options) = options {
                    hcs_schema::parse::<hcs_schema::CrashOptions>(options)?;
                }
                let life = self.life();
                if life != Life::Running {
                    return Err(self.invalid_state("crash", life));
                }
                let vm = self.vm().ok_or_else(|| self.not_found())?;
                vm.inject_nmi()
                    .map_err(|e| self.engine_failure("crash", e))?;
                Ok(None)
            }
            SystemRequest::GetProperties(query) => {
                let query = match query {
                    Some(q) => Some(hcs_schema::parse::<hcs_schema::SystemPropertyQuery>(q)?),
                    None => None,
                };
                Ok(Some(self.properties(query.as_ref())))
            }
            SystemRequest::Modify(document) => {
                let life = self.life();
                let request = crate::modify::parse(document)?;
                match life {
                    Life::Created | Life::Running => {
                        crate::modify::apply(&request, self.plan.memory_mb).map(|()| None)
                    }
                    life => Err(self.invalid_state("modify", life)),
                }
            }
            SystemRequest::CreateProcess { .. } => Err(Failure::new(
                HResult::E_UNEXPECTED,
                "internal error: CreateProcess reached the request executor",
            )),
            SystemRequest::Terminate => unreachable_terminate(),
        }
    }

    /// The `Properties` document of this system.
    pub fn properties(&self, query: Option<&hcs_schema::SystemPropertyQuery>) -> String {
        let (life, started_at, exit_type, vm) = {
            let state = self.state.lock();
            (
                state.life,
                state.started_at,
                state.exit_type,
                state.vm.clone(),
            )
        };
        // Reading the vCPUs' CPU time costs a /proc read per vCPU: only when asked, and
        // never under the state lock.
        let wants = |kind: hcs_schema::SystemPropertyType| {
            query
                .and_then(|q| q.property_types.as_ref())
                .is_some_and(|types| types.contains(&kind))
        };
        let wants_statistics = wants(hcs_schema::SystemPropertyType::Statistics);
        let cpu_time_100ns = match (&vm, wants_statistics) {
            (Some(vm), true) => vm.cpu_time_100ns(),
            _ => 0,
        };
        // The process list is the agent's to give: asked only when wanted; a guest that
        // cannot answer leaves it out rather than failing the whole query.
        let guest = self.guest();
        let process_list = match &guest {
            Some(guest) if wants(hcs_schema::SystemPropertyType::ProcessList) => {
                match guest.request(proto::Request::ListProcesses) {
                    Ok(proto::ResponseBody::Processes { processes }) => {
                        Some(processes.into_iter().map(process_details).collect())
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let snapshot = properties::Snapshot {
            id: &self.id,
            runtime_id: &self.runtime_id,
            settings: &self.settings,
            plan: &self.plan,
            life,
            exit_type,
            started_at,
            cpu_time_100ns,
            process_list,
            guest: guest.map(|g| {
                (
                    g.version,
                    serde_json::json!({
                        "Agent": g.hello.agent,
                        "Kernel": g.hello.kernel,
                        "Accelerator": vm.as_ref().map(|vm| vm.accelerator()),
                    }),
                )
            }),
        };
        properties::document(&snapshot, query)
    }
}

/// One guest process as `Properties.ProcessList` describes it.
fn process_details(entry: proto::ProcessEntry) -> hcs_schema::ProcessDetails {
    hcs_schema::ProcessDetails {
        process_id: Some(entry.pid),
        image_name: Some(entry.name),
        user_time100ns: Some(entry.user_time_100ns),
        kernel_time100ns: Some(entry.kernel_time_100ns),
        memory_working_set_private_bytes: Some(entry.resident_bytes),
        ..hcs_schema::ProcessDetails::default()
    }
}

fn unreachable_terminate() -> Result<Option<String>, Failure> {
    // Terminate never reaches `execute`: `run` routes it to `request_stop`.
    Err(Failure::new(
        HResult::E_UNEXPECTED,
        "internal error: terminate reached the request executor",
    ))
}

fn worker(jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        let system = Arc::clone(&job.system);
        if !system.run(job) {
            // Quit: answer whatever arrived after the stop, then end.
            while let Ok(job) = jobs.try_recv() {
                let system = Arc::clone(&job.system);
                system.run(job);
            }
            return;
        }
    }
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// A random RFC 4122 version 4 GUID.
pub(crate) fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

// ---------------------------------------------------------------------------------------
// The guest: its connection, shutdown through it, and its processes.

/// Routes what the agent's reader thread hears to the system.
struct SystemGuestEvents {
    system: Weak<System>,
    /// The guest boot this connection belongs to.
    boot: u64,
}

impl GuestEvents for SystemGuestEvents {
    fn process_exited(&self, pid: u32, exit_code: i32) {
        if let Some(system) = self.system.upgrade() {
            let key = ProcessKey {
                boot: self.boot,
                pid,
            };
            system.processes.ended(key, Ending::Exited(exit_code));
        }
    }

    fn connection_closed(&self) {
        if let Some(system) = self.system.upgrade() {
            tracing::debug!(id = %system.id, "guest connection closed");
            if !system.guest_connection_ended(self.boot) {
                return;
            }
            // A stopping system reports its processes lost with the stop's own code.
            if matches!(system.life(), Life::Running | Life::Paused) {
                // Processes cannot report their exits any more.
                system.processes.lose_all(HResult::HCS_E_CONNECTION_CLOSED);
            }
        }
    }
}

impl System {
    /// After the VM started: with `GuestConnection`, waits for the agent (HCS-API §3.3:
    /// Start completes once the guest connection is up). A guest that never connects
    /// fails the start and is stopped.
    fn connect_guest(self: &Arc<Self>) -> Result<Option<String>, Failure> {
        let listener = self.state.lock().control.take();
        let Some(listener) = listener else {
            return Ok(None);
        };
        let boot = self.guest_boot();
        let events = Arc::new(SystemGuestEvents {
            system: Arc::downgrade(self),
            boot,
        });
        let deadline = Instant::now() + guest_connect_timeout();
        // A guest that reboots before its agent connects ends this wait too: the reset's
        // thread then takes the new boot's agent.
        let gone = || {
            let state = self.state.lock();
            !matches!(state.life, Life::Running | Life::Paused) || state.boot != boot
        };
        match listener.accept(guest_connect_timeout(), &gone, events) {
            Ok(guest) => {
                self.keep_guest(guest, boot);
                Ok(None)
            }
            Err(_) if self.guest_boot() != boot && self.wait_guest(deadline) => Ok(None),
            Err(failure) => {
                let failure = if self.guest_boot() != boot && self.life() == Life::Running {
                    Failure::new(
                        HResult::HCS_E_CONNECTION_TIMEOUT,
                        "the guest rebooted during its start and its agent did not connect in \
                         time",
                    )
                } else {
                    failure
                };
                tracing::warn!(id = %self.id, error = %failure.message, "guest agent not connected");
                self.state.lock().stop_after_reply = Some(StopCause::Guest(EngineExit::Failed(
                    format!("the guest connection failed at start: {}", failure.message),
                )));
                Err(failure)
            }
        }
    }

    /// Makes `guest`, the agent's connection in boot `boot`, the system's, unless the
    /// system has stopped or the guest has rebooted since (then it is closed).
    fn keep_guest(&self, guest: Arc<GuestConnection>, boot: u64) {
        // Under `guest_close`, so that a stop that takes this connection also sees it as
        // the system's and tells its end before the exit.
        let mut close = self.guest_close.lock();
        let kept = {
            let mut state = self.state.lock();
            let running = matches!(state.life, Life::Running | Life::Paused);
            let kept = running && state.boot == boot;
            if kept {
                state.guest = Some(Arc::clone(&guest));
                self.exit_told.notify_all();
            }
            kept
        };
        if kept {
            close.connected = true;
            // An agent that left at once, before its connection was kept.
            if close.ended {
                self.tell_guest_closed(&mut close);
            }
            drop(close);
            // The new boot's device is up: earlier boots' connections may go now.
            self.close_stale_guests();
        } else {
            drop(close);
            guest.close();
        }
    }

    /// Waits until an agent connection is the system's, at most until `deadline`; false
    /// when none is by then or the system stops.
    fn wait_guest(&self, deadline: Instant) -> bool {
        let mut state = self.state.lock();
        while state.guest.is_none() && matches!(state.life, Life::Running | Life::Paused) {
            if self.exit_told.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.guest.is_some()
    }

    /// Closes the agent connections of earlier boots (see `State::stale_guests`).
    fn close_stale_guests(&self) {
        let stale = std::mem::take(&mut self.state.lock().stale_guests);
        for guest in stale {
            guest.close();
        }
    }

    /// The guest reset itself and is rebooting in place (`StopOnReset` false or absent; the
    /// engine reported it, on a thread of its own): the system stays as it is, but its
    /// guest connection has ended, as have the guest's processes. With `GuestConnection`,
    /// waits in the background (this thread) for the agent of the new boot, as Start
    /// does; a guest that does not connect within the guest-connect timeout leaves the
    /// system running without an agent.
    fn guest_reset(self: &Arc<Self>) {
        let boot = {
            let mut close = self.guest_close.lock();
            let (guest, boot) = {
                let mut state = self.state.lock();
                if !matches!(state.life, Life::Running | Life::Paused) {
                    return;
                }
                state.boot += 1;
                self.exit_told.notify_all();
                let guest = state.guest.take();
                state.stale_guests.extend(guest.clone());
                (guest, state.boot)
            };
            // The old agent is gone with the old boot, but its connection through the
            // vsock backend does not end by itself and must not be closed yet (see
            // `stale_guests`): its requests fail now.
            if let Some(guest) = guest {
                guest.abandon();
            }
            self.tell_guest_closed(&mut close);
            *close = GuestClose::default();
            boot
        };
        tracing::info!(id = %self.id, boot, "the guest reset itself; it reboots in place");
        self.processes.lose_all(HResult::HCS_E_CONNECTION_CLOSED);
        if !self.settings.guest_connection {
            return;
        }
        let Some(uds) = self.plan.vsock_uds() else {
            return;
        };
        // One reboot is several resets in quick succession, each on a thread of its own:
        // only the current boot's may bind (a later bind replaces an earlier one's socket).
        let relisten = self.relisten.lock();
        if self.guest_boot() != boot {
            return;
        }
        let bound = ControlListener::bind(&uds);
        drop(relisten);
        let listener = match bound {
            Ok(listener) => listener,
            Err(failure) => {
                tracing::warn!(
                    id = %self.id,
                    error = %failure.message,
                    "cannot listen for the guest agent after the reboot"
                );
                return;
            }
        };
        let events = Arc::new(SystemGuestEvents {
            system: Arc::downgrade(self),
            boot,
        });
        // Another reset or a stop ends this wait.
        let gone = || {
            let state = self.state.lock();
            !matches!(state.life, Life::Running | Life::Paused) || state.boot != boot
        };
        match listener.accept(guest_connect_timeout(), &gone, events) {
            Ok(guest) => {
                tracing::info!(
                    id = %self.id,
                    boot,
                    "guest agent connected again after the reboot"
                );
                self.keep_guest(guest, boot);
            }
            Err(_) if gone() => {}
            Err(failure) => {
                tracing::warn!(
                    id = %self.id,
                    error = %failure.message,
                    "the guest agent did not connect again after the guest rebooted; the \
                     system keeps running without a guest connection"
                );
                self.close_stale_guests();
            }
        }
    }

    fn guest(&self) -> Option<Arc<GuestConnection>> {
        self.state.lock().guest.clone()
    }

    /// The agent's connection with the guest boot it belongs to.
    fn guest_in_boot(&self) -> Option<(Arc<GuestConnection>, u64)> {
        let state = self.state.lock();
        state.guest.clone().map(|guest| (guest, state.boot))
    }

    /// The guest's current boot (how many times it has reset itself and rebooted).
    pub fn guest_boot(&self) -> u64 {
        self.state.lock().boot
    }

    /// A graceful shutdown (HCS-API §7.8 `ShutdownOptions`): through the agent when there
    /// is one, else the ACPI power button. Completes once the exit is recorded and told,
    /// or, for a reboot of a guest that reboots in place (no `StopOnReset`), once the
    /// guest has reset (the system stays Running; its agent connects again later).
    fn shut_down(self: &Arc<Self>, options: Option<&str>) -> Result<Option<String>, Failure> {
        let options = match options {
            Some(o) => hcs_schema::parse::<hcs_schema::ShutdownOptions>(o)?,
            None => hcs_schema::ShutdownOptions::default(),
        };
        let reboot = match options.r#type {
            Some(hcs_schema::ShutdownType::Hibernate) => {
                return Err(Failure::at(
                    HResult::ERROR_NOT_SUPPORTED,
                    "$.Type",
                    "hibernating a Linux guest is not supported",
                ))
            }
            Some(hcs_schema::ShutdownType::Reboot) => true,
            _ => false,
        };
        let in_place = reboot
            && self.plan.reboot_in_place
            && self.plan.engine_kind() == crate::engine::EngineKind::Qemu;
        let boot = self.guest_boot();
        let done = |timeout| {
            if in_place {
                self.wait_exit_or_reset(boot, timeout)
            } else {
                self.wait_exit_told(timeout)
            }
        };
        let grace_ms = if options.force.unwrap_or(false) {
            0
        } else {
            5000
        };
        let mut button = false;
        let asked = match self.guest() {
            Some(guest) => guest
                .request(proto::Request::Shutdown { reboot, grace_ms })
                .map(|_| ()),
            None if self.settings.guest_connection => Err(Failure::new(
                HResult::HCS_E_CONNECTION_CLOSED,
                "the guest agent is not connected: terminate the system instead",
            )),
            None => {
                button = true;
                self.press_power_button()
            }
        };
        // The connection may close under the agent's answer as the guest powers off.
        if let Err(failure) = asked {
            let powering_off = failure.hresult == HResult::HCS_E_CONNECTION_CLOSED
                && done(Duration::from_secs(10));
            if !powering_off {
                return Err(failure);
            }
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        let mut exited = false;
        while !exited && Instant::now() < deadline {
            exited = done(if button {
                BUTTON_REPEAT
            } else {
                SHUTDOWN_TIMEOUT
            });
            // A press that comes before the guest watches the button is lost, as on
            // hardware (a start without a guest connection does not wait for the boot):
            // press again until the guest powers off.
            if !exited && button {
                let _ = self.press_power_button();
            }
        }
        if exited {
            // `run` answers through the cut path: a graceful exit gives S_OK (rule 53); a
            // reboot in place is answered S_OK at once.
            Ok(None)
        } else if in_place {
            Err(Failure::new(
                HResult::HCS_E_CONNECTION_TIMEOUT,
                format!(
                    "the guest did not reboot within {} s; terminate it instead",
                    SHUTDOWN_TIMEOUT.as_secs()
                ),
            ))
        } else {
            Err(Failure::new(
                HResult::HCS_E_CONNECTION_TIMEOUT,
                format!(
                    "the guest did not power off within {} s; terminate it instead",
                    SHUTDOWN_TIMEOUT.as_secs()
                ),
            ))
        }
    }

    /// Presses the VM's ACPI power button.
    fn press_power_button(&self) -> Result<(), Failure> {
        let vm = self.vm().ok_or_else(|| self.not_found())?;
        vm.power_button()
            .map_err(|e| self.engine_failure("shut down", e))
    }

    /// The failure of an engine call. When the VM ended under the call, its exit is on
    /// the way: wait for it, so that the request is answered as cut short by that exit
    /// (rule 53, with the exit's own words) rather than with a bare engine error.
    fn engine_failure(&self, verb: &str, error: crate::engine::EngineError) -> Failure {
        if matches!(error, crate::engine::EngineError::Ended(_)) {
            self.wait_exit_told(Duration::from_secs(10));
        }
        Failure::new(
            HResult::E_FAIL,
            format!("could not {verb} '{}': {error}", self.id),
        )
    }

    /// `HcsCreateProcess`: checked on the worker, then run on a thread of its own so that
    /// other requests (and other creates) need not wait for the guest.
    fn create_process(
        self: &Arc<Self>,
        seq: u64,
        requester: Option<Requester>,
        handle: ProcessHandle,
        parameters: &str,
    ) {
        let Some(requester) = requester else {
            return;
        };
        let phase = "CreateProcess";
        let checked = (|| {
            let parameters = hcs_schema::parse::<hcs_schema::ProcessParameters>(parameters)?;
            match self.life() {
                Life::Running if !self.settings.guest_connection => Err(Failure::new(
                    HResult::HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
                    format!(
                        "compute system '{}' has no guest to run a process in: processes \
                         need VirtualMachine.GuestConnection and a guest with the agent",
                        self.id
                    ),
                )),
                Life::Running => {
                    let guest = self.guest_in_boot().ok_or_else(|| {
                        Failure::new(
                            HResult::HCS_E_CONNECTION_CLOSED,
                            format!("the guest agent of '{}' is not connected", self.id),
                        )
                    })?;
                    Ok((guest, crate::processes::create_request(&parameters)?))
                }
                life => Err(self.invalid_state("create a process in", life)),
            }
        })();
        let ((guest, boot), (request, [stdin, stdout, stderr])) = match checked {
            Ok(ready) => ready,
            Err(failure) => return requester.reply_outcome(Err(failure), phase),
        };
        let system = Arc::clone(self);
        let work = move || {
            let outcome = guest.create_process(request, stdin, stdout, stderr);
            let session = requester.session.upgrade();
            match (outcome, session) {
                (Ok(streams), Some(session)) => {
                    let key = ProcessKey {
                        boot,
                        pid: streams.pid,
                    };
                    let document = process_information(streams);
                    let reply =
                        crate::host::reply_message(requester.request_id, Ok(Some(document)), phase);
                    session.bind_process(handle, &system, key);
                    // Binding cannot be refused here (`must_exist` is false).
                    let _ = system.processes.bind(&session, handle, key, false, reply);
                    // The guest rebooted under the create: the process is gone with it.
                    if system.guest_boot() != boot {
                        system
                            .processes
                            .ended(key, Ending::Lost(HResult::HCS_E_CONNECTION_CLOSED));
                    }
                }
                // Nobody to hand the streams to: dropping them closes them.
                (Ok(_), None) => {}
                (Err(failure), _) => match system.cut_cause(seq) {
                    Some(cause) => system.reply_cut(
                        &requester,
                        &cause,
                        &SystemRequest::CreateProcess {
                            process: handle,
                            parameters: String::new(),
                        },
                    ),
                    None => requester.reply_outcome(Err(failure), phase),
                },
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("hcs-create-process".into())
            .spawn(work)
        {
            tracing::warn!(error = %e, "no thread for a process create");
        }
    }

    /// `HcsOpenProcess`: binds `handle` to a running process created through this host.
    pub fn open_process(
        self: &Arc<Self>,
        session: &Arc<SessionShared>,
        request_id: u64,
        handle: ProcessHandle,
        key: ProcessKey,
    ) -> bool {
        let reply = crate::host::reply_message(request_id, Ok(None), "OpenProcess");
        if self
            .processes
            .bind(session, handle, key, true, reply)
            .is_ok()
        {
            session.bind_process(handle, self, key);
            true
        } else {
            false
        }
    }

    /// A request on process `key` (from a handle of `created` = made by HcsCreateProcess).
    pub fn process_request(
        self: &Arc<Self>,
        requester: Requester,
        key: ProcessKey,
        created: bool,
        request: ProcessRequest,
    ) {
        let pid = key.pid;
        let phase = request.phase();
        let ending = self.processes.ending(key);
        let stopped = || {
            Failure::new(
                HResult::HCS_E_PROCESS_ALREADY_STOPPED,
                format!("process {pid} has already exited"),
            )
        };
        let to_guest = match &request {
            ProcessRequest::GetInfo if !created => {
                return requester.reply_outcome(
                    Err(Failure::new(
                        HResult::HCS_E_PROCESS_INFO_NOT_AVAILABLE,
                        format!(
                            "process {pid} was opened by id: its start-up information \
                             belongs to the handle that created it"
                        ),
                    )),
                    phase,
                );
            }
            ProcessRequest::GetInfo => {
                let document = serde_json::json!({ "ProcessId": pid }).to_string();
                return requester.reply_outcome(Ok(Some(document)), phase);
            }
            ProcessRequest::GetProperties(_) => {
                let document = crate::processes::status_document(pid, ending);
                return requester.reply_outcome(Ok(Some(document)), phase);
            }
            ProcessRequest::Terminate => match ending {
                Some(_) => return requester.reply_outcome(Err(stopped()), phase),
                None => proto::Request::Signal {
                    pid,
                    signal: libc::SIGKILL,
                },
            },
            ProcessRequest::Signal(options) => {
                let signal = match crate::processes::signal_number(options.as_deref()) {
                    Ok(signal) => signal,
                    Err(failure) => return requester.reply_outcome(Err(failure), phase),
                };
                if ending.is_some() {
                    return requester.reply_outcome(Err(stopped()), phase);
                }
                proto::Request::Signal { pid, signal }
            }
            ProcessRequest::Modify(settings) => match modify_request(pid, settings) {
                Ok(Some(_)) if ending.is_some() => {
                    return requester.reply_outcome(Err(stopped()), phase)
                }
                Ok(Some(request)) => request,
                Ok(None) => return requester.reply_outcome(Ok(None), phase),
                Err(failure) => return requester.reply_outcome(Err(failure), phase),
            },
        };
        // A process of an earlier boot of the guest is gone with it.
        let Some(guest) = self
            .guest_in_boot()
            .and_then(|(guest, boot)| (boot == key.boot).then_some(guest))
        else {
            return requester.reply_outcome(Err(stopped()), phase);
        };
        let system = Arc::clone(self);
        let work = move || {
            let outcome = guest.request(to_guest).map(|_| None);
            // A process that ended meanwhile answers as ended (rule 41).
            let outcome = match outcome {
                Err(f)
                    if f.hresult == HResult::HCS_E_CONNECTION_CLOSED
                        || system.processes.ending(key).is_some() =>
                {
                    if system.processes.ending(key).is_some() {
                        Err(Failure::new(
                            HResult::HCS_E_PROCESS_ALREADY_STOPPED,
                            format!("process {pid} has already exited"),
                        ))
                    } else {
                        Err(f)
                    }
                }
                other => other,
            };
            requester.reply_outcome(outcome, phase);
        };
        if let Err(e) = std::thread::Builder::new()
            .name("hcs-process-request".into())
            .spawn(work)
        {
            tracing::warn!(error = %e, "no thread for a process request");
        }
    }
}

/// The agent request for a `ProcessModifyRequest`, or `None` when there is nothing to ask
/// (closing the host's own ends of stdout or stderr is the client's business).
fn modify_request(pid: u32, settings: &str) -> Result<Option<proto::Request>, Failure> {
    let request = hcs_schema::parse::<hcs_schema::ProcessModifyRequest>(settings)?;
    match request.operation {
        Some(hcs_schema::ModifyOperation::ConsoleSize) => {
            let size = request.console_size.ok_or_else(|| {
                Failure::at(
                    HResult::HCS_E_INVALID_JSON,
                    "$.ConsoleSize",
                    "required for the ConsoleSize operation",
                )
            })?;
            Ok(Some(proto::Request::ResizeConsole {
                pid,
                rows: size.height.unwrap_or(24),
                cols: size.width.unwrap_or(80),
            }))
        }
        Some(hcs_schema::ModifyOperation::CloseHandle) => {
            let handle = request.close_handle.and_then(|c| c.handle).ok_or_else(|| {
                Failure::at(
                    HResult::HCS_E_INVALID_JSON,
                    "$.CloseHandle.Handle",
                    "required for the CloseHandle operation",
                )
            })?;
            Ok(match handle {
                hcs_schema::StdHandle::StdIn | hcs_schema::StdHandle::All => {
                    Some(proto::Request::CloseStdin { pid })
                }
                hcs_schema::StdHandle::StdOut | hcs_schema::StdHandle::StdErr => None,
            })
        }
        None => Err(Failure::at(
            HResult::HCS_E_INVALID_JSON,
            "$.Operation",
            "required property is missing",
        )),
    }
}

/// The result document of a process create: the pid and the host ends of its stdio as file
/// descriptors of this process, whose ownership passes to the receiver of the reply.
fn process_information(streams: crate::guest::ProcessStreams) -> String {
    use std::os::fd::IntoRawFd;
    let fd = |s: Option<std::os::fd::OwnedFd>| s.map(|s| s.into_raw_fd());
    serde_json::json!({
        "ProcessId": streams.pid,
        "StdInput": fd(streams.stdin),
        "StdOutput": fd(streams.stdout),
        "StdError": fd(streams.stderr),
    })
    .to_string()
}
