//! The control connection: connecting (with retries), the `Hello`/`Welcome` handshake,
//! reading requests and answering each on its own thread, and `Shutdown` (which the ACPI
//! power button starts too).
//!
//! Requests are read as `serde_json::Value` first, so that a request type this agent does
//! not know (a newer host) is answered `HCS_E_UNKNOWN_MESSAGE` and the connection goes on.

use crate::error::Error;
use crate::init;
use crate::log::log;
use crate::process::Processes;
use crate::procfs;
use crate::transport::{Endpoint, Sink, Stream};
use hcs_guest_protocol::{
    read_frame, read_frame_bytes, write_frame, FrameError, GuestMessage, Hello, HostMessage,
    Request, Response, ResponseBody, CONTROL_PORT, E_FAIL, E_INVALIDARG, HCS_E_UNKNOWN_MESSAGE,
    SUPPORTED_VERSIONS,
};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The request types this agent knows (the `type` tags of [`Request`]). A known type with
/// bad fields is `E_INVALIDARG`; an unknown one `HCS_E_UNKNOWN_MESSAGE`.
pub const KNOWN_REQUESTS: &[&str] = &[
    "CreateProcess",
    "Signal",
    "CloseStdin",
    "ResizeConsole",
    "Shutdown",
    "ListProcesses",
];

/// The grace period of a power-off started by the power button: the host's default for a
/// `Shutdown` that is not forced.
pub const BUTTON_GRACE_MS: u32 = 5000;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the host is.
    pub endpoint: Endpoint,
    /// PID 1 of a guest (mounts, modules, power-off), or a plain process (tests).
    pub pid1: bool,
}

/// Why [`Agent::run`] returned (only when not PID 1, or when the host refused us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The host closed the control connection (not PID 1): processes were ended.
    HostClosed,
    /// The host answered `Refused`.
    Refused,
    /// The control connection could not be made.
    Unreachable,
}

/// The agent: the process table and the control connection's writer.
pub struct Agent {
    config: Config,
    sink: Arc<Sink>,
    processes: Arc<Processes>,
    shutting_down: AtomicBool,
}

