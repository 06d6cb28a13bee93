//! Shared helpers of the service tests: an `hcsd` of the test's own (socket and state
//! directory in a scratch directory), and a raw protocol client that records every
//! notification it receives.
#![allow(dead_code)]

use hcs_protocol::{HostMessage, Notification, Reply, Request, RequestBody, SystemRequest};
use hcs_schema::HResult;
use hcs_wire::{ClientMessage, FrameReader, FrameWriter, ServiceMessage};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Fails loudly without /dev/kvm: these tests run real VMs and never skip.
pub fn require_kvm() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: the service tests run real VMs on KVM and are never skipped"
    );
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hcsd-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An `hcsd` started by a test.
pub struct Hcsd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub child: Option<Child>,
    /// Started with `--test-hooks` (the default for tests: holds and live counts).
    pub test_hooks: bool,
}

impl Hcsd {
    /// Starts `hcsd` with its socket and state directory under `dir`, and waits until it
    /// answers.
    pub fn start(dir: &Path) -> Hcsd {
        Hcsd::start_with(dir, true)
    }

    /// Starts `hcsd` as [`Hcsd::start`] does, with or without `--test-hooks`.
    pub fn start_with(dir: &Path, test_hooks: bool) -> Hcsd {
        let mut hcsd = Hcsd {
            dir: dir.to_path_buf(),
            socket: dir.join("hcsd.sock"),
            state: dir.join("state"),
            child: None,
            test_hooks,
        };
        hcsd.restart();
        hcsd
    }

    /// Starts it again (after a kill or stop), on the same socket and state directory.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("hcsd.log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_hcsd"));
        if self.test_hooks {
            command.arg("--test-hooks");
        }
        let child = command
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start hcsd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(client) = TestClient::try_connect(&self.socket) {
                drop(client);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "hcsd did not answer on {} within 20 s; its log:\n{}",
            self.socket.display(),
            self.log()
        );
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills it with `signal` and reaps it.
    pub fn kill(&mut self, signal: i32) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, signal) };
            let _ = child.wait();
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hcsd.log")).unwrap_or_default()
    }

    /// A connected client.
    pub fn client(&self) -> TestClient {
        TestClient::connect(&self.socket)
    }

    /// Open descriptors of the hcsd process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Pids of worker processes (children of any hcsd) using this state directory.
    pub fn worker_pids(&self) -> Vec<u32> {
        processes_mentioning(&self.state.to_string_lossy(), " worker ")
    }
}

