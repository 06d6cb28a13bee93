//! The host side of the guest connection (`GuestConnection`): the `hcs-guest` agent's
//! control channel and the stdio streams of guest processes.
//!
//! Every guest connection arrives as a Unix connection on `<vsock uds>_<port>` (the host
//! side of the vsock device). The agent dials [`CONTROL_PORT`] once it is up; we check its
//! [`Hello`], answer `Welcome`, and from then on send requests and read responses and
//! `ProcessExited` notifications on a reader thread of our own. Each stdio stream of a
//! process is one more connection, to a port we listen on just for it.
//!
//! The messages are those of `hcs-guest-protocol`; this module adds the HRESULTs.

use hcs_guest_protocol::{
    self as proto, GuestMessage, Hello, HostMessage, Request, ResponseBody, CONTROL_PORT,
};
use hcs_protocol::Failure;
use hcs_schema::HResult;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a guest request may take before it fails with `HCS_E_CONNECTION_TIMEOUT`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the guest has to connect a stdio stream after we asked for it.
const STREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// What the reader thread tells the system about.
pub(crate) trait GuestEvents: Send + Sync {
    /// A process the agent created has exited, its output drained.
    fn process_exited(&self, pid: u32, exit_code: i32);
    /// The control connection ended (the guest stopped, or the agent died).
    fn connection_closed(&self);
}

/// The listener for the agent's control connection, bound before the VM starts so that
/// an early agent finds it.
pub(crate) struct ControlListener {
    listener: UnixListener,
    path: PathBuf,
    uds: PathBuf,
    /// The socket file's inode: a listener bound later at the same path (after a guest
    /// reboot) replaced it, and this one's drop must not remove that one's file.
    inode: Option<u64>,
}

impl ControlListener {
    /// Listens on `<uds>_<CONTROL_PORT>`.
    pub fn bind(uds: &Path) -> Result<ControlListener, Failure> {
        let path = port_path(uds, CONTROL_PORT);
        let listener = bind(&path)?;
        let inode = std::fs::symlink_metadata(&path).ok().map(|m| m.ino());
        Ok(ControlListener {
            listener,
            path,
            uds: uds.to_path_buf(),
            inode,
        })
    }

    /// Waits for the agent and shakes hands. Gives up with `HCS_E_CONNECTION_TIMEOUT`
    /// after `timeout`, or at once (`HCS_E_CONNECTION_CLOSED`) when `gone` says the VM
    /// stopped meanwhile.
    pub fn accept(
        self,
        timeout: Duration,
        gone: &dyn Fn() -> bool,
        events: Arc<dyn GuestEvents>,
    ) -> Result<Arc<GuestConnection>, Failure> {
        let deadline = Instant::now() + timeout;
        let stream = accept_until(&self.listener, deadline, gone).map_err(|why| match why {
            Wait::TimedOut => Failure::new(
                HResult::HCS_E_CONNECTION_TIMEOUT,
                format!(
                    "the guest agent did not connect within {} s: is hcs-guest the guest's \
                     init, and does its kernel load the vsock modules? (the serial console \
                     shows its log)",
                    timeout.as_secs_f32()
                ),
            ),
            Wait::Gone => Failure::new(
                HResult::HCS_E_CONNECTION_CLOSED,
                "the virtual machine stopped before its guest agent connected",
            ),
            Wait::Io(e) => Failure::new(
                HResult::E_FAIL,
                format!("waiting for the guest agent failed: {e}"),
            ),
        })?;
        GuestConnection::handshake(stream, self.uds.clone(), deadline, events)
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| Some(m.ino()) == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The path on which a guest connection to `port` arrives.
fn port_path(uds: &Path, port: u32) -> PathBuf {
    let mut name = uds.as_os_str().to_owned();
    name.push(format!("_{port}"));
    PathBuf::from(name)
}

fn bind(path: &Path) -> Result<UnixListener, Failure> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(|e| {
        Failure::new(
            HResult::E_FAIL,
            format!("cannot listen on {}: {e}", path.display()),
        )
    })?;
    listener.set_nonblocking(true).map_err(|e| {
        Failure::new(
            HResult::E_FAIL,
            format!("cannot set up {}: {e}", path.display()),
        )
    })?;
    Ok(listener)
}

enum Wait {
    TimedOut,
    Gone,
    Io(std::io::Error),
}

/// Accepts one connection before `deadline`, polling so that `gone` is checked often.
fn accept_until(
    listener: &UnixListener,
    deadline: Instant,
    gone: &dyn Fn() -> bool,
) -> Result<UnixStream, Wait> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(Wait::Io)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Wait::Io(e)),
        }
        if gone() {
            return Err(Wait::Gone);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Wait::TimedOut);
        }
        let slice = (deadline - now).min(Duration::from_millis(20));
        let mut poll = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(listener),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `poll` points at one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut poll, 1, slice.as_millis() as libc::c_int) };
    }
}

