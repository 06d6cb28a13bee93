//! The host: the registry of compute systems by id, and the sessions clients talk through.
//!
//! A [`Host`] owns every compute system. A client opens a [`Session`] with a
//! [`MessageSink`] and sends [`Request`]s; each gets exactly one [`Reply`], and every
//! handle the session holds is told when its system exits. Dropping a session closes its
//! handles, as when a client process dies (HCS-API rule 28).

use crate::engine::{Engine, EngineKind, EngineLimits, VmPlan};
use crate::error::Failure;
use crate::kvm_engine::KvmEngine;
use crate::plan::plan_vm;
use crate::processes::ProcessKey;
use crate::protocol::{
    HostMessage, MessageSink, ProcessHandle, Reply, Request, RequestBody, SystemHandle,
};
use crate::qemu_engine::QemuEngine;

use crate::system::{Life, Requester, System};
use hcs_schema::{HResult, Limits};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The service core: every compute system of this host.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    /// Builds the empty VMs (and checks documents' limits).
    pub engine: Arc<dyn Engine>,
    /// Builds the Linux guests.
    pub qemu: Arc<dyn Engine>,
    registry: Mutex<HashMap<String, Arc<System>>>,
    live_vms: AtomicUsize,
    next_session: AtomicU64,
    /// Told the id of every system that stops existing (see [`Host::on_system_gone`]).
    gone_hook: Mutex<Option<GoneHook>>,
}

type GoneHook = Arc<dyn Fn(&str) + Send + Sync>;

impl HostInner {
    /// Frees the id of a system that stopped or failed to be created (HCS-API rule 27).
    pub fn forget(&self, system: &System, had_vm: bool) {
        let mut registry = self.registry.lock();
        let removed = registry
            .get(&system.id)
            .is_some_and(|s| std::ptr::eq(Arc::as_ptr(s), system));
        if removed {
            registry.remove(&system.id);
        }
        drop(registry);
        if had_vm {
            self.live_vms.fetch_sub(1, Ordering::SeqCst);
        }
        let hook = self.gone_hook.lock().clone();
        if let (true, Some(hook)) = (removed, hook) {
            hook(&system.id);
        }
    }

    pub fn vm_created(&self) {
        self.live_vms.fetch_add(1, Ordering::SeqCst);
    }

    /// The engine that builds `plan` (ARCHITECTURE.md, "The engines").
    pub fn engine_for(&self, plan: &VmPlan) -> &Arc<dyn Engine> {
        match plan.engine_kind() {
            EngineKind::Kvm => &self.engine,
            EngineKind::Qemu => &self.qemu,
        }
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("engine", &self.inner.engine.name())
            .field("systems", &self.system_count())
            .finish()
    }
}

impl Host {
    /// A host whose empty VMs are built by `engine`, and Linux guests by QEMU.
    pub fn new(engine: Arc<dyn Engine>) -> Host {
        Host::with_engines(engine, Arc::new(QemuEngine::new()))
    }

    /// A host with both engines given: `kvm` for empty VMs, `qemu` for Linux guests.
    pub fn with_engines(kvm: Arc<dyn Engine>, qemu: Arc<dyn Engine>) -> Host {
        Host {
            inner: Arc::new(HostInner {
                engine: kvm,
                qemu,
                registry: Mutex::new(HashMap::new()),
                live_vms: AtomicUsize::new(0),
                next_session: AtomicU64::new(1),
                gone_hook: Mutex::new(None),
            }),
        }
    }

    /// A host on the built-in VMM (`hcs-kvm`).
    pub fn with_kvm() -> Host {
        Host::new(Arc::new(KvmEngine::new()))
    }

    /// Opens a session whose replies and notifications go to `sink`.
    pub fn open_session(&self, sink: Arc<dyn MessageSink>) -> Session {
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        Session {
            shared: Arc::new(SessionShared {
                id,
                host: Arc::clone(&self.inner),
                sink,
                handles: Mutex::new(HashMap::new()),
                processes: Mutex::new(HashMap::new()),
                unborn: Mutex::new(HashSet::new()),
                holds: Mutex::new(HashMap::new()),
                abandoned: AtomicBool::new(false),
            }),
        }
    }

