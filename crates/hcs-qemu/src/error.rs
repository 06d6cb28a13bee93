//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while building or driving a QEMU VM.
///
/// A host maps [`Error::NotInstalled`] to "this engine is unavailable",
/// [`Error::InvalidConfig`] and [`Error::File`] to "bad request", and the rest to a
/// generic failure; every message names what failed so a person can act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A program this crate runs (QEMU, vhost-device-vsock) was not found.
    #[error("{program} not found ({detail}); run scripts/setup to install it")]
    NotInstalled {
        /// The program that was looked for.
        program: &'static str,
        /// Where it was looked for.
        detail: String,
    },
    /// The configuration cannot be built (zero vCPUs, a socket path too long, ...).
    #[error("invalid VM configuration: {0}")]
    InvalidConfig(String),
    /// A file the VM needs (kernel, initrd, disk) is missing or unreadable.
    #[error("{what} {}: {source}", path.display())]
    File {
        /// What the file is for ("kernel", "initrd", "disk 0").
        what: String,
        /// The path that was tried.
        path: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: std::io::Error,
    },
    /// A host call failed (creating the runtime directory, spawning, a socket).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// QEMU or the vsock backend ended (or never became ready) while the VM was being
    /// created; `detail` holds its exit status and the tail of its stderr.
    #[error("{program} failed to start: {detail}")]
    StartFailed {
        /// The program that failed.
        program: &'static str,
        /// Exit status (if it ended) and the last lines of its stderr.
        detail: String,
    },
    /// QEMU answered a QMP command with an error.
    #[error("QMP {command} failed: {class}: {desc}")]
    Qmp {
        /// The command that failed.
        command: &'static str,
        /// QMP's error class (`GenericError`, `CommandNotFound`, ...).
        class: String,
        /// QMP's description.
        desc: String,
    },
    /// The QMP conversation broke (malformed message, no reply in time).
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    /// The VM has been stopped or its QEMU has ended; nothing more can be done with it.
    #[error("the VM is not running (QEMU has ended or stop() was called)")]
    Stopped,
}

impl Error {
    /// An [`Error::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
