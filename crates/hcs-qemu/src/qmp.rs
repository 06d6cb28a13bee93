//! A small typed QMP client: one request, one reply, events on the same socket.
//!
//! QMP (QEMU's `docs/interop/qmp-spec.rst`) sends one JSON object per line. After the
//! greeting and `qmp_capabilities`, a client sends `{"execute": ..., "id": n}` and gets one
//! `{"return": ..., "id": n}` or `{"error": ..., "id": n}` back, in order; events
//! (`{"event": ..., "data": ...}`) may arrive in between at any time.
//!
//! The socket is split in two: [`QmpClient`] writes commands from any thread and waits for
//! its reply on a channel; [`QmpReader`] is read by the VM's monitor thread, which hands
//! replies to [`QmpClient::deliver`] and acts on events itself. When the reader sees the end
//! of the socket (QEMU gone), [`QmpClient::close`] fails every waiting command at once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The QMP commands this crate sends; all of them return `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "execute")]
pub(crate) enum Command {
    /// Leaves capabilities negotiation mode (the first command of a session).
    #[serde(rename = "qmp_capabilities")]
    QmpCapabilities,
    /// Runs the vCPUs (start from `-S`, or resume).
    #[serde(rename = "cont")]
    Cont,
    /// Pauses the vCPUs.
    #[serde(rename = "stop")]
    Stop,
    /// Injects an NMI.
    #[serde(rename = "inject-nmi")]
    InjectNmi,
    /// Presses the ACPI power button.
    #[serde(rename = "system_powerdown")]
    SystemPowerdown,
    /// Ends QEMU.
    #[serde(rename = "quit")]
    Quit,
}

impl Command {
    /// The command's QMP name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Command::QmpCapabilities => "qmp_capabilities",
            Command::Cont => "cont",
            Command::Stop => "stop",
            Command::InjectNmi => "inject-nmi",
            Command::SystemPowerdown => "system_powerdown",
            Command::Quit => "quit",
        }
    }
}

/// A command on the wire.
#[derive(Serialize)]
struct Request {
    #[serde(flatten)]
    command: Command,
    id: u64,
}

/// Any message QEMU sends.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Wire {
    Return {
        #[serde(rename = "return")]
        _value: serde_json::Value,
        id: Option<u64>,
    },
    Error {
        error: WireError,
        id: Option<u64>,
    },
    Event {
        event: String,
        #[serde(default)]
        data: serde_json::Value,
    },
    Greeting {
        #[serde(rename = "QMP")]
        qmp: Greeting,
    },
}

/// The body of an error reply.
#[derive(Debug, Deserialize)]
struct WireError {
    class: String,
    desc: String,
}

/// The greeting's body: `{"QMP": {"version": {...}, "capabilities": [...]}}`.
#[derive(Debug, Deserialize)]
struct Greeting {
    version: GreetingVersion,
}

#[derive(Debug, Deserialize)]
struct GreetingVersion {
    qemu: QemuVersion,
    #[serde(default)]
    package: String,
}

#[derive(Debug, Deserialize)]
struct QemuVersion {
    major: u32,
    minor: u32,
    micro: u32,
}

/// `SHUTDOWN`'s and `RESET`'s data.
#[derive(Debug, Deserialize)]
struct ShutdownData {
    guest: bool,
    reason: String,
}

/// The events this crate acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// QEMU is shutting down: `guest` says whether the guest asked (power off, reset, panic
    /// with `-action`), `reason` is QMP's `ShutdownCause` (`guest-shutdown`, `guest-reset`,
    /// `guest-panic`, `host-qmp-quit`, `host-signal`, ...).
    Shutdown { guest: bool, reason: String },
    /// The machine was reset (`-action reboot=reset`): `guest` says whether the guest
    /// asked, `reason` is QMP's `ShutdownCause` (`guest-reset` for `reboot -f`).
    Reset { guest: bool, reason: String },
    /// The guest reported a panic through pvpanic.
    GuestPanicked,
    /// Any other event, by name.
    Other(String),
}

/// The reply to a command: `Ok` or QMP's (class, description).
type Reply = Result<(), (String, String)>;

/// What the monitor thread reads off the socket.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// The reply to command `id`.
    Reply { id: u64, reply: Reply },
    /// An asynchronous event.
    Event(Event),
}

/// The writing half: sends commands and waits for their replies.
pub(crate) struct QmpClient {
    writer: Mutex<UnixStream>,
    pending: Mutex<Pending>,
}

/// Commands sent and not yet answered.
struct Pending {
    next_id: u64,
    waiters: HashMap<u64, mpsc::SyncSender<Reply>>,
    /// The socket has ended: no reply will ever come.
    closed: bool,
}

