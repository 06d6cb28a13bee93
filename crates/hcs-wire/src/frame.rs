//! Frames: one serde message each, with the file descriptors that travel with it.
//!
//! A frame is an 8-byte header (payload length and descriptor count, both little-endian
//! `u32`) followed by the JSON payload. The descriptors are attached with `SCM_RIGHTS` to
//! the `sendmsg` that carries the header, so they reach the reader no later than the
//! frame's first byte; the reader queues them and hands each frame the number its header
//! declares. A frame longer than [`MAX_FRAME_LEN`] or declaring more than
//! [`MAX_FDS_PER_FRAME`] descriptors is refused: the stream cannot be trusted after it.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// The longest payload accepted (16 MiB): far above any HCS document, small enough that a
/// hostile length cannot make the reader allocate without bound.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// The most descriptors one frame may carry (a process's stdin, stdout and stderr need 3).
pub const MAX_FDS_PER_FRAME: usize = 8;

const HEADER_LEN: usize = 8;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection in the middle of a frame.
    #[error("the connection closed in the middle of a message")]
    Truncated,
    /// The header declared a payload above [`MAX_FRAME_LEN`].
    #[error("message of {len} bytes is larger than the {MAX_FRAME_LEN}-byte limit")]
    TooLarge {
        /// The declared length.
        len: usize,
    },
    /// The header declared more descriptors than allowed or than arrived.
    #[error("message declares {declared} file descriptors, {available} arrived (at most {MAX_FDS_PER_FRAME} allowed)")]
    BadDescriptors {
        /// What the header said.
        declared: usize,
        /// What the socket delivered.
        available: usize,
    },
    /// The payload is not a message of the expected type.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// A frame's payload bytes and the descriptors that came with it.
pub type RawFrame = (Vec<u8>, Vec<OwnedFd>);

/// The reading half of a connection.
pub struct FrameReader {
    stream: UnixStream,
    buffer: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    eof: bool,
}

impl FrameReader {
    /// Reads frames from `stream` (usually a `try_clone` of the writer's stream).
    pub fn new(stream: UnixStream) -> FrameReader {
        FrameReader {
            stream,
            buffer: Vec::with_capacity(4096),
            fds: VecDeque::new(),
            eof: false,
        }
    }

