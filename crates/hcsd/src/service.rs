//! The service: the listening socket, client connections, and the routing of requests to
//! workers.
//!
//! Every client connection is one session. A request about a compute system goes to the
//! worker its handle is bound to (create binds to a new worker, open to the worker of the
//! id); what belongs to no system (enumeration, service properties, counts) is answered
//! here. Replies and notifications come back from workers tagged with the session; the
//! thread that reads them writes them to the client's socket itself, without blocking
//! (what the socket does not take waits for the client's writer thread: `client_out`), so
//! a slow client never stalls a worker.
//!
//! When a worker dies without saying it is done, every handle bound to it is told its
//! system exited (`UnexpectedExit`), its processes' handles that they were lost, and its
//! pending requests fail with `HCS_E_UNEXPECTED_EXIT`; later requests on those handles get
//! the answers of a stopped system (HCS-API rule 27).

use crate::client_out::{ClientOut, Pushed};
use crate::link::WorkerLink;
use crate::state::StateDir;
use crate::worker_protocol::{FromWorker, ToWorker, SERVICE_SESSION};
use hcs_protocol::{
    Diagnostic, Failure, HostMessage, Notification, ProcessHandle, ProcessRequest, Reply, Request,
    RequestBody, SystemHandle, SystemRequest,
};
use hcs_schema::HResult;
use hcs_wire::{
    ClientMessage, FrameReader, FrameWriter, PeerCredentials, ServiceMessage, WireError,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a new connection has to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How many messages may wait for a client that does not read before it is dropped.
const CLIENT_QUEUE: usize = 65_536;

/// How long `hcsd` waits for a worker's answer to its own requests.
const WORKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the service is started with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The state directory.
    pub state: StateDir,
    /// The group whose members may connect (besides root and hcsd's own user); `None`
    /// when the group does not exist.
    pub group: Option<(String, u32)>,
    /// The settings of every worker's host (read once by `hcsd`, passed to each worker).
    pub host: hcs_host::HostConfig,
}

/// The running service.
#[derive(Clone)]
pub struct Service {
    router: Arc<Router>,
}

enum Entry {
    /// A create is starting the system's worker.
    Reserved,
    Live(Arc<WorkerLink>),
}

struct Router {
    config: Config,
    /// Answers what concerns no system, with the workers' settings.
    host: hcs_host::Host,
    registry: Mutex<HashMap<String, Entry>>,
    workers: Mutex<HashMap<u32, Arc<WorkerLink>>>,
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    next_session: AtomicU64,
}

/// A process handle's binding.
struct ProcessBinding {
    link: Arc<WorkerLink>,
    /// Known once the create's reply passed (or from the open request).
    pid: Option<u32>,
    /// The handle has been told its process ended.
    exited: bool,
}

/// What a pending request was, for bookkeeping when its reply passes, and for answering
/// it if its worker dies first.
enum Pending {
    CreateSystem,
    OpenSystem(SystemHandle),
    CreateProcess(ProcessHandle),
    OpenProcess(ProcessHandle),
    Other(&'static str),
}

#[derive(Default)]
struct ClientState {
    /// System handles: `None` for a handle whose create hcsd refused (it names nothing).
    systems: HashMap<SystemHandle, Option<Arc<WorkerLink>>>,
    processes: HashMap<ProcessHandle, ProcessBinding>,
    holds: HashMap<u64, Arc<WorkerLink>>,
    pending: HashMap<u64, (Arc<WorkerLink>, Pending)>,
    /// Every worker this session reached: told when the session ends.
    touched: HashMap<u32, Arc<WorkerLink>>,
}

struct Client {
    session: u64,
    peer: PeerCredentials,
    out: Arc<ClientOut>,
    state: Mutex<ClientState>,
}

impl Drop for Client {
    fn drop(&mut self) {
        // The writer thread sends what still waits, then lets the socket go.
        self.out.close();
    }
}

impl Client {
    fn push(&self, message: ServiceMessage, fds: Vec<OwnedFd>) {
        if self.out.push(&message, fds) == Pushed::Overflow {
            tracing::warn!(
                session = self.session,
                pid = self.peer.pid,
                "client does not read its messages: disconnecting it"
            );
        }
    }

    fn host(&self, message: HostMessage) {
        self.push(ServiceMessage::Host(message), Vec::new());
    }

