//! The client: handle tables, the connection to a host, and the routing of the host's
//! replies and notifications to operations and system handles.
//!
//! One process-wide client (like `computecore.dll` in a Windows process) is created on
//! first use, and chooses its host then, once (see [`HostKind`] and `docs/service.md`):
//!
//! * the *embedded* host: `hcs-host` running in this process on the built-in VMM, through
//!   one [`Session`] whose sink is [`ClientSink`];
//! * the *service* `hcsd`, through a [`Remote`] connection whose reader thread delivers
//!   the same messages.
//!
//! `HCS_HOST=embedded` or `HCS_HOST=service` forces one; otherwise the service is used if
//! a connect and handshake to [`hcs_wire::socket_path`] succeed, else the embedded host.
//!
//! Requests go out as [`hcs_protocol::Request`]s, each on a [`Link`]: the embedded session,
//! one connection to the service, or a connection that could not be made. A handle
//! remembers the link it was made on, so that after the service is lost (HCS-API rule 36)
//! its requests fail with `HCS_E_SERVICE_DISCONNECT` while new creates and opens go out on
//! a new connection. Replies come back to [`Client::on_message`], which records results
//! and queues callbacks on the dispatcher — it never runs user code itself.

use crate::dispatcher::Dispatcher;
use crate::handle_object::HandleObject;
use crate::operation::{Operation, Route};
use crate::remote::{Refusal, Remote, SendError};
use crate::types::{HcsOperation, HcsProcess, HcsSystem};
use hcs_host::{Host, HostConfig, Session};
use hcs_protocol::{HostMessage, MessageSink, Notification, Reply, Request, RequestBody};
use hcs_schema::{HResult, ResultError};
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

/// Handles never repeat within a process, so a closed handle is always recognised.
///
/// They start high, at a value no x86-64 user-space pointer can have (it is not a
/// canonical address), so that a stray pointer or small integer handed to the C API
/// as a handle is never mistaken for a live one.
const FIRST_HANDLE: u64 = 0x4843_5300_0000_1000;
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(FIRST_HANDLE);

pub(crate) fn next_handle() -> u64 {
    NEXT_HANDLE.fetch_add(1, Ordering::Relaxed)
}

/// The environment variable that chooses the host: `embedded`, `service` or `auto`.
pub const HOST_ENV: &str = "HCS_HOST";

/// Which host this process's client talks to, chosen once on first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKind {
    /// `hcs-host` inside this process: its compute systems live and die with it.
    Embedded,
    /// The service `hcsd`, over its Unix socket.
    Service,
}

/// A table of live handles of one kind.
///
/// Lookups (every call) take a shared lock; only create and close take it exclusively.
pub(crate) struct HandleTable<T> {
    map: RwLock<HashMap<u64, Arc<T>>>,
}

impl<T> HandleTable<T> {
    fn new() -> Self {
        HandleTable {
            map: RwLock::new(HashMap::new()),
        }
    }

    pub fn insert(&self, handle: u64, object: Arc<T>) {
        self.map.write().insert(handle, object);
    }

    pub fn get(&self, handle: u64) -> Option<Arc<T>> {
        self.map.read().get(&handle).cloned()
    }

    pub fn remove(&self, handle: u64) -> Option<Arc<T>> {
        self.map.write().remove(&handle)
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    /// The objects open now.
    fn snapshot(&self) -> Vec<Arc<T>> {
        self.map.read().values().cloned().collect()
    }
}

/// What a request travels on, and what a handle was made on.
#[derive(Clone)]
pub(crate) enum Link {
    /// The embedded host's session (one per process, never lost).
    Embedded,
    /// One connection to the service.
    Remote(Arc<Remote>),
    /// No connection could be made: every request through it fails with this.
    Unavailable(Arc<Refusal>),
}

impl Link {
    /// The connection's generation (0 for the embedded host and for no connection).
    fn generation(&self) -> u64 {
        match self {
            Link::Remote(remote) => remote.generation,
            Link::Embedded | Link::Unavailable(_) => 0,
        }
    }

