//! Fuzz target `protocol`: arbitrary bytes as the JSON payload of an `hcs-wire` frame, read
//! as each message a peer of `hcsd` can send or receive (a client's `ClientMessage`, the
//! service's `ServiceMessage`, a worker's `FromWorker` and `hcsd`'s `ToWorker`), with an
//! arbitrary number of descriptors beside it.
//!
//! Invariants (a violation panics; libFuzzer reports it with the input):
//! * parsing never panics, whatever the bytes;
//! * a message that parses writes back to JSON that parses to the same message (the wire
//!   carries exactly what was sent);
//! * attaching the frame's descriptors to a parsed message never panics and never keeps
//!   more descriptors than its std handles announce: the rest are closed (no leak), and a
//!   handle without its descriptor is absent, never a number.
#![no_main]

use hcs_protocol::HostMessage;
use hcs_wire::{ClientMessage, ServiceMessage};
use hcsd::worker_protocol::{FromWorker, ToWorker};
use libfuzzer_sys::fuzz_target;
use std::os::fd::{AsRawFd, OwnedFd};

/// Up to 4 fresh descriptors, as a frame's SCM_RIGHTS would bring.
fn descriptors(count: u8) -> Vec<OwnedFd> {
    (0..count % 5)
        .filter_map(|_| std::fs::File::open("/dev/null").ok().map(OwnedFd::from))
        .collect()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Attaches `count` descriptors to `message` and drops it: every descriptor is closed again.
fn attach_and_drop(message: Option<&mut HostMessage>, count: u8) {
    let fds = descriptors(count);
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    match message {
        Some(message) => {
            message.attach_fds(fds);
            let kept = match message {
                HostMessage::Reply(reply) => reply
                    .process
                    .as_ref()
                    .map_or(0, |p| {
                        [&p.std_handles.stdin, &p.std_handles.stdout, &p.std_handles.stderr]
                            .iter()
                            .filter(|h| matches!(h, Some(hcs_protocol::Descriptor::Owned(_))))
                            .count()
                    }),
                HostMessage::Notification(_) => 0,
            };
            assert!(kept <= raw.len(), "more handles than descriptors");
        }
        None => drop(fds),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&count, payload)) = data.split_first() else {
        return;
    };
    let before = open_fds();
    if let Ok(message) = serde_json::from_slice::<ClientMessage>(payload) {
        let text = serde_json::to_string(&message).expect("a parsed message writes back");
        let again: ClientMessage = serde_json::from_str(&text).expect("and parses again");
        assert_eq!(again, message);
    }
    if let Ok(mut message) = serde_json::from_slice::<ServiceMessage>(payload) {
        let text = serde_json::to_string(&message).expect("a parsed message writes back");
        let again: ServiceMessage = serde_json::from_str(&text).expect("and parses again");
        assert_eq!(again, message);
        if let ServiceMessage::Host(host) = &mut message {
            attach_and_drop(Some(host), count);
        }
    }
    if let Ok(mut message) = serde_json::from_slice::<FromWorker>(payload) {
        let text = serde_json::to_string(&message).expect("a parsed message writes back");
        let again: FromWorker = serde_json::from_str(&text).expect("and parses again");
        assert_eq!(again, message);
        if let FromWorker::Message { message, .. } = &mut message {
            attach_and_drop(Some(message), count);
        }
    }
    if let Ok(message) = serde_json::from_slice::<ToWorker>(payload) {
        let text = serde_json::to_string(&message).expect("a parsed message writes back");
        let again: ToWorker = serde_json::from_str(&text).expect("and parses again");
        assert_eq!(again, message);
    }
    attach_and_drop(None, count);
    assert_eq!(open_fds(), before, "a descriptor leaked");
});