    fn reply(&self, id: u64, outcome: Result<Option<String>, Failure>, phase: &str) {
        self.host(HostMessage::Reply(Reply::outcome(id, outcome, phase)));
    }
}

impl Service {
    /// A service on `config`, with the workers a previous `hcsd` left running found again.
    pub fn new(config: Config) -> Service {
        let service = Service {
            router: Arc::new(Router {
                host: hcs_host::Host::with_default_engines(config.host.clone()),
                config,
                registry: Mutex::new(HashMap::new()),
                workers: Mutex::new(HashMap::new()),
                clients: Mutex::new(HashMap::new()),
                next_session: AtomicU64::new(1),
            }),
        };
        service.recover();
        service
    }

    /// Finds the workers of the state directory again.
    fn recover(&self) {
        let state = &self.router.config.state;
        for record in state.records() {
            match WorkerLink::reconnect(&record) {
                Ok((link, reader, true)) => {
                    tracing::info!(id = %link.id, pid = link.pid, "found running compute system");
                    self.router
                        .registry
                        .lock()
                        .insert(link.id.clone(), Entry::Live(Arc::clone(&link)));
                    self.router.adopt(link, reader);
                }
                Ok((link, _reader, false)) => {
                    // Its system is gone; dropping the connection lets it exit.
                    tracing::info!(id = %link.id, pid = link.pid, "worker without a system: letting it go");
                }
                Err(error) => {
                    tracing::info!(pid = record.pid, %error, "stale worker record removed");
                    state.remove(record.pid);
                }
            }
        }
    }

