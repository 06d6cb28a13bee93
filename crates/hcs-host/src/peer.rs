//! A session as the systems see it: where its messages go, and who is to be answered.
//!
//! [`Peer`] is the part of a session that systems and process tables keep (weakly): its
//! number and its sink. A [`Requester`] is one request waiting for its reply. Neither knows
//! anything of systems, so `system` and `processes` depend on this file and not on
//! `session`.

use hcs_protocol::{Failure, HostMessage, MessageSink, Reply};
use hcs_schema::HResult;
use std::sync::{Arc, Weak};

/// One session's destination for replies and notifications.
pub(crate) struct Peer {
    /// The session's number, unique within its host.
    pub id: u64,
    sink: Arc<dyn MessageSink>,
}

impl Peer {
    pub fn new(id: u64, sink: Arc<dyn MessageSink>) -> Peer {
        Peer { id, sink }
    }

    /// Hands one message to the session's sink.
    pub fn deliver(&self, message: HostMessage) {
        self.sink.deliver(message);
    }
}

/// Who asked, so that the reply reaches them (if their session still exists).
#[derive(Clone)]
pub(crate) struct Requester {
    pub peer: Weak<Peer>,
    pub request_id: u64,
}

impl Requester {
    /// Sends `reply` (made for this request's id by `make`).
    pub fn send(&self, make: impl FnOnce(u64) -> Reply) {
        if let Some(peer) = self.peer.upgrade() {
            peer.deliver(HostMessage::Reply(make(self.request_id)));
        }
    }

    /// Answers with `result` and `document`.
    pub fn reply(&self, result: HResult, document: Option<String>) {
        self.send(|id| Reply::new(id, result, document));
    }

    /// Answers with `outcome`, a failure becoming its `ResultError` for `phase`.
    pub fn reply_outcome(&self, outcome: Result<Option<String>, Failure>, phase: &str) {
        self.send(|id| Reply::outcome(id, outcome, phase));
    }
}
