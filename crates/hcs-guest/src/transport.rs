//! Connections to the host: the control connection and the stdio streams, over AF_VSOCK in
//! a VM or over Unix sockets in tests, and the shared writer of control messages.
//!
//! With `--connect unix:PATH` the control connection goes to `PATH` and the stream of port
//! `N` to `PATH_N`, which is how `vhost-device-vsock` presents guest connections on the host.

use crate::error::Error;
use crate::log::log;
use hcs_guest_protocol::{write_frame, HOST_CID};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, VsockAddr};
use serde::Serialize;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Where the host is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// AF_VSOCK to this CID (the host is CID 2).
    Vsock {
        /// The host's CID.
        cid: u32,
    },
    /// Unix sockets: the control connection on this path, port `N` on `<path>_N`.
    Unix(PathBuf),
}

impl Endpoint {
    /// The host of a real VM.
    pub fn host() -> Self {
        Self::Vsock { cid: HOST_CID }
    }

    /// Parses `vsock:CID` or `unix:PATH`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::Usage("unix: needs a path".into()));
            }
            Ok(Self::Unix(PathBuf::from(path)))
        } else if let Some(cid) = text.strip_prefix("vsock:") {
            let cid = cid
                .parse()
                .map_err(|_| Error::Usage(format!("bad CID in {text}")))?;
            Ok(Self::Vsock { cid })
        } else {
            Err(Error::Usage(format!(
                "cannot connect to {text}: expected unix:PATH or vsock:CID"
            )))
        }
    }

    /// Connects the control connection (vsock port `control_port`).
    pub fn connect_control(&self, control_port: u32) -> Result<Stream, Error> {
        match self {
            Self::Vsock { cid } => vsock_connect(*cid, control_port),
            Self::Unix(path) => unix_connect(path.clone()),
        }
    }

    /// Connects a stdio stream to the host's `port`.
    pub fn connect_port(&self, port: u32) -> Result<Stream, Error> {
        match self {
            Self::Vsock { cid } => vsock_connect(*cid, port),
            Self::Unix(path) => {
                let mut name = path.clone().into_os_string();
                name.push(format!("_{port}"));
                unix_connect(PathBuf::from(name))
            }
        }
    }
}

fn vsock_connect(cid: u32, port: u32) -> Result<Stream, Error> {
    let fd = socket::socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::os("vsock socket", e))?;
    loop {
        match socket::connect(fd.as_raw_fd(), &VsockAddr::new(cid, port)) {
            Ok(()) => return Ok(Stream(File::from(fd))),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::os(format!("connect to vsock {cid}:{port}"), e)),
        }
    }
}

fn unix_connect(path: PathBuf) -> Result<Stream, Error> {
    let stream = UnixStream::connect(&path)
        .map_err(|e| Error::io(format!("connect to {}", path.display()), e))?;
    Ok(Stream(File::from(OwnedFd::from(stream))))
}

/// A connected stream socket (vsock or Unix): plain `read`/`write` on its descriptor.
#[derive(Debug)]
pub struct Stream(File);

impl Stream {
    /// A second handle on the same connection (one reads, one writes).
    pub fn try_clone(&self) -> Result<Self, Error> {
        self.0
            .try_clone()
            .map(Self)
            .map_err(|e| Error::io("duplicate a connection", e))
    }

    /// Half-closes (or fully closes) the connection; errors (already closed) are ignored.
    pub fn shutdown(&self, how: socket::Shutdown) {
        let _ = socket::shutdown(self.0.as_raw_fd(), how);
    }

    /// The socket's descriptor, for a relay.
    pub fn into_fd(self) -> OwnedFd {
        OwnedFd::from(self.0)
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Locks a mutex, carrying on past a poisoned one (a panicked thread must not take the
/// agent down with it).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The writing half of the current control connection, shared by every thread that sends
/// a message. One lock, so frames never interleave. While there is no connection, messages
/// are dropped (and logged).
#[derive(Default)]
pub struct Sink {
    conn: Mutex<Option<Stream>>,
    detached: Condvar,
}

impl Sink {
    /// Sends on `stream` from now on.
    pub fn attach(&self, stream: Stream) {
        *lock(&self.conn) = Some(stream);
    }

    /// The connection ended: drop the writer and wake [`Sink::wait_detached`].
    pub fn detach(&self) {
        *lock(&self.conn) = None;
        self.detached.notify_all();
    }

    /// Sends one message; a failure is logged (the reader sees the broken connection too).
    pub fn send<T: Serialize>(&self, message: &T) {
        let mut conn = lock(&self.conn);
        match conn.as_mut() {
            Some(stream) => {
                if let Err(e) = write_frame(stream, message) {
                    log!("cannot send to the host: {e}");
                }
            }
            None => log!("no host connection; a message is dropped"),
        }
    }

    /// Half-closes the connection (nothing more will be sent), then waits up to `timeout`
    /// for the host to close its end, so that what was sent is delivered before power-off.
    pub fn finish(&self, timeout: Duration) {
        let conn = lock(&self.conn);
        if let Some(stream) = conn.as_ref() {
            stream.shutdown(socket::Shutdown::Write);
        }
        let _ = self
            .detached
            .wait_timeout_while(conn, timeout, |conn| conn.is_some());
    }
}
