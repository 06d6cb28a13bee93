//! The host: its engines and the registry of compute systems by id.
//!
//! A [`Host`] owns every compute system. Clients talk to it through sessions
//! ([`crate::Session`], opened with [`Host::open_session`]). Creating a system runs the
//! checks of HCS-API §3 in one order, here and nowhere else ([`Host::plan_create`]): the
//! document, the id, what this host can run, then the engine that will run it and its
//! limits.

use crate::config::HostConfig;
use crate::peer::Peer;
use crate::plan::{plan_vm, SystemSettings};
use crate::refusals;
use crate::session::Session;
use crate::system::{Registrar, System};
use hcs_engine::{Engine, EngineLimits, VmPlan};
use hcs_protocol::{Failure, MessageSink, RequestBody, Validation, ValidationProblem};
use hcs_schema::HResult;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The service core: every compute system of this host.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub config: HostConfig,
    /// In the order they are asked whether they accept a plan.
    engines: Vec<Arc<dyn Engine>>,
    pub registry: Mutex<HashMap<String, Arc<System>>>,
    pub live_vms: AtomicUsize,
    next_session: AtomicU64,
    /// Told the id of every system that stops existing (see [`Host::on_system_gone`]).
    gone_hook: Mutex<Option<GoneHook>>,
}

type GoneHook = Arc<dyn Fn(&str) + Send + Sync>;

impl Registrar for HostInner {
    fn vm_created(&self) {
        self.live_vms.fetch_add(1, Ordering::SeqCst);
    }

    fn forget(&self, system: &System, had_vm: bool) {
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
}

/// What a create checked: everything a system is made from.
pub(crate) struct CreatePlan {
    pub plan: VmPlan,
    pub settings: SystemSettings,
    pub engine: Arc<dyn Engine>,
}

impl HostInner {
    /// The first engine that accepts `plan`, or why none does.
    fn engine_for(&self, plan: &VmPlan) -> Result<&Arc<dyn Engine>, Failure> {
        let mut reasons = Vec::new();
        for engine in &self.engines {
            match engine.accepts(plan) {
                Ok(()) => return Ok(engine),
                Err(why) => reasons.push(format!("{}: {why}", engine.name())),
            }
        }
        Err(Failure::new(
            HResult::ERROR_NOT_SUPPORTED,
            format!(
                "no engine of this host can run this virtual machine ({})",
                reasons.join("; ")
            ),
        ))
    }

    /// HCS-API §3's create checks after the JSON and the id: what this host can run, the
    /// engine that runs it, and that engine's limits. `runtime_dir` names the VM's
    /// directory.
    pub fn plan_create(
        &self,
        document: &hcs_schema::ComputeSystem,
        id: &str,
    ) -> Result<CreatePlan, Failure> {
        let (mut plan, settings) = plan_vm(document, &self.config)?;
        let engine = self.engine_for(&plan)?;
        let limits = engine
            .limits()
            .map_err(|error| refusals::engine_unavailable(&error))?;
        check_limits(&plan, &limits)?;
        plan.runtime_dir = Some(crate::paths::vm_dir(&self.config, id));
        Ok(CreatePlan {
            plan,
            settings,
            engine: Arc::clone(engine),
        })
    }
}

/// The plan against the chosen engine's limits, worded as the document's range checks are.
fn check_limits(plan: &VmPlan, limits: &EngineLimits) -> Result<(), Failure> {
    if plan.memory_mb == 0 || plan.memory_mb > limits.max_memory_mb {
        return Err(Failure::at(
            HResult::HCS_E_INVALID_JSON,
            "$.VirtualMachine.ComputeTopology.Memory.SizeInMB",
            format!(
                "must be between 1 and {} MB, got {}",
                limits.max_memory_mb, plan.memory_mb
            ),
        ));
    }
    if plan.vcpus == 0 || plan.vcpus > limits.max_vcpus {
        return Err(Failure::at(
            HResult::HCS_E_INVALID_JSON,
            "$.VirtualMachine.ComputeTopology.Processor.Count",
            format!(
                "must be between 1 and {}, got {}",
                limits.max_vcpus, plan.vcpus
            ),
        ));
    }
    Ok(())
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engines: Vec<&str> = self.inner.engines.iter().map(|e| e.name()).collect();
        f.debug_struct("Host")
            .field("engines", &engines)
            .field("systems", &self.system_count())
            .finish()
    }
}

impl Host {
    /// A host with `config` whose VMs are built by the first of `engines` that accepts
    /// each plan.
    pub fn new(config: HostConfig, engines: Vec<Arc<dyn Engine>>) -> Host {
        Host {
            inner: Arc::new(HostInner {
                config,
                engines,
                registry: Mutex::new(HashMap::new()),
                live_vms: AtomicUsize::new(0),
                next_session: AtomicU64::new(1),
                gone_hook: Mutex::new(None),
            }),
        }
    }