    /// Number of compute systems that exist (created and not yet stopped).
    pub fn system_count(&self) -> usize {
        self.inner.registry.lock().len()
    }

    /// Number of engine VMs alive (built and not yet stopped).
    pub fn live_vm_count(&self) -> usize {
        self.inner.live_vms.load(Ordering::SeqCst)
    }

    /// The document limits of this host's engine, or why it cannot run VMs.
    pub fn limits(&self) -> Result<Limits, Failure> {
        engine_limits(self.inner.engine.as_ref())
    }

    /// Checks a `ComputeSystem` document as a create on this host would, creating nothing
    /// (see [`crate::plan::check_document`]). Without a usable engine, the document is
    /// checked without host limits and the engine's failure comes last.
    pub fn check_document(&self, configuration: &str) -> Result<VmPlan, Vec<Failure>> {
        let limits = self.limits();
        let parse_limits = limits.clone().unwrap_or_else(|_| Limits::unbounded());
        let (_, plan, _) = crate::plan::check_document(configuration, &parse_limits)?;
        limits.map_err(|failure| vec![failure])?;
        Ok(plan)
    }

    /// Keeps the worker of system `id` busy until the returned [`SystemHold`] is dropped:
    /// requests on that system queue up behind it and their operations stay pending. For
    /// tests and diagnostics of the operation model; the VM itself keeps running.
    pub fn hold_system(&self, id: &str) -> Option<SystemHold> {
        let system = self.inner.registry.lock().get(id).cloned()?;
        system
            .hold()
            .map(|release| SystemHold { _release: release })
    }

    /// Calls `hook` with the id of every compute system that stops existing (it stopped,
    /// or its create failed), after its id is free again. Called from host threads, never
    /// under a lock of the host; it must return promptly.
    pub fn on_system_gone(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        *self.inner.gone_hook.lock() = Some(Arc::new(hook));
    }

    /// The ids of the compute systems that exist.
    pub fn system_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inner.registry.lock().keys().cloned().collect();
        ids.sort();
        ids
    }
}

/// Keeps a system's request queue blocked while alive (see [`Host::hold_system`]).
#[derive(Debug)]
pub struct SystemHold {
    _release: crossbeam_channel::Sender<()>,
}

/// One client's connection to a [`Host`].
pub struct Session {
    shared: Arc<SessionShared>,
}

pub(crate) struct SessionShared {
    pub id: u64,
    host: Arc<HostInner>,
    sink: Arc<dyn MessageSink>,
    handles: Mutex<HashMap<SystemHandle, Arc<System>>>,
    /// Process handles bound to a guest process: its system, its pid, and whether this
    /// handle created it (opened ones have no start-up information).
    processes: Mutex<HashMap<ProcessHandle, ProcessBinding>>,
    /// Handles whose create failed before a system existed: they answer "not found".
    unborn: Mutex<HashSet<SystemHandle>>,
    /// Diagnostic holds on systems' request queues, by the client's number.
    holds: Mutex<HashMap<u64, SystemHold>>,
    /// Set by [`Session::abandon`]: closes release handles without terminating.
    abandoned: AtomicBool,
}

struct ProcessBinding {
    system: Arc<System>,
    key: ProcessKey,
    created: bool,
}

impl SessionShared {
    pub fn deliver(&self, message: HostMessage) {
        self.sink.deliver(message);
    }

    /// Records that `handle` names process `key` of `system` (created through it unless
    /// the handle is already bound by an open).
    pub fn bind_process(&self, handle: ProcessHandle, system: &Arc<System>, key: ProcessKey) {
        self.processes
            .lock()
            .entry(handle)
            .or_insert_with(|| ProcessBinding {
                system: Arc::clone(system),
                key,
                created: true,
            });
    }

    fn close_process(&self, handle: ProcessHandle) {
        if let Some(binding) = self.processes.lock().remove(&handle) {
            binding
                .system
                .processes
                .unbind(self.id, handle, binding.key);
        }
    }

