//! A small fake host for the agent tests: it listens where the agent connects (a Unix socket
//! for `--connect unix:PATH`, or vhost-device-vsock's `<uds>_<port>` sockets for a VM),
//! speaks the protocol with the protocol crate's framing, and collects responses and exits.
#![allow(dead_code)] // each test file uses part of it

use hcs_guest_protocol::{
    read_frame, write_frame, CreateProcess, GuestMessage, Hello, HostMessage, Request, ResponseBody,
};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hcs-guest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Listens for the agent's control connection on `control` (its stdio ports on
/// `<port_base>_<N>`).
pub struct FakeHost {
    listener: UnixListener,
    port_base: PathBuf,
    next_port: AtomicU32,
    next_id: AtomicU64,
    state: Arc<(Mutex<State>, Condvar)>,
    writer: Mutex<Option<UnixStream>>,
}

#[derive(Default)]
struct State {
    responses: HashMap<u64, ResponseBody>,
    /// pid -> exit codes reported (more than one is a bug).
    exits: HashMap<u32, Vec<i32>>,
    /// pids announced by a Created response.
    created: Vec<u32>,
    /// ProcessExited that came before the pid's Created.
    early_exits: Vec<u32>,
    closed: bool,
}

/// A created process and its host-side streams.
pub struct Proc {
    pub pid: u32,
    pub stdin: Option<UnixStream>,
    pub stdout: Option<UnixStream>,
    pub stderr: Option<UnixStream>,
}

impl FakeHost {
    /// Listens on `control`; stdio ports are `<port_base>_<N>`.
    pub fn listen(control: &Path, port_base: &Path) -> Self {
        let _ = std::fs::remove_file(control);
        let listener = UnixListener::bind(control).expect("bind the control socket");
        Self {
            listener,
            port_base: port_base.to_path_buf(),
            next_port: AtomicU32::new(5000),
            next_id: AtomicU64::new(1),
            state: Arc::default(),
            writer: Mutex::new(None),
        }
    }

