//! The worker process: one compute system, in its own process.
//!
//! `hcsd` starts `hcsd worker --state-dir DIR --id ID` with one end of a socketpair as
//! descriptor 3. The worker runs an `hcs_host::Host` that will hold exactly one compute
//! system (so the VM's engine, its QEMU child or KVM descriptors, and its guest connection
//! live here, not in `hcsd`), and serves `hcsd`'s requests, one `Session` per client
//! session.
//!
//! When `hcsd` goes away (restart, crash) the worker keeps its VM running: the sessions
//! are abandoned (their handles released without ShouldTerminateOnLastHandleClosed taking
//! effect: the clients did not close anything) and the worker waits on its socket in the
//! state directory for the next `hcsd`. It exits once its system is gone and no session
//! holds a handle, after telling `hcsd` so ([`FromWorker::Idle`]).

use crate::state::{StateDir, WorkerRecord};
use crate::worker_protocol::{FromWorker, ToWorker};
use hcs_host::{Host, HostConfig, Session};
use hcs_protocol::{HostMessage, MessageSink};
use hcs_wire::FrameWriter;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The descriptor on which a worker finds its end of the socketpair.
pub const WORKER_FD: i32 = 3;

/// The connection to the current `hcsd`, if any.
#[derive(Default)]
struct Link {
    writer: Mutex<Option<FrameWriter>>,
}

impl Link {
    fn send(&self, message: &FromWorker, fds: &[OwnedFd]) {
        let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        if let Some(writer) = self.writer.lock().as_mut() {
            if let Err(error) = writer.send(message, &raw) {
                tracing::debug!(%error, "hcsd is not listening");
            }
        }
    }
}

/// Where one session's replies and notifications go: to `hcsd`, tagged with the session.
struct WorkerSink {
    session: u64,
    link: Arc<Link>,
}

impl MessageSink for WorkerSink {
    fn deliver(&self, mut message: HostMessage) {
        // A process create's std handles ride beside the frame.
        let fds = message.detach_fds();
        self.link.send(
            &FromWorker::Message {
                session: self.session,
                message,
            },
            &fds,
        );
        // `fds` drop here: hcsd has its own copies now.
    }
}

struct OpenSession {
    session: Session,
}

/// The worker's state.
struct Worker {
    id: String,
    host: Host,
    link: Arc<Link>,
    sessions: Mutex<HashMap<u64, Arc<OpenSession>>>,
    /// Set once `Idle` was sent: the worker is done.
    done: AtomicBool,
    /// Set by the first request of a client session (the create): until then the worker
    /// has no system yet and must not take hcsd's own requests (an enumeration racing
    /// the create) for idleness.
    engaged: AtomicBool,
    /// The current connection, to end its read loop when the worker is done.
    stream: Mutex<Option<UnixStream>>,
}

impl Worker {
    fn session(&self, number: u64) -> Arc<OpenSession> {
        let mut sessions = self.sessions.lock();
        Arc::clone(sessions.entry(number).or_insert_with(|| {
            let sink = Arc::new(WorkerSink {
                session: number,
                link: Arc::clone(&self.link),
            });
            let session = self.host.open_session(sink);
            Arc::new(OpenSession { session })
        }))
    }

    fn handle(&self, message: ToWorker) {
        match message {
            ToWorker::Request { session, request } => {
                if session != crate::worker_protocol::SERVICE_SESSION {
                    self.engaged.store(true, Ordering::SeqCst);
                }
                let open = self.session(session);
                // No lock of ours is held: the host may answer (and call the gone hook)
                // from inside `send`.
                open.session.send(request);
            }
            ToWorker::EndSession { session } => {
                let ended = self.sessions.lock().remove(&session);
                drop(ended); // Closes the session's handles (rule 28).
            }
        }
        self.check_idle();
    }

    /// Tells `hcsd` and ends the connection once nothing can reach this worker any more.
    fn check_idle(&self) {
        if !self.engaged.load(Ordering::SeqCst) || self.host.system_count() > 0 {
            return;
        }
        if !self.sessions.lock().values().all(|s| s.session.is_idle()) {
            return;
        }
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::debug!(id = %self.id, "worker idle: exiting");
        self.link.send(&FromWorker::Idle, &[]);
        if let Some(stream) = self.stream.lock().as_ref() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Serves one `hcsd` connection until it ends.
    fn serve(&self, stream: UnixStream) {
        let (mut reader, writer) = match hcs_wire::frame::split(stream) {
            Ok(halves) => halves,
            Err(error) => {
                tracing::warn!(%error, "cannot use the connection to hcsd");
                return;
            }
        };
        *self.stream.lock() = writer.stream().try_clone().ok();
        *self.link.writer.lock() = Some(writer);
        self.link.send(
            &FromWorker::Hello {
                id: self.id.clone(),
                pid: std::process::id(),
                system: self.host.system_count() > 0,
            },
            &[],
        );
        loop {
            match reader.recv::<ToWorker>() {
                Ok(Some((message, _fds))) => self.handle(message),
                Ok(None) => break,
                Err(error) => {
                    if !self.done.load(Ordering::SeqCst) {
                        tracing::warn!(%error, "connection to hcsd failed");
                    }
                    break;
                }
            }
            if self.done.load(Ordering::SeqCst) {
                break;
            }
        }
        *self.link.writer.lock() = None;
        *self.stream.lock() = None;
        if !self.done.load(Ordering::SeqCst) {
            // hcsd went away: its clients' connections went with it, but they closed
            // nothing. Release their handles without terminating anything.
            let sessions: Vec<Arc<OpenSession>> =
                self.sessions.lock().drain().map(|(_, s)| s).collect();
            for open in sessions {
                match Arc::try_unwrap(open) {
                    Ok(open) => open.session.abandon(),
                    Err(shared) => drop(shared),
                }
            }
        }
    }
}

/// Runs a worker for compute system `id`; returns when the worker is done.
pub fn run(state: StateDir, host: HostConfig, id: String, first: OwnedFd) -> std::io::Result<()> {
    // A session of its own: the terminal's and hcsd's process-group signals (Ctrl-C,
    // systemd stopping hcsd with KillMode=process) do not reach the VMs.
    let _ = nix::unistd::setsid();
    let pid = std::process::id();
    let socket = state.worker_socket(pid);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    listener.set_nonblocking(true)?;
    state.write_record(&WorkerRecord {
        pid,
        id: id.clone(),
        socket: socket.clone(),
    })?;
    let worker = Arc::new(Worker {
        id,
        host: Host::with_default_engines(host),
        link: Arc::new(Link::default()),
        sessions: Mutex::new(HashMap::new()),
        done: AtomicBool::new(false),
        engaged: AtomicBool::new(false),
        stream: Mutex::new(None),
    });
    let weak = Arc::downgrade(&worker);
    worker.host.on_system_gone(move |_| {
        if let Some(worker) = weak.upgrade() {
            worker.link.send(&FromWorker::SystemGone, &[]);
            // Checked on another thread: the hook may run inside a session's `send`.
            std::thread::spawn(move || worker.check_idle());
        }
    });
    let mut next = Some(UnixStream::from(first));
    loop {
        if let Some(stream) = next.take() {
            worker.serve(stream);
        }
        if worker.done.load(Ordering::SeqCst) || worker.host.system_count() == 0 {
            break;
        }
        // Detached: wait for the next hcsd, and leave if the system goes meanwhile.
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                tracing::info!(id = %worker.id, "hcsd reconnected");
                next = Some(stream);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => {
                tracing::warn!(%error, "worker socket failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    state.remove(pid);
    Ok(())
}
