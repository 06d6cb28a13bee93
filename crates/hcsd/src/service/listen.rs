//! The service's listening socket: bound by hcsd (mode 0660, group-owned) or passed by
//! systemd (socket activation).

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// Binds the service's socket at `path`: the parent directory is created, a stale socket
/// (nobody answers) is replaced, the mode is 0660 and, with `group`, its group is set.
pub fn bind(path: &std::path::Path, group: Option<u32>) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another hcsd already listens on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(hcs_wire::peer::gid(gid)))
            .map_err(std::io::Error::from)?;
    }
    Ok(listener)
}

/// The listener systemd passed (socket activation: `LISTEN_PID` is this process and
/// `LISTEN_FDS` at least 1), if any.
pub fn activated_listener() -> Option<UnixListener> {
    use std::os::fd::FromRawFd;
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    // SAFETY: systemd passes the listening socket as descriptor 3 (SD_LISTEN_FDS_START)
    // to this process alone (LISTEN_PID checked), and nothing else here has taken it.
    let listener = unsafe { UnixListener::from_raw_fd(3) };
    // Not inherited by workers.
    // SAFETY: plain fcntl on a descriptor this process owns.
    unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(listener)
}

/// The socket path from `--socket`, else `$HCS_SOCKET`, else the default.
pub fn socket_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(hcs_wire::socket_path)
}
