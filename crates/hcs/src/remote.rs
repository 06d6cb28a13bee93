//! One connection to the service `hcsd`: the handshake, requests out through one writer,
//! and a reader thread that hands the service's replies and notifications to the client.
//!
//! ```text
//!  Client::send ──ClientMessage::Request──> [writer, behind a mutex] ──> hcsd
//!  Client::on_message <── reader thread <── ServiceMessage::Host (+ descriptors)
//!  Client::connection_lost <── reader thread at EOF, a socket error or Closing
//! ```
//!
//! A connection is made once and never repaired: when it is lost (HCS-API rule 36) the
//! handles made on it can only be closed, and the next create, open, enumerate or service
//! call opens a new one. Each connection has a generation number so that the client can
//! tell which requests and handles were made on it.

use crate::client::Client;
use hcs_protocol::Request;
use hcs_schema::HResult;
use hcs_wire::{ClientMessage, FrameReader, FrameWriter, ServiceMessage, WireError};
use parking_lot::Mutex;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long the service has to answer a `Hello`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no connection could be made: the HRESULT every request through it fails with, and
/// a sentence a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    pub result: HResult,
    pub message: String,
}

impl Refusal {
    /// The service does not answer at `socket`.
    fn not_available(socket: &Path, why: impl std::fmt::Display) -> Refusal {
        let path = socket.display();
        Refusal {
            result: HResult::HCS_E_SERVICE_NOT_AVAILABLE,
            message: format!(
                "the Host Compute Service (hcsd) does not answer at {path}: {why}; start it \
                 (hcsd --socket {path}) or set HCS_HOST=embedded to run compute systems \
                 inside this process"
            ),
        }
    }
}

/// Why a request could not be sent.
pub(crate) enum SendError {
    /// The connection is gone (or just went): the request fails with
    /// `HCS_E_SERVICE_DISCONNECT`.
    Lost(String),
    /// The request itself cannot travel (too large): only it fails.
    Refused(Refusal),
}

/// One connection to the service.
pub(crate) struct Remote {
    /// Counts connections within this process, from 1.
    pub generation: u64,
    /// The socket it was made to.
    pub socket: PathBuf,
    writer: Mutex<FrameWriter>,
    /// The socket again, to shut it without waiting for a writer stuck in a full buffer.
    control: UnixStream,
    lost: AtomicBool,
    /// Why the connection ended, once it has.
    reason: Mutex<Option<String>>,
}

impl Remote {
    /// Connects to `socket` and says hello. On success, the reading half is returned for
    /// [`Remote::start_reader`].
    pub fn connect(socket: &Path, generation: u64) -> Result<(Remote, FrameReader), Refusal> {
        let stream = UnixStream::connect(socket).map_err(|e| Refusal::not_available(socket, e))?;
        let (mut reader, mut writer) =
            hcs_wire::frame::split(stream).map_err(|e| Refusal::not_available(socket, e))?;
        let hello = ClientMessage::Hello {
            versions: vec![hcs_wire::PROTOCOL_VERSION],
            client: program_name(),
        };
        writer
            .send(&hello, &[])
            .map_err(|e| Refusal::not_available(socket, e))?;
        // The timeout is the socket's, shared by both halves: cleared after the answer.
        let _ = writer.stream().set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        let answer = reader.recv::<ServiceMessage>();
        let _ = writer.stream().set_read_timeout(None);
        match answer {
            Ok(Some((
                ServiceMessage::Welcome {
                    version,
                    service,
                    pid,
                },
                _,
            ))) => {
                if version != hcs_wire::PROTOCOL_VERSION {
                    return Err(Refusal {
                        result: HResult::HCS_E_UNSUPPORTED_PROTOCOL_VERSION,
                        message: format!(
                            "the Host Compute Service at {} chose protocol version {version}; \
                             this client speaks version {}",
                            socket.display(),
                            hcs_wire::PROTOCOL_VERSION
                        ),
                    });
                }
                tracing::debug!(
                    socket = %socket.display(),
                    service,
                    pid,
                    generation,
                    "connected to the Host Compute Service"
                );
                let control = writer
                    .stream()
                    .try_clone()
                    .map_err(|e| Refusal::not_available(socket, e))?;
                let remote = Remote {
                    generation,
                    socket: socket.to_owned(),
                    writer: Mutex::new(writer),
                    control,
                    lost: AtomicBool::new(false),
                    reason: Mutex::new(None),
                };
                Ok((remote, reader))
            }
            Ok(Some((ServiceMessage::Refused { result, message }, _))) => Err(Refusal {
                result,
                message: format!(
                    "the Host Compute Service at {} refused this client: {message}",
                    socket.display()
                ),
            }),
            Ok(Some((other, _))) => Err(Refusal::not_available(
                socket,
                format!("it answered the handshake with {}", message_name(&other)),
            )),
            Ok(None) => Err(Refusal::not_available(
                socket,
                "it closed the connection during the handshake",
            )),
            Err(WireError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(Refusal::not_available(
                    socket,
                    format!(
                        "no answer to the handshake within {} s",
                        HANDSHAKE_TIMEOUT.as_secs()
                    ),
                ))
            }
            Err(e) => Err(Refusal::not_available(socket, e)),
        }
    }

