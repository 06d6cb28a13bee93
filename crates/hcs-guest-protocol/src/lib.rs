//! The guest-agent protocol: what `hcs-host` and the `hcs-guest` agent say to each other.
//!
//! This crate owns the messages and their framing, nothing else (no sockets, no threads).
//! Both sides depend on it, so they cannot disagree on a field.
//!
//! ```text
//!  host (hcs-host)                                 guest (hcs-guest, PID 1)
//!  listens on <vsock uds>_<CONTROL_PORT>  <------  connects to CID 2, CONTROL_PORT
//!        <------------------- Hello {versions, agent, kernel}
//!        Welcome {version} ---------------------->            (or Refused, then close)
//!        Request {id, CreateProcess{.. stdout_port ..}} ---->
//!  listens on <uds>_<stdout_port>         <------  connects to CID 2, stdout_port
//!        <------------------- Response {id, Ok(Created {pid})}
//!        <------------------- ProcessExited {pid, exit_code}   (after its stdout/stderr drained)
//! ```
//!
//! * **Framing**: every message is a 4-byte little-endian length followed by that many
//!   bytes of UTF-8 JSON ([`write_frame`], [`read_frame`]); at most [`MAX_FRAME`] bytes.
//! * **Handshake**: the guest speaks first with [`Hello`]; the host picks the highest
//!   version both support ([`negotiate`]) and answers [`HostMessage::Welcome`], or
//!   [`HostMessage::Refused`] when there is none (the host then fails the start with
//!   `HCS_E_UNSUPPORTED_PROTOCOL_VERSION`).
//! * **Requests** carry an id chosen by the host; the guest answers each exactly once with a
//!   [`Response`] of the same id, in any order. A request the guest does not know (a newer
//!   host) is answered with [`ResponseBody::Error`] of code [`HCS_E_UNKNOWN_MESSAGE`]: the
//!   guest reads a request as [`serde_json::Value`] first, so an unknown `type` never breaks
//!   the connection.
//! * **Stdio**: each requested stream of a process is its own vsock connection from the
//!   guest to a port the host chose and listens on (as hcsshim's GCS does). The first bytes
//!   on it are the process data; the guest closes stdout/stderr at the child's EOF; the host
//!   closing its end of stdin (or `CloseStdin`) gives the child EOF.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// Protocol versions this build speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// The vsock port the host listens on for the agent's control connection (hcsshim's GCS
/// uses the same number).
pub const CONTROL_PORT: u32 = 0x4000_0000;

/// The CID under which the guest reaches the host.
pub const HOST_CID: u32 = 2;

/// Largest frame either side accepts, in bytes.
pub const MAX_FRAME: usize = 1 << 20;

/// `HCS_E_UNKNOWN_MESSAGE`: the guest got a request type it does not know.
pub const HCS_E_UNKNOWN_MESSAGE: i32 = 0x8037_010B_u32 as i32;
/// `HCS_E_UNSUPPORTED_PROTOCOL_VERSION`: no common protocol version.
pub const HCS_E_UNSUPPORTED_PROTOCOL_VERSION: i32 = 0x8037_010C_u32 as i32;
/// `HCS_E_PROCESS_ALREADY_STOPPED`: a signal or resize to a process that has exited.
pub const HCS_E_PROCESS_ALREADY_STOPPED: i32 = 0x8037_011F_u32 as i32;
/// `HRESULT_FROM_WIN32(ERROR_NOT_FOUND)`: no such process.
pub const ERROR_NOT_FOUND: i32 = 0x8007_0490_u32 as i32;
/// `HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)`: the program (or working directory) does not exist.
pub const ERROR_FILE_NOT_FOUND: i32 = 0x8007_0002_u32 as i32;
/// `HRESULT_FROM_WIN32(ERROR_ACCESS_DENIED)`: the program is not executable.
pub const ERROR_ACCESS_DENIED: i32 = 0x8007_0005_u32 as i32;
/// `E_INVALIDARG`: a malformed request (empty argv, NUL bytes, bad signal number).
pub const E_INVALIDARG: i32 = 0x8007_0057_u32 as i32;
/// `E_FAIL`: any other failure; the message says what.
pub const E_FAIL: i32 = 0x8000_4005_u32 as i32;