impl Drop for Hcsd {
    fn drop(&mut self) {
        for pid in self.worker_pids() {
            // SAFETY: plain kill(2) on a worker this test's hcsd started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        self.kill(libc::SIGKILL);
        // A failing test keeps its directory: hcsd's log is the first thing to read.
        if std::thread::panicking() {
            eprintln!(
                "hcsd's socket, state and log kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Pids of processes whose command line contains both `a` and `b`.
pub fn processes_mentioning(a: &str, b: &str) -> Vec<u32> {
    hcs_test_support::pids_with_cmdline(&[a, b])
}

#[derive(Default)]
struct Inbox {
    replies: Vec<(Reply, Vec<OwnedFd>)>,
    notifications: Vec<Notification>,
    closing: Option<(HResult, String)>,
    ended: bool,
}

/// A client speaking the protocol directly, recording what it receives.
pub struct TestClient {
    writer: Mutex<FrameWriter>,
    inbox: Arc<(Mutex<Inbox>, Condvar)>,
    next: AtomicU64,
    pub stream: UnixStream,
}

impl TestClient {
    /// Connects and says hello; panics if refused.
    pub fn connect(socket: &Path) -> TestClient {
        Self::try_connect(socket).unwrap_or_else(|e| panic!("connect to hcsd: {e}"))
    }

    /// Connects and says hello.
    pub fn try_connect(socket: &Path) -> Result<TestClient, String> {
        let stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
        let (mut reader, mut writer) = hcs_wire::frame::split(stream.try_clone().unwrap()).unwrap();
        writer
            .send(
                &ClientMessage::Hello {
                    versions: vec![hcs_wire::PROTOCOL_VERSION],
                    client: "hcsd-tests".into(),
                },
                &[],
            )
            .map_err(|e| e.to_string())?;
        match reader.recv::<ServiceMessage>() {
            Ok(Some((ServiceMessage::Welcome { .. }, _))) => {}
            other => return Err(format!("no welcome: {other:?}")),
        }
        let inbox: Arc<(Mutex<Inbox>, Condvar)> = Arc::default();
        let shared = Arc::clone(&inbox);
        std::thread::spawn(move || read_loop(reader, shared));
        Ok(TestClient {
            writer: Mutex::new(writer),
            inbox,
            next: AtomicU64::new(1),
            stream,
        })
    }

    /// Sends a request; returns its id.
    pub fn send(&self, body: RequestBody) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.writer
            .lock()
            .unwrap()
            .send(&ClientMessage::Request(Request { id, body }), &[])
            .expect("send");
        id
    }

    /// Sends raw frame bytes (for malformed-message tests).
    pub fn send_raw(&self, payload: &[u8]) {
        let _ = self.writer.lock().unwrap().send_raw(payload, &[]);
    }

    /// Waits for the reply to `id`.
    pub fn wait(&self, id: u64) -> (Reply, Vec<OwnedFd>) {
        let (lock, ready) = &*self.inbox;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut inbox = lock.lock().unwrap();
        loop {
            if let Some(at) = inbox.replies.iter().position(|(r, _)| r.id == id) {
                return inbox.replies.remove(at);
            }
            assert!(
                !inbox.ended,
                "connection ended before reply {id} (closing: {:?})",
                inbox.closing
            );
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no reply to request {id} within 120 s");
            inbox = ready.wait_timeout(inbox, left).unwrap().0;
        }
    }

    /// Sends a request and waits for its reply.
    pub fn call(&self, body: RequestBody) -> Reply {
        let id = self.send(body);
        self.wait(id).0
    }

    /// Sends a request and asserts it succeeds; returns its document.
    pub fn ok(&self, body: RequestBody) -> Option<String> {
        let what = format!("{body:?}");
        let reply = self.call(body);
        assert!(
            reply.result.succeeded(),
            "{what} failed: {} {:?}",
            reply.result,
            reply.document
        );
        reply.document
    }

    /// Waits until a notification matching `pred` arrived; returns it.
    pub fn wait_notification(
        &self,
        pred: impl Fn(&Notification) -> bool,
        what: &str,
    ) -> Notification {
        let (lock, ready) = &*self.inbox;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut inbox = lock.lock().unwrap();
        loop {
            if let Some(n) = inbox.notifications.iter().find(|n| pred(n)) {
                return n.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} within 60 s; got {:?}",
                inbox.notifications
            );
            inbox = ready.wait_timeout(inbox, left).unwrap().0;
        }
    }

    /// Every notification so far.
    pub fn notifications(&self) -> Vec<Notification> {
        self.inbox.0.lock().unwrap().notifications.clone()
    }

    /// Waits for the service to close the connection; returns its `Closing`, if any.
    pub fn wait_closed(&self) -> Option<(HResult, String)> {
        let (lock, ready) = &*self.inbox;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut inbox = lock.lock().unwrap();
        while !inbox.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the service did not close the connection");
            inbox = ready.wait_timeout(inbox, left).unwrap().0;
        }
        inbox.closing.clone()
    }
}

impl Drop for TestClient {
    /// Closes the connection for real: the reader thread holds a copy of the socket.
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn read_loop(mut reader: FrameReader, inbox: Arc<(Mutex<Inbox>, Condvar)>) {
    loop {
        let message = reader.recv::<ServiceMessage>();
        let (lock, ready) = &*inbox;
        let mut inbox = lock.lock().unwrap();
        match message {
            Ok(Some((ServiceMessage::Host(HostMessage::Reply(reply)), fds))) => {
                inbox.replies.push((reply, fds))
            }
            Ok(Some((ServiceMessage::Host(HostMessage::Notification(n)), _))) => {
                inbox.notifications.push(n)
            }
            Ok(Some((ServiceMessage::Closing { result, message }, _))) => {
                inbox.closing = Some((result, message))
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                inbox.ended = true;
                ready.notify_all();
                return;
            }
        }
        ready.notify_all();
    }
}

/// The empty VM document of the examples, with `ShouldTerminateOnLastHandleClosed` and
/// `Owner` set as asked.
pub fn empty_vm(owner: &str, terminate_on_last_close: bool) -> String {
    let text = std::fs::read_to_string(repo().join("examples/empty-vm.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["Owner"] = owner.into();
    doc["ShouldTerminateOnLastHandleClosed"] = terminate_on_last_close.into();
    doc.to_string()
}

/// Shorthands for requests.
pub fn create(handle: u64, id: &str, configuration: String) -> RequestBody {
    RequestBody::CreateSystem {
        handle,
        id: id.into(),
        configuration,
    }
}

pub fn open(handle: u64, id: &str) -> RequestBody {
    RequestBody::OpenSystem {
        handle,
        id: id.into(),
    }
}

pub fn on(handle: u64, request: SystemRequest) -> RequestBody {
    RequestBody::System { handle, request }
}

pub fn close(handle: u64) -> RequestBody {
    RequestBody::CloseSystem { handle }
}

/// The ids `Enumerate` (with `query`) lists.
pub fn enumerate(client: &TestClient, query: Option<&str>) -> Vec<String> {
    let doc = client
        .ok(RequestBody::Enumerate {
            query: query.map(str::to_owned),
        })
        .unwrap();
    let items: Vec<serde_json::Value> = serde_json::from_str(&doc).unwrap();
    items
        .iter()
        .map(|i| i["Id"].as_str().unwrap().to_owned())
        .collect()
}

/// The `ExitType` of a `SystemExited` status.
pub fn exit_type(n: &Notification) -> Option<String> {
    match n {
        Notification::SystemExited { status, .. } => {
            serde_json::from_str::<serde_json::Value>(status)
                .ok()
                .and_then(|v| v["ExitType"].as_str().map(str::to_owned))
        }
        _ => None,
    }
}
