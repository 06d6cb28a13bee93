//! The messages between `hcsd` and one worker process, over a socketpair (or, after
//! `hcsd` restarted, over the worker's own socket in the state directory).
//!
//! Each client connection of `hcsd` is a session number; the worker keeps one
//! `hcs_host::Session` per number, so handles, events and ShouldTerminateOnLastHandleClosed
//! work across client processes exactly as in one host. Session 0 is `hcsd`'s own (for
//! enumeration and counts).

use hcs_protocol::{HostMessage, Request};
use serde::{Deserialize, Serialize};

/// The session number `hcsd` uses for its own requests.
pub const SERVICE_SESSION: u64 = 0;

/// From `hcsd` to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// A request of client session `session`.
    Request {
        /// The client session.
        session: u64,
        /// The request, as the client sent it.
        request: Request,
    },
    /// Client session `session` ended: its handles are closed (HCS-API rule 28).
    EndSession {
        /// The client session.
        session: u64,
    },
}

/// From a worker to `hcsd`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The first message on every connection.
    Hello {
        /// The id of the worker's compute system.
        id: String,
        /// The worker's process id.
        pid: u32,
        /// Whether the compute system exists (false before its create, and after it stopped).
        system: bool,
    },
    /// A reply or notification for client session `session`. A reply to `CreateProcess`
    /// carries the std handles as descriptors beside the frame (`hcs_protocol::StdHandles`).
    Message {
        /// The client session.
        session: u64,
        /// The message.
        message: HostMessage,
    },
    /// The compute system stopped existing (stopped, or its create failed): its id is free.
    SystemGone,
    /// The system is gone and no session holds a handle: the worker exits after this.
    Idle,
}