    /// The next message and its descriptors, or `None` at a clean end of stream.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<(T, Vec<OwnedFd>)>, WireError> {
        match self.recv_raw()? {
            None => Ok(None),
            Some((payload, fds)) => match serde_json::from_slice::<T>(&payload) {
                Ok(message) => Ok(Some((message, fds))),
                Err(error) => Err(WireError::Malformed(error.to_string())),
            },
        }
    }

    /// The next frame's payload bytes and descriptors, or `None` at a clean end of stream.
    pub fn recv_raw(&mut self) -> Result<Option<RawFrame>, WireError> {
        loop {
            if self.buffer.len() >= HEADER_LEN {
                let len = u32::from_le_bytes(self.buffer[0..4].try_into().expect("4 bytes"));
                let nfds = u32::from_le_bytes(self.buffer[4..8].try_into().expect("4 bytes"));
                let (len, nfds) = (len as usize, nfds as usize);
                if len > MAX_FRAME_LEN {
                    return Err(WireError::TooLarge { len });
                }
                if nfds > MAX_FDS_PER_FRAME || nfds > self.fds.len() {
                    return Err(WireError::BadDescriptors {
                        declared: nfds,
                        available: self.fds.len(),
                    });
                }
                if self.buffer.len() >= HEADER_LEN + len {
                    let payload = self.buffer[HEADER_LEN..HEADER_LEN + len].to_vec();
                    self.buffer.drain(..HEADER_LEN + len);
                    let fds = self.fds.drain(..nfds).collect();
                    return Ok(Some((payload, fds)));
                }
            }
            if self.eof {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(WireError::Truncated)
                };
            }
            self.fill()?;
        }
    }

    /// Reads what the socket has, queueing any descriptors that came with it.
    fn fill(&mut self) -> Result<(), WireError> {
        let mut chunk = [0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS_PER_FRAME]);
        let (read, received) = loop {
            let mut iov = [IoSliceMut::new(&mut chunk)];
            match recvmsg::<()>(
                self.stream.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(msg) => {
                    let mut received = Vec::new();
                    for c in msg.cmsgs().map_err(|e| WireError::Io(e.into()))? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            received.extend(fds);
                        }
                    }
                    break (msg.bytes, received);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => self.wait_readable()?,
                Err(errno) => return Err(WireError::Io(errno.into())),
            }
        };
        for fd in received {
            // SAFETY: the kernel just installed this descriptor in our table for this
            // message; nothing else refers to it.
            self.fds.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        if read == 0 {
            self.eof = true;
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }

    /// Waits until the socket has something to read (or its read timeout,
    /// `SO_RCVTIMEO`, passes: then `WouldBlock`, as a blocking read would fail).
    ///
    /// In `poll` rather than in a blocking `recvmsg`: the kernel wakes every thread that
    /// sleeps on a Unix socket whenever the peer consumes what this side wrote (to announce
    /// write space), and a thread blocked in `recvmsg` wakes for that too, only to find
    /// nothing and sleep again; `poll` for `POLLIN` filters those wake-ups out. That was one
    /// needless cross-CPU wake-up per frame on every connection.
    fn wait_readable(&self) -> Result<(), WireError> {
        let timeout = match self.stream.read_timeout()? {
            None => PollTimeout::NONE,
            Some(limit) => PollTimeout::try_from(limit).unwrap_or(PollTimeout::MAX),
        };
        loop {
            let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => return Err(WireError::Io(nix::errno::Errno::EAGAIN.into())),
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => return Err(WireError::Io(errno.into())),
            }
        }
    }

    /// The socket read from.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }
}

/// The writing half of a connection. Not shared: callers that write from several threads
/// keep it behind a mutex, so that frames never interleave.
pub struct FrameWriter {
    stream: UnixStream,
}

impl FrameWriter {
    /// Writes frames to `stream`.
    pub fn new(stream: UnixStream) -> FrameWriter {
        FrameWriter { stream }
    }

    /// Sends one message with `fds` (which stay owned by the caller: the peer gets copies).
    pub fn send<T: Serialize>(&mut self, message: &T, fds: &[RawFd]) -> Result<(), WireError> {
        let payload =
            serde_json::to_vec(message).map_err(|e| WireError::Malformed(e.to_string()))?;
        self.send_raw(&payload, fds)
    }

    /// Sends one frame of `payload` bytes (which need not be valid JSON: tests use it to
    /// send malformed messages).
    pub fn send_raw(&mut self, payload: &[u8], fds: &[RawFd]) -> Result<(), WireError> {
        let header = header(payload.len(), fds.len())?;
        // Header and payload in one sendmsg, the descriptors attached to it: the reader
        // is woken once per frame, and the descriptors ride with the header's first byte
        // even when the kernel takes only part of the frame (the rest follows without).
        let mut sent = 0;
        let total = HEADER_LEN + payload.len();
        while sent < total {
            match send_some(&self.stream, &header, payload, sent, fds, MsgFlags::empty()) {
                Ok(n) => sent += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => return Err(WireError::Io(errno.into())),
            }
        }
        Ok(())
    }

    /// The socket written to.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }
}

/// The header of a frame of `len` payload bytes and `fds` descriptors, if they are allowed.
fn header(len: usize, fds: usize) -> Result<[u8; HEADER_LEN], WireError> {
    if len > MAX_FRAME_LEN {
        return Err(WireError::TooLarge { len });
    }
    if fds > MAX_FDS_PER_FRAME {
        return Err(WireError::BadDescriptors {
            declared: fds,
            available: fds,
        });
    }
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4..8].copy_from_slice(&(fds as u32).to_le_bytes());
    Ok(header)
}

