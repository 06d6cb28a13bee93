//! The registry behind a [`crate::Host`]: its settings, its engines, the compute systems
//! by id, and the create checks in HCS-API §3's order (the document, the id, what this host
//! can run, then the engine that will run it and its limits), once, for both the embedded
//! host and `hcsd`. Sessions ([`crate::Session`]) and the `Host` facade use it; it uses
//! neither.

use crate::config::HostConfig;
use crate::plan::{plan_vm, SystemSettings};
use crate::refusals;
use crate::system::{Registrar, System};
use hcs_engine::{Engine, EngineLimits, VmPlan};
use hcs_protocol::{Failure, RequestBody, Validation, ValidationProblem};
use hcs_schema::HResult;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

pub(crate) struct HostInner {
    pub config: HostConfig,
    /// In the order they are asked whether they accept a plan.
    pub engines: Vec<Arc<dyn Engine>>,
    pub registry: Mutex<HashMap<String, Arc<System>>>,
    pub live_vms: AtomicUsize,
    pub next_session: AtomicU64,
    /// Told the id of every system that stops existing (`Host::on_system_gone`).
    pub gone_hook: Mutex<Option<GoneHook>>,
}

pub(crate) type GoneHook = Arc<dyn Fn(&str) + Send + Sync>;

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

impl HostInner {
    /// A registry with `config` and `engines`, empty.
    pub fn new(config: HostConfig, engines: Vec<Arc<dyn Engine>>) -> HostInner {
        HostInner {
            config,
            engines,
            registry: Mutex::new(HashMap::new()),
            live_vms: AtomicUsize::new(0),
            next_session: AtomicU64::new(1),
            gone_hook: Mutex::new(None),
        }
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
            let (plan, _) = plan_vm(&document, &self.config)?;
            let engine = self.engine_for(&plan)?;
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
                crate::paths::com_port_socket(&self.config, named_pipe)
                    .map(|socket| Some(serde_json::json!({ "Socket": socket }).to_string()))
                    .map_err(|why| Failure::new(HResult::E_INVALIDARG, why)),
            ),
            body => crate::service::answer(body),
        }
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