    /// Accepts the agent and reads its Hello.
    pub fn accept(&self, timeout: Duration) -> (UnixStream, Hello) {
        self.listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + timeout;
        let mut stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "the agent did not connect within {timeout:?}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking");
        stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
        let hello: Hello = read_frame(&mut stream).expect("read Hello");
        stream.set_read_timeout(None).expect("no read timeout");
        (stream, hello)
    }

    /// Accepts the agent, welcomes it, and starts reading its messages.
    pub fn accept_and_welcome(&self, timeout: Duration) -> Hello {
        let (mut stream, hello) = self.accept(timeout);
        write_frame(&mut stream, &HostMessage::Welcome { version: 1 }).expect("send Welcome");
        self.start_reader(stream);
        hello
    }

    fn start_reader(&self, stream: UnixStream) {
        // A new connection (the agent reconnected): it is open again.
        self.state.0.lock().expect("lock").closed = false;
        let mut reader = stream.try_clone().expect("clone");
        *self.writer.lock().expect("lock") = Some(stream);
        let state = self.state.clone();
        std::thread::spawn(move || loop {
            let message = read_frame::<_, GuestMessage>(&mut reader);
            let (lock, cond) = &*state;
            let mut s = lock.lock().expect("lock");
            match message {
                Ok(GuestMessage::Response(r)) => {
                    if let ResponseBody::Created { pid } = r.body {
                        s.created.push(pid);
                    }
                    s.responses.insert(r.id, r.body);
                }
                Ok(GuestMessage::ProcessExited { pid, exit_code }) => {
                    if !s.created.contains(&pid) {
                        s.early_exits.push(pid);
                    }
                    s.exits.entry(pid).or_default().push(exit_code);
                }
                Err(_) => {
                    s.closed = true;
                    cond.notify_all();
                    return;
                }
            }
            cond.notify_all();
        });
    }

    /// Sends a raw frame (any JSON) on the control connection.
    pub fn send_raw(&self, value: &serde_json::Value) {
        let mut w = self.writer.lock().expect("lock");
        write_frame(w.as_mut().expect("connected"), value).expect("send");
    }

    /// Sends a request; its id.
    pub fn send(&self, body: Request) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut w = self.writer.lock().expect("lock");
        write_frame(
            w.as_mut().expect("connected"),
            &HostMessage::Request { id, body },
        )
        .expect("send request");
        id
    }

    /// Waits for the response to `id`.
    pub fn response(&self, id: u64) -> ResponseBody {
        let (lock, cond) = &*self.state;
        let s = lock.lock().expect("lock");
        let (mut s, _) = cond
            .wait_timeout_while(s, WAIT, |s| !s.responses.contains_key(&id) && !s.closed)
            .expect("wait");
        s.responses
            .remove(&id)
            .unwrap_or_else(|| panic!("no response to request {id}"))
    }

    /// Sends a request and waits for its response.
    pub fn request(&self, body: Request) -> ResponseBody {
        let id = self.send(body);
        self.response(id)
    }

    /// Sends a request with a fresh id as raw JSON; waits for the response.
    pub fn request_raw(&self, body: serde_json::Value) -> ResponseBody {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.send_raw(&serde_json::json!({"type": "Request", "id": id, "body": body}));
        self.response(id)
    }

    /// Waits for the pid's ProcessExited; its exit code.
    pub fn exit_code(&self, pid: u32) -> i32 {
        let (lock, cond) = &*self.state;
        let s = lock.lock().expect("lock");
        let (s, _) = cond
            .wait_timeout_while(s, WAIT, |s| !s.exits.contains_key(&pid) && !s.closed)
            .expect("wait");
        let codes = s
            .exits
            .get(&pid)
            .unwrap_or_else(|| panic!("no ProcessExited for pid {pid}"));
        codes[0]
    }

    /// Every ProcessExited so far: pid -> codes.
    pub fn exits(&self) -> HashMap<u32, Vec<i32>> {
        self.state.0.lock().expect("lock").exits.clone()
    }

    /// pids whose ProcessExited came before their Created.
    pub fn early_exits(&self) -> Vec<u32> {
        self.state.0.lock().expect("lock").early_exits.clone()
    }

    /// Waits until the agent closes the control connection.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let (lock, cond) = &*self.state;
        let s = lock.lock().expect("lock");
        let (s, _) = cond
            .wait_timeout_while(s, timeout, |s| !s.closed)
            .expect("wait");
        s.closed
    }

    /// Closes the host's end of the control connection.
    pub fn close(&self) {
        if let Some(w) = self.writer.lock().expect("lock").take() {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
    }

    /// A fresh port and its listener.
    pub fn port(&self) -> (u32, UnixListener) {
        let port = self.next_port.fetch_add(1, Ordering::SeqCst);
        let mut name = self.port_base.clone().into_os_string();
        name.push(format!("_{port}"));
        let path = PathBuf::from(name);
        let _ = std::fs::remove_file(&path);
        (port, UnixListener::bind(&path).expect("bind a port"))
    }

    /// Starts `argv` with the streams asked for; the response (Created or an error) and
    /// the streams the agent connected.
    pub fn create(
        &self,
        mut request: CreateProcess,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<Proc, (i32, String)> {
        let mut listeners = Vec::new();
        for (wanted, slot) in [
            (stdin, &mut request.stdin_port),
            (stdout, &mut request.stdout_port),
            (stderr, &mut request.stderr_port),
        ] {
            if wanted {
                let (port, listener) = self.port();
                *slot = Some(port);
                listeners.push(Some(listener));
            } else {
                listeners.push(None);
            }
        }
        let response = self.request(Request::CreateProcess(request));
        // The agent connects its streams before it answers, so they are there by now (a
        // failed request may have made none).
        let wait = match response {
            ResponseBody::Created { .. } => Duration::from_secs(2),
            _ => Duration::ZERO,
        };
        let mut streams = listeners
            .into_iter()
            .map(|l| l.and_then(|l| accept_quick(l, wait)));
        let (a, b, c) = (
            streams.next().flatten(),
            streams.next().flatten(),
            streams.next().flatten(),
        );
        match response {
            ResponseBody::Created { pid } => {
                for (wanted, got, name) in [
                    (stdin, a.is_some(), "stdin"),
                    (stdout, b.is_some(), "stdout"),
                    (stderr, c.is_some(), "stderr"),
                ] {
                    assert_eq!(wanted, got, "{name} connected?");
                }
                Ok(Proc {
                    pid,
                    stdin: a,
                    stdout: b,
                    stderr: c,
                })
            }
            ResponseBody::Error { code, message } => {
                // Nothing may be left behind: a stream made before the failure is closed.
                for s in [a, b, c].into_iter().flatten() {
                    assert_eq!(read_all(s), Vec::<u8>::new(), "a stream left open");
                }
                Err((code, message))
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

/// Accepts a connection that the agent has already made (or none), waiting at most `wait`.
fn accept_quick(listener: UnixListener, wait: Duration) -> Option<UnixStream> {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).expect("blocking");
                s.set_read_timeout(Some(WAIT)).expect("timeout");
                return Some(s);
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return None,
        }
    }
}

/// Reads a stream to its end.
pub fn read_all(mut stream: UnixStream) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("read the stream to its end");
    out
}

/// Reads a stream to its end, hashing as it goes: (bytes, FNV-1a hash).
pub fn hash_all(mut stream: UnixStream) -> (u64, u64) {
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = vec![0u8; 1 << 20];
    let mut hash = Fnv::default();
    loop {
        let n = stream.read(&mut buf).expect("read");
        if n == 0 {
            return (hash.len, hash.value());
        }
        hash.update(&buf[..n]);
    }
}

/// FNV-1a, 64 bits: enough to tell that every byte arrived in order.
pub struct Fnv {
    state: u64,
    len: u64,
}

impl Default for Fnv {
    fn default() -> Self {
        Self {
            state: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.state ^= u64::from(*b);
            self.state = self.state.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.len += bytes.len() as u64;
    }
    pub fn value(&self) -> u64 {
        self.state
    }
}

/// The hash of `line` repeated and cut at `total` bytes (what `yes LINE | head -c TOTAL`
/// prints; `line` includes its newline).
pub fn expected_hash(line: &[u8], total: u64) -> (u64, u64) {
    let mut hash = Fnv::default();
    let block: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(line.len() * 4096)
        .collect();
    let mut left = total;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        hash.update(&block[..n]);
        left -= n as u64;
    }
    (hash.len, hash.value())
}

/// Writes all of `data` to a stream.
pub fn write_all(stream: &mut UnixStream, data: &[u8]) {
    stream.write_all(data).expect("write");
}

/// A request for `argv` with a plain PATH.
pub fn command(argv: &[&str]) -> CreateProcess {
    CreateProcess {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: [(
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        )]
        .into(),
        ..Default::default()
    }
}
