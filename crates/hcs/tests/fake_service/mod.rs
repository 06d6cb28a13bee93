//! A tiny stand-in for `hcsd` inside a test process: it accepts on a temporary Unix
//! socket, answers the handshake (or refuses it when told to), and answers requests with
//! canned replies, holding some of them unanswered so that tests can lose the connection
//! while operations are pending (HCS-API rule 36).
//!
//! Canned behaviour, by request:
//! * `OpenSystem` of an id starting with `held-` and `System { Start }`: never answered;
//! * `OpenSystem` of an id starting with `missing-`: `HCS_E_SYSTEM_NOT_FOUND`;
//! * `CreateProcess`: process 42 with stdin and stdout (two socket ends attached to the
//!   frame); the other ends are kept ([`FakeService::take_process_ends`]);
//! * `LiveCounts`: `{"Systems":3,"Vms":2}`; `Enumerate`: `[]`; everything else `S_OK`.
#![allow(dead_code)]

use hcs::HResult;
use hcs_protocol::{
    Descriptor, Diagnostic, HostMessage, Reply, Request, RequestBody, StartedProcess, StdHandles,
    SystemRequest,
};
use hcs_wire::{ClientMessage, FrameReader, FrameWriter, ServiceMessage};
use parking_lot::{Condvar, Mutex};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one connection said in its `Hello`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub versions: Vec<u32>,
    pub client: String,
}

#[derive(Default)]
struct State {
    refuse_next: Option<(HResult, String)>,
    hellos: Vec<Hello>,
    /// Open connections (the service's side), by number.
    streams: Vec<(usize, UnixStream)>,
    /// Every request received: connection number and request.
    requests: Vec<(usize, Request)>,
    /// The other ends of the std handles sent with process create replies.
    process_ends: Vec<(UnixStream, UnixStream)>,
}

