//! The way out to one client: whoever has a message for the client (the thread reading a
//! worker's replies, the client's own connection reader) writes it to the socket itself,
//! without blocking; only what the socket does not take at once waits in a queue that the
//! client's writer thread drains when the socket is writable again.
//!
//! Writing directly saves a thread wake-up per message (a reply used to be handed to the
//! writer thread, which on a nested hypervisor costs 10-20 µs); never blocking keeps the
//! old promise that a slow client stalls no worker and no other client. Every write, direct
//! or by the writer thread, happens under one lock, and only when nothing waits before it,
//! so messages leave in the order they were pushed.

use hcs_wire::{FrameWriter, Outgoing, ServiceMessage};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// What became of a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Sent, or queued behind earlier messages.
    Sent,
    /// The queue was full: the client does not read. Its connection was shut.
    Overflow,
    /// The connection failed or was shut before: the message is dropped.
    Gone,
}

struct Inner {
    writer: FrameWriter,
    queue: VecDeque<Outgoing>,
    /// Nothing more will be pushed: the writer thread ends once the queue is empty.
    closed: bool,
    /// The connection failed or was shut: nothing more is written.
    failed: bool,
}

/// One client's outgoing side; see the module documentation.
pub struct ClientOut {
    inner: Mutex<Inner>,
    /// Signalled when the queue gains its first message, or on close.
    ready: Condvar,
    limit: usize,
}

impl ClientOut {
    /// An outgoing side on `writer` that drops the client once `limit` messages wait, and
    /// its writer thread (which holds it until the side is closed and drained).
    pub fn start(writer: FrameWriter, limit: usize) -> std::io::Result<Arc<ClientOut>> {
        let out = Arc::new(ClientOut {
            inner: Mutex::new(Inner {
                writer,
                queue: VecDeque::new(),
                closed: false,
                failed: false,
            }),
            ready: Condvar::new(),
            limit,
        });
        let drain = Arc::clone(&out);
        std::thread::Builder::new()
            .name("hcsd-client-out".into())
            .spawn(move || drain.drain())?;
        Ok(out)
    }

    /// Sends `message` (with `fds`, closed here once the client has its copies) after
    /// every message pushed before it. Never blocks on the client.
    pub fn push(&self, message: &ServiceMessage, fds: Vec<OwnedFd>) -> Pushed {
        let frame = match Outgoing::new(message, fds) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(%error, "a message for a client cannot be sent: closing it");
                self.fail(&mut self.inner.lock());
                return Pushed::Gone;
            }
        };
        let mut inner = self.inner.lock();
        if inner.failed {
            return Pushed::Gone;
        }
        if !inner.queue.is_empty() {
            if inner.queue.len() >= self.limit {
                self.fail(&mut inner);
                return Pushed::Overflow;
            }
            // The writer thread is draining already.
            inner.queue.push_back(frame);
            return Pushed::Sent;
        }
        let mut frame = frame;
        match frame.write_nonblocking(&inner.writer) {
            Ok(true) => {}
            Ok(false) => {
                inner.queue.push_back(frame);
                self.ready.notify_one();
            }
            Err(_) => self.fail(&mut inner),
        }
        Pushed::Sent
    }

    /// No more messages: the writer thread sends what waits, then ends.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.ready.notify_one();
    }

    fn fail(&self, inner: &mut Inner) {
        inner.failed = true;
        inner.queue.clear();
        let _ = inner.writer.stream().shutdown(std::net::Shutdown::Both);
        self.ready.notify_one();
    }

    /// The writer thread: waits for queued messages and writes them as the socket takes
    /// them, never holding the lock while it waits for the socket.
    fn drain(&self) {
        let mut inner = self.inner.lock();
        loop {
            while inner.queue.is_empty() && !inner.closed && !inner.failed {
                self.ready.wait(&mut inner);
            }
            if inner.failed || inner.queue.is_empty() {
                return; // Failed, or closed with nothing left to send.
            }
            let Inner { writer, queue, .. } = &mut *inner;
            while let Some(frame) = queue.front_mut() {
                match frame.write_nonblocking(writer) {
                    Ok(true) => {
                        queue.pop_front();
                    }
                    Ok(false) => break,
                    Err(_) => {
                        self.fail(&mut inner);
                        return;
                    }
                }
            }
            if inner.queue.is_empty() {
                continue;
            }
            // The socket is full: wait until it is writable, without the lock, so that
            // pushers only ever queue meanwhile. A shut or closed socket wakes the poll.
            // The descriptor stays open meanwhile: only this thread's `Arc` keeps it, and
            // the writer is dropped with the last one.
            let fd = inner.writer.stream().as_raw_fd();
            drop(inner);
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call; `fd` is open (above).
            unsafe { libc::poll(&mut poll, 1, 1000) };
            inner = self.inner.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcs_protocol::{HostMessage, Notification};
    use hcs_wire::FrameReader;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    fn message(i: u64) -> ServiceMessage {
        ServiceMessage::Host(HostMessage::Notification(Notification::SystemExited {
            handle: i,
            status: "x".repeat(200),
        }))
    }

    fn number(message: ServiceMessage) -> u64 {
        match message {
            ServiceMessage::Host(HostMessage::Notification(Notification::SystemExited {
                handle,
                ..
            })) => handle,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_client_that_reads_late_gets_every_message_in_order() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let out = ClientOut::start(FrameWriter::new(ours), 100_000).unwrap();
        // Far more than the socket holds, from two threads taking turns under one lock:
        // pushing never waits for the reader.
        let started = Instant::now();
        let next = Arc::new(Mutex::new(0u64));
        let pushers: Vec<_> = (0..2)
            .map(|_| {
                let (out, next) = (Arc::clone(&out), Arc::clone(&next));
                std::thread::spawn(move || loop {
                    let mut next = next.lock();
                    if *next == 5_000 {
                        break;
                    }
                    assert_eq!(out.push(&message(*next), Vec::new()), Pushed::Sent);
                    *next += 1;
                })
            })
            .collect();
        for pusher in pushers {
            pusher.join().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        out.close();
        drop(out);
        let mut reader = FrameReader::new(theirs);
        for i in 0..5_000 {
            let (got, _) = reader.recv::<ServiceMessage>().unwrap().unwrap();
            assert_eq!(number(got), i);
        }
        // Closed and drained: the writer thread let the socket go.
        assert!(reader.recv::<ServiceMessage>().unwrap().is_none());
    }

    #[test]
    fn a_client_that_never_reads_is_dropped_at_the_limit_without_blocking() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let out = ClientOut::start(FrameWriter::new(ours), 64).unwrap();
        let mut pushed = 0;
        let outcome = loop {
            match out.push(&message(pushed), Vec::new()) {
                Pushed::Sent => pushed += 1,
                other => break other,
            }
            assert!(pushed < 100_000, "never dropped");
        };
        assert_eq!(outcome, Pushed::Overflow);
        assert_eq!(out.push(&message(0), Vec::new()), Pushed::Gone);
        // What reached the socket before the limit is readable, then the end.
        let mut reader = FrameReader::new(theirs);
        let mut read = 0;
        while let Ok(Some((got, _))) = reader.recv::<ServiceMessage>() {
            assert_eq!(number(got), read);
            read += 1;
        }
        assert!(read < pushed);
    }
}
