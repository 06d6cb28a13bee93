//! The client: handle tables, the connection to a host, and the routing of the host's
//! replies and notifications to operations and system handles.
//!
//! One process-wide client (like `computecore.dll` in a Windows process) is created on
//! first use, with the embedded host: `hcs-host` running in this process on the built-in
//! VMM. Requests go out as [`hcs_host::Request`]s; replies come back through
//! [`ClientSink`], which records results and queues callbacks on the dispatcher — it never
//! runs user code itself.

use crate::dispatcher::Dispatcher;
use crate::handle_object::HandleObject;
use crate::operation::{Operation, Route};
use crate::types::{HcsOperation, HcsProcess, HcsSystem};
use hcs_host::{Host, HostMessage, MessageSink, Notification, Request, RequestBody, Session};
use hcs_schema::HResult;
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashMap;
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

/// The process's client state.
pub(crate) struct Client {
    pub operations: HandleTable<Operation>,
    pub systems: HandleTable<HandleObject>,
    pub processes: HandleTable<HandleObject>,
    pub dispatcher: Arc<Dispatcher>,
    awaiting: Mutex<HashMap<u64, Awaiting>>,
    next_request: AtomicU64,
    session: OnceLock<Session>,
    pub host: Host,
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

/// The process-wide client, created with the embedded host on first use.
pub(crate) fn client() -> &'static Arc<Client> {
    CLIENT.get_or_init(|| Client::new(Host::with_kvm()))
}

impl Client {
    fn new(host: Host) -> Arc<Client> {
        let client = Arc::new(Client {
            operations: HandleTable::new(),
            systems: HandleTable::new(),
            processes: HandleTable::new(),
            dispatcher: Arc::new(Dispatcher::new()),
            awaiting: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            session: OnceLock::new(),
            host: host.clone(),
        });
        let sink = Arc::new(ClientSink {
            client: Arc::downgrade(&client),
        });
        let _ = client.session.set(host.open_session(sink));
        client
    }

    fn send(&self, awaiting: Awaiting, body: RequestBody) -> u64 {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.awaiting.lock().insert(id, awaiting);
        // No lock of ours is held here: the host may answer from inside `send`.
        if let Some(session) = self.session.get() {
            session.send(Request { id, body });
        }
        id
    }

    /// Sends a request tracked by an armed operation.
    pub fn send_for_operation(&self, op: Arc<Operation>, generation: u64, body: RequestBody) {
        let new_process = match &body {
            RequestBody::System {
                request: hcs_host::SystemRequest::CreateProcess { process, .. },
                ..
            } => Some(*process),
            _ => None,
        };
        self.send(
            Awaiting::Operation {
                op,
                generation,
                new_process,
            },
            body,
        );
    }

    /// Sends a request and blocks for its reply.
    pub fn send_and_wait(&self, body: RequestBody) -> (HResult, Option<String>) {
        let slot = SyncSlot::new();
        self.send(Awaiting::Sync(Arc::clone(&slot)), body);
        slot.wait()
    }

    /// Sends a request whose reply nobody waits for.
    pub fn send_and_forget(&self, body: RequestBody) {
        self.send(Awaiting::Nothing, body);
    }

    fn on_message(&self, message: HostMessage) {
        match message {
            HostMessage::Reply(reply) => {
                let awaiting = self.awaiting.lock().remove(&reply.id);
                match awaiting {
                    Some(Awaiting::Operation {
                        op,
                        generation,
                        new_process,
                    }) => {
                        if let (Some(process), true) = (new_process, reply.result.succeeded()) {
                            self.receive_std_handles(process, reply.document.as_deref());
                        }
                        self.complete(&op, generation, reply.result, reply.document)
                    }
                    Some(Awaiting::Sync(slot)) => {
                        *slot.reply.lock() = Some((reply.result, reply.document));
                        slot.ready.notify_all();
                    }
                    Some(Awaiting::Nothing) | None => {}
                }
            }
            HostMessage::Notification(Notification::SystemExited { handle, status }) => {
                if let Some(system) = self.systems.get(handle) {
                    system.exited(&self.dispatcher, status);
                }
            }
            HostMessage::Notification(Notification::ProcessExited { handle, status }) => {
                if let Some(process) = self.processes.get(handle) {
                    process.exited(&self.dispatcher, status);
                }
            }
        }
    }

    /// Takes ownership of the std handles in a process create's reply: kept by the
    /// process handle, or closed at once when that handle is already closed.
    fn receive_std_handles(&self, process: u64, document: Option<&str>) {
        let Some((_, fds)) = document.and_then(crate::std_handles::parse_process_information)
        else {
            return;
        };
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