/// The reading half, owned by the monitor thread.
pub(crate) struct QmpReader {
    reader: BufReader<UnixStream>,
    line: String,
}

/// Runs the QMP handshake on a fresh socket: reads the greeting, negotiates capabilities.
/// Gives up after `timeout` without a message. Returns the two halves and QEMU's version.
pub(crate) fn handshake(
    stream: UnixStream,
    timeout: Duration,
) -> Result<(QmpClient, QmpReader, String), Error> {
    let io = |context: &str, e| Error::io(format!("QMP {context}"), e);
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| io("set timeout", e))?;
    let writer = stream.try_clone().map_err(|e| io("socket", e))?;
    let mut reader = QmpReader {
        reader: BufReader::new(stream),
        line: String::new(),
    };
    let version = match reader.read_wire()? {
        Some(Wire::Greeting { qmp }) => {
            let v = qmp.version;
            format!(
                "{}.{}.{} ({})",
                v.qemu.major, v.qemu.minor, v.qemu.micro, v.package
            )
        }
        Some(other) => {
            return Err(Error::Protocol(format!(
                "expected the QMP greeting, got {other:?}"
            )))
        }
        None => return Err(Error::Stopped),
    };
    let client = QmpClient {
        writer: Mutex::new(writer),
        pending: Mutex::new(Pending {
            next_id: 1,
            waiters: HashMap::new(),
            closed: false,
        }),
    };
    let id = client.send(Command::QmpCapabilities, None)?;
    loop {
        match reader.next()? {
            Some(Incoming::Reply { id: got, reply }) if got == id => {
                reply.map_err(|(class, desc)| Error::Qmp {
                    command: Command::QmpCapabilities.name(),
                    class,
                    desc,
                })?;
                break;
            }
            Some(_) => continue,
            None => return Err(Error::Stopped),
        }
    }
    reader
        .reader
        .get_ref()
        .set_read_timeout(None)
        .map_err(|e| io("clear timeout", e))?;
    Ok((client, reader, version))
}

impl QmpClient {
    /// Sends `command` and waits up to `timeout` for its reply.
    pub(crate) fn execute(&self, command: Command, timeout: Duration) -> Result<(), Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        let id = self.send(command, Some(tx))?;
        match rx.recv_timeout(timeout) {
            Ok(reply) => reply.map_err(|(class, desc)| Error::Qmp {
                command: command.name(),
                class,
                desc,
            }),
            // The reader dropped our sender: QEMU's socket ended.
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Stopped),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.pending.lock().waiters.remove(&id);
                Err(Error::Protocol(format!(
                    "no reply to {} within {timeout:?}",
                    command.name()
                )))
            }
        }
    }

    /// Sends `command` without waiting for its reply (used for `quit`).
    pub(crate) fn send_only(&self, command: Command) -> Result<(), Error> {
        self.send(command, None).map(|_| ())
    }

    /// Writes one command; registers `waiter` for its reply. Returns the command's id.
    fn send(
        &self,
        command: Command,
        waiter: Option<mpsc::SyncSender<Reply>>,
    ) -> Result<u64, Error> {
        let id = {
            let mut pending = self.pending.lock();
            if pending.closed {
                return Err(Error::Stopped);
            }
            let id = pending.next_id;
            pending.next_id += 1;
            if let Some(waiter) = waiter {
                pending.waiters.insert(id, waiter);
            }
            id
        };
        let mut line = serde_json::to_vec(&Request { command, id })
            .map_err(|e| Error::Protocol(format!("cannot encode {}: {e}", command.name())))?;
        line.push(b'\n');
        // A short write timeout: QEMU reads its monitor promptly; a wedged QEMU must not
        // hold the caller (stop() ends it anyway).
        let written = {
            let mut writer = self.writer.lock();
            let _ = writer.set_write_timeout(Some(Duration::from_secs(5)));
            writer.write_all(&line)
        };
        if let Err(e) = written {
            self.pending.lock().waiters.remove(&id);
            return Err(match e.kind() {
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                    Error::Stopped
                }
                _ => Error::io(format!("QMP {}", command.name()), e),
            });
        }
        Ok(id)
    }

    /// Hands a reply read by the monitor thread to the command waiting for it.
    pub(crate) fn deliver(&self, id: u64, reply: Reply) {
        if let Some(waiter) = self.pending.lock().waiters.remove(&id) {
            let _ = waiter.try_send(reply);
        }
    }

    /// The socket has ended: every waiting command and every later one fails at once.
    pub(crate) fn close(&self) {
        let mut pending = self.pending.lock();
        pending.closed = true;
        pending.waiters.clear();
    }

    /// Shuts the socket down so a reader blocked on it returns (QEMU is being killed).
    pub(crate) fn shutdown(&self) {
        let _ = self.writer.lock().shutdown(std::net::Shutdown::Both);
    }
}

