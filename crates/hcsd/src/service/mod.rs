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
    Diagnostic, Failure, HostMessage, Notification, ProcessHandle, Reply, Request, RequestBody,
    SystemHandle, SystemRequest,
};
use hcs_schema::HResult;
use hcs_wire::{
    ClientMessage, FrameReader, FrameWriter, PeerCredentials, ServiceMessage, WireError,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
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
}

mod clients;
mod listen;
mod workers;

pub use listen::{activated_listener, bind, socket_path};
