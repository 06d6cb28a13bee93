//! Shared helpers of the Linux-guest tests: the guest images `scripts/setup` builds, the
//! Linux VM document, and the checks that fail loudly when something is missing.
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root (two levels above this crate).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A guest image: `$var` if set, else `.cache/guest/<name>` as `scripts/setup` leaves it.
/// Fails the test when it is missing: these tests never skip.
fn image(var: &str, name: &str) -> String {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/guest").join(name));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup (it fetches Debian's cloud kernel and builds the \
         initramfs with the hcs-guest agent); these tests boot real Linux guests and are \
         never skipped",
        path.display()
    );
    path.canonicalize()
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The guest kernel.
pub fn kernel() -> String {
    image("HCS_GUEST_KERNEL", "vmlinuz")
}

/// The initramfs with the agent.
pub fn initrd() -> String {
    image("HCS_GUEST_INITRD", "initramfs.img")
}

/// Fails loudly when QEMU is not installed.
pub fn require_qemu() {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join("qemu-system-x86_64").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "qemu-system-x86_64 is not installed: run scripts/setup; the Linux-guest tests run \
         real guests under QEMU and are never skipped"
    );
}

/// A Linux VM document with the agent (`GuestConnection`) and `extra` kernel arguments.
pub fn linux_vm_with(memory_mb: u64, cmdline_extra: &str, devices: &str) -> String {
    require_qemu();
    let kernel = serde_json::to_string(&kernel()).unwrap();
    let initrd = serde_json::to_string(&initrd()).unwrap();
    let cmdline = serde_json::to_string(&format!("console=ttyS0 quiet {cmdline_extra}")).unwrap();
    format!(
        r#"{{
    "SchemaVersion": {{ "Major": 2, "Minor": 2 }},
    "Owner": "linux-tests",
    "VirtualMachine": {{
        "Chipset": {{ "LinuxKernelDirect": {{ "KernelFilePath": {kernel}, "InitRdPath": {initrd},
                                              "KernelCmdLine": {cmdline} }} }},
        "ComputeTopology": {{ "Memory": {{ "SizeInMB": {memory_mb} }}, "Processor": {{ "Count": 2 }} }},
        "Devices": {{ {devices} }},
        "GuestConnection": {{}},
        "StopOnReset": true
    }},
    "ShouldTerminateOnLastHandleClosed": true
}}"#
    )
}

/// The standard Linux VM of these tests.
pub fn linux_vm() -> String {
    linux_vm_with(512, "", "")
}

/// Process ids of QEMU processes whose command line mentions `needle`.
pub fn qemu_pids(needle: &str) -> Vec<u32> {
    hcs_test_support::pids_with_cmdline(&["qemu-system", needle])
}