impl Agent {
    /// A new agent; starts the reaper.
    pub fn new(config: Config) -> Result<Arc<Self>, Error> {
        let sink = Arc::new(Sink::default());
        let processes = Processes::new(sink.clone(), config.endpoint.clone(), config.pid1);
        processes.start_reaper()?;
        Ok(Arc::new(Self {
            config,
            sink,
            processes,
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// Connects and serves the host; as PID 1 reconnects whenever the connection drops
    /// and returns only if the host refuses us.
    pub fn run(self: &Arc<Self>) -> Outcome {
        loop {
            let Some(mut stream) = self.connect() else {
                return Outcome::Unreachable;
            };
            if self.shutting_down.load(Ordering::SeqCst) {
                // The power button was pressed while we were connecting: it powers off.
                loop {
                    std::thread::park();
                }
            }
            match handshake(&mut stream) {
                Ok(version) => log!("connected (protocol {version})"),
                Err(Error::Refused(message)) => {
                    log!("the host refused us: {message}");
                    return Outcome::Refused;
                }
                Err(e) => {
                    log!("{e}");
                    if !self.config.pid1 {
                        return Outcome::Unreachable;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
            match stream.try_clone() {
                Ok(writer) => self.sink.attach(writer),
                Err(e) => {
                    log!("{e}");
                    continue;
                }
            }
            let why = self.serve(&mut stream);
            self.sink.detach();
            if self.shutting_down.load(Ordering::SeqCst) {
                // The Shutdown request's thread powers off (or exits); nothing else to do.
                loop {
                    std::thread::park();
                }
            }
            if !self.config.pid1 {
                log!("control connection ended ({why}); ending processes");
                self.end_processes(Duration::from_millis(500));
                return Outcome::HostClosed;
            }
            log!("control connection lost ({why}); reconnecting");
        }
    }

    /// Connects the control connection. As PID 1 it tries for ever (the vsock device can
    /// appear late, the host can come back); otherwise for 10 s.
    fn connect(&self) -> Option<Stream> {
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            match self.config.endpoint.connect_control(CONTROL_PORT) {
                Ok(stream) => return Some(stream),
                Err(e) => {
                    if attempt % 50 == 0 {
                        log!("waiting for the host: {e}");
                    }
                    if !self.config.pid1 && start.elapsed() > Duration::from_secs(10) {
                        log!("giving up: {e}");
                        return None;
                    }
                }
            }
            attempt = attempt.wrapping_add(1);
            // 20 ms at first (boot), 200 ms after a few seconds.
            let pause = if attempt < 150 { 20 } else { 200 };
            std::thread::sleep(Duration::from_millis(pause));
        }
    }

    /// Reads requests until the connection ends; says why it ended.
    fn serve(self: &Arc<Self>, stream: &mut Stream) -> String {
        loop {
            let bytes = match read_frame_bytes(stream) {
                Ok(b) => b,
                Err(FrameError::Closed) => return "closed by the host".into(),
                Err(e) => return e.to_string(),
            };
            let Some((id, body)) = parse_request(&bytes) else {
                continue;
            };
            let this = self.clone();
            // Each request on its own thread so that none waits for another.
            let started = std::thread::Builder::new()
                .name(format!("req-{id}"))
                .stack_size(256 * 1024)
                .spawn(move || this.answer(id, body));
            if let Err(e) = started {
                self.respond(
                    id,
                    ResponseBody::Error {
                        code: E_FAIL,
                        message: format!("the guest agent cannot start a thread: {e}"),
                    },
                );
            }
        }
    }

    /// Carries out one request and sends its answer (a panic becomes `E_FAIL`).
    fn answer(self: &Arc<Self>, id: u64, body: Result<Request, ResponseBody>) {
        let request = match body {
            Ok(r) => r,
            Err(refusal) => return self.respond(id, refusal),
        };
        let this = self.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            this.handle(id, request)
        }));
        match outcome {
            Ok(Some(body)) => self.respond(id, body),
            Ok(None) => {} // answered already
            Err(_) => self.respond(
                id,
                ResponseBody::Error {
                    code: E_FAIL,
                    message: "internal error in the guest agent".into(),
                },
            ),
        }
    }

    /// Carries out one request; `None` when it sent its answer itself.
    fn handle(self: &Arc<Self>, id: u64, request: Request) -> Option<ResponseBody> {
        let result = match request {
            Request::CreateProcess(create) => {
                if self.shutting_down.load(Ordering::SeqCst) {
                    Err(Error::request(E_FAIL, "the guest is shutting down"))
                } else {
                    match self.processes.create(&create) {
                        Ok((pid, announce)) => {
                            self.respond(id, ResponseBody::Created { pid });
                            drop(announce);
                            return None;
                        }
                        Err(e) => Err(e),
                    }
                }
            }
            Request::Signal { pid, signal } => self
                .processes
                .signal(pid, signal)
                .map(|()| ResponseBody::Ok),
            Request::CloseStdin { pid } => {
                self.processes.close_stdin(pid).map(|()| ResponseBody::Ok)
            }
            Request::ResizeConsole { pid, rows, cols } => self
                .processes
                .resize(pid, rows, cols)
                .map(|()| ResponseBody::Ok),
            Request::ListProcesses => Ok(ResponseBody::Processes {
                processes: procfs::list(),
            }),
            Request::Shutdown { reboot, grace_ms } => {
                self.shutdown(Some(id), reboot, grace_ms);
                return None;
            }
        };
        Some(result.unwrap_or_else(|e| ResponseBody::Error {
            code: e.hresult(),
            message: e.to_string(),
        }))
    }

    fn respond(&self, id: u64, body: ResponseBody) {
        self.sink
            .send(&GuestMessage::Response(Response { id, body }));
    }

    /// SIGTERM, then SIGKILL after `grace`; waits (bounded) until every created process was
    /// reported.
    fn end_processes(&self, grace: Duration) {
        self.processes.signal_all(Signal::SIGTERM);
        let all_gone = self.processes.wait_all_reported(grace);
        if self.config.pid1 {
            // Processes we did not create (daemons, orphans) may still ignore SIGTERM.
            self.processes.signal_all(Signal::SIGKILL);
        }
        if !all_gone {
            self.processes.signal_all(Signal::SIGKILL);
            // The output grace of the last exits, and a little more.
            self.processes
                .wait_all_reported(crate::process::OUTPUT_GRACE + Duration::from_secs(1));
        }
    }

    /// The ACPI power button was pressed: the same power-off as a host's `Shutdown` (with
    /// [`BUTTON_GRACE_MS`]), on its own thread; ignored while a shutdown is under way.
    pub fn power_button(self: &Arc<Self>) {
        if self.shutting_down.load(Ordering::SeqCst) {
            log!("power button: a shutdown is already under way; ignored");
            return;
        }
        let this = self.clone();
        let started = std::thread::Builder::new()
            .name("power-off".into())
            .stack_size(256 * 1024)
            .spawn(move || this.shutdown(None, false, BUTTON_GRACE_MS));
        if let Err(e) = started {
            log!("power button: cannot start a thread ({e}); powering off here");
            self.shutdown(None, false, BUTTON_GRACE_MS);
        }
    }

    /// `Shutdown` (the request `id`, or the power button with `None`): end every process,
    /// sync and unmount, answer `Ok`, then power off (PID 1) or exit (not PID 1).
    fn shutdown(&self, id: Option<u64>, reboot: bool, grace_ms: u32) {
        if self.shutting_down.swap(true, Ordering::SeqCst) {
            match id {
                Some(id) => self.respond(
                    id,
                    ResponseBody::Error {
                        code: E_FAIL,
                        message: "a shutdown is already under way".into(),
                    },
                ),
                None => log!("power button: a shutdown is already under way; ignored"),
            }
            return;
        }
        match id {
            Some(_) => log!("shutting down (the host asked)"),
            None => log!("shutting down (the power button; grace {grace_ms} ms)"),
        }
        self.end_processes(Duration::from_millis(grace_ms.into()));
        if self.config.pid1 {
            init::unmount_all();
        }
        if let Some(id) = id {
            self.respond(id, ResponseBody::Ok);
        }
        if !self.config.pid1 {
            std::process::exit(0);
        }
        // Half-close and give the host a moment to read the answer and close its end:
        // once the VM is off, whatever is still in the virtqueue is lost.
        self.sink.finish(Duration::from_secs(1));
        init::power_off(reboot);
    }
}

/// Says hello and reads the host's answer; the negotiated version.
fn handshake(stream: &mut Stream) -> Result<u32, Error> {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let hello = Hello {
        versions: SUPPORTED_VERSIONS.to_vec(),
        agent: concat!("hcs-guest ", env!("CARGO_PKG_VERSION")).into(),
        kernel,
    };
    write_frame(stream, &hello)?;
    match read_frame::<_, HostMessage>(stream)? {
        HostMessage::Welcome { version } if SUPPORTED_VERSIONS.contains(&version) => Ok(version),
        HostMessage::Welcome { version } => Err(Error::Handshake(format!(
            "the host chose version {version}, which this agent does not speak"
        ))),
        HostMessage::Refused { message, .. } => Err(Error::Refused(message)),
        HostMessage::Request { .. } => Err(Error::Handshake("a request before Welcome".into())),
    }
}

/// Reads one frame as a request: `Some((id, Ok(request)))`, or `Some((id, Err(answer)))`
/// for a request that cannot be carried out (unknown type, bad fields), or `None` (logged)
/// for a frame that is not a request with an id.
pub fn parse_request(bytes: &[u8]) -> Option<(u64, Result<Request, ResponseBody>)> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            log!("ignored a frame that is not JSON: {e}");
            return None;
        }
    };
    let id = match (value.get("type").and_then(Value::as_str), value.get("id")) {
        (Some("Request"), Some(id)) => match id.as_u64() {
            Some(id) => id,
            None => {
                log!("ignored a request with a bad id");
                return None;
            }
        },
        (Some("Request"), None) => {
            log!("ignored a request without an id");
            return None;
        }
        (kind, _) => {
            log!("ignored a {} message", kind.unwrap_or("malformed"));
            return None;
        }
    };
    match serde_json::from_value::<HostMessage>(value.clone()) {
        Ok(HostMessage::Request { body, .. }) => Some((id, Ok(body))),
        Ok(_) => None,
        Err(e) => {
            let kind = value
                .get("body")
                .and_then(|b| b.get("type"))
                .and_then(Value::as_str);
            let answer = match kind {
                Some(k) if KNOWN_REQUESTS.contains(&k) => ResponseBody::Error {
                    code: E_INVALIDARG,
                    message: format!("malformed {k} request: {e}"),
                },
                other => ResponseBody::Error {
                    code: HCS_E_UNKNOWN_MESSAGE,
                    message: format!(
                        "this agent does not know the request {}",
                        other.unwrap_or("(no type)")
                    ),
                },
            };
            Some((id, Err(answer)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcs_guest_protocol::CreateProcess;

    #[test]
    fn every_request_type_is_known() {
        let all = [
            Request::CreateProcess(CreateProcess::default()),
            Request::Signal { pid: 1, signal: 1 },
            Request::CloseStdin { pid: 1 },
            Request::ResizeConsole {
                pid: 1,
                rows: 1,
                cols: 1,
            },
            Request::Shutdown {
                reboot: false,
                grace_ms: 1,
            },
            Request::ListProcesses,
        ];
        for request in all {
            let value = serde_json::to_value(&request).expect("serialises");
            let kind = value.get("type").and_then(Value::as_str).expect("tagged");
            assert!(KNOWN_REQUESTS.contains(&kind), "{kind}");
        }
        assert_eq!(KNOWN_REQUESTS.len(), 6);
    }

    #[test]
    fn unknown_and_malformed_requests_get_answers_and_junk_is_ignored() {
        let unknown = br#"{"type":"Request","id":5,"body":{"type":"Teleport","to":"mars"}}"#;
        let (id, answer) = parse_request(unknown).expect("a request");
        assert_eq!(id, 5);
        assert!(matches!(
            answer,
            Err(ResponseBody::Error { code, .. }) if code == HCS_E_UNKNOWN_MESSAGE
        ));
        let bad = br#"{"type":"Request","id":6,"body":{"type":"Signal","pid":"x"}}"#;
        assert!(matches!(
            parse_request(bad),
            Some((6, Err(ResponseBody::Error { code, .. }))) if code == E_INVALIDARG
        ));
        assert!(parse_request(b"not json").is_none());
        assert!(parse_request(br#"{"type":"Request","body":{"type":"ListProcesses"}}"#).is_none());
        assert!(parse_request(br#"{"type":"Welcome","version":1}"#).is_none());
        assert!(matches!(
            parse_request(br#"{"type":"Request","id":7,"body":{"type":"ListProcesses"}}"#),
            Some((7, Ok(Request::ListProcesses)))
        ));
    }
}