/// The stdio streams of a new process, each `None` when not requested.
pub(crate) struct ProcessStreams {
    /// The guest pid.
    pub pid: u32,
    /// Written by the client: the process's stdin.
    pub stdin: Option<OwnedFd>,
    /// Read by the client: the process's stdout.
    pub stdout: Option<OwnedFd>,
    /// Read by the client: the process's stderr.
    pub stderr: Option<OwnedFd>,
}

/// A live connection to the guest agent.
pub(crate) struct GuestConnection {
    writer: Mutex<UnixStream>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    next_port: AtomicU32,
    uds: PathBuf,
    /// What the agent said in its `Hello`.
    pub hello: Hello,
    /// The negotiated protocol version.
    pub version: u32,
}

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, crossbeam_channel::Sender<ResponseBody>>,
    closed: bool,
}

impl GuestConnection {
    fn handshake(
        stream: UnixStream,
        uds: PathBuf,
        deadline: Instant,
        events: Arc<dyn GuestEvents>,
    ) -> Result<Arc<GuestConnection>, Failure> {
        let io = |e: std::io::Error| {
            Failure::new(
                HResult::HCS_E_CONNECTION_CLOSED,
                format!("the guest connection failed during the handshake: {e}"),
            )
        };
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(100))))
            .map_err(io)?;
        let mut reader = stream.try_clone().map_err(io)?;
        let hello: Hello = proto::read_frame(&mut reader).map_err(|e| match e {
            proto::FrameError::Io(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Failure::new(
                    HResult::HCS_E_CONNECTION_TIMEOUT,
                    "the guest agent connected but did not say hello in time",
                )
            }
            other => Failure::new(
                HResult::HCS_E_CONNECTION_CLOSED,
                format!("the guest agent's hello was not understood: {other}"),
            ),
        })?;
        let mut writer = stream;
        let Some(version) = proto::negotiate(proto::SUPPORTED_VERSIONS, &hello.versions) else {
            let message = format!(
                "no common protocol version: the host speaks {:?}, the guest agent ({}) {:?}",
                proto::SUPPORTED_VERSIONS,
                hello.agent,
                hello.versions
            );
            let _ = proto::write_frame(
                &mut writer,
                &HostMessage::Refused {
                    versions: proto::SUPPORTED_VERSIONS.to_vec(),
                    message: message.clone(),
                },
            );
            return Err(Failure::new(
                HResult::HCS_E_UNSUPPORTED_PROTOCOL_VERSION,
                message,
            ));
        };
        proto::write_frame(&mut writer, &HostMessage::Welcome { version }).map_err(|e| {
            Failure::new(
                HResult::HCS_E_CONNECTION_CLOSED,
                format!("the guest connection failed during the handshake: {e}"),
            )
        })?;
        reader.set_read_timeout(None).map_err(io)?;
        tracing::info!(agent = %hello.agent, kernel = %hello.kernel, version, "guest agent connected");
        let connection = Arc::new(GuestConnection {
            writer: Mutex::new(writer),
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            next_port: AtomicU32::new(0x5000_0000),
            uds,
            hello,
            version,
        });
        let weak = Arc::downgrade(&connection);
        std::thread::Builder::new()
            .name("hcs-guest-reader".into())
            .spawn(move || read_loop(reader, weak, events))
            .map_err(|e| Failure::new(HResult::E_OUTOFMEMORY, format!("no thread: {e}")))?;
        Ok(connection)
    }

    /// Sends `request` and waits for its response; an `Error` response becomes a
    /// [`Failure`] with the agent's code and message.
    pub fn request(&self, request: Request) -> Result<ResponseBody, Failure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = crossbeam_channel::bounded(1);
        {
            let mut pending = self.pending.lock();
            if pending.closed {
                return Err(closed());
            }
            pending.waiters.insert(id, sender);
        }
        let sent = proto::write_frame(
            &mut *self.writer.lock(),
            &HostMessage::Request { id, body: request },
        );
        if let Err(e) = sent {
            self.pending.lock().waiters.remove(&id);
            return Err(Failure::new(
                HResult::HCS_E_CONNECTION_CLOSED,
                format!("the guest connection failed: {e}"),
            ));
        }
        let body = match receiver.recv_timeout(REQUEST_TIMEOUT) {
            Ok(body) => body,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Err(closed()),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                self.pending.lock().waiters.remove(&id);
                return Err(Failure::new(
                    HResult::HCS_E_CONNECTION_TIMEOUT,
                    format!(
                        "the guest agent did not answer within {} s",
                        REQUEST_TIMEOUT.as_secs()
                    ),
                ));
            }
        };
        match body {
            ResponseBody::Error { code, message } => Err(Failure::new(HResult(code), message)),
            other => Ok(other),
        }
    }

    /// Starts a process: listens for each requested stream, asks the agent, then takes
    /// the streams the agent connected.
    pub fn create_process(
        &self,
        mut spec: proto::CreateProcess,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<ProcessStreams, Failure> {
        let listen = |wanted: bool| -> Result<Option<(u32, StreamListener)>, Failure> {
            if !wanted {
                return Ok(None);
            }
            let port = self.next_port.fetch_add(1, Ordering::Relaxed);
            let path = port_path(&self.uds, port);
            Ok(Some((
                port,
                StreamListener {
                    listener: bind(&path)?,
                    path,
                },
            )))
        };
        let listeners = [listen(stdin)?, listen(stdout)?, listen(stderr)?];
        spec.stdin_port = listeners[0].as_ref().map(|(p, _)| *p);
        spec.stdout_port = listeners[1].as_ref().map(|(p, _)| *p);
        spec.stderr_port = listeners[2].as_ref().map(|(p, _)| *p);
        let pid = match self.request(Request::CreateProcess(spec))? {
            ResponseBody::Created { pid } => pid,
            other => {
                return Err(Failure::new(
                    HResult::E_UNEXPECTED,
                    format!("the guest agent answered CreateProcess with {other:?}"),
                ))
            }
        };
        // The agent connects every stream before it answers, so these are ready.
        let deadline = Instant::now() + STREAM_TIMEOUT;
        let mut streams = [None, None, None];
        for (slot, listener) in streams.iter_mut().zip(listeners.iter()) {
            if let Some((port, listener)) = listener {
                let stream =
                    accept_until(&listener.listener, deadline, &|| false).map_err(|_| {
                        Failure::new(
                            HResult::HCS_E_CONNECTION_TIMEOUT,
                            format!("the guest did not connect the stdio stream on port {port}"),
                        )
                    })?;
                *slot = Some(OwnedFd::from(stream));
            }
        }
        let [stdin, stdout, stderr] = streams;
        Ok(ProcessStreams {
            pid,
            stdin,
            stdout,
            stderr,
        })
    }

    /// Fails pending and later requests with `HCS_E_CONNECTION_CLOSED` at once, without
    /// touching the socket: the guest rebooted, and the vsock backend must not see this
    /// connection close while the guest's device resets (see `stale_guests` in
    /// system/guest_session.rs); it is closed later with [`GuestConnection::close`].
    pub fn abandon(&self) {
        let mut pending = self.pending.lock();
        pending.closed = true;
        // Dropping the senders fails every waiter with "closed".
        pending.waiters.clear();
    }

    /// Ends the connection: pending and later requests fail with `HCS_E_CONNECTION_CLOSED`.
    pub fn close(&self) {
        let _ = self.writer.lock().shutdown(std::net::Shutdown::Both);
    }
}