/// One `sendmsg` of the frame `header` + `payload` from byte `sent` on; the descriptors go
/// with the frame's first byte (when `sent` is 0), never later.
fn send_some(
    stream: &UnixStream,
    header: &[u8],
    payload: &[u8],
    sent: usize,
    fds: &[RawFd],
    flags: MsgFlags,
) -> nix::Result<usize> {
    let (head, body) = if sent < header.len() {
        (&header[sent..], payload)
    } else {
        (&[][..], &payload[sent - header.len()..])
    };
    let iov = [IoSlice::new(head), IoSlice::new(body)];
    let cmsgs = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if sent == 0 && !fds.is_empty() {
        &cmsgs
    } else {
        &[]
    };
    sendmsg::<()>(
        stream.as_raw_fd(),
        &iov,
        cmsgs,
        flags | MsgFlags::MSG_NOSIGNAL,
        None,
    )
}

/// A frame that may go out in pieces without ever blocking the writer: for a sender that
/// must not wait for a slow reader (it queues what the socket does not take, and writes
/// the rest once the socket is writable again).
pub struct Outgoing {
    header: [u8; HEADER_LEN],
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
    sent: usize,
}

impl Outgoing {
    /// `message` as a frame with `fds` (kept open until the frame's first byte is sent).
    pub fn new<T: Serialize>(message: &T, fds: Vec<OwnedFd>) -> Result<Outgoing, WireError> {
        let payload =
            serde_json::to_vec(message).map_err(|e| WireError::Malformed(e.to_string()))?;
        Ok(Outgoing {
            header: header(payload.len(), fds.len())?,
            payload,
            fds,
            sent: 0,
        })
    }