/// The fake service.
pub struct FakeService {
    pub socket: PathBuf,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl FakeService {
    /// Starts listening on a fresh socket in a temporary directory.
    pub fn start() -> FakeService {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hcs-fake-service-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        remove_directories_at_exit();
        let socket = dir.join("hcsd.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).unwrap();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for (number, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || serve(number, stream, shared));
            }
        });
        FakeService { socket, state }
    }

    /// Refuses the next handshake with `result`.
    pub fn refuse_next(&self, result: HResult, message: &str) {
        self.state.0.lock().refuse_next = Some((result, message.to_owned()));
    }

    /// The hellos received so far.
    pub fn hellos(&self) -> Vec<Hello> {
        self.state.0.lock().hellos.clone()
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<(usize, Request)> {
        self.state.0.lock().requests.clone()
    }

    /// Waits until a request matching `want` has arrived.
    pub fn wait_for_request(&self, want: impl Fn(&RequestBody) -> bool) -> Request {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (lock, cond) = &*self.state;
        let mut state = lock.lock();
        loop {
            if let Some((_, r)) = state.requests.iter().find(|(_, r)| want(&r.body)) {
                return r.clone();
            }
            assert!(
                !cond.wait_until(&mut state, deadline).timed_out(),
                "the fake service never got the expected request; it got {:?}",
                state.requests
            );
        }
    }

    /// Drops every connection, as a crashing service would.
    pub fn drop_connections(&self) {
        let streams = std::mem::take(&mut self.state.0.lock().streams);
        for (_, stream) in streams {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Sends `Closing` on every connection, then drops them, as a stopping service would.
    pub fn close_connections(&self, result: HResult, message: &str) {
        let streams = std::mem::take(&mut self.state.0.lock().streams);
        for (_, stream) in streams {
            let mut writer = FrameWriter::new(stream.try_clone().unwrap());
            let _ = writer.send(
                &ServiceMessage::Closing {
                    result,
                    message: message.to_owned(),
                },
                &[],
            );
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Takes the service's ends of the std handles of the last created process.
    pub fn take_process_ends(&self) -> Vec<(UnixStream, UnixStream)> {
        std::mem::take(&mut self.state.0.lock().process_ends)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for FakeService {
    fn drop(&mut self) {
        self.drop_connections();
        if let Some(dir) = self.socket.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn serve(number: usize, stream: UnixStream, shared: Arc<(Mutex<State>, Condvar)>) {
    let (mut reader, writer) = hcs_wire::frame::split(stream).unwrap();
    let mut writer = writer;
    let Ok(Some((ClientMessage::Hello { versions, client }, _))) = reader.recv::<ClientMessage>()
    else {
        return;
    };
    let refusal = {
        let mut state = shared.0.lock();
        state.hellos.push(Hello { versions, client });
        state.refuse_next.take()
    };
    shared.1.notify_all();
    if let Some((result, message)) = refusal {
        let _ = writer.send(&ServiceMessage::Refused { result, message }, &[]);
        return;
    }
    writer
        .send(
            &ServiceMessage::Welcome {
                version: hcs_wire::PROTOCOL_VERSION,
                service: "fake hcsd".into(),
                pid: std::process::id(),
            },
            &[],
        )
        .unwrap();
    shared
        .0
        .lock()
        .streams
        .push((number, writer.stream().try_clone().unwrap()));
    read_requests(number, reader, writer, shared);
}

fn read_requests(
    number: usize,
    mut reader: FrameReader,
    mut writer: FrameWriter,
    shared: Arc<(Mutex<State>, Condvar)>,
) {
    while let Ok(Some((ClientMessage::Request(request), _))) = reader.recv::<ClientMessage>() {
        shared.0.lock().requests.push((number, request.clone()));
        shared.1.notify_all();
        let reply = |result: HResult, document: Option<&str>| {
            ServiceMessage::Host(HostMessage::Reply(Reply::new(
                request.id,
                result,
                document.map(str::to_owned),
            )))
        };
        let sent = match &request.body {
            RequestBody::OpenSystem { id, .. } if id.starts_with("held-") => continue,
            RequestBody::System {
                request: SystemRequest::Start,
                ..
            } => continue,
            RequestBody::OpenSystem { id, .. } if id.starts_with("missing-") => writer.send(
                &reply(
                    HResult::HCS_E_SYSTEM_NOT_FOUND,
                    Some(r#"{"Error":-2143878898,"ErrorMessage":"no such system"}"#),
                ),
                &[],
            ),
            RequestBody::System {
                request: SystemRequest::CreateProcess { .. },
                ..
            } => {
                let (stdin_client, stdin_service) = UnixStream::pair().unwrap();
                let (stdout_client, stdout_service) = UnixStream::pair().unwrap();
                // Kept before the reply goes, so that the test finds them once answered.
                shared.0.lock().process_ends.clear();
                shared
                    .0
                    .lock()
                    .process_ends
                    .push((stdin_service, stdout_service));
                // In the frame, the message says which handles are there; the
                // descriptors ride beside it in the order stdin, stdout, stderr.
                let started = Reply::started(
                    request.id,
                    StartedProcess {
                        pid: 42,
                        std_handles: StdHandles {
                            stdin: Some(Descriptor::InFrame),
                            stdout: Some(Descriptor::InFrame),
                            stderr: None,
                        },
                    },
                );
                writer.send(
                    &ServiceMessage::Host(HostMessage::Reply(started)),
                    &[stdin_client.as_raw_fd(), stdout_client.as_raw_fd()],
                )
            }
            RequestBody::Diagnostic(Diagnostic::LiveCounts) => {
                writer.send(&reply(HResult::S_OK, Some(r#"{"Systems":3,"Vms":2}"#)), &[])
            }
            RequestBody::Enumerate { .. } => writer.send(&reply(HResult::S_OK, Some("[]")), &[]),
            RequestBody::System {
                request: SystemRequest::GetProperties(_),
                ..
            } => writer.send(&reply(HResult::S_OK, Some(r#"{"Id":"fake"}"#)), &[]),
            _ => writer.send(&reply(HResult::S_OK, None), &[]),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Removes this process's fake-service directories when it exits: a fake kept in a
/// `static` is never dropped.
fn remove_directories_at_exit() {
    extern "C" fn remove() {
        let prefix = format!("hcs-fake-service-{}-", std::process::id());
        for entry in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    static REGISTER: std::sync::Once = std::sync::Once::new();
    // SAFETY: atexit(3) with a plain extern "C" function that only touches the file system.
    REGISTER.call_once(|| unsafe {
        libc::atexit(remove);
    });
}
