//! Where the host keeps its runtime files: serial-port sockets and per-VM directories.
//!
//! ```text
//! <runtime dir>/                 HostConfig::runtime_dir ($HCS_RUNTIME_DIR, else /run/hcs
//!                                for root, else $XDG_RUNTIME_DIR/hcs, else /tmp/hcs-<uid>)
//!     pipe/<NAME>                ComPort socket for NamedPipe "\\.\pipe\NAME"
//!     vm/<id>.<n>/               one VM's engine files (QMP, vsock sockets, QEMU log)
//! ```

use crate::config::HostConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// The socket path for a ComPort's `NamedPipe` value (HCS-API §7.3): `""` is
/// disconnected, `\\.\pipe\NAME` is `NAME` in `HostConfig::pipe_dir`, an absolute path is used as
/// is. Anything else is refused with a reason.
pub fn com_port_socket(config: &HostConfig, named_pipe: &str) -> Result<Option<PathBuf>, String> {
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
        return Ok(Some(config.pipe_dir().join(name)));
    }
    if named_pipe.starts_with('/') && !named_pipe.contains('\0') {
        return Ok(Some(PathBuf::from(named_pipe)));
    }
    Err(format!(
        "{named_pipe:?} is neither \"\", a pipe name like \\\\.\\pipe\\NAME, nor an absolute path"
    ))
}

/// A fresh directory path for one VM of system `id` (not created here).
pub fn vm_dir(config: &HostConfig, id: &str) -> PathBuf {
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
    config
        .runtime_dir
        .join("vm")
        .join(format!("{safe}.{}.{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn com_port_names_map_to_sockets() {
        let config = HostConfig {
            runtime_dir: PathBuf::from("/run/test-hcs"),
            ..HostConfig::from_env()
        };
        let com_port_socket = |name| super::com_port_socket(&config, name);
        let pipe_dir = || config.pipe_dir();
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