    /// Whether this is connection `remote`.
    pub fn is(&self, remote: &Remote) -> bool {
        matches!(self, Link::Remote(r) if std::ptr::eq(Arc::as_ptr(r), remote))
    }
}

/// What a reply is for.
enum Awaiting {
    Operation {
        op: Arc<Operation>,
        generation: u64,
        /// For a process create: the process handle that receives the std handles.
        new_process: Option<u64>,
    },
    Sync(Arc<SyncSlot>),
    Nothing,
}

/// A request sent and not yet answered.
struct Outstanding {
    /// The generation of the connection it went out on.
    connection: u64,
    /// Its phase, for the error document if the connection is lost.
    phase: &'static str,
    awaiting: Awaiting,
}

/// A synchronous request's reply slot.
pub(crate) struct SyncSlot {
    reply: Mutex<Option<(HResult, Option<String>)>>,
    ready: Condvar,
}

impl SyncSlot {
    fn new() -> Arc<SyncSlot> {
        Arc::new(SyncSlot {
            reply: Mutex::new(None),
            ready: Condvar::new(),
        })
    }

    fn wait(&self) -> (HResult, Option<String>) {
        let mut reply = self.reply.lock();
        loop {
            if let Some(reply) = reply.take() {
                return reply;
            }
            self.ready.wait(&mut reply);
        }
    }
}

/// How the client reaches its host.
enum Transport {
    Embedded {
        /// Kept for the life of the process, like the session.
        _host: Host,
        session: OnceLock<Session>,
    },
    Service(ServiceLink),
}

/// The service's socket and the current connection to it.
struct ServiceLink {
    socket: PathBuf,
    /// The connection new creates, opens and service calls go out on; replaced once lost.
    current: Mutex<Option<Arc<Remote>>>,
    next_generation: AtomicU64,
}

/// The process's client state.
pub(crate) struct Client {
    pub operations: HandleTable<Operation>,
    pub systems: HandleTable<HandleObject>,
    pub processes: HandleTable<HandleObject>,
    pub dispatcher: Arc<Dispatcher>,
    awaiting: Mutex<HashMap<u64, Outstanding>>,
    next_request: AtomicU64,
    transport: Transport,
}

struct ClientSink {
    client: Weak<Client>,
}

impl MessageSink for ClientSink {
    fn deliver(&self, message: HostMessage) {
        if let Some(client) = self.client.upgrade() {
            client.on_message(message);
        }
    }
}

static CLIENT: OnceLock<Arc<Client>> = OnceLock::new();

/// The process-wide client, created on first use with the host chosen then.
pub(crate) fn client() -> &'static Arc<Client> {
    CLIENT.get_or_init(Client::choose)
}

/// Makes `host` this process's host, before anything else chose one; false if a client
/// exists already (its host stays).
pub(crate) fn use_embedded(host: Host) -> bool {
    let mut used = false;
    CLIENT.get_or_init(|| {
        used = true;
        Client::embedded(host)
    });
    used
}

/// What the host setting says.
enum Choice {
    Embedded,
    Service,
    Auto,
}

fn host_setting() -> Choice {
    let Some(value) = std::env::var_os(HOST_ENV) else {
        return Choice::Auto;
    };
    let value = value.to_string_lossy();
    let value = value.trim();
    if value.eq_ignore_ascii_case("embedded") {
        Choice::Embedded
    } else if value.eq_ignore_ascii_case("service") {
        Choice::Service
    } else if value.is_empty() || value.eq_ignore_ascii_case("auto") {
        Choice::Auto
    } else {
        tracing::warn!(
            value = %value,
            "{HOST_ENV} is neither 'embedded', 'service' nor 'auto': choosing as for 'auto'"
        );
        Choice::Auto
    }
}

