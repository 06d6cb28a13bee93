//! Which host the `hcs` client talks to: the service `hcsd` or the embedded one.
//!
//! The client chooses on first use (HCS_HOST=service|embedded forces one; otherwise the
//! service if its socket, `$HCS_SOCKET` or `/run/hcs/hcsd.sock`, answers, else the embedded
//! host). hcsctl needs to know only to warn that a system created by an embedded host ends
//! with this process, so it asks the same question the same way.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// The service's socket when `$HCS_SOCKET` is not set.
const DEFAULT_SOCKET: &str = "/run/hcs/hcsd.sock";

/// Where the systems of this invocation live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostKind {
    /// `hcsd`: systems outlive hcsctl.
    Service,
    /// `hcs-host` inside hcsctl: systems end with it.
    Embedded,
}

impl HostKind {
    /// `service` or `embedded`, as HCS_HOST spells them.
    pub(crate) fn name(self) -> &'static str {
        match self {
            HostKind::Service => "service",
            HostKind::Embedded => "embedded",
        }
    }
}

/// The service's socket path.
pub(crate) fn socket_path() -> PathBuf {
    std::env::var_os("HCS_SOCKET")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// The host the client uses (see the module doc).
pub(crate) fn kind() -> HostKind {
    match std::env::var("HCS_HOST").as_deref() {
        Ok("service") => HostKind::Service,
        Ok("embedded") => HostKind::Embedded,
        _ if UnixStream::connect(socket_path()).is_ok() => HostKind::Service,
        _ => HostKind::Embedded,
    }
}