    /// Starts the thread that reads the service's messages for `client`.
    pub fn start_reader(
        self: &Arc<Self>,
        reader: FrameReader,
        client: Weak<Client>,
    ) -> std::io::Result<()> {
        let remote = Arc::clone(self);
        std::thread::Builder::new()
            .name(format!("hcs-service-{}", self.generation))
            .spawn(move || remote.read_loop(reader, client))
            .map(|_| ())
    }

    fn read_loop(self: Arc<Self>, mut reader: FrameReader, client: Weak<Client>) {
        let reason = loop {
            match reader.recv::<ServiceMessage>() {
                Ok(Some((ServiceMessage::Host(mut message), fds))) => match client.upgrade() {
                    Some(client) => {
                        message.attach_fds(fds);
                        client.on_message(message)
                    }
                    None => return,
                },
                Ok(Some((ServiceMessage::Closing { result, message }, _))) => {
                    break format!("the service closed the connection: {message} ({result})");
                }
                Ok(Some((other, _))) => {
                    tracing::warn!(
                        message = message_name(&other),
                        "unexpected message from the Host Compute Service, ignored"
                    );
                }
                Ok(None) => break "the service closed the connection".to_owned(),
                Err(error) => break format!("the connection failed: {error}"),
            }
        };
        if let Some(client) = client.upgrade() {
            client.connection_lost(&self, reason);
        }
    }

    /// Sends one request.
    pub fn send(&self, request: Request) -> Result<(), SendError> {
        if let Some(reason) = self.lost_reason() {
            return Err(SendError::Lost(reason));
        }
        let outcome = self
            .writer
            .lock()
            .send(&ClientMessage::Request(request), &[]);
        match outcome {
            Ok(()) => Ok(()),
            Err(error @ (WireError::TooLarge { .. } | WireError::Malformed(_))) => {
                Err(SendError::Refused(Refusal {
                    result: HResult::E_INVALIDARG,
                    message: format!("the request cannot be sent to the service: {error}"),
                }))
            }
            Err(error) => Err(SendError::Lost(format!("sending failed: {error}"))),
        }
    }

    /// Marks the connection lost (once: `false` if it already was) and shuts the socket,
    /// so that the reader thread ends too.
    pub fn mark_lost(&self, reason: &str) -> bool {
        {
            let mut slot = self.reason.lock();
            if slot.is_some() {
                return false;
            }
            *slot = Some(reason.to_owned());
        }
        self.lost.store(true, Ordering::SeqCst);
        let _ = self.control.shutdown(Shutdown::Both);
        true
    }

    /// Whether the connection is gone.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Why the connection ended, if it has.
    pub fn lost_reason(&self) -> Option<String> {
        if !self.is_lost() {
            return None;
        }
        self.reason.lock().clone()
    }

    /// What a request through this lost connection fails with.
    pub fn disconnect_message(&self, reason: &str) -> String {
        format!(
            "the connection to the Host Compute Service at {} was lost ({reason}); handles \
             made on it can only be closed: open the compute system again once hcsd is back",
            self.socket.display()
        )
    }
}

/// This program's name, for the service's log.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "hcs-client".to_owned())
}

fn message_name(message: &ServiceMessage) -> &'static str {
    match message {
        ServiceMessage::Welcome { .. } => "Welcome",
        ServiceMessage::Refused { .. } => "Refused",
        ServiceMessage::Host(_) => "Host",
        ServiceMessage::Closing { .. } => "Closing",
    }
}
