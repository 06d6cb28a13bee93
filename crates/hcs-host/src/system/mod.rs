//! One compute system inside the host: its state, its handles, its VM, and the requests
//! that run on it. The parts live in files of one concern each:
//!
//! ```text
//!  ../lifecycle.rs      the §3.3 state table and the rule-53 codes, as pure functions
//!                       (beside this directory: refusals and properties read it too)
//!  queue.rs             the request queue and its worker thread; what a stop cuts short
//!  stop.rs              stopping: terminate, last-handle close, the guest ending itself
//!  guest_session.rs     the agent's connection: made at Start, lost and made again when
//!                       the guest reboots in place
//!  shutdown.rs          graceful shutdown and reboot through the agent or the power button
//!  process_requests.rs  HcsCreateProcess / HcsOpenProcess and the requests on a process
//!  mod.rs (this file)   the System itself: its state, handles, create, the engine calls
//!                       of the table, properties
//! ```
//!
//! Requests on a system run one at a time, in arrival order, on the system's worker thread
//! (as Hyper-V runs each VM in its own worker). Stopping is the exception: a terminate, a
//! last-handle close or the guest ending itself stops the VM on a thread of its own at once
//! (HCS-API rule 54), and every request still queued or running then completes with the
//! code of rule 53. The state lock is only held to read or change state, never across an
//! engine call or a message delivery.

mod guest_session;
mod process_requests;
mod queue;
mod shutdown;
mod stop;

use crate::guest::{ControlListener, GuestConnection};
use crate::lifecycle::{self, Life, StopCause, Verb, Verdict};
use crate::peer::Peer;
use crate::plan::SystemSettings;
use crate::processes::ProcessTable;
use crate::properties;
use crate::refusals;
use hcs_engine::{Engine, EngineError, EngineExit, EngineVm, VmPlan};
use hcs_guest_protocol as proto;
use hcs_protocol::{Failure, SystemHandle, SystemRequest};
use hcs_schema::HResult;
use parking_lot::{Condvar, Mutex};
use queue::Job;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

pub(crate) use guest_session::GuestClose;

/// What a system tells the registry that holds it.
pub(crate) trait Registrar: Send + Sync {
    /// The system's VM was built.
    fn vm_created(&self);
    /// The system stopped or its create failed: its id is free again (HCS-API rule 27).
    fn forget(&self, system: &System, had_vm: bool);
}

/// What a system is created with, besides its document.
pub(crate) struct Setup {
    pub id: String,
    pub settings: SystemSettings,
    pub plan: VmPlan,
    /// The engine chosen for the plan.
    pub engine: Arc<dyn Engine>,
    pub registrar: Weak<dyn Registrar>,
    /// How long Start waits for the guest agent.
    pub guest_connect_timeout: Duration,
}