fn closed() -> Failure {
    Failure::new(
        HResult::HCS_E_CONNECTION_CLOSED,
        "the guest connection is closed (the guest stopped or its agent exited)",
    )
}

struct StreamListener {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for StreamListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_loop(
    mut reader: UnixStream,
    connection: std::sync::Weak<GuestConnection>,
    events: Arc<dyn GuestEvents>,
) {
    loop {
        let message: GuestMessage = match proto::read_frame(&mut reader) {
            Ok(message) => message,
            Err(proto::FrameError::Malformed(e)) => {
                tracing::warn!(error = %e, "ignoring a malformed message from the guest agent");
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "guest connection ended");
                break;
            }
        };
        match message {
            GuestMessage::Response(response) => {
                let Some(connection) = connection.upgrade() else {
                    break;
                };
                let waiter = connection.pending.lock().waiters.remove(&response.id);
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(response.body);
                    }
                    None => tracing::debug!(id = response.id, "late guest response dropped"),
                }
            }
            GuestMessage::ProcessExited { pid, exit_code } => events.process_exited(pid, exit_code),
        }
    }
    if let Some(connection) = connection.upgrade() {
        let mut pending = connection.pending.lock();
        pending.closed = true;
        // Dropping the senders fails every waiter with "closed".
        pending.waiters.clear();
    }
    events.connection_closed();
}