/// The guest's first message on the control connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Protocol versions the agent speaks.
    pub versions: Vec<u32>,
    /// The agent's build (`hcs-guest 0.1.0`).
    pub agent: String,
    /// The guest kernel release (`uname -r`).
    pub kernel: String,
}

/// Everything the host sends on the control connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum HostMessage {
    /// The handshake succeeded; `version` is used from now on.
    Welcome {
        /// The negotiated version.
        version: u32,
    },
    /// No common version; the host closes the connection after this.
    Refused {
        /// Versions the host speaks.
        versions: Vec<u32>,
        /// Why, for the guest's log.
        message: String,
    },
    /// A request; answered by exactly one [`Response`] with the same id.
    Request {
        /// Chosen by the host, unique on this connection.
        id: u64,
        /// What to do.
        body: Request,
    },
}

/// What the host asks of the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Request {
    /// Starts a process. Answered with [`ResponseBody::Created`] once the process runs and
    /// its stdio connections are made.
    CreateProcess(CreateProcess),
    /// Sends `signal` (a Linux signal number) to the process (its process group when it
    /// leads one). Answered with `Ok`, or `HCS_E_PROCESS_ALREADY_STOPPED`.
    Signal {
        /// The guest pid from [`ResponseBody::Created`].
        pid: u32,
        /// Linux signal number, 1..=64.
        signal: i32,
    },
    /// Closes the process's stdin (the child reads EOF).
    CloseStdin {
        /// The guest pid.
        pid: u32,
    },
    /// Sets the terminal size of a process created with `terminal`.
    ResizeConsole {
        /// The guest pid.
        pid: u32,
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Ends every process (SIGTERM, then SIGKILL after `grace_ms`), syncs and unmounts file
    /// systems, and powers the VM off (`reboot: false`) or resets it. Answered with `Ok`
    /// just before the power-off.
    Shutdown {
        /// Reset instead of power off.
        reboot: bool,
        /// How long processes get between SIGTERM and SIGKILL.
        grace_ms: u32,
    },
    /// Lists the guest's processes (for the `ProcessList` property).
    ListProcesses,
}

/// The process to start.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProcess {
    /// argv; `argv[0]` is looked up in `PATH` of `env` (or `/usr/sbin:/usr/bin:/sbin:/bin`)
    /// when it has no `/`.
    pub argv: Vec<String>,
    /// The whole environment of the child (nothing is inherited from the agent).
    pub env: BTreeMap<String, String>,
    /// Working directory; `None` = `/`.
    pub cwd: Option<String>,
    /// User name or numeric uid to run as; `None` = root.
    pub user: Option<String>,
    /// Host port the guest connects stdin to; `None` = `/dev/null`.
    pub stdin_port: Option<u32>,
    /// Host port for stdout; `None` = `/dev/null`.
    pub stdout_port: Option<u32>,
    /// Host port for stderr; `None` = `/dev/null` (with a terminal, stderr goes to stdout).
    pub stderr_port: Option<u32>,
    /// Run on a pseudo-terminal of this size (rows, cols) (`EmulateConsole`).
    pub terminal: Option<(u16, u16)>,
}

/// The guest's messages on the control connection after [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum GuestMessage {
    /// The answer to the request `id`.
    Response(Response),
    /// A process created by `CreateProcess` ended; sent once per process, after its
    /// stdout and stderr connections were closed.
    ProcessExited {
        /// The guest pid.
        pid: u32,
        /// The exit status, or 128 + the signal number when a signal ended it.
        exit_code: i32,
    },
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// What happened.
    pub body: ResponseBody,
}

