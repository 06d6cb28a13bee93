//! What the QEMU engine is configured with: read once by the program that runs it
//! ([`QemuSettings::from_env`]) and handed to [`crate::QemuEngine::new`], so that creating
//! a VM reads no environment. `Vm::create` (for direct users of this crate) reads them
//! itself, once per call.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The QEMU engine's settings (docs/settings.md lists their environment variables).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QemuSettings {
    /// The QEMU binary (`HCS_QEMU`); `None`: `qemu-system-x86_64` on `PATH`.
    pub qemu: Option<PathBuf>,
    /// The vsock backend (`HCS_VHOST_DEVICE_VSOCK`); `None`: `vhost-device-vsock` on `PATH`,
    /// else in [`QemuSettings::search_dirs`].
    pub vhost_device_vsock: Option<PathBuf>,
    /// The machine type (`HCS_QEMU_MACHINE`: `q35` or `microvm`); `None`: chosen per VM.
    pub machine: Option<String>,
    /// What an automatic accelerator resolves to (`HCS_QEMU_ACCEL`: `kvm` or `tcg`);
    /// `None`: chosen for this host (`crate::resolve_accel`).
    pub accel: Option<String>,
    /// More directories to look for the vsock backend in (`~/.cargo/bin`, where
    /// `scripts/setup` installs it).
    pub search_dirs: Vec<PathBuf>,
}

impl QemuSettings {
    /// The settings from this process's environment.
    pub fn from_env() -> QemuSettings {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        QemuSettings {
            qemu: var(crate::QEMU_ENV).map(PathBuf::from),
            vhost_device_vsock: var(crate::VHOST_DEVICE_VSOCK_ENV).map(PathBuf::from),
            machine: var(crate::MACHINE_ENV).map(|v| v.to_string_lossy().into_owned()),
            accel: var(crate::ACCEL_ENV).map(|v| v.to_string_lossy().into_owned()),
            search_dirs: var("HOME")
                .map(|home| PathBuf::from(home).join(".cargo/bin"))
                .into_iter()
                .collect(),
        }
    }
}
