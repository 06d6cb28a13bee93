//! The wire between `hcsd`, its clients and its workers.
//!
//! ```text
//!  client (hcs) ──ClientMessage──> hcsd ──(worker frames)──> hcsd worker (one per VM)
//!               <─ServiceMessage──      <──────────────────
//!  every arrow: [u32 length][u32 fd count][JSON payload] over a Unix stream socket,
//!               file descriptors riding along with SCM_RIGHTS
//! ```
//!
//! What this crate owns: the framing ([`frame`]), the client/service messages and their
//! handshake ([`service`]), peer credentials ([`peer`]) and where the service's socket is
//! ([`socket_path`]). What it does not own: what the messages mean. The requests, replies
//! and notifications are `hcs_protocol`'s, unchanged, so the embedded host and the service
//! carry the same messages; a created process's std handles ride beside them as
//! descriptors. The protocol is described in `docs/service.md`.

pub mod frame;
pub mod peer;
pub mod service;

pub use frame::{FrameReader, FrameWriter, Outgoing, WireError, MAX_FDS_PER_FRAME, MAX_FRAME_LEN};
pub use peer::{peer_credentials, PeerCredentials};
pub use service::{ClientMessage, ServiceMessage, PROTOCOL_VERSION};

use std::path::PathBuf;

/// The environment variable that names the service's socket for clients (and the default
/// of `hcsd --socket`).
pub const SOCKET_ENV: &str = "HCS_SOCKET";

/// Where the service listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/hcs/hcsd.sock";

/// The service's socket: `$HCS_SOCKET`, else [`DEFAULT_SOCKET`].
pub fn socket_path() -> PathBuf {
    std::env::var_os(SOCKET_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}