impl Client {
    /// Chooses the host (once per process) and creates the client on it.
    fn choose() -> Arc<Client> {
        let socket = hcs_wire::socket_path();
        match host_setting() {
            Choice::Embedded => {
                tracing::info!("{HOST_ENV}=embedded: compute systems run inside this process");
                Client::embedded(Host::with_default_engines(HostConfig::from_env()))
            }
            Choice::Service => {
                let first = match Remote::connect(&socket, 1) {
                    Ok(connection) => Some(connection),
                    Err(refusal) => {
                        tracing::warn!(
                            code = %refusal.result,
                            "{HOST_ENV}=service, but {}",
                            refusal.message
                        );
                        None
                    }
                };
                tracing::info!(socket = %socket.display(), "{HOST_ENV}=service: using hcsd");
                Client::service(socket, first)
            }
            Choice::Auto => match Remote::connect(&socket, 1) {
                Ok(connection) => {
                    tracing::info!(socket = %socket.display(), "using the service hcsd");
                    Client::service(socket, Some(connection))
                }
                Err(refusal) => {
                    if socket.exists() {
                        // A service seems installed but would not take us: say so loudly,
                        // since this process's systems will not be the service's.
                        tracing::warn!(
                            code = %refusal.result,
                            "{}; using the embedded host",
                            refusal.message
                        );
                    } else {
                        tracing::debug!(reason = %refusal.message, "no service");
                        tracing::info!("using the embedded host (no hcsd answers)");
                    }
                    Client::embedded(Host::with_default_engines(HostConfig::from_env()))
                }
            },
        }
    }

    fn with_transport(transport: Transport) -> Client {
        Client {
            operations: HandleTable::new(),
            systems: HandleTable::new(),
            processes: HandleTable::new(),
            dispatcher: Arc::new(Dispatcher::new()),
            awaiting: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            transport,
        }
    }

    fn embedded(host: Host) -> Arc<Client> {
        let client = Arc::new(Client::with_transport(Transport::Embedded {
            _host: host.clone(),
            session: OnceLock::new(),
        }));
        let sink = Arc::new(ClientSink {
            client: Arc::downgrade(&client),
        });
        if let Transport::Embedded { session, .. } = &client.transport {
            let _ = session.set(host.open_session(sink));
        }
        client
    }

    fn service(socket: PathBuf, first: Option<(Remote, hcs_wire::FrameReader)>) -> Arc<Client> {
        let client = Arc::new(Client::with_transport(Transport::Service(ServiceLink {
            socket,
            current: Mutex::new(None),
            next_generation: AtomicU64::new(2),
        })));
        if let (Some((remote, reader)), Transport::Service(link)) = (first, &client.transport) {
            let remote = Arc::new(remote);
            match remote.start_reader(reader, Arc::downgrade(&client)) {
                Ok(()) => *link.current.lock() = Some(remote),
                Err(error) => tracing::warn!("no thread to read the service's messages: {error}"),
            }
        }
        client
    }

    /// The host this client talks to.
    pub fn kind(&self) -> HostKind {
        match self.transport {
            Transport::Embedded { .. } => HostKind::Embedded,
            Transport::Service(_) => HostKind::Service,
        }
    }

    /// The link for a request that does not go through an existing handle (create, open,
    /// enumerate, service calls): the service's current connection, or a new one if there
    /// is none or it was lost.
    pub fn new_link(self: &Arc<Self>) -> Link {
        let link = match &self.transport {
            Transport::Embedded { .. } => return Link::Embedded,
            Transport::Service(link) => link,
        };
        let mut current = link.current.lock();
        if let Some(remote) = current.as_ref().filter(|r| !r.is_lost()) {
            return Link::Remote(Arc::clone(remote));
        }
        let generation = link.next_generation.fetch_add(1, Ordering::Relaxed);
        match Remote::connect(&link.socket, generation) {
            Ok((remote, reader)) => {
                let remote = Arc::new(remote);
                if let Err(error) = remote.start_reader(reader, Arc::downgrade(self)) {
                    return Link::Unavailable(Arc::new(Refusal {
                        result: HResult::E_OUTOFMEMORY,
                        message: format!("no thread to read the service's messages: {error}"),
                    }));
                }
                tracing::info!(
                    socket = %link.socket.display(),
                    generation,
                    "connected to the service hcsd"
                );
                *current = Some(Arc::clone(&remote));
                Link::Remote(remote)
            }
            Err(refusal) => {
                tracing::debug!(code = %refusal.result, "{}", refusal.message);
                Link::Unavailable(Arc::new(refusal))
            }
        }
    }