    fn reply(&self, id: u64, outcome: Result<Option<String>, Failure>, phase: &str) {
        self.deliver(reply_message(id, outcome, phase));
    }

    fn requester(self: &Arc<Self>, request_id: u64) -> Requester {
        Requester {
            session: Arc::downgrade(self),
            request_id,
        }
    }

    fn limits(&self) -> Result<Limits, Failure> {
        engine_limits(self.host.engine.as_ref())
    }

    /// Why `handle` names no system: its create failed, or it is not open here.
    fn no_system(&self, handle: SystemHandle) -> Failure {
        if self.unborn.lock().contains(&handle) {
            Failure::new(
                HResult::HCS_E_SYSTEM_NOT_FOUND,
                "this handle's compute system was never created: its create failed",
            )
        } else {
            Failure::new(
                HResult::E_HANDLE,
                format!("system handle {handle} is not open in this session"),
            )
        }
    }

    fn create(self: &Arc<Self>, request_id: u64, handle: SystemHandle, id: String, doc: &str) {
        // Checked in the order of HCS-API §3: JSON, id in use, features, then building.
        let limits = self.limits();
        let parse_limits = limits.clone().unwrap_or_else(|_| Limits::unbounded());
        let outcome = (|| -> Result<(), Failure> {
            let document = hcs_schema::parse_compute_system(doc, &parse_limits)?;
            if self.host.registry.lock().contains_key(&id) {
                return Err(already_exists(&id));
            }
            // The same checks as `check_document`, with the id check where HCS puts it.
            let (mut plan, settings) = plan_vm(&document)?;
            if plan.engine_kind() == EngineKind::Kvm {
                limits?;
            }
            if plan.engine_kind() == EngineKind::Qemu {
                plan.runtime_dir = Some(crate::paths::vm_dir(&id));
            }
            let system = System::spawn(id.clone(), settings, plan, Arc::downgrade(&self.host))
                .map_err(|e| {
                    Failure::new(
                        HResult::E_OUTOFMEMORY,
                        format!("no thread for the system: {e}"),
                    )
                })?;
            {
                let mut registry = self.host.registry.lock();
                // Checked again: another create of the same id may have won meanwhile.
                if registry.contains_key(&id) {
                    return Err(already_exists(&id));
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

    fn bind(self: &Arc<Self>, handle: SystemHandle, system: &Arc<System>) {
        system.add_handle(self, handle);
        self.handles.lock().insert(handle, Arc::clone(system));
    }

    fn open(self: &Arc<Self>, request_id: u64, handle: SystemHandle, id: &str) {
        let system = self.host.registry.lock().get(id).cloned();
        let outcome = match system {
            Some(system) if !matches!(system.life(), Life::Failed | Life::Stopped) => {
                self.bind(handle, &system);
                Ok(None)
            }
            _ => Err(Failure::new(
                HResult::HCS_E_SYSTEM_NOT_FOUND,
                format!("no compute system with id '{id}' exists"),
            )),
        };
        self.reply(request_id, outcome, "Open");
    }

    fn close(&self, handle: SystemHandle) {
        self.unborn.lock().remove(&handle);
        let system = self.handles.lock().remove(&handle);
        if let Some(system) = system {
            let abandoned = self.abandoned.load(Ordering::SeqCst);
            system.remove_handle(self.id, handle, !abandoned);
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
}

fn already_exists(id: &str) -> Failure {
    Failure::new(
        HResult::HCS_E_SYSTEM_ALREADY_EXISTS,
        format!("a compute system with id '{id}' already exists"),
    )
}

/// The reply to request `id`: the document on success, else the failure's HRESULT and its
/// `ResultError` for `phase`.
pub fn reply_message(
    id: u64,
    outcome: Result<Option<String>, Failure>,
    phase: &str,
) -> HostMessage {
    let (result, document) = match outcome {
        Ok(document) => (HResult::S_OK, document),
        Err(failure) => (failure.hresult, Some(failure.document(phase))),
    };
    HostMessage::Reply(Reply {
        id,
        result,
        document,
    })
}

fn engine_limits(engine: &dyn Engine) -> Result<Limits, Failure> {
    match engine.limits() {
        Ok(EngineLimits {
            max_vcpus,
            max_memory_mb,
        }) => Ok(Limits {
            max_vcpus,
            max_memory_mb,
        }),
        Err(error) => Err(Failure::new(
            HResult::HCS_E_HYPERV_NOT_INSTALLED,
            format!("virtual machines cannot run on this host: {error}"),
        )),
    }
}

impl Session {
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
            RequestBody::OpenProcess {
                system,
                process,
                pid,
            } => {
                let found = shared.handles.lock().get(&system).cloned();
                match found {
                    Some(found) => {
                        // A pid names a process of the guest's current boot.
                        let key = ProcessKey {
                            boot: found.guest_boot(),
                            pid,
                        };
                        // Marked as opened before the bind so that it never counts as created.
                        shared.processes.lock().insert(
                            process,
                            ProcessBinding {
                                system: Arc::clone(&found),
                                key,
                                created: false,
                            },
                        );
                        if !found.open_process(shared, id, process, key) {
                            shared.processes.lock().remove(&process);
                            shared.reply(
                                id,
                                Err(Failure::new(
                                    HResult::ERROR_NOT_FOUND,
                                    format!(
                                        "compute system '{}' has no running process with id \
                                         {pid} started through this host",
                                        found.id
                                    ),
                                )),
                                "OpenProcess",
                            );
                        }
                    }
                    None => shared.reply(id, Err(shared.no_system(system)), "OpenProcess"),
                }
            }
            RequestBody::CloseProcess { handle } => {
                shared.close_process(handle);
                shared.reply(id, Ok(None), "CloseProcess");
            }
            RequestBody::Process { handle, request } => {
                let binding = shared
                    .processes
                    .lock()
                    .get(&handle)
                    .map(|b| (Arc::clone(&b.system), b.key, b.created));
                match binding {
                    Some((system, key, created)) => {
                        system.process_request(shared.requester(id), key, created, request)
                    }
                    None => shared.reply(
                        id,
                        Err(Failure::new(
                            HResult::ERROR_NOT_FOUND,
                            format!(
                                "process handle {handle} names no process: its \
                                 HcsCreateProcess did not succeed"
                            ),
                        )),
                        request.phase(),
                    ),
                }
            }
            body @ (RequestBody::GetServiceProperties { .. }
            | RequestBody::ModifyServiceSettings { .. }
            | RequestBody::SubmitWerReport { .. }) => {
                if let Some(outcome) = crate::service::answer(&body) {
                    shared.reply(id, outcome, body.phase());
                }
            }
            RequestBody::HoldSystem { handle, hold } => {
                let system = shared.handles.lock().get(&handle).cloned();
                let outcome = match system.and_then(|s| s.hold()) {
                    Some(release) => {
                        shared
                            .holds
                            .lock()
                            .insert(hold, SystemHold { _release: release });
                        Ok(None)
                    }
                    None => Err(Failure::new(
                        HResult::HCS_E_SYSTEM_NOT_FOUND,
                        "no running compute system to hold",
                    )),
                };
                shared.reply(id, outcome, "HoldSystem");
            }
            RequestBody::ReleaseHold { hold } => {
                let released = shared.holds.lock().remove(&hold);
                drop(released);
                shared.reply(id, Ok(None), "ReleaseHold");
            }
            RequestBody::LiveCounts => {
                let counts = serde_json::json!({
                    "Systems": self.shared.host.registry.lock().len(),
                    "Vms": self.shared.host.live_vms.load(Ordering::SeqCst),
                });
                shared.reply(id, Ok(Some(counts.to_string())), "LiveCounts");
            }
            RequestBody::System { handle, request } => {
                let system = shared.handles.lock().get(&handle).cloned();
                match system {
                    Some(system) => system.submit(shared.requester(id), request),
                    None => shared.reply(id, Err(shared.no_system(handle)), request.phase()),
                }
            }
        }
    }

    /// This session's number, unique within its host.
    pub fn id(&self) -> u64 {
        self.shared.id
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
