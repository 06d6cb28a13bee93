//! A session's sink that keeps every message it is given, for tests that drive a host
//! through `hcs_host::Session` and look at what came back, and in which order.

use hcs_protocol::{HostMessage, MessageSink, Reply};
use parking_lot::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Keeps every message delivered to it, in order.
#[derive(Default)]
pub struct Recorder {
    /// What was delivered so far.
    pub messages: Mutex<Vec<HostMessage>>,
    arrived: Condvar,
}

impl MessageSink for Recorder {
    fn deliver(&self, message: HostMessage) {
        self.messages.lock().push(message);
        self.arrived.notify_all();
    }
}

impl Recorder {
    /// Waits (at most 20 s, then panics) for the reply to request `id`; its position among
    /// the messages, and a copy of it (without a started process's descriptors).
    pub fn reply(&self, id: u64) -> (usize, Reply) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut messages = self.messages.lock();
        loop {
            for (at, message) in messages.iter().enumerate() {
                if let HostMessage::Reply(reply) = message {
                    if reply.id == id {
                        return (
                            at,
                            Reply::new(reply.id, reply.result, reply.document.clone()),
                        );
                    }
                }
            }
            assert!(
                !self.arrived.wait_until(&mut messages, deadline).timed_out(),
                "no reply to request {id}"
            );
        }
    }
}
