//! The stdio ends of a guest process on the client side (HCS-API O-16, rule 39).
//!
//! On Linux a process's std "handles" are file descriptors: Unix sockets whose other ends
//! are the process's stdin, stdout and stderr in the guest. They arrive with the reply to
//! `HcsCreateProcess` (owned descriptors beside the message, never numbers in it) and are
//! kept by the process handle until a process-information
//! getter hands them out; from then on the caller owns and closes them. Handles never
//! handed out are closed with the process handle, so none leaks.

use parking_lot::Mutex;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};

/// Stdin, stdout and stderr, each present only if its pipe was asked for.
pub type StdFds = [Option<RawFd>; 3];

#[derive(Default)]
struct Slots {
    owned: [Option<OwnedFd>; 3],
    /// What the first getter handed out, returned again to later getters.
    handed: Option<StdFds>,
    closed: bool,
}

/// The std handles held by one process handle.
#[derive(Default)]
pub(crate) struct StdHandles {
    slots: Mutex<Slots>,
}

impl StdHandles {
    /// Takes ownership of the descriptors of a create reply. If the handle is already
    /// closed, they are closed at once.
    pub fn receive(&self, owned: [Option<OwnedFd>; 3]) {
        let mut slots = self.slots.lock();
        if slots.closed || slots.handed.is_some() {
            return; // `owned` drops: closed.
        }
        slots.owned = owned;
    }

    /// Hands the descriptors to the caller, who owns them from now on; later calls give
    /// the same numbers.
    pub fn hand_out(&self) -> StdFds {
        let mut slots = self.slots.lock();
        if let Some(handed) = slots.handed {
            return handed;
        }
        let handed = std::mem::take(&mut slots.owned).map(|fd| fd.map(IntoRawFd::into_raw_fd));
        slots.handed = Some(handed);
        handed
    }

    /// Closes what was never handed out.
    pub fn close(&self) {
        let mut slots = self.slots.lock();
        slots.closed = true;
        slots.owned = Default::default();
    }
}

/// The `ProcessId` of a create's (or `HcsGetProcessInfo`'s) result document.
pub(crate) fn process_id(document: &str) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_str(document).ok()?;
    value.get("ProcessId")?.as_u64().map(|pid| pid as u32)
}