/// The outcome of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", deny_unknown_fields)]
pub enum ResponseBody {
    /// Done, nothing to return.
    Ok,
    /// `CreateProcess` succeeded.
    Created {
        /// The guest pid.
        pid: u32,
    },
    /// `ListProcesses`.
    Processes {
        /// One entry per guest process.
        processes: Vec<ProcessEntry>,
    },
    /// The request failed.
    Error {
        /// An HRESULT (one of the constants of this crate).
        code: i32,
        /// What went wrong, for a person.
        message: String,
    },
}

/// One guest process in [`ResponseBody::Processes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessEntry {
    /// Guest pid.
    pub pid: u32,
    /// Executable name (`/proc/<pid>/comm`).
    pub name: String,
    /// User-mode CPU time in 100 ns units.
    pub user_time_100ns: u64,
    /// Kernel-mode CPU time in 100 ns units.
    pub kernel_time_100ns: u64,
    /// Resident set size in bytes.
    pub resident_bytes: u64,
}

/// Picks the highest version in both lists.
pub fn negotiate(ours: &[u32], theirs: &[u32]) -> Option<u32> {
    ours.iter().copied().filter(|v| theirs.contains(v)).max()
}

/// Framing and decoding failures.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection at a frame boundary.
    #[error("the connection was closed")]
    Closed,
    /// Reading or writing failed (including a close in the middle of a frame).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A length above [`MAX_FRAME`].
    #[error("frame of {0} bytes is larger than the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// The bytes are not the expected JSON message.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Writes one message as a frame.
pub fn write_frame<W: Write, T: Serialize>(out: &mut W, message: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(message)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    // One write so that concurrent writers (serialised by the caller's lock) never mix.
    out.write_all(&frame)?;
    out.flush()?;
    Ok(())
}

/// Reads one frame's bytes; [`FrameError::Closed`] at a clean end of stream.
pub fn read_frame_bytes<R: Read>(input: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    Ok(body)
}

/// Reads one frame and decodes it as `T`.
pub fn read_frame<R: Read, T: for<'de> Deserialize<'de>>(input: &mut R) -> Result<T, FrameError> {
    let body = read_frame_bytes(input)?;
    Ok(serde_json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let message = HostMessage::Request {
            id: 7,
            body: Request::CreateProcess(CreateProcess {
                argv: vec!["echo".into(), "hi".into()],
                stdout_port: Some(5),
                ..Default::default()
            }),
        };
        let mut buffer = Vec::new();
        write_frame(&mut buffer, &message).unwrap();
        let back: HostMessage = read_frame(&mut buffer.as_slice()).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn a_clean_end_is_closed_and_a_cut_frame_is_an_error() {
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame::<_, Hello>(&mut empty),
            Err(FrameError::Closed)
        ));
        let mut cut: &[u8] = &[10, 0, 0, 0, b'{'];
        assert!(matches!(
            read_frame::<_, Hello>(&mut cut),
            Err(FrameError::Io(_))
        ));
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(
            read_frame::<_, Hello>(&mut huge),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn negotiation_takes_the_highest_common_version() {
        assert_eq!(negotiate(&[1, 2, 3], &[2, 3, 4]), Some(3));
        assert_eq!(negotiate(&[1], &[2]), None);
    }

    #[test]
    fn wire_shape_is_stable() {
        let json = serde_json::to_string(&GuestMessage::ProcessExited {
            pid: 3,
            exit_code: 1,
        })
        .unwrap();
        assert_eq!(json, r#"{"type":"ProcessExited","pid":3,"exit_code":1}"#);
        let json = serde_json::to_string(&GuestMessage::Response(Response {
            id: 1,
            body: ResponseBody::Created { pid: 9 },
        }))
        .unwrap();
        assert_eq!(
            json,
            r#"{"type":"Response","id":1,"body":{"result":"Created","pid":9}}"#
        );
    }
}
