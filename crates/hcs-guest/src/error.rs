//! The agent's one error type, and how a failure becomes the HRESULT the host receives.

use hcs_guest_protocol::{FrameError, E_FAIL};
use nix::errno::Errno;

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request the agent refuses or cannot carry out, with the HRESULT the host gets.
    #[error("{message}")]
    Request {
        /// One of the HRESULT constants of `hcs-guest-protocol`.
        code: i32,
        /// What went wrong, for a person.
        message: String,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the agent was doing.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{what}: {errno}")]
    Os {
        /// What the agent was doing.
        what: String,
        /// The OS error.
        errno: Errno,
    },
    /// The control connection broke or carried something unreadable.
    #[error("control connection: {0}")]
    Frame(#[from] FrameError),
    /// The host answered the handshake with `Refused`.
    #[error("the host refused the handshake: {0}")]
    Refused(String),
    /// The host broke the handshake rules.
    #[error("handshake: {0}")]
    Handshake(String),
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// A request failure with its HRESULT.
    pub fn request(code: i32, message: impl Into<String>) -> Self {
        Self::Request {
            code,
            message: message.into(),
        }
    }

    /// An I/O failure while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// A system call failure while doing `what`.
    pub fn os(what: impl Into<String>, errno: Errno) -> Self {
        Self::Os {
            what: what.into(),
            errno,
        }
    }

    /// The HRESULT the host receives for this failure.
    pub fn hresult(&self) -> i32 {
        match self {
            Self::Request { code, .. } => *code,
            _ => E_FAIL,
        }
    }
}
