//! Who is on the other end of a Unix socket (`SO_PEERCRED`), and whether they belong to
//! a group.

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials as PeerCredOpt};
use nix::unistd::{Gid, Group};
use std::os::unix::net::UnixStream;

/// The process that connected, as the kernel saw it at `connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// Its process id.
    pub pid: u32,
    /// Its effective user id.
    pub uid: u32,
    /// Its effective group id.
    pub gid: u32,
}

/// The credentials of `stream`'s peer.
pub fn peer_credentials(stream: &UnixStream) -> std::io::Result<PeerCredentials> {
    let cred = getsockopt(stream, PeerCredOpt).map_err(std::io::Error::from)?;
    Ok(PeerCredentials {
        pid: cred.pid() as u32,
        uid: cred.uid(),
        gid: cred.gid(),
    })
}

/// The id of group `name`, if it exists.
pub fn group_id(name: &str) -> Option<u32> {
    Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// Whether process `pid` (still running) has group `gid` as its effective or a
/// supplementary group, read from `/proc/<pid>/status`.
pub fn process_in_group(pid: u32, gid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status.lines().any(|line| {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("Groups:") => words.any(|g| g.parse::<u32>() == Ok(gid)),
            Some("Gid:") => words.nth(1).and_then(|g| g.parse::<u32>().ok()) == Some(gid),
            _ => false,
        }
    })
}

/// The group id `gid` as nix's type (for chown).
pub fn gid(gid: u32) -> Gid {
    Gid::from_raw(gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_pair_sees_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cred = peer_credentials(&a).unwrap();
        assert_eq!(cred.pid, std::process::id());
        assert_eq!(cred.uid, nix::unistd::geteuid().as_raw());
        assert!(process_in_group(std::process::id(), cred.gid));
    }
}
