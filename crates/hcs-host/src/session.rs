//! One client's session with a host: the handles it holds and the routing of its requests.
//!
//! A client sends [`Request`]s; each gets exactly one reply through the session's sink, and
//! every handle the session holds is told when its system exits. System and process
//! handles are numbers the client chose. Dropping a session closes its handles, as when a
//! client process dies (HCS-API rule 28). The session rules live here once: `hcsd`'s
//! router forwards to a session like this one inside the system's worker.

use crate::lifecycle::Life;
use crate::peer::{Peer, Requester};
use crate::processes::ProcessKey;
use crate::refusals;
use crate::registry::HostInner;
use crate::system::{Setup, System};
use hcs_protocol::{
    Diagnostic, Failure, HostMessage, ProcessHandle, Reply, Request, RequestBody, SystemHandle,
    SystemRequest,
};
use hcs_schema::HResult;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One client's connection to a [`crate::Host`].
pub struct Session {
    shared: Arc<SessionShared>,
}

struct SessionShared {
    peer: Arc<Peer>,
    host: Arc<HostInner>,
    handles: Mutex<HashMap<SystemHandle, Arc<System>>>,
    /// Process handles, with the system they were made through and whether this handle
    /// created the process (opened ones have no start-up information). Which process a
    /// handle names is the system's process table's to say.
    processes: Mutex<HashMap<ProcessHandle, ProcessBinding>>,
    /// Handles whose create failed before a system existed: they answer "not found".
    unborn: Mutex<HashSet<SystemHandle>>,
    /// Test holds on systems' request queues, by the client's number.
    holds: Mutex<HashMap<u64, crossbeam_channel::Sender<()>>>,
    /// Set by [`Session::abandon`]: closes release handles without terminating.
    abandoned: AtomicBool,
}

struct ProcessBinding {
    system: Arc<System>,
    created: bool,
}

impl SessionShared {
    fn reply(&self, id: u64, outcome: Result<Option<String>, Failure>, phase: &str) {
        self.peer
            .deliver(HostMessage::Reply(Reply::outcome(id, outcome, phase)));
    }

    fn requester(&self, request_id: u64) -> Requester {
        Requester {
            peer: Arc::downgrade(&self.peer),
            request_id,
        }
    }

    /// Why `handle` names no system: its create failed, or it is not open here.
    fn no_system(&self, handle: SystemHandle) -> Failure {
        if self.unborn.lock().contains(&handle) {
            refusals::never_created()
        } else {
            refusals::unknown_system_handle(handle)
        }
    }

    fn system(&self, handle: SystemHandle) -> Result<Arc<System>, Failure> {
        let system = self.handles.lock().get(&handle).cloned();
        system.ok_or_else(|| self.no_system(handle))
    }

    /// `HcsCreateComputeSystem`, checked in the order of HCS-API §3: JSON, id in use,
    /// what this host can run, the engine and its limits; then the VM is built on the
    /// system's worker.
    fn create(&self, request_id: u64, handle: SystemHandle, id: String, configuration: &str) {
        let host = &self.host;
        let outcome = (|| -> Result<(), Failure> {
            let document = crate::registry::check_document_and_id(configuration, &id, || {
                host.registry.lock().contains_key(&id)
            })?;
            let checked = host.plan_create(&document, &id)?;
            let registrar: Arc<dyn crate::system::Registrar> = Arc::clone(host) as _;
            let system = System::spawn(Setup {
                id: id.clone(),
                settings: checked.settings,
                plan: checked.plan,
                engine: checked.engine,
                registrar: Arc::downgrade(&registrar),
                guest_connect_timeout: host.config.guest_connect_timeout,
            })
            .map_err(|e| {
                Failure::new(
                    HResult::E_OUTOFMEMORY,
                    format!("no thread for the system: {e}"),
                )
            })?;
            {
                let mut registry = host.registry.lock();
                // Checked again: another create of the same id may have won meanwhile.
                if registry.contains_key(&id) {
                    return Err(refusals::already_exists(&id));
                }
                registry.insert(id.clone(), Arc::clone(&system));
            }
            self.bind(handle, &system);
            system.submit_create(self.requester(request_id));
            Ok(())
        })();
        if let Err(failure) = outcome {
            self.unborn.lock().insert(handle);
            self.reply(request_id, Err(failure), "Construct");
        }
    }