    /// Writes what `writer`'s socket takes now, without blocking. `Ok(true)` once the
    /// whole frame is sent, `Ok(false)` when the socket is full (call again once it is
    /// writable), `Err` when the connection failed.
    pub fn write_nonblocking(&mut self, writer: &FrameWriter) -> std::io::Result<bool> {
        let total = HEADER_LEN + self.payload.len();
        while self.sent < total {
            let raw: Vec<RawFd> = if self.sent == 0 {
                self.fds.iter().map(AsRawFd::as_raw_fd).collect()
            } else {
                Vec::new()
            };
            match send_some(
                &writer.stream,
                &self.header,
                &self.payload,
                self.sent,
                &raw,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => {
                    if self.sent == 0 {
                        // The peer has its copies now.
                        self.fds.clear();
                    }
                    self.sent += n;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return Ok(false),
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(true)
    }

    /// Whether part of the frame is already on the wire (then the rest must follow before
    /// any other frame).
    pub fn started(&self) -> bool {
        self.sent > 0
    }
}

/// A reader and a writer on one connected socket.
pub fn split(stream: UnixStream) -> std::io::Result<(FrameReader, FrameWriter)> {
    let reader = FrameReader::new(stream.try_clone()?);
    Ok((reader, FrameWriter::new(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    #[test]
    fn messages_and_descriptors_arrive_together_and_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_, mut writer) = split(a).unwrap();
        let (mut reader, _) = split(b).unwrap();
        let mut file = tempfile();
        file.write_all(b"through the socket").unwrap();
        for i in 0..50u32 {
            let fds: Vec<RawFd> = if i % 7 == 0 {
                vec![file.as_raw_fd(), file.as_raw_fd()]
            } else {
                vec![]
            };
            writer.send(&i, &fds).unwrap();
        }
        drop(writer);
        for i in 0..50u32 {
            let (n, fds): (u32, _) = reader.recv().unwrap().unwrap();
            assert_eq!(n, i);
            assert_eq!(fds.len(), if i % 7 == 0 { 2 } else { 0 });
            for fd in fds {
                let mut copy = std::fs::File::from(fd);
                copy.rewind().unwrap();
                let mut text = String::new();
                copy.read_to_string(&mut text).unwrap();
                assert_eq!(text, "through the socket");
            }
        }
        assert!(
            reader.recv::<u32>().unwrap().is_none(),
            "clean end of stream"
        );
        let _ = file.as_fd();
    }

    #[test]
    fn a_large_message_crosses_intact() {
        let (a, b) = UnixStream::pair().unwrap();
        let text = "x".repeat(3 << 20);
        let sent = text.clone();
        let writer = std::thread::spawn(move || {
            let mut writer = FrameWriter::new(a);
            writer.send(&sent, &[]).unwrap();
        });
        let mut reader = FrameReader::new(b);
        let (got, _): (String, _) = reader.recv().unwrap().unwrap();
        assert_eq!(got, text);
        writer.join().unwrap();
    }

    #[test]
    fn an_oversized_header_is_refused_without_allocating() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&u32::MAX.to_le_bytes()).unwrap();
        a.write_all(&0u32.to_le_bytes()).unwrap();
        let mut reader = FrameReader::new(b);
        assert!(matches!(
            reader.recv::<u32>(),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn malformed_and_truncated_frames_are_errors() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut writer = FrameWriter::new(a);
        writer.send_raw(b"{not json", &[]).unwrap();
        let mut reader = FrameReader::new(b);
        assert!(matches!(reader.recv::<u32>(), Err(WireError::Malformed(_))));

        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&10u32.to_le_bytes()).unwrap();
        a.write_all(&0u32.to_le_bytes()).unwrap();
        a.write_all(b"12").unwrap();
        drop(a);
        let mut reader = FrameReader::new(b);
        assert!(matches!(reader.recv::<u32>(), Err(WireError::Truncated)));
    }

    #[test]
    fn descriptors_declared_but_not_sent_are_an_error() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&1u32.to_le_bytes()).unwrap();
        a.write_all(&2u32.to_le_bytes()).unwrap();
        a.write_all(b"1").unwrap();
        let mut reader = FrameReader::new(b);
        assert!(matches!(
            reader.recv::<u32>(),
            Err(WireError::BadDescriptors { declared: 2, .. })
        ));
    }

    #[test]
    fn outgoing_frames_never_block_and_arrive_whole_with_their_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let writer = FrameWriter::new(a);
        let mut file = tempfile();
        file.write_all(b"queued").unwrap();
        // Nobody reads: the socket fills, and the writer is told instead of blocking.
        let text = "y".repeat(100_000);
        let mut queue = std::collections::VecDeque::new();
        let mut full = false;
        for i in 0..64u32 {
            let fds = if i % 5 == 0 {
                vec![file.as_fd().try_clone_to_owned().unwrap()]
            } else {
                vec![]
            };
            let mut frame = Outgoing::new(&(i, &text), fds).unwrap();
            if queue.is_empty() && frame.write_nonblocking(&writer).unwrap() {
                continue;
            }
            full = true;
            queue.push_back(frame);
        }
        assert!(full, "the socket never filled");
        let reading = std::thread::spawn(move || {
            let mut reader = FrameReader::new(b);
            for i in 0..64u32 {
                let ((n, got), fds): ((u32, String), _) = reader.recv().unwrap().unwrap();
                assert_eq!(n, i);
                assert_eq!(got.len(), 100_000);
                assert_eq!(fds.len(), usize::from(i % 5 == 0));
                for fd in fds {
                    let mut copy = std::fs::File::from(fd);
                    copy.rewind().unwrap();
                    let mut text = String::new();
                    copy.read_to_string(&mut text).unwrap();
                    assert_eq!(text, "queued");
                }
            }
        });
        while let Some(frame) = queue.front_mut() {
            if frame.write_nonblocking(&writer).unwrap() {
                queue.pop_front();
            } else {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        reading.join().unwrap();
    }

    fn tempfile() -> std::fs::File {
        let path = std::env::temp_dir().join(format!("hcs-wire-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }
}
