//! Copying bytes between a process's pipes (or pty) and its stdio streams: one thread per
//! direction, non-blocking descriptors, `poll` only when a side would block, and a
//! [`Stop`] that ends a relay at once (a process that exited, or a grandchild that keeps an
//! output pipe open after it) or once its source has gone quiet (a stdin closed by the host,
//! [`Stop::drain`]).

use crate::error::Error;
use crate::transport::lock;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Bytes moved per `read`/`write`.
pub const CHUNK: usize = 256 * 1024;

/// How long a draining relay waits for more bytes before it ends. The host's request to
/// close stdin travels on the control connection, apart from the stdin stream, so bytes
/// the client wrote before asking may still be on their way through the vsock device.
pub const DRAIN_QUIET_MS: u16 = 250;

/// A one-shot broadcast signal: once fired, every relay watching it ends, whether it is
/// copying (checked between chunks) or waiting in `poll` (the wake pipe hangs up).
pub struct Stop {
    fired: AtomicBool,
    draining: AtomicBool,
    wake_rx: OwnedFd,
    wake_tx: Mutex<Option<OwnedFd>>,
}

impl Stop {
    /// A signal not yet fired.
    pub fn new() -> Result<Self, Error> {
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| Error::os("pipe", e))?;
        Ok(Self {
            fired: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            wake_rx: rx,
            wake_tx: Mutex::new(Some(tx)),
        })
    }

    /// Fires the signal (idempotent).
    pub fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        // Closing the write end makes the read end report POLLHUP to every poller, forever.
        lock(&self.wake_tx).take();
    }

    /// Ends the relays once their source has had nothing to read for [`DRAIN_QUIET_MS`] (or
    /// at end of file, or at once if [`Stop::fire`] follows): what was sent before is kept.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        // Wakes the pollers, which from now on poll their descriptor alone.
        lock(&self.wake_tx).take();
    }

    /// Whether [`Stop::fire`] was called.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Whether [`Stop::drain`] was called.
    fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The source reached end of file (or, for a pty master, its last slave closed).
    Eof,
    /// The [`Stop`] fired.
    Stopped,
    /// The destination went away (the host closed the stream, the child closed stdin).
    PeerGone,
}

/// Puts a descriptor in non-blocking mode.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Error> {
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(|e| Error::os("F_GETFL", e))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(|e| Error::os("F_SETFL", e))?;
    Ok(())
}