    fn send(&self, link: &Link, awaiting: Awaiting, body: RequestBody) -> u64 {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let phase = body.phase();
        self.awaiting.lock().insert(
            id,
            Outstanding {
                connection: link.generation(),
                phase,
                awaiting,
            },
        );
        // No lock of ours is held here: the host may answer from inside `send`.
        match link {
            Link::Embedded => {
                if let Transport::Embedded { session, .. } = &self.transport {
                    if let Some(session) = session.get() {
                        session.send(Request { id, body });
                    }
                }
            }
            Link::Remote(remote) => match remote.send(Request { id, body }) {
                Ok(()) => {}
                Err(SendError::Lost(reason)) => {
                    // Whoever takes the request out of `awaiting` completes it: this
                    // call, or the loss handling that sweeps the connection's requests.
                    self.connection_lost(remote, reason.clone());
                    let message = remote.disconnect_message(&reason);
                    self.fail(id, HResult::HCS_E_SERVICE_DISCONNECT, &message, phase);
                }
                Err(SendError::Refused(refusal)) => {
                    self.fail(id, refusal.result, &refusal.message, phase)
                }
            },
            Link::Unavailable(refusal) => self.fail(id, refusal.result, &refusal.message, phase),
        }
        id
    }

    /// Answers request `id` with a failure made here, as the host would have.
    fn fail(&self, id: u64, result: HResult, message: &str, phase: &str) {
        let document = ResultError::from_failure(result, message, phase).to_json();
        self.on_message(HostMessage::Reply(Reply::new(id, result, Some(document))));
    }

    /// Sends a request tracked by an armed operation.
    pub fn send_for_operation(
        &self,
        link: &Link,
        op: Arc<Operation>,
        generation: u64,
        body: RequestBody,
    ) {
        let new_process = match &body {
            RequestBody::System {
                request: hcs_protocol::SystemRequest::CreateProcess { process, .. },
                ..
            } => Some(*process),
            _ => None,
        };
        self.send(
            link,
            Awaiting::Operation {
                op,
                generation,
                new_process,
            },
            body,
        );
    }

    /// Sends a request and blocks for its reply.
    pub fn send_and_wait(&self, link: &Link, body: RequestBody) -> (HResult, Option<String>) {
        let slot = SyncSlot::new();
        self.send(link, Awaiting::Sync(Arc::clone(&slot)), body);
        slot.wait()
    }

    /// Sends a request whose reply nobody waits for.
    pub fn send_and_forget(&self, link: &Link, body: RequestBody) {
        self.send(link, Awaiting::Nothing, body);
    }

    /// Takes one message from the host (a process create's reply owns the std handles:
    /// descriptors of this process, attached by the service connection's reader).
    pub(crate) fn on_message(&self, message: HostMessage) {
        match message {
            HostMessage::Reply(reply) => {
                let awaiting = self.awaiting.lock().remove(&reply.id);
                self.answer(awaiting.map(|o| o.awaiting), reply);
            }
            HostMessage::Notification(Notification::SystemExited { handle, status }) => {
                if let Some(system) = self.systems.get(handle) {
                    system.exited(&self.dispatcher, status);
                }
            }
            HostMessage::Notification(Notification::GuestConnectionClosed { handle }) => {
                if let Some(system) = self.systems.get(handle) {
                    system.guest_connection_closed(&self.dispatcher);
                }
            }
            HostMessage::Notification(Notification::ProcessExited { handle, status }) => {
                if let Some(process) = self.processes.get(handle) {
                    process.exited(&self.dispatcher, status);
                }
            }
        }
    }