    /// The engines of this project, in the order they are asked: the built-in VMM
    /// (`hcs-kvm`: the empty VMs), then QEMU (`hcs-qemu`: Linux guests).
    pub fn default_engines() -> Vec<Arc<dyn Engine>> {
        vec![
            Arc::new(hcs_kvm::KvmEngine::new()),
            Arc::new(hcs_qemu::QemuEngine::new()),
        ]
    }

    /// A host with `config` and this project's engines.
    pub fn with_default_engines(config: HostConfig) -> Host {
        Host::new(config, Host::default_engines())
    }

    /// The host's settings.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// Opens a session whose replies and notifications go to `sink`.
    pub fn open_session(&self, sink: Arc<dyn MessageSink>) -> Session {
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        Session::new(Arc::clone(&self.inner), Arc::new(Peer::new(id, sink)))
    }

    /// Number of compute systems that exist (created and not yet stopped).
    pub fn system_count(&self) -> usize {
        self.inner.registry.lock().len()
    }

    /// Number of engine VMs alive (built and not yet stopped).
    pub fn live_vm_count(&self) -> usize {
        self.inner.live_vms.load(Ordering::SeqCst)
    }

    /// Judges a `ComputeSystem` document as a create on this host would, creating
    /// nothing: every schema problem, then the first thing this host cannot run, then the
    /// chosen engine's limits. An engine that cannot run here is a note, not a problem:
    /// the document itself may be fine elsewhere.
    pub fn validate(&self, configuration: &str) -> Validation {
        let mut validation = Validation::default();
        let document =
            match hcs_schema::parse_compute_system(configuration, &hcs_schema::Limits::unbounded())
            {
                Ok(document) => document,
                Err(errors) => {
                    validation.problems = errors
                        .into_iter()
                        .map(|e| problem(&Failure::from(e)))
                        .collect();
                    return validation;
                }
            };
        let outcome = (|| {
            let (plan, _) = plan_vm(&document, &self.inner.config)?;
            let engine = self.inner.engine_for(&plan)?;
            match engine.limits() {
                Ok(limits) => check_limits(&plan, &limits)?,
                Err(error) => validation.notes.push(format!(
                    "the {} engine cannot run here ({error}); creating this system here \
                     would fail with HCS_E_HYPERV_NOT_INSTALLED",
                    engine.name()
                )),
            }
            Ok::<_, Failure>((plan, engine.name()))
        })();
        match outcome {
            Ok((plan, engine)) => {
                validation.engine = Some(engine.to_owned());
                validation.vcpus = Some(plan.vcpus);
                validation.memory_mb = Some(plan.memory_mb);
            }
            Err(failure) => validation.problems.push(problem(&failure)),
        }
        validation
    }

    /// The answer to a request that concerns no compute system and needs no session
    /// (validation, ComPort sockets, the service functions of HCS-API §3.5); `None` for
    /// any other request. `hcsd` answers these with a host of its own.
    pub fn answer_at_once(&self, body: &RequestBody) -> Option<Result<Option<String>, Failure>> {
        match body {
            RequestBody::ValidateDocument { configuration } => {
                let validation = self.validate(configuration);
                Some(
                    serde_json::to_string(&validation)
                        .map(Some)
                        .map_err(|e| Failure::new(HResult::E_UNEXPECTED, e.to_string())),
                )
            }
            RequestBody::ComPortSocket { named_pipe } => Some(
                crate::paths::com_port_socket(&self.inner.config, named_pipe)
                    .map(|socket| Some(serde_json::json!({ "Socket": socket }).to_string()))
                    .map_err(|why| Failure::new(HResult::E_INVALIDARG, why)),
            ),
            body => crate::service::answer(body),
        }
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

/// A failure as a validation problem: its path (or `$`) and its message without the path.
fn problem(failure: &Failure) -> ValidationProblem {
    let path = failure.path.clone().unwrap_or_else(|| "$".to_owned());
    let prefix = format!("{path}: ");
    ValidationProblem {
        message: failure
            .message
            .strip_prefix(&prefix)
            .unwrap_or(&failure.message)
            .to_owned(),
        path,
        hresult: failure.hresult,
    }
}

/// The first create checks, the ones that need no engine (HCS-API §3): the document's JSON
/// and schema, then whether `id` is in use (`in_use`). `hcsd` runs them before it starts
/// a worker, so that a bad document never costs a process; the worker's host runs them
/// again as part of its whole create.
pub fn check_document_and_id(
    configuration: &str,
    id: &str,
    in_use: impl FnOnce() -> bool,
) -> Result<hcs_schema::ComputeSystem, Failure> {
    let document =
        hcs_schema::parse_compute_system(configuration, &hcs_schema::Limits::unbounded())?;
    if in_use() {
        return Err(refusals::already_exists(id));
    }
    Ok(document)
}