struct State {
    life: Life,
    vm: Option<Arc<dyn EngineVm>>,
    /// Every handle bound to this system, in every session.
    handles: Vec<(Weak<Peer>, u64, SystemHandle)>,
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

/// One compute system.
pub(crate) struct System {
    pub id: String,
    pub runtime_id: String,
    pub settings: SystemSettings,
    pub plan: VmPlan,
    engine: Arc<dyn Engine>,
    registrar: Weak<dyn Registrar>,
    guest_connect_timeout: Duration,
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
    jobs: crossbeam_channel::Sender<Job>,
    /// Guest processes created through this system.
    pub processes: ProcessTable,
}

impl System {
    /// A system in the Creating state with its worker thread running; the caller queues
    /// the create with [`System::submit_create`].
    pub fn spawn(setup: Setup) -> std::io::Result<Arc<System>> {
        let (jobs, receiver) = crossbeam_channel::unbounded();
        let system = Arc::new(System {
            id: setup.id,
            runtime_id: new_guid(),
            settings: setup.settings,
            plan: setup.plan,
            engine: setup.engine,
            registrar: setup.registrar,
            guest_connect_timeout: setup.guest_connect_timeout,
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
            .spawn(move || queue::worker(receiver))?;
        Ok(system)
    }

    pub fn life(&self) -> Life {
        self.state.lock().life
    }

    /// Binds a session's handle to this system.
    pub fn add_handle(&self, peer: &Arc<Peer>, handle: SystemHandle) {
        self.state
            .lock()
            .handles
            .push((Arc::downgrade(peer), peer.id, handle));
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

    fn not_found(&self) -> Failure {
        refusals::system_not_found(&self.id)
    }

    fn vm(&self) -> Option<Arc<dyn EngineVm>> {
        self.state.lock().vm.clone()
    }

    /// The failure of an engine call. When the VM ended under the call, its exit is on
    /// the way: wait for it, so that the request is answered as cut short by that exit
    /// (rule 53, with the exit's own words) rather than with a bare engine error.
    fn engine_failure(&self, verb: &str, error: EngineError) -> Failure {
        if matches!(error, EngineError::Ended(_)) {
            self.wait_exit_told(Duration::from_secs(10));
        }
        refusals::engine_failure(&format!("{verb} '{}'", self.id), &error)
    }

    /// Builds the VM (the create job, on the worker).
    fn create_vm(self: &Arc<Self>) -> Result<Option<String>, Failure> {
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
        let failed = |failure: Failure| {
            self.state.lock().life = Life::Failed;
            if let Some(registrar) = self.registrar.upgrade() {
                registrar.forget(self, false);
            }
            self.quit();
            Err(failure)
        };
        let vm = match self.engine.create(&self.plan, on_exit, on_reset) {
            Ok(vm) => vm,
            Err(error) => {
                return failed(refusals::engine_failure(
                    "build the virtual machine",
                    &error,
                ))
            }
        };
        // The agent may connect as soon as the VM runs: listen before Start.
        let control = match (self.settings.guest_connection, self.plan.vsock_uds()) {
            (true, Some(uds)) => match ControlListener::bind(&uds) {
                Ok(listener) => Some(listener),
                Err(failure) => {
                    vm.stop();
                    return failed(failure);
                }
            },
            _ => None,
        };
        let mut state = self.state.lock();
        if state.life == Life::Creating {
            state.life = Life::Created;
            state.vm = Some(vm);
            state.control = control;
            drop(state);
            if let Some(registrar) = self.registrar.upgrade() {
                registrar.vm_created();
            }
            Ok(None)
        } else {
            drop(state);
            vm.stop();
            Err(self.not_found())
        }
    }

    /// Runs one engine call of the §3.3 table from state `from`, then moves to `to` unless
    /// the system began to stop meanwhile.
    fn engine_transition(
        &self,
        verb: Verb,
        from: Life,
        to: Life,
        call: impl FnOnce(&dyn EngineVm) -> Result<(), EngineError>,
    ) -> Result<Option<String>, Failure> {
        let vm = self.vm().ok_or_else(|| self.not_found())?;
        call(vm.as_ref()).map_err(|e| self.engine_failure(verb.words(), e))?;
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

    /// Runs one queued request (not Terminate, not CreateProcess) on the worker: its
    /// documents are checked first, then the §3.3 table decides.
    fn execute(self: &Arc<Self>, request: &SystemRequest) -> Result<Option<String>, Failure> {
        let verb = Verb::of(request);
        let mut query = None;
        let mut modify = None;
        match request {
            SystemRequest::Pause(Some(options)) => {
                hcs_schema::parse::<hcs_schema::PauseOptions>(options)?;
            }
            SystemRequest::Save(Some(options)) => {
                hcs_schema::parse::<hcs_schema::SaveOptions>(options)?;
            }
            SystemRequest::Shutdown(Some(options)) => {
                hcs_schema::parse::<hcs_schema::ShutdownOptions>(options)?;
            }
            SystemRequest::Crash(Some(options)) => {
                hcs_schema::parse::<hcs_schema::CrashOptions>(options)?;
            }
            SystemRequest::GetProperties(Some(q)) => {
                query = Some(hcs_schema::parse::<hcs_schema::SystemPropertyQuery>(q)?);
            }
            SystemRequest::Modify(document) => modify = Some(crate::modify::parse(document)?),
            _ => {}
        }
        let life = self.life();
        let to = match lifecycle::verdict(life, verb) {
            Verdict::Run(to) => to,
            Verdict::InvalidState => {
                return Err(refusals::invalid_state(verb.words(), &self.id, life))
            }
            Verdict::AlreadyStopped => return Err(refusals::already_stopped(&self.id)),
            Verdict::NotFound => return Err(self.not_found()),
            Verdict::Queue | Verdict::Stop => {
                return Err(Failure::new(
                    HResult::E_UNEXPECTED,
                    format!("internal error: {verb:?} reached the request executor"),
                ))
            }
        };
        match (request, to) {
            (SystemRequest::Start, Some(to)) => {
                self.engine_transition(verb, life, to, |vm| vm.start())?;
                self.connect_guest()
            }
            (SystemRequest::Pause(_), Some(to)) => {
                self.engine_transition(verb, life, to, |vm| vm.pause())
            }
            (SystemRequest::Resume, Some(to)) => {
                self.engine_transition(verb, life, to, |vm| vm.resume())
            }
            (SystemRequest::Save(_), _) => Err(Failure::new(
                HResult::ERROR_NOT_SUPPORTED,
                format!(
                    "saving a virtual machine is not supported by the {} engine yet",
                    self.engine.name()
                ),
            )),
            (SystemRequest::Shutdown(options), _) => self.shut_down(options.as_deref()),
            (SystemRequest::Crash(_), _) => {
                let vm = self.vm().ok_or_else(|| self.not_found())?;
                vm.inject_nmi()
                    .map_err(|e| self.engine_failure(verb.words(), e))?;
                Ok(None)
            }
            (SystemRequest::GetProperties(_), _) => Ok(Some(self.properties(query.as_ref()))),
            (SystemRequest::Modify(_), _) => match modify {
                Some(request) => crate::modify::apply(&request, self.plan.memory_mb).map(|()| None),
                None => Ok(None),
            },
            (request, _) => Err(Failure::new(
                HResult::E_UNEXPECTED,
                format!(
                    "internal error: {} reached the request executor",
                    request.phase()
                ),
            )),
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
        let cpu_time = match (&vm, wants_statistics) {
            (Some(vm), true) => vm.cpu_time(),
            _ => Duration::ZERO,
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
            cpu_time,
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

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// A random RFC 4122 version 4 GUID.
pub(crate) fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}
