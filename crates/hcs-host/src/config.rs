//! The host's settings, read once by the program that runs the host (the embedded client,
//! `hcsd`, an `hcsd` worker) and passed down: nothing below reads the environment.
//!
//! `docs/settings.md` lists every setting, with its environment variable or flag.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long Start waits for the guest agent unless `HCS_GUEST_CONNECT_TIMEOUT_MS` says.
pub const DEFAULT_GUEST_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// The environment variable that enables the test requests in an embedded host.
pub const TEST_HOOKS_ENV: &str = "HCS_TEST_HOOKS";

/// Everything a [`crate::Host`] is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostConfig {
    /// Where the host keeps its runtime files (see [`crate::paths`]).
    pub runtime_dir: PathBuf,
    /// How long Start (and a guest's reboot in place) waits for the guest agent.
    pub guest_connect_timeout: Duration,
    /// Whether the requests made for tests ([`hcs_protocol::Diagnostic`]: holding a
    /// system's request queue, live counts) are answered; refused with `E_ACCESSDENIED`
    /// otherwise. Never on in a production service.
    pub test_hooks: bool,
    /// The QEMU engine's settings (`HCS_QEMU`, `HCS_QEMU_ACCEL`, `HCS_QEMU_MACHINE`,
    /// `HCS_VHOST_DEVICE_VSOCK`).
    pub qemu: hcs_qemu::QemuSettings,
}

impl HostConfig {
    /// The settings from this process's environment: `HCS_RUNTIME_DIR` (else `/run/hcs` for
    /// root, `$XDG_RUNTIME_DIR/hcs`, `/tmp/hcs-<uid>`), `HCS_GUEST_CONNECT_TIMEOUT_MS`,
    /// `HCS_TEST_HOOKS=1`, and the QEMU engine's.
    pub fn from_env() -> HostConfig {
        HostConfig {
            runtime_dir: runtime_dir_from_env(),
            guest_connect_timeout: std::env::var("HCS_GUEST_CONNECT_TIMEOUT_MS")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_GUEST_CONNECT_TIMEOUT),
            test_hooks: std::env::var(TEST_HOOKS_ENV).is_ok_and(|v| v == "1"),
            qemu: hcs_qemu::QemuSettings::from_env(),
        }
    }

    /// The directory of serial-port sockets named `\\.\pipe\NAME`.
    pub fn pipe_dir(&self) -> PathBuf {
        self.runtime_dir.join("pipe")
    }
}

/// The runtime directory the environment gives (see [`HostConfig::from_env`]).
fn runtime_dir_from_env() -> PathBuf {
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