    fn bind(&self, handle: SystemHandle, system: &Arc<System>) {
        system.add_handle(&self.peer, handle);
        self.handles.lock().insert(handle, Arc::clone(system));
    }

    fn open(&self, request_id: u64, handle: SystemHandle, id: &str) {
        let system = self.host.registry.lock().get(id).cloned();
        let outcome = match system {
            Some(system) if !matches!(system.life(), Life::Failed | Life::Stopped) => {
                self.bind(handle, &system);
                Ok(None)
            }
            _ => Err(refusals::no_such_system(id)),
        };
        self.reply(request_id, outcome, "Open");
    }

    fn close(&self, handle: SystemHandle) {
        self.unborn.lock().remove(&handle);
        let system = self.handles.lock().remove(&handle);
        if let Some(system) = system {
            let abandoned = self.abandoned.load(Ordering::SeqCst);
            system.remove_handle(self.peer.id, handle, !abandoned);
        }
    }

    fn close_process(&self, handle: ProcessHandle) {
        if let Some(binding) = self.processes.lock().remove(&handle) {
            binding.system.processes.unbind(self.peer.id, handle);
        }
    }

    fn enumerate(&self, query: Option<&str>) -> Result<Option<String>, Failure> {
        let query = match query {
            Some(q) => Some(hcs_schema::parse::<hcs_schema::SystemQuery>(q)?),
            None => None,
        };
        let mut systems: Vec<Arc<System>> = self.host.registry.lock().values().cloned().collect();
        systems.sort_by(|a, b| a.id.cmp(&b.id));
        let items: Vec<serde_json::Value> = systems
            .iter()
            .filter(|s| !matches!(s.life(), Life::Failed | Life::Creating))
            .filter(|s| crate::properties::matches_query(&s.id, &s.settings.owner, query.as_ref()))
            .filter_map(|s| serde_json::from_str(&s.properties(None)).ok())
            .collect();
        serde_json::to_string(&items)
            .map(Some)
            .map_err(|e| Failure::new(HResult::E_UNEXPECTED, e.to_string()))
    }

    fn open_process(&self, id: u64, system: SystemHandle, process: ProcessHandle, pid: u32) {
        let found = match self.system(system) {
            Ok(found) => found,
            Err(failure) => return self.reply(id, Err(failure), "OpenProcess"),
        };
        // A pid names a process of the guest's current boot.
        let key = ProcessKey {
            boot: found.guest_boot(),
            pid,
        };
        // Marked as opened before the bind so that it never counts as created.
        self.processes.lock().insert(
            process,
            ProcessBinding {
                system: Arc::clone(&found),
                created: false,
            },
        );
        if !found.open_process(&self.peer, id, process, key) {
            self.processes.lock().remove(&process);
            self.reply(
                id,
                Err(refusals::no_such_process(&found.id, pid)),
                "OpenProcess",
            );
        }
    }

    fn process_request(
        &self,
        id: u64,
        handle: ProcessHandle,
        request: hcs_protocol::ProcessRequest,
    ) {
        let binding = self
            .processes
            .lock()
            .get(&handle)
            .map(|b| (Arc::clone(&b.system), b.created));
        let bound = binding.and_then(|(system, created)| {
            let key = system.processes.key_of(self.peer.id, handle)?;
            Some((system, key, created))
        });
        match bound {
            Some((system, key, created)) => {
                system.process_request(self.requester(id), key, created, request)
            }
            None => self.reply(id, Err(refusals::no_process(handle)), request.phase()),
        }
    }

    fn system_request(&self, id: u64, handle: SystemHandle, request: SystemRequest) {
        let system = match self.system(handle) {
            Ok(system) => system,
            Err(failure) => return self.reply(id, Err(failure), request.phase()),
        };
        if let SystemRequest::CreateProcess { process, .. } = &request {
            // Bound now; it names a process once the system's table has it (the create
            // succeeded).
            self.processes.lock().insert(
                *process,
                ProcessBinding {
                    system: Arc::clone(&system),
                    created: true,
                },
            );
        }
        system.submit(self.requester(id), request)
    }

