//! Choosing KVM or TCG: [`resolve_accel`].
//!
//! `/dev/kvm` existing is not enough: this project's machines have a software nested
//! hypervisor (`kvm_pvm`) behind it that runs tiny guests well but takes minutes to boot
//! Linux. So [`Accel::Auto`] picks KVM only when a hardware KVM module (`kvm_intel` or
//! `kvm_amd`) is loaded, `kvm_pvm` is not, and /dev/kvm opens read-write.

use std::path::Path;
use std::sync::OnceLock;

use crate::config::{Accel, ResolvedAccel};

/// The environment variable that forces what [`Accel::Auto`] resolves to: `kvm` or `tcg`.
pub const ACCEL_ENV: &str = "HCS_QEMU_ACCEL";

/// Resolves an accelerator request, with a short reason fit for logs and properties.
///
/// [`Accel::Kvm`] and [`Accel::Tcg`] are taken as asked. [`Accel::Auto`] is resolved once
/// per process (then cached) and logged: `HCS_QEMU_ACCEL=kvm|tcg` forces either; otherwise
/// KVM only when /dev/kvm is usable and the host's KVM can run Linux (`kvm_intel` or
/// `kvm_amd` loaded and no `kvm_pvm`), else TCG.
///
/// ```
/// use hcs_qemu::{resolve_accel, Accel, ResolvedAccel};
/// assert_eq!(resolve_accel(Accel::Tcg).0, ResolvedAccel::Tcg);
/// let (accel, why) = resolve_accel(Accel::Auto);
/// println!("QEMU runs guests on {accel}: {why}");
/// ```
pub fn resolve_accel(requested: Accel) -> (ResolvedAccel, &'static str) {
    resolve_with(requested, std::env::var(ACCEL_ENV).ok().as_deref())
}

/// [`resolve_accel`] with the setting `forced` (`HCS_QEMU_ACCEL`'s value) given rather than
/// read: the automatic choice for this host is made once per process and cached.
pub(crate) fn resolve_with(
    requested: Accel,
    forced: Option<&str>,
) -> (ResolvedAccel, &'static str) {
    match requested {
        Accel::Kvm => (ResolvedAccel::Kvm, "KVM requested by the caller"),
        Accel::Tcg => (ResolvedAccel::Tcg, "TCG requested by the caller"),
        Accel::Auto => match forced.map(str::trim) {
            Some(forced) if !forced.is_empty() => {
                decide(Some(forced), kvm_device_usable(), module_loaded)
            }
            _ => {
                static AUTO: OnceLock<(ResolvedAccel, &'static str)> = OnceLock::new();
                *AUTO.get_or_init(|| {
                    let choice = decide(None, kvm_device_usable(), module_loaded);
                    tracing::info!(accel = %choice.0, reason = choice.1, "QEMU accelerator chosen");
                    choice
                })
            }
        },
    }
}

/// The decision itself, apart from the host it looks at (for tests).
fn decide(
    env: Option<&str>,
    kvm_usable: bool,
    module_loaded: impl Fn(&str) -> bool,
) -> (ResolvedAccel, &'static str) {
    match env.map(str::trim) {
        Some("kvm") => return (ResolvedAccel::Kvm, "forced by HCS_QEMU_ACCEL=kvm"),
        Some("tcg") => return (ResolvedAccel::Tcg, "forced by HCS_QEMU_ACCEL=tcg"),
        Some("") | None => {}
        Some(other) => {
            tracing::warn!(value = other, "{ACCEL_ENV} is neither kvm nor tcg; ignored");
        }
    }
    if !kvm_usable {
        return (
            ResolvedAccel::Tcg,
            "/dev/kvm is missing or cannot be opened read-write",
        );
    }
    if module_loaded("kvm_pvm") {
        return (
            ResolvedAccel::Tcg,
            "this host's KVM is a software nested hypervisor (kvm_pvm) that cannot run Linux \
             guests in reasonable time",
        );
    }
    if module_loaded("kvm_intel") || module_loaded("kvm_amd") {
        return (
            ResolvedAccel::Kvm,
            "hardware KVM (kvm_intel or kvm_amd) is usable",
        );
    }
    (
        ResolvedAccel::Tcg,
        "no hardware KVM module (kvm_intel or kvm_amd) is loaded",
    )
}

/// Whether /dev/kvm opens read-write for this process.
fn kvm_device_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Whether a kernel module is loaded (or built in with parameters): `/sys/module/<name>`.
fn module_loaded(name: &str) -> bool {
    Path::new("/sys/module").join(name).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_forces_either() {
        assert_eq!(decide(Some("kvm"), false, |_| false).0, ResolvedAccel::Kvm);
        assert_eq!(
            decide(Some("tcg"), true, |m| m == "kvm_intel").0,
            ResolvedAccel::Tcg
        );
    }

    #[test]
    fn pvm_means_tcg() {
        let (accel, why) = decide(None, true, |m| m == "kvm_pvm" || m == "kvm_intel");
        assert_eq!(accel, ResolvedAccel::Tcg);
        assert!(why.contains("kvm_pvm"));
    }

    #[test]
    fn hardware_kvm_means_kvm() {
        assert_eq!(decide(None, true, |m| m == "kvm_amd").0, ResolvedAccel::Kvm);
        assert_eq!(
            decide(Some("bogus"), true, |m| m == "kvm_intel").0,
            ResolvedAccel::Kvm
        );
    }

    #[test]
    fn no_device_or_module_means_tcg() {
        assert_eq!(decide(None, false, |_| true).0, ResolvedAccel::Tcg);
        assert_eq!(decide(None, true, |_| false).0, ResolvedAccel::Tcg);
    }
}
