//! `hcsd`'s end of one worker process: starting it (or finding it again after a
//! restart), sending it requests, and its own requests' replies (session 0).

use crate::state::{StateDir, WorkerRecord};
use crate::worker::WORKER_FD;
use crate::worker_protocol::{FromWorker, ToWorker, SERVICE_SESSION};
use crossbeam_channel::{Receiver, Sender};
use hcs_protocol::{Reply, Request, RequestBody};
use hcs_wire::{FrameReader, FrameWriter};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a worker has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// One worker process, as `hcsd` sees it.
pub struct WorkerLink {
    /// The worker's process id.
    pub pid: u32,
    /// Its compute system's id.
    pub id: String,
    writer: Mutex<FrameWriter>,
    /// Whether its compute system exists (from create or hello until `SystemGone`).
    pub system_alive: AtomicBool,
    /// Set when the worker announced a clean exit.
    pub idle: AtomicBool,
    /// Set when its connection ended.
    pub dead: AtomicBool,
    /// The process, when this `hcsd` started it (then it reaps it).
    child: Mutex<Option<Child>>,
    internal: Mutex<HashMap<u64, Sender<Reply>>>,
    next_internal: AtomicU64,
}

impl std::fmt::Debug for WorkerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "worker {} ({})", self.pid, self.id)
    }
}

impl WorkerLink {
    /// Starts a worker for compute system `id` and waits for its hello.
    pub fn spawn(
        state: &StateDir,
        host: &hcs_host::HostConfig,
        id: &str,
    ) -> io::Result<(Arc<WorkerLink>, FrameReader)> {
        let host = serde_json::to_string(host).map_err(io::Error::other)?;
        let (ours, theirs) = UnixStream::pair()?;
        let fd = theirs.as_raw_fd();
        // /proc/self/exe rather than current_exe(): it still runs this binary after an
        // upgrade replaced the file (current_exe() would then name a deleted path).
        let mut command = Command::new("/proc/self/exe");
        command
            .arg("worker")
            .arg("--state-dir")
            .arg(state.root())
            .arg("--id")
            .arg(id)
            .arg("--host-config")
            .arg(host)
            .stdin(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls are made (dup2,
        // fcntl), on descriptors this process owns.
        unsafe {
            command.pre_exec(move || {
                if fd == WORKER_FD {
                    // dup2 onto itself would keep close-on-exec set.
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, WORKER_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        drop(theirs);
        let (link, reader, _) = Self::greet(ours, Some(child))?;
        Ok((link, reader))
    }

    /// Connects to a worker found in the state directory (after `hcsd` restarted).
    /// Returns whether its compute system still exists.
    pub fn reconnect(record: &WorkerRecord) -> io::Result<(Arc<WorkerLink>, FrameReader, bool)> {
        let stream = UnixStream::connect(&record.socket)?;
        Self::greet(stream, None)
    }

    fn greet(
        stream: UnixStream,
        child: Option<Child>,
    ) -> io::Result<(Arc<WorkerLink>, FrameReader, bool)> {
        stream.set_read_timeout(Some(HELLO_TIMEOUT))?;
        let (mut reader, writer) = hcs_wire::frame::split(stream)?;
        let hello = reader.recv::<FromWorker>();
        let _ = reader.stream().set_read_timeout(None);
        match hello {
            Ok(Some((FromWorker::Hello { id, pid, system }, _))) => {
                let link = Arc::new(WorkerLink {
                    pid,
                    id,
                    writer: Mutex::new(writer),
                    system_alive: AtomicBool::new(system),
                    idle: AtomicBool::new(false),
                    dead: AtomicBool::new(false),
                    child: Mutex::new(child),
                    internal: Mutex::new(HashMap::new()),
                    next_internal: AtomicU64::new(1),
                });
                Ok((link, reader, system))
            }
            other => {
                if let Some(mut child) = child {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                Err(io::Error::other(format!(
                    "the worker did not say hello: {}",
                    match other {
                        Ok(None) => "it exited".to_owned(),
                        Ok(Some((message, _))) => format!("it said {message:?}"),
                        Err(error) => error.to_string(),
                    }
                )))
            }
        }
    }

    /// Sends a message; false if the worker is gone.
    pub fn send(&self, message: &ToWorker) -> bool {
        if self.dead.load(Ordering::SeqCst) {
            return false;
        }
        self.writer.lock().send(message, &[]).is_ok()
    }

    /// Sends one of `hcsd`'s own requests; its reply arrives on the returned channel
    /// (which closes without a reply if the worker dies).
    pub fn call(&self, body: RequestBody) -> Receiver<Reply> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let id = self.next_internal.fetch_add(1, Ordering::Relaxed);
        self.internal.lock().insert(id, tx);
        let sent = self.send(&ToWorker::Request {
            session: SERVICE_SESSION,
            request: Request { id, body },
        });
        if !sent {
            self.internal.lock().remove(&id);
        }
        rx
    }

    /// Delivers a reply to one of `hcsd`'s own requests.
    pub fn internal_reply(&self, reply: Reply) {
        if let Some(tx) = self.internal.lock().remove(&reply.id) {
            let _ = tx.send(reply);
        }
    }

    /// Marks the link dead, drops `hcsd`'s own pending requests and reaps the process if
    /// this `hcsd` started it. Returns how the process ended, when known.
    pub fn end(&self) -> Option<String> {
        self.dead.store(true, Ordering::SeqCst);
        self.internal.lock().clear();
        let child = self.child.lock().take();
        let mut child = child?;
        // The connection closes as the process exits; give it a moment to finish.
        for _ in 0..50 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(describe(status));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Still running with its connection closed: it cannot be reached any more.
        let _ = child.kill();
        child.wait().ok().map(describe)
    }

    /// Kills the worker process (used when it stops answering).
    pub fn kill(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".to_owned(),
    }
}