    fn diagnostic(&self, id: u64, diagnostic: Diagnostic) {
        let phase = diagnostic.phase();
        if !self.host.config.test_hooks {
            return self.reply(id, Err(refusals::test_hooks_disabled(phase)), phase);
        }
        let outcome = match diagnostic {
            Diagnostic::HoldSystem { handle, hold } => {
                let system = self.handles.lock().get(&handle).cloned();
                match system.and_then(|s| s.hold()) {
                    Some(release) => {
                        self.holds.lock().insert(hold, release);
                        Ok(None)
                    }
                    None => Err(refusals::nothing_to_hold()),
                }
            }
            Diagnostic::ReleaseHold { hold } => {
                let released = self.holds.lock().remove(&hold);
                drop(released);
                Ok(None)
            }
            Diagnostic::LiveCounts => {
                let counts = serde_json::json!({
                    "Systems": self.host.registry.lock().len(),
                    "Vms": self.host.live_vms.load(Ordering::SeqCst),
                });
                Ok(Some(counts.to_string()))
            }
        };
        self.reply(id, outcome, phase);
    }
}

impl Session {
    pub(crate) fn new(host: Arc<HostInner>, peer: Arc<Peer>) -> Session {
        Session {
            shared: Arc::new(SessionShared {
                peer,
                host,
                handles: Mutex::new(HashMap::new()),
                processes: Mutex::new(HashMap::new()),
                unborn: Mutex::new(HashSet::new()),
                holds: Mutex::new(HashMap::new()),
                abandoned: AtomicBool::new(false),
            }),
        }
    }

    /// Sends one request. Its reply arrives through the sink, possibly before `send`
    /// returns when the host can answer at once.
    pub fn send(&self, request: Request) {
        let shared = &self.shared;
        let Request { id, body } = request;
        match body {
            RequestBody::CreateSystem {
                handle,
                id: system_id,
                configuration,
            } => shared.create(id, handle, system_id, &configuration),
            RequestBody::OpenSystem {
                handle,
                id: system_id,
            } => shared.open(id, handle, &system_id),
            RequestBody::CloseSystem { handle } => {
                shared.close(handle);
                shared.reply(id, Ok(None), "Close");
            }
            RequestBody::Enumerate { query } => {
                let outcome = shared.enumerate(query.as_deref());
                shared.reply(id, outcome, "Enumerate");
            }
            RequestBody::System { handle, request } => shared.system_request(id, handle, request),
            RequestBody::OpenProcess {
                system,
                process,
                pid,
            } => shared.open_process(id, system, process, pid),
            RequestBody::CloseProcess { handle } => {
                shared.close_process(handle);
                shared.reply(id, Ok(None), "CloseProcess");
            }
            RequestBody::Process { handle, request } => shared.process_request(id, handle, request),
            body @ (RequestBody::ValidateDocument { .. }
            | RequestBody::ComPortSocket { .. }
            | RequestBody::GetServiceProperties { .. }
            | RequestBody::ModifyServiceSettings { .. }
            | RequestBody::SubmitWerReport { .. }) => {
                if let Some(outcome) = shared.host.answer_at_once(&body) {
                    shared.reply(id, outcome, body.phase());
                }
            }
            RequestBody::Diagnostic(diagnostic) => shared.diagnostic(id, diagnostic),
        }
    }

    /// This session's number, unique within its host.
    pub fn id(&self) -> u64 {
        self.shared.peer.id
    }

    /// Whether the session holds nothing: no system or process handle (not even one whose
    /// create failed) and no hold.
    pub fn is_idle(&self) -> bool {
        self.shared.handles.lock().is_empty()
            && self.shared.processes.lock().is_empty()
            && self.shared.unborn.lock().is_empty()
            && self.shared.holds.lock().is_empty()
    }

    /// Ends the session without closing its handles as a client would: its handles are
    /// released, but a system with `ShouldTerminateOnLastHandleClosed` is not stopped by
    /// it. For a service that lost its clients' connections with its own restart (the
    /// clients did not close anything) — not for a client that ended.
    pub fn abandon(self) {
        self.shared.abandoned.store(true, Ordering::SeqCst);
        drop(self);
    }
}

impl Drop for Session {
    /// A session that ends closes every handle it still holds.
    fn drop(&mut self) {
        self.shared.holds.lock().clear();
        let processes: Vec<ProcessHandle> = self.shared.processes.lock().keys().copied().collect();
        for handle in processes {
            self.shared.close_process(handle);
        }
        let handles: Vec<SystemHandle> = self.shared.handles.lock().keys().copied().collect();
        for handle in handles {
            self.shared.close(handle);
        }
    }
}