impl QmpReader {
    /// The next reply or event; `None` when the socket has ended (QEMU closed it or died).
    pub(crate) fn next(&mut self) -> Result<Option<Incoming>, Error> {
        loop {
            let incoming = match self.read_wire()? {
                None => return Ok(None),
                Some(Wire::Return { id: Some(id), .. }) => Incoming::Reply { id, reply: Ok(()) },
                Some(Wire::Error {
                    id: Some(id),
                    error,
                }) => Incoming::Reply {
                    id,
                    reply: Err((error.class, error.desc)),
                },
                Some(Wire::Event { event, data }) => Incoming::Event(parse_event(event, data)),
                // Replies without an id answer nothing we sent; a second greeting is odd.
                Some(other) => {
                    tracing::debug!(message = ?other, "unexpected QMP message ignored");
                    continue;
                }
            };
            return Ok(Some(incoming));
        }
    }

    /// One message, `None` at the end of the socket.
    fn read_wire(&mut self) -> Result<Option<Wire>, Error> {
        self.line.clear();
        match self.reader.read_line(&mut self.line) {
            Ok(0) => Ok(None),
            Ok(_) => {
                tracing::trace!(line = self.line.trim_end(), "QMP <-");
                serde_json::from_str(&self.line).map(Some).map_err(|e| {
                    Error::Protocol(format!("malformed QMP message {:?}: {e}", self.line))
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(Error::Protocol(
                    "QEMU did not answer on QMP in time".to_owned(),
                ))
            }
            // A reset socket is QEMU ending too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(None),
            Err(e) => Err(Error::io("QMP read", e)),
        }
    }
}

/// Types the events this crate acts on.
fn parse_event(name: String, data: serde_json::Value) -> Event {
    match name.as_str() {
        "SHUTDOWN" => match serde_json::from_value::<ShutdownData>(data) {
            Ok(d) => Event::Shutdown {
                guest: d.guest,
                reason: d.reason,
            },
            Err(_) => Event::Shutdown {
                guest: false,
                reason: "unknown".to_owned(),
            },
        },
        "RESET" => match serde_json::from_value::<ShutdownData>(data) {
            Ok(d) => Event::Reset {
                guest: d.guest,
                reason: d.reason,
            },
            Err(_) => Event::Reset {
                guest: false,
                reason: "unknown".to_owned(),
            },
        },
        "GUEST_PANICKED" => Event::GuestPanicked,
        _ => Event::Other(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encoding() {
        let json = serde_json::to_string(&Request {
            command: Command::InjectNmi,
            id: 7,
        })
        .unwrap();
        assert_eq!(json, r#"{"execute":"inject-nmi","id":7}"#);
    }

    #[test]
    fn handshake_then_replies_and_events() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let qemu = std::thread::spawn(move || {
            let mut w = theirs.try_clone().unwrap();
            let mut r = BufReader::new(theirs);
            w.write_all(
                b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \
                  \"package\": \"Debian\"}, \"capabilities\": [\"oob\"]}}\n",
            )
            .unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "{\"execute\":\"qmp_capabilities\",\"id\":1}\n");
            w.write_all(b"{\"return\": {}, \"id\": 1}\n").unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "{\"execute\":\"stop\",\"id\":2}\n");
            w.write_all(
                b"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"SHUTDOWN\", \
                  \"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}\n\
                  {\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}, \"event\": \"RESET\", \
                  \"data\": {\"guest\": true, \"reason\": \"guest-reset\"}}\n\
                  {\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, \"id\": 2}\n",
            )
            .unwrap();
        });
        let (client, mut reader, version) = handshake(ours, Duration::from_secs(5)).unwrap();
        assert_eq!(version, "7.2.22 (Debian)");
        let client = std::sync::Arc::new(client);
        let c2 = client.clone();
        let waiter = std::thread::spawn(move || c2.execute(Command::Stop, Duration::from_secs(5)));
        let mut events = Vec::new();
        while let Some(msg) = reader.next().unwrap() {
            match msg {
                Incoming::Reply { id, reply } => client.deliver(id, reply),
                Incoming::Event(e) => events.push(e),
            }
        }
        client.close();
        qemu.join().unwrap();
        assert!(matches!(
            waiter.join().unwrap(),
            Err(Error::Qmp { class, .. }) if class == "GenericError"
        ));
        assert_eq!(
            events,
            vec![
                Event::Shutdown {
                    guest: true,
                    reason: "guest-reset".into()
                },
                Event::Reset {
                    guest: true,
                    reason: "guest-reset".into()
                }
            ]
        );
        assert!(matches!(
            client.execute(Command::Cont, Duration::from_secs(1)),
            Err(Error::Stopped)
        ));
    }
}
