//! Where the host keeps its runtime files: serial-port sockets and per-VM directories.
//!
//! ```text
//! <runtime dir>/                 $HCS_RUNTIME_DIR, else /run/hcs (root),
//!                                else $XDG_RUNTIME_DIR/hcs, else /tmp/hcs-<uid>
//!     pipe/<NAME>                ComPort socket for NamedPipe "\\.\pipe\NAME"
//!     vm/<id>.<n>/               one VM's engine files (QMP, vsock sockets, QEMU log)
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The host's runtime directory (see the module doc). Not created here.
pub fn runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HCS_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/hcs");
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Path::new(&dir).join("hcs");
    }
    PathBuf::from(format!("/tmp/hcs-{uid}"))
}

/// The directory of serial-port sockets named `\\.\pipe\NAME`.
pub fn pipe_dir() -> PathBuf {
    runtime_dir().join("pipe")
}

/// The socket path for a ComPort's `NamedPipe` value (HCS-API §7.3): `""` is
/// disconnected, `\\.\pipe\NAME` is `NAME` in [`pipe_dir`], an absolute path is used as
/// is. Anything else is refused with a reason.
pub fn com_port_socket(named_pipe: &str) -> Result<Option<PathBuf>, String> {
    if named_pipe.is_empty() {
        return Ok(None);
    }
    if let Some(name) = named_pipe
        .strip_prefix(r"\\.\pipe\")
        .or_else(|| named_pipe.strip_prefix("//./pipe/"))
    {
        let bad =
            name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']);
        if bad {
            return Err(format!(
                "pipe name {name:?} must be a single non-empty file name"
            ));
        }
        return Ok(Some(pipe_dir().join(name)));
    }
    if named_pipe.starts_with('/') && !named_pipe.contains('\0') {
        return Ok(Some(PathBuf::from(named_pipe)));
    }
    Err(format!(
        "{named_pipe:?} is neither \"\", a pipe name like \\\\.\\pipe\\NAME, nor an absolute path"
    ))
}

/// A fresh directory path for one VM of system `id` (not created here).
pub fn vm_dir(id: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Ids are free-form: keep a readable, safe prefix of them.
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    runtime_dir()
        .join("vm")
        .join(format!("{safe}.{}.{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn com_port_names_map_to_sockets() {
        assert_eq!(com_port_socket("").unwrap(), None);
        assert_eq!(
            com_port_socket(r"\\.\pipe\vm-com1").unwrap(),
            Some(pipe_dir().join("vm-com1"))
        );
        assert_eq!(
            com_port_socket("/tmp/x.sock").unwrap(),
            Some(PathBuf::from("/tmp/x.sock"))
        );
        assert!(com_port_socket(r"\\.\pipe\..").is_err());
        assert!(com_port_socket(r"\\.\pipe\a/b").is_err());
        assert!(com_port_socket("relative").is_err());
    }
}
