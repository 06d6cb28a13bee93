//! The host: what a program holds to run compute systems, and opens sessions on.
//!
//! A [`Host`] is a handle on one registry (`registry.rs`: the settings, the engines, the
//! systems by id, the create checks). Clients talk to it through sessions
//! ([`crate::Session`], opened with [`Host::open_session`]).

use crate::config::HostConfig;
use crate::peer::Peer;
use crate::registry::HostInner;
use crate::session::Session;
use hcs_engine::Engine;
use hcs_protocol::{Failure, MessageSink, RequestBody, Validation};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The service core: every compute system of this host.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
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
            inner: Arc::new(HostInner::new(config, engines)),
        }
    }

    /// The engines of this project with `config`'s settings, in the order they are
    /// asked: the built-in VMM (`hcs-kvm`: the empty VMs), then QEMU (`hcs-qemu`: Linux
    /// guests).
    pub fn default_engines(config: &HostConfig) -> Vec<Arc<dyn Engine>> {
        vec![
            Arc::new(hcs_kvm::KvmEngine::new()),
            Arc::new(hcs_qemu::QemuEngine::new(config.qemu.clone())),
        ]
    }

    /// A host with `config` and this project's engines.
    pub fn with_default_engines(config: HostConfig) -> Host {
        let engines = Host::default_engines(&config);
        Host::new(config, engines)
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
    /// chosen engine's limits. An engine that cannot run here is a note, not a problem.
    pub fn validate(&self, configuration: &str) -> Validation {
        self.inner.validate(configuration)
    }

    /// The answer to a request that concerns no compute system and needs no session
    /// (validation, ComPort sockets, the service functions of HCS-API §3.5); `None` for
    /// any other request. `hcsd` answers these with a host of its own.
    pub fn answer_at_once(&self, body: &RequestBody) -> Option<Result<Option<String>, Failure>> {
        self.inner.answer_at_once(body)
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