/// Copies `src` to `dst` (both non-blocking) until end of file, a stop, or a gone peer.
/// Returns how it ended and how many bytes passed.
pub fn pump(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, stop: &Stop) -> (End, u64) {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        if stop.fired() {
            return (End::Stopped, total);
        }
        let n = match nix::unistd::read(src.as_raw_fd(), &mut buf) {
            Ok(0) => return (End::Eof, total),
            Ok(n) => n,
            Err(Errno::EAGAIN) if stop.draining() => {
                let mut fds = [PollFd::new(src, PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(DRAIN_QUIET_MS)) {
                    Ok(0) => return (End::Stopped, total),
                    _ => continue,
                }
            }
            Err(Errno::EAGAIN) => {
                if !wait(src, PollFlags::POLLIN, stop) {
                    return (End::Stopped, total);
                }
                continue;
            }
            Err(Errno::EINTR) => continue,
            // A pty master whose slaves are all closed; a reset connection ends like EOF.
            Err(_) => return (End::Eof, total),
        };
        let mut done = 0;
        while done < n {
            if stop.fired() {
                return (End::Stopped, total);
            }
            match nix::unistd::write(dst, &buf[done..n]) {
                Ok(k) => done += k,
                Err(Errno::EAGAIN) => {
                    if !wait(dst, PollFlags::POLLOUT, stop) {
                        return (End::Stopped, total);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => return (End::PeerGone, total),
            }
        }
        total += n as u64;
    }
}

/// Moves a pipe's bytes to a socket with `splice` (one copy fewer than read + write, which
/// counts under TCG), until end of file, a stop, or a gone peer.
pub fn splice_pipe(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, stop: &Stop) -> (End, u64) {
    use nix::fcntl::{splice, SpliceFFlags};
    let mut total = 0u64;
    loop {
        if stop.fired() {
            return (End::Stopped, total);
        }
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        match splice(src, None, dst, None, CHUNK, flags) {
            Ok(0) => return (End::Eof, total),
            Ok(n) => total += n as u64,
            Err(Errno::EAGAIN) => {
                // Either the pipe is empty or the socket is full: wait for the one that is.
                let mut probe = [PollFd::new(src, PollFlags::POLLIN)];
                let readable = matches!(poll(&mut probe, PollTimeout::ZERO), Ok(n) if n > 0);
                let (fd, events) = if readable {
                    (dst, PollFlags::POLLOUT)
                } else {
                    (src, PollFlags::POLLIN)
                };
                if !wait(fd, events, stop) {
                    return (End::Stopped, total);
                }
            }
            Err(Errno::EINTR) => {}
            // The socket is gone (EPIPE, ECONNRESET), or splice does not apply: report it as
            // a gone peer; the caller falls back to read + write when nothing moved yet.
            Err(_) => return (End::PeerGone, total),
        }
    }
}

/// Waits until `fd` is ready for `events` (or has hung up); false when `stop` fired.
fn wait(fd: BorrowedFd<'_>, events: PollFlags, stop: &Stop) -> bool {
    loop {
        if stop.draining() {
            // The wake pipe has hung up for good: poll `fd` alone, checking for a full
            // stop between rounds.
            if stop.fired() {
                return false;
            }
            if events.contains(PollFlags::POLLIN) {
                // The reader applies the quiet rule itself (see `pump`).
                return true;
            }
            let mut fds = [PollFd::new(fd, events)];
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                _ => return true,
            }
        }
        let mut fds = [
            PollFd::new(fd, events),
            PollFd::new(stop.wake_rx.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {
                if stop.fired() {
                    return false;
                }
                if fds[1].any().unwrap_or(false) {
                    if stop.draining() {
                        continue;
                    }
                    return false;
                }
                if fds[0].any().unwrap_or(true) {
                    return true;
                }
            }
            Err(Errno::EINTR) => {}
            // poll itself failing is not expected; let the read/write report the problem.
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn pumps_until_eof_and_stops_when_fired() {
        let (src_rx, src_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let (dst_rx, dst_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        set_nonblocking(src_rx.as_fd()).expect("nonblock");
        set_nonblocking(dst_tx.as_fd()).expect("nonblock");
        let stop = std::sync::Arc::new(Stop::new().expect("stop"));
        let relay = {
            let stop = stop.clone();
            std::thread::spawn(move || pump(src_rx.as_fd(), dst_tx.as_fd(), &stop))
        };
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            std::fs::File::from(dst_rx)
                .read_to_end(&mut all)
                .expect("read");
            all.len()
        });
        let mut tx = std::fs::File::from(src_tx);
        tx.write_all(&vec![7u8; 3 * CHUNK + 5]).expect("write");
        drop(tx);
        assert_eq!(
            relay.join().expect("relay"),
            (End::Eof, 3 * CHUNK as u64 + 5)
        );
        assert_eq!(reader.join().expect("reader"), 3 * CHUNK + 5);

        let (idle_rx, _idle_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let (_out_rx, out_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        set_nonblocking(idle_rx.as_fd()).expect("nonblock");
        let stop2 = std::sync::Arc::new(Stop::new().expect("stop"));
        let relay = {
            let stop2 = stop2.clone();
            std::thread::spawn(move || pump(idle_rx.as_fd(), out_tx.as_fd(), &stop2))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        stop2.fire();
        assert_eq!(relay.join().expect("relay").0, End::Stopped);
        drop(stop);
    }

    #[test]
    fn a_drain_keeps_what_arrives_until_the_source_is_quiet() {
        let (src_rx, src_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let (dst_rx, dst_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        set_nonblocking(src_rx.as_fd()).expect("nonblock");
        let stop = std::sync::Arc::new(Stop::new().expect("stop"));
        let relay = {
            let stop = stop.clone();
            std::thread::spawn(move || pump(src_rx.as_fd(), dst_tx.as_fd(), &stop))
        };
        let mut tx = std::fs::File::from(src_tx);
        tx.write_all(b"before ").expect("write");
        std::thread::sleep(std::time::Duration::from_millis(20));
        // The close request overtakes bytes still on their way: they must arrive all the same.
        stop.drain();
        std::thread::sleep(std::time::Duration::from_millis(50));
        tx.write_all(b"in flight").expect("write");
        // The writer stays open: the relay ends on the quiet, not on end of file.
        let started = std::time::Instant::now();
        let (end, total) = relay.join().expect("relay");
        assert_eq!((end, total), (End::Stopped, 16));
        assert!(started.elapsed() >= std::time::Duration::from_millis(DRAIN_QUIET_MS as u64 / 2));
        let mut all = Vec::new();
        std::fs::File::from(dst_rx)
            .read_to_end(&mut all)
            .expect("read");
        assert_eq!(all, b"before in flight");
        drop(tx);

        // A drain of a relay parked in poll with nothing more to come ends it after the quiet.
        let (idle_rx, _idle_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let (_out_rx, out_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        set_nonblocking(idle_rx.as_fd()).expect("nonblock");
        let idle = std::sync::Arc::new(Stop::new().expect("stop"));
        let relay = {
            let idle = idle.clone();
            std::thread::spawn(move || pump(idle_rx.as_fd(), out_tx.as_fd(), &idle))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        idle.drain();
        assert_eq!(relay.join().expect("relay"), (End::Stopped, 0));
    }
}