#[cfg(test)]
mod tests {
    //! The handshake and request paths against a scripted agent on a Unix socket.
    use super::*;

    struct NoEvents;
    impl GuestEvents for NoEvents {
        fn process_exited(&self, _: u32, _: i32) {}
        fn connection_closed(&self) {}
    }

    fn uds() -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new();
        let uds = dir.0.join("vsock.sock");
        (dir, uds)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path =
                    std::env::temp_dir().join(format!("hcs-guest-test-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn agent(uds: &Path, versions: Vec<u32>) -> UnixStream {
        let mut stream = UnixStream::connect(port_path(uds, CONTROL_PORT)).unwrap();
        proto::write_frame(
            &mut stream,
            &Hello {
                versions,
                agent: "test".into(),
                kernel: "none".into(),
            },
        )
        .unwrap();
        stream
    }

    #[test]
    fn no_common_version_is_refused_with_unsupported_protocol_version() {
        let (_dir, uds) = uds();
        let listener = ControlListener::bind(&uds).unwrap();
        let mut guest = agent(&uds, vec![99]);
        let failure = listener
            .accept(Duration::from_secs(5), &|| false, Arc::new(NoEvents))
            .err()
            .unwrap();
        assert_eq!(failure.hresult, HResult::HCS_E_UNSUPPORTED_PROTOCOL_VERSION);
        let answer: HostMessage = proto::read_frame(&mut guest).unwrap();
        assert!(matches!(answer, HostMessage::Refused { .. }), "{answer:?}");
    }

    #[test]
    fn an_agent_that_never_connects_times_out_and_a_stopped_vm_ends_the_wait() {
        let (_dir, uds) = uds();
        let listener = ControlListener::bind(&uds).unwrap();
        let failure = listener
            .accept(Duration::from_millis(200), &|| false, Arc::new(NoEvents))
            .err()
            .unwrap();
        assert_eq!(failure.hresult, HResult::HCS_E_CONNECTION_TIMEOUT);
        let listener = ControlListener::bind(&uds).unwrap();
        let failure = listener
            .accept(Duration::from_secs(30), &|| true, Arc::new(NoEvents))
            .err()
            .unwrap();
        assert_eq!(failure.hresult, HResult::HCS_E_CONNECTION_CLOSED);
    }

    #[test]
    fn requests_get_their_answers_and_a_closed_connection_fails_them() {
        let (_dir, uds) = uds();
        let listener = ControlListener::bind(&uds).unwrap();
        let guest = std::thread::spawn({
            let uds = uds.clone();
            move || {
                let mut stream = agent(&uds, vec![1]);
                let welcome: HostMessage = proto::read_frame(&mut stream).unwrap();
                assert_eq!(welcome, HostMessage::Welcome { version: 1 });
                // Answer one request with an error code, then hang up.
                let HostMessage::Request { id, .. } = proto::read_frame(&mut stream).unwrap()
                else {
                    panic!("expected a request")
                };
                proto::write_frame(
                    &mut stream,
                    &GuestMessage::Response(proto::Response {
                        id,
                        body: ResponseBody::Error {
                            code: proto::HCS_E_UNKNOWN_MESSAGE,
                            message: "no such request".into(),
                        },
                    }),
                )
                .unwrap();
                let _: HostMessage = proto::read_frame(&mut stream).unwrap();
            }
        });
        let connection = listener
            .accept(Duration::from_secs(5), &|| false, Arc::new(NoEvents))
            .unwrap();
        assert_eq!(connection.version, 1);
        let failure = connection.request(Request::ListProcesses).unwrap_err();
        assert_eq!(failure.hresult, HResult::HCS_E_UNKNOWN_MESSAGE);
        let failure = connection.request(Request::ListProcesses).unwrap_err();
        assert_eq!(failure.hresult, HResult::HCS_E_CONNECTION_CLOSED);
        guest.join().unwrap();
    }
}
