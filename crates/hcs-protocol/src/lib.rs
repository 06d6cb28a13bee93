//! The messages between an HCS client and a host: what the client asks ([`Request`]), what
//! the host answers ([`Reply`]) and what it tells unasked ([`Notification`]).
//!
//! ```text
//!  hcs (client)  ── Request ──────────────────>  host (hcs-host: embedded, or in hcsd)
//!                <── HostMessage::Reply ──────   one per request, with a Failure's
//!                <── HostMessage::Notification    ResultError document when it failed
//! ```
//!
//! One protocol serves both hosts: the embedded host takes these values in memory, the
//! service carries them over `hcs-wire` frames as JSON. A created process's std handles are
//! owned descriptors ([`StdHandles`]) that travel *beside* the message (SCM_RIGHTS on a
//! socket), never as numbers inside its JSON; the HCS JSON a C caller sees
//! (`HCS_PROCESS_INFORMATION`, result documents) is made at the API edge, in `hcs`.
//! `docs/service.md` describes how descriptors travel.
//!
//! What this crate owns: the message types, the [`Failure`] every refusal is made of, and
//! the reply that a failure becomes ([`Reply::outcome`]). What it does not own: what any
//! request means (that is `hcs-host`), and how bytes move (that is `hcs-wire`).

mod failure;
mod messages;
mod std_handles;
mod validation;

pub use failure::Failure;
pub use messages::{
    Diagnostic, HostMessage, MessageSink, Notification, ProcessHandle, ProcessRequest, Reply,
    Request, RequestBody, StartedProcess, SystemHandle, SystemRequest,
};
pub use std_handles::{Descriptor, StdHandles};
pub use validation::{Validation, ValidationProblem};