    /// Serves `listener` until the process ends.
    pub fn serve(&self, listener: UnixListener) {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    let router = Arc::clone(&self.router);
                    let spawned = std::thread::Builder::new()
                        .name("hcsd-client".into())
                        .spawn(move || router.serve_client(stream));
                    if let Err(error) = spawned {
                        tracing::error!(%error, "no thread for a client");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Tells every client the service is stopping (their pending operations complete
    /// with `HCS_E_SERVICE_DISCONNECT` on their side). Workers keep running.
    pub fn shut_down(&self) {
        let clients: Vec<Arc<Client>> = self.router.clients.lock().values().cloned().collect();
        for client in &clients {
            client.push(
                ServiceMessage::Closing {
                    result: HResult::HCS_E_SERVICE_DISCONNECT,
                    message: "hcsd is stopping; its compute systems keep running".into(),
                },
                Vec::new(),
            );
        }
        // Give the writers a moment to flush.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// How many workers (compute systems' processes) this service knows.
    pub fn worker_count(&self) -> usize {
        self.router.workers.lock().len()
    }
}

impl Router {
    fn adopt(self: &Arc<Self>, link: Arc<WorkerLink>, reader: FrameReader) {
        self.workers.lock().insert(link.pid, Arc::clone(&link));
        let router = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("hcsd-worker-{}", link.pid))
            .spawn(move || router.serve_worker(link, reader));
        if let Err(error) = spawned {
            tracing::error!(%error, "no thread for a worker");
        }
    }

    // -----------------------------------------------------------------------------------
    // Clients

    fn allowed(&self, peer: &PeerCredentials) -> bool {
        if peer.uid == 0 || peer.uid == nix::unistd::geteuid().as_raw() {
            return true;
        }
        match &self.config.group {
            Some((_, gid)) => peer.gid == *gid || hcs_wire::peer::process_in_group(peer.pid, *gid),
            None => false,
        }
    }

    fn serve_client(self: Arc<Self>, stream: UnixStream) {
        let peer = match hcs_wire::peer_credentials(&stream) {
            Ok(peer) => peer,
            Err(error) => {
                tracing::warn!(%error, "cannot identify a client: closing");
                return;
            }
        };
        let Ok((mut reader, mut writer)) = hcs_wire::frame::split(stream) else {
            return;
        };
        let _ = reader.stream().set_read_timeout(Some(HELLO_TIMEOUT));
        let refuse = |writer: &mut FrameWriter, result: HResult, message: String| {
            tracing::warn!(uid = peer.uid, pid = peer.pid, %message, "client refused");
            let _ = writer.send(&ServiceMessage::Refused { result, message }, &[]);
        };
        let client_name = match reader.recv::<ClientMessage>() {
            Ok(Some((ClientMessage::Hello { versions, client }, _))) => {
                if !versions.contains(&hcs_wire::PROTOCOL_VERSION) {
                    return refuse(
                        &mut writer,
                        HResult::HCS_E_UNSUPPORTED_PROTOCOL_VERSION,
                        format!(
                            "this hcsd speaks protocol version {}; the client offered {versions:?}",
                            hcs_wire::PROTOCOL_VERSION
                        ),
                    );
                }
                client
            }
            Ok(Some(_)) => {
                return refuse(
                    &mut writer,
                    HResult::HCS_E_PROTOCOL_ERROR,
                    "the first message must be Hello".into(),
                )
            }
            Ok(None) => return,
            Err(error) => {
                return refuse(
                    &mut writer,
                    HResult::HCS_E_PROTOCOL_ERROR,
                    format!("bad hello: {error}"),
                )
            }
        };
        if !self.allowed(&peer) {
            let group = self
                .config
                .group
                .as_ref()
                .map(|(name, _)| name.as_str())
                .unwrap_or("hcs");
            return refuse(
                &mut writer,
                HResult::HCS_E_ACCESS_DENIED,
                format!(
                    "user {} (pid {}) may not use hcsd: only root and members of the group \
                     '{group}' may (add the user with `usermod -aG {group} USER`, then log in \
                     again)",
                    peer.uid, peer.pid
                ),
            );
        }
        let _ = reader.stream().set_read_timeout(None);
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let Ok(out) = ClientOut::start(writer, CLIENT_QUEUE) else {
            return;
        };
        let client = Arc::new(Client {
            session,
            peer,
            out,
            state: Mutex::new(ClientState::default()),
        });
        client.push(
            ServiceMessage::Welcome {
                version: hcs_wire::PROTOCOL_VERSION,
                service: format!("hcsd {}", env!("CARGO_PKG_VERSION")),
                pid: std::process::id(),
            },
            Vec::new(),
        );
        self.clients.lock().insert(session, Arc::clone(&client));
        tracing::info!(session, uid = peer.uid, pid = peer.pid, client = %client_name, "client connected");
        loop {
            match reader.recv::<ClientMessage>() {
                Ok(Some((ClientMessage::Request(request), _fds))) => {
                    tracing::info!(
                        target: "hcsd::request",
                        session,
                        uid = peer.uid,
                        pid = peer.pid,
                        id = request.id,
                        request = request.body.phase(),
                    );
                    self.route(&client, request);
                }
                Ok(Some((ClientMessage::Hello { .. }, _))) => {
                    self.drop_client(&client, HResult::HCS_E_PROTOCOL_ERROR, "a second Hello");
                    break;
                }
                Ok(None) => break,
                Err(WireError::Io(_)) => break,
                Err(error) => {
                    self.drop_client(&client, HResult::HCS_E_PROTOCOL_ERROR, &error.to_string());
                    break;
                }
            }
        }
        self.end_client(&client);
    }

    fn drop_client(&self, client: &Client, result: HResult, why: &str) {
        tracing::warn!(
            session = client.session,
            uid = client.peer.uid,
            pid = client.peer.pid,
            why,
            "closing a client connection"
        );
        client.push(
            ServiceMessage::Closing {
                result,
                message: format!("hcsd closed this connection: {why}"),
            },
            Vec::new(),
        );
    }

    /// A client left: every worker it reached closes its handles (rule 28).
    fn end_client(&self, client: &Arc<Client>) {
        self.clients.lock().remove(&client.session);
        let touched: Vec<Arc<WorkerLink>> = std::mem::take(&mut client.state.lock().touched)
            .into_values()
            .collect();
        for link in touched {
            link.send(&ToWorker::EndSession {
                session: client.session,
            });
        }
        tracing::info!(
            session = client.session,
            pid = client.peer.pid,
            "client disconnected"
        );
        // The writer thread ends when the last reference to the client is dropped.
    }

    /// Sends `request` to `link` for `client`, remembering it as pending.
    fn forward(&self, client: &Client, link: &Arc<WorkerLink>, request: Request, pending: Pending) {
        let id = request.id;
        {
            let mut state = client.state.lock();
            state.pending.insert(id, (Arc::clone(link), pending));
            state.touched.insert(link.pid, Arc::clone(link));
        }
        let sent = link.send(&ToWorker::Request {
            session: client.session,
            request,
        });
        if !sent {
            // The worker is gone: answer as for a stopped system, unless the link's own
            // end already did.
            let pending = client.state.lock().pending.remove(&id);
            if let Some((_, pending)) = pending {
                client.host(stopped_reply(id, &pending, link));
            }
        }
    }

    fn route(self: &Arc<Self>, client: &Arc<Client>, request: Request) {
        let Request { id, body } = request;
        match body {
            RequestBody::CreateSystem {
                handle,
                id: system_id,
                configuration,
            } => self.create(client, id, handle, system_id, configuration),
            RequestBody::OpenSystem {
                handle,
                id: system_id,
            } => {
                let link = match self.registry.lock().get(&system_id) {
                    Some(Entry::Live(link)) => Some(Arc::clone(link)),
                    _ => None,
                };
                match link {
                    Some(link) => {
                        client
                            .state
                            .lock()
                            .systems
                            .insert(handle, Some(Arc::clone(&link)));
                        let body = RequestBody::OpenSystem {
                            handle,
                            id: system_id,
                        };
                        self.forward(
                            client,
                            &link,
                            Request { id, body },
                            Pending::OpenSystem(handle),
                        );
                    }
                    None => client.reply(
                        id,
                        Err(Failure::new(
                            HResult::HCS_E_SYSTEM_NOT_FOUND,
                            format!("no compute system with id '{system_id}' exists"),
                        )),
                        "Open",
                    ),
                }
            }
            RequestBody::CloseSystem { handle } => {
                let bound = client.state.lock().systems.remove(&handle);
                match bound {
                    Some(Some(link)) if !link.dead.load(Ordering::SeqCst) => {
                        let body = RequestBody::CloseSystem { handle };
                        self.forward(client, &link, Request { id, body }, Pending::Other("Close"));
                    }
                    _ => client.reply(id, Ok(None), "Close"),
                }
            }
            RequestBody::System { handle, request } => {
                let bound = client.state.lock().systems.get(&handle).cloned();
                match bound {
                    Some(Some(link)) => {
                        let pending = match &request {
                            SystemRequest::CreateProcess { process, .. } => {
                                client.state.lock().processes.insert(
                                    *process,
                                    ProcessBinding {
                                        link: Arc::clone(&link),
                                        pid: None,
                                        exited: false,
                                    },
                                );
                                Pending::CreateProcess(*process)
                            }
                            other => Pending::Other(other.phase()),
                        };
                        if link.dead.load(Ordering::SeqCst) {
                            client.host(stopped_reply(id, &pending, &link));
                            return;
                        }
                        let body = RequestBody::System { handle, request };
                        self.forward(client, &link, Request { id, body }, pending);
                    }
                    Some(None) => client.reply(
                        id,
                        Err(Failure::new(
                            HResult::HCS_E_SYSTEM_NOT_FOUND,
                            "this handle's compute system was never created: its create failed",
                        )),
                        request.phase(),
                    ),
                    None => client.reply(
                        id,
                        Err(Failure::new(
                            HResult::E_HANDLE,
                            format!("system handle {handle} is not open in this session"),
                        )),
                        request.phase(),
                    ),
                }
            }
            RequestBody::OpenProcess {
                system,
                process,
                pid,
            } => {
                let bound = client.state.lock().systems.get(&system).cloned();
                match bound {
                    Some(Some(link)) if !link.dead.load(Ordering::SeqCst) => {
                        client.state.lock().processes.insert(
                            process,
                            ProcessBinding {
                                link: Arc::clone(&link),
                                pid: Some(pid),
                                exited: false,
                            },
                        );
                        let body = RequestBody::OpenProcess {
                            system,
                            process,
                            pid,
                        };
                        self.forward(
                            client,
                            &link,
                            Request { id, body },
                            Pending::OpenProcess(process),
                        );
                    }
                    Some(_) => client.reply(
                        id,
                        Err(Failure::new(
                            HResult::HCS_E_SYSTEM_NOT_FOUND,
                            "this handle's compute system does not exist any more",
                        )),
                        "OpenProcess",
                    ),
                    None => client.reply(
                        id,
                        Err(Failure::new(
                            HResult::E_HANDLE,
                            format!("system handle {system} is not open in this session"),
                        )),
                        "OpenProcess",
                    ),
                }
            }
            RequestBody::CloseProcess { handle } => {
                let bound = client.state.lock().processes.remove(&handle);
                match bound {
                    Some(binding) if !binding.link.dead.load(Ordering::SeqCst) => {
                        let body = RequestBody::CloseProcess { handle };
                        self.forward(
                            client,
                            &binding.link,
                            Request { id, body },
                            Pending::Other("CloseProcess"),
                        );
                    }
                    _ => client.reply(id, Ok(None), "CloseProcess"),
                }
            }
            RequestBody::Process { handle, request } => {
                let bound = client
                    .state
                    .lock()
                    .processes
                    .get(&handle)
                    .map(|b| (Arc::clone(&b.link), b.pid));
                match bound {
                    Some((link, _)) if !link.dead.load(Ordering::SeqCst) => {
                        let phase = request.phase();
                        let body = RequestBody::Process { handle, request };
                        self.forward(client, &link, Request { id, body }, Pending::Other(phase));
                    }
                    Some((_, pid)) => {
                        client.reply(id, lost_process_answer(&request, pid), request.phase())
                    }
                    None => client.reply(
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
            RequestBody::Diagnostic(Diagnostic::HoldSystem { handle, hold })
                if self.config.host.test_hooks =>
            {
                let bound = client.state.lock().systems.get(&handle).cloned().flatten();
                match bound {
                    Some(link) if !link.dead.load(Ordering::SeqCst) => {
                        client.state.lock().holds.insert(hold, Arc::clone(&link));
                        let body = RequestBody::Diagnostic(Diagnostic::HoldSystem { handle, hold });
                        self.forward(
                            client,
                            &link,
                            Request { id, body },
                            Pending::Other("HoldSystem"),
                        );
                    }
                    _ => client.reply(
                        id,
                        Err(Failure::new(
                            HResult::HCS_E_SYSTEM_NOT_FOUND,
                            "no running compute system to hold",
                        )),
                        "HoldSystem",
                    ),
                }
            }
            RequestBody::Diagnostic(Diagnostic::ReleaseHold { hold })
                if self.config.host.test_hooks =>
            {
                let link = client.state.lock().holds.remove(&hold);
                match link {
                    Some(link) if !link.dead.load(Ordering::SeqCst) => {
                        let body = RequestBody::Diagnostic(Diagnostic::ReleaseHold { hold });
                        self.forward(
                            client,
                            &link,
                            Request { id, body },
                            Pending::Other("ReleaseHold"),
                        );
                    }
                    _ => client.reply(id, Ok(None), "ReleaseHold"),
                }
            }
            RequestBody::Enumerate { query } => {
                let outcome = self.enumerate(query);
                client.reply(id, outcome, "Enumerate");
            }
            RequestBody::Diagnostic(Diagnostic::LiveCounts) if self.config.host.test_hooks => {
                let outcome = self.live_counts();
                client.reply(id, outcome, "LiveCounts");
            }
            RequestBody::Diagnostic(diagnostic) => client.reply(
                id,
                Err(hcs_host::refusals::test_hooks_disabled(diagnostic.phase())),
                diagnostic.phase(),
            ),

            // What concerns no system is answered by a host with the workers' settings,
            // exactly as a worker (or the embedded host) answers it.
            body @ (RequestBody::ValidateDocument { .. }
            | RequestBody::ComPortSocket { .. }
            | RequestBody::GetServiceProperties { .. }
            | RequestBody::ModifyServiceSettings { .. }
            | RequestBody::SubmitWerReport { .. }) => {
                if let Some(outcome) = self.host.answer_at_once(&body) {
                    client.reply(id, outcome, body.phase());
                }
            }
        }
    }

    fn create(
        self: &Arc<Self>,
        client: &Arc<Client>,
        id: u64,
        handle: SystemHandle,
        system_id: String,
        configuration: String,
    ) {
        // What can be refused without a worker is refused here, in the embedded host's
        // order (JSON, then id in use): a bad document never costs a process. Host
        // limits are checked by the worker's engine.
        let refused = (|| -> Result<(), Failure> {
            hcs_schema::parse_compute_system(&configuration, &hcs_schema::Limits::unbounded())?;
            let mut registry = self.registry.lock();
            if registry.contains_key(&system_id) {
                return Err(Failure::new(
                    HResult::HCS_E_SYSTEM_ALREADY_EXISTS,
                    format!("a compute system with id '{system_id}' already exists"),
                ));
            }
            registry.insert(system_id.clone(), Entry::Reserved);
            Ok(())
        })();
        if let Err(failure) = refused {
            client.state.lock().systems.insert(handle, None);
            client.reply(id, Err(failure), "Construct");
            return;
        }
        let link = match WorkerLink::spawn(&self.config.state, &self.config.host, &system_id) {
            Ok((link, reader)) => {
                link.system_alive.store(true, Ordering::SeqCst);
                self.adopt(Arc::clone(&link), reader);
                link
            }
            Err(error) => {
                self.registry.lock().remove(&system_id);
                client.state.lock().systems.insert(handle, None);
                client.reply(
                    id,
                    Err(Failure::new(
                        HResult::E_FAIL,
                        format!("hcsd could not start a worker process for '{system_id}': {error}"),
                    )),
                    "Construct",
                );
                return;
            }
        };
        tracing::info!(id = %system_id, worker = link.pid, "worker started");
        client
            .state
            .lock()
            .systems
            .insert(handle, Some(Arc::clone(&link)));
        let body = RequestBody::CreateSystem {
            handle,
            id: system_id.clone(),
            configuration,
        };
        // Registered before the create is forwarded, so that a failed create's reply
        // always finds the entry to remove. An enumeration that reaches the worker
        // before the create finds no system there (and does not end the worker).
        self.registry
            .lock()
            .insert(system_id, Entry::Live(Arc::clone(&link)));
        self.forward(client, &link, Request { id, body }, Pending::CreateSystem);
    }

    fn live_links(&self) -> Vec<Arc<WorkerLink>> {
        self.registry
            .lock()
            .values()
            .filter_map(|e| match e {
                Entry::Live(link) => Some(Arc::clone(link)),
                Entry::Reserved => None,
            })
            .collect()
    }

    /// `HcsEnumerateComputeSystems`: each live worker answers for its system.
    fn enumerate(&self, query: Option<String>) -> Result<Option<String>, Failure> {
        if let Some(query) = &query {
            hcs_schema::parse::<hcs_schema::SystemQuery>(query)?;
        }
        let calls: Vec<_> = self
            .live_links()
            .into_iter()
            .map(|link| {
                let rx = link.call(RequestBody::Enumerate {
                    query: query.clone(),
                });
                (link, rx)
            })
            .collect();
        let mut items: Vec<serde_json::Value> = Vec::new();
        for (link, rx) in calls {
            match rx.recv_timeout(WORKER_CALL_TIMEOUT) {
                Ok(reply) if reply.result.succeeded() => {
                    if let Some(serde_json::Value::Array(found)) = reply
                        .document
                        .as_deref()
                        .and_then(|d| serde_json::from_str(d).ok())
                    {
                        items.extend(found);
                    }
                }
                Ok(_) => {}
                Err(_) => tracing::warn!(?link, "worker did not answer an enumeration"),
            }
        }
        items.sort_by(|a, b| a["Id"].as_str().cmp(&b["Id"].as_str()));
        serde_json::to_string(&items)
            .map(Some)
            .map_err(|e| Failure::new(HResult::E_UNEXPECTED, e.to_string()))
    }

    /// Diagnostics: systems and VMs summed over the workers.
    fn live_counts(&self) -> Result<Option<String>, Failure> {
        let links: Vec<Arc<WorkerLink>> = self.workers.lock().values().cloned().collect();
        let calls: Vec<_> = links
            .iter()
            .map(|link| link.call(RequestBody::Diagnostic(Diagnostic::LiveCounts)))
            .collect();
        let (mut systems, mut vms) = (0u64, 0u64);
        for rx in calls {
            if let Ok(reply) = rx.recv_timeout(WORKER_CALL_TIMEOUT) {
                if let Some(counts) = reply
                    .document
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                {
                    systems += counts["Systems"].as_u64().unwrap_or(0);
                    vms += counts["Vms"].as_u64().unwrap_or(0);
                }
            }
        }
        Ok(Some(
            serde_json::json!({ "Systems": systems, "Vms": vms }).to_string(),
        ))
    }

    // -----------------------------------------------------------------------------------
    // Workers

    fn serve_worker(self: Arc<Self>, link: Arc<WorkerLink>, mut reader: FrameReader) {
        loop {
            match reader.recv::<FromWorker>() {
                Ok(Some((FromWorker::Message { session, message }, fds))) => {
                    self.on_worker_message(&link, session, message, fds)
                }
                Ok(Some((FromWorker::SystemGone, _))) => {
                    link.system_alive.store(false, Ordering::SeqCst);
                    self.unregister(&link);
                }
                Ok(Some((FromWorker::Idle, _))) => {
                    link.idle.store(true, Ordering::SeqCst);
                }
                Ok(Some((FromWorker::Hello { .. }, _))) => {}
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(?link, %error, "worker connection failed");
                    break;
                }
            }
        }
        self.worker_ended(&link);
    }

    fn unregister(&self, link: &Arc<WorkerLink>) {
        let mut registry = self.registry.lock();
        if matches!(registry.get(&link.id), Some(Entry::Live(l)) if Arc::ptr_eq(l, link)) {
            registry.remove(&link.id);
        }
    }

    fn on_worker_message(
        &self,
        link: &Arc<WorkerLink>,
        session: u64,
        message: HostMessage,
        fds: Vec<OwnedFd>,
    ) {
        if session == SERVICE_SESSION {
            if let HostMessage::Reply(reply) = message {
                link.internal_reply(reply);
            }
            return;
        }
        let Some(client) = self.clients.lock().get(&session).cloned() else {
            return; // The client left; its descriptors close here.
        };
        let mut create_failed = false;
        {
            let mut state = client.state.lock();
            match &message {
                HostMessage::Reply(reply) => {
                    if let Some((_, pending)) = state.pending.remove(&reply.id) {
                        let failed = reply.result.failed();
                        match pending {
                            Pending::CreateSystem if failed => create_failed = true,
                            Pending::OpenSystem(handle) if failed => {
                                state.systems.remove(&handle);
                            }
                            Pending::OpenProcess(process) if failed => {
                                state.processes.remove(&process);
                            }
                            Pending::CreateProcess(process) if !failed => {
                                let pid = reply.process.as_ref().map(|p| p.pid);
                                if let Some(binding) = state.processes.get_mut(&process) {
                                    binding.pid = pid;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                HostMessage::Notification(Notification::ProcessExited { handle, .. }) => {
                    if let Some(binding) = state.processes.get_mut(handle) {
                        binding.exited = true;
                    }
                }
                HostMessage::Notification(
                    Notification::SystemExited { .. } | Notification::GuestConnectionClosed { .. },
                ) => {}
            }
        }
        if create_failed {
            // The id is free again (the worker leaves once the handle is closed).
            self.unregister(link);
        }
        client.push(ServiceMessage::Host(message), fds);
    }

    /// A worker's connection ended: cleanly after `Idle`, or because it died.
    fn worker_ended(&self, link: &Arc<WorkerLink>) {
        let was_alive = link.system_alive.swap(false, Ordering::SeqCst);
        let how = link.end();
        self.workers.lock().remove(&link.pid);
        self.unregister(link);
        self.config.state.remove(link.pid);
        let crashed = !link.idle.load(Ordering::SeqCst);
        if crashed {
            tracing::warn!(
                ?link,
                how = how.as_deref().unwrap_or("lost its connection"),
                "worker process ended unexpectedly: its compute system is gone"
            );
        } else {
            tracing::debug!(?link, "worker exited");
        }
        let clients: Vec<Arc<Client>> = self.clients.lock().values().cloned().collect();
        for client in clients {
            let (notifications, replies) = {
                let mut state = client.state.lock();
                let mut notifications = Vec::new();
                if crashed && was_alive {
                    for (handle, bound) in &state.systems {
                        if bound.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
                            notifications.push(Notification::SystemExited {
                                handle: *handle,
                                status: hcs_host::worker_lost_exit_status(),
                            });
                        }
                    }
                }
                for (handle, binding) in state.processes.iter_mut() {
                    if Arc::ptr_eq(&binding.link, link) && !binding.exited {
                        if let Some(pid) = binding.pid {
                            binding.exited = true;
                            notifications.push(Notification::ProcessExited {
                                handle: *handle,
                                status: hcs_host::lost_status_document(
                                    pid,
                                    HResult::HCS_E_UNEXPECTED_EXIT,
                                ),
                            });
                        }
                    }
                }
                let ids: Vec<u64> = state
                    .pending
                    .iter()
                    .filter(|(_, (l, _))| Arc::ptr_eq(l, link))
                    .map(|(id, _)| *id)
                    .collect();
                let mut replies = Vec::new();
                for id in ids {
                    if let Some((_, pending)) = state.pending.remove(&id) {
                        replies.push(if crashed {
                            crashed_reply(id, &pending, link, how.as_deref())
                        } else {
                            stopped_reply(id, &pending, link)
                        });
                    }
                }
                state.touched.remove(&link.pid);
                (notifications, replies)
            };
            // Exits first: a request's reply comes after the exit it caused (rule 53).
            for notification in notifications {
                client.host(HostMessage::Notification(notification));
            }
            for reply in replies {
                client.host(reply);
            }
        }
    }
}

/// The answer to a request on a system whose worker has exited cleanly (rule 27).
fn stopped_reply(id: u64, pending: &Pending, link: &WorkerLink) -> HostMessage {
    let (result, phase) = match pending {
        Pending::Other(phase @ ("Close" | "CloseProcess" | "ReleaseHold")) => {
            return HostMessage::Reply(Reply::outcome(id, Ok(None), phase))
        }
        Pending::Other(phase @ ("Shutdown" | "Terminate")) => {
            (HResult::HCS_E_SYSTEM_ALREADY_STOPPED, *phase)
        }
        Pending::Other(phase) => (HResult::HCS_E_SYSTEM_NOT_FOUND, *phase),
        Pending::CreateSystem => (HResult::HCS_E_SYSTEM_NOT_FOUND, "Construct"),
        Pending::OpenSystem(_) => (HResult::HCS_E_SYSTEM_NOT_FOUND, "Open"),
        Pending::CreateProcess(_) => (HResult::HCS_E_SYSTEM_NOT_FOUND, "CreateProcess"),
        Pending::OpenProcess(_) => (HResult::HCS_E_SYSTEM_NOT_FOUND, "OpenProcess"),
    };
    HostMessage::Reply(Reply::outcome(
        id,
        Err(Failure::new(
            result,
            format!("compute system '{}' has stopped", link.id),
        )),
        phase,
    ))
}

/// The answer to a request pending when its system's worker died.
fn crashed_reply(id: u64, pending: &Pending, link: &WorkerLink, how: Option<&str>) -> HostMessage {
    let phase = match pending {
        Pending::Other(phase @ ("Close" | "CloseProcess" | "ReleaseHold")) => {
            return HostMessage::Reply(Reply::outcome(id, Ok(None), phase))
        }
        Pending::Other(phase) => phase,
        Pending::CreateSystem => "Construct",
        Pending::OpenSystem(_) => "Open",
        Pending::CreateProcess(_) => "CreateProcess",
        Pending::OpenProcess(_) => "OpenProcess",
    };
    HostMessage::Reply(Reply::outcome(
        id,
        Err(Failure::new(
            HResult::HCS_E_UNEXPECTED_EXIT,
            format!(
                "the worker process {} of compute system '{}' {}; the compute system is gone",
                link.pid,
                link.id,
                how.unwrap_or("ended unexpectedly")
            ),
        )),
        phase,
    ))
}

/// What a request on a process of a system that is gone answers.
fn lost_process_answer(
    request: &ProcessRequest,
    pid: Option<u32>,
) -> Result<Option<String>, Failure> {
    match (request, pid) {
        (ProcessRequest::GetInfo, Some(pid)) => {
            Ok(Some(serde_json::json!({ "ProcessId": pid }).to_string()))
        }
        (ProcessRequest::GetProperties(_), Some(pid)) => Ok(Some(hcs_host::lost_status_document(
            pid,
            HResult::HCS_E_UNEXPECTED_EXIT,
        ))),
        _ => Err(Failure::new(
            HResult::HCS_E_PROCESS_ALREADY_STOPPED,
            "the process's compute system is gone",
        )),
    }
}

/// Binds the service's socket at `path`: the parent directory is created, a stale socket
/// (nobody answers) is replaced, the mode is 0660 and, with `group`, its group is set.
pub fn bind(path: &std::path::Path, group: Option<u32>) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another hcsd already listens on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(hcs_wire::peer::gid(gid)))
            .map_err(std::io::Error::from)?;
    }
    Ok(listener)
}

/// The listener systemd passed (socket activation: `LISTEN_PID` is this process and
/// `LISTEN_FDS` at least 1), if any.
pub fn activated_listener() -> Option<UnixListener> {
    use std::os::fd::FromRawFd;
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    // SAFETY: systemd passes the listening socket as descriptor 3 (SD_LISTEN_FDS_START)
    // to this process alone (LISTEN_PID checked), and nothing else here has taken it.
    let listener = unsafe { UnixListener::from_raw_fd(3) };
    // Not inherited by workers.
    // SAFETY: plain fcntl on a descriptor this process owns.
    unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(listener)
}

/// The socket path from `--socket`, else `$HCS_SOCKET`, else the default.
pub fn socket_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(hcs_wire::socket_path)
}