    /// Hands a reply to what was waiting for it.
    fn answer(&self, awaiting: Option<Awaiting>, reply: Reply) {
        match awaiting {
            Some(Awaiting::Operation {
                op,
                generation,
                new_process,
            }) => {
                let mut document = reply.document;
                // The HCS result of a process create is made here, at the API edge: the
                // pid in the document, the std handles kept by the process handle.
                if let (Some(handle), Some(started)) = (new_process, reply.process) {
                    document = Some(serde_json::json!({ "ProcessId": started.pid }).to_string());
                    self.receive_std_handles(handle, started.std_handles);
                }
                self.complete(&op, generation, reply.result, document)
            }
            Some(Awaiting::Sync(slot)) => {
                *slot.reply.lock() = Some((reply.result, reply.document));
                slot.ready.notify_all();
            }
            Some(Awaiting::Nothing) | None => {}
        }
    }

    /// The service connection `remote` is gone (HCS-API rule 36): every request awaiting
    /// a reply on it completes with `HCS_E_SERVICE_DISCONNECT`, and every handle made on it
    /// that has an event callback gets one `HcsEventServiceDisconnect`. Its handles stay
    /// valid to close; their other requests fail at once from now on.
    pub(crate) fn connection_lost(&self, remote: &Remote, reason: String) {
        if !remote.mark_lost(&reason) {
            return;
        }
        tracing::warn!(
            socket = %remote.socket.display(),
            generation = remote.generation,
            "lost the connection to the service: {reason}"
        );
        let message = remote.disconnect_message(&reason);
        let swept: Vec<(u64, Outstanding)> = {
            let mut awaiting = self.awaiting.lock();
            let ids: Vec<u64> = awaiting
                .iter()
                .filter(|(_, o)| o.connection == remote.generation)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| awaiting.remove(&id).map(|o| (id, o)))
                .collect()
        };
        for (id, outstanding) in swept {
            let result = HResult::HCS_E_SERVICE_DISCONNECT;
            let document = ResultError::from_failure(result, &message, outstanding.phase).to_json();
            let reply = Reply::new(id, result, Some(document));
            self.answer(Some(outstanding.awaiting), reply);
        }
        let handles = self
            .systems
            .snapshot()
            .into_iter()
            .chain(self.processes.snapshot());
        for handle in handles.filter(|h| h.link.is(remote)) {
            handle.service_disconnected(&self.dispatcher);
        }
    }

    /// Takes ownership of the std handles in a process create's reply: kept by the
    /// process handle, or closed at once when that handle is already closed.
    fn receive_std_handles(&self, process: u64, std_handles: hcs_protocol::StdHandles) {
        let fds = std_handles.into_fds();
        match self.processes.get(process) {
            Some(object) => object.std_handles.receive(fds),
            None => crate::std_handles::StdHandles::default().receive(fds),
        }
    }

    /// Records a completion and routes it (O-10, §4.3).
    fn complete(
        &self,
        op: &Arc<Operation>,
        generation: u64,
        result: HResult,
        document: Option<String>,
    ) {
        match op.complete(generation, result, document) {
            Route::Nobody => {}
            Route::Callback(generation) => {
                let op = Arc::clone(op);
                self.dispatcher.submit(move || op.run_callback(generation));
            }
            Route::Event(Some(target)) => {
                let handle = self
                    .systems
                    .get(target)
                    .or_else(|| self.processes.get(target));
                if let Some(handle) = handle {
                    handle.offer_completion(&self.dispatcher, op);
                }
            }
            Route::Event(None) => {}
        }
    }

    pub fn operation(&self, handle: HcsOperation) -> Option<Arc<Operation>> {
        if handle.0 == 0 {
            return None;
        }
        self.operations.get(handle.0)
    }

    pub fn system(&self, handle: HcsSystem) -> Option<Arc<HandleObject>> {
        if handle.0 == 0 {
            return None;
        }
        self.systems.get(handle.0)
    }

    pub fn process(&self, handle: HcsProcess) -> Option<Arc<HandleObject>> {
        if handle.0 == 0 {
            return None;
        }
        self.processes.get(handle.0)
    }
}
