//! Shared helpers of the client's behaviour tests: the samples' documents, unique ids, an
//! event object like the samples' `wil::unique_event`, and the /dev/kvm check.
#![allow(dead_code)]

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The samples' empty VM (HCS-API §8.2), with a configurable size.
pub fn empty_vm(memory_mb: u64, vcpus: u32) -> String {
    format!(
        r#"{{
    "SchemaVersion": {{ "Major": 2, "Minor": 1 }},
    "Owner": "Sample",
    "VirtualMachine": {{
        "Chipset": {{ "Uefi": {{}} }},
        "ComputeTopology": {{
            "Memory": {{ "Backing": "Physical", "SizeInMB": {memory_mb} }},
            "Processor": {{ "Count": {vcpus} }}
        }}
    }},
    "ShouldTerminateOnLastHandleClosed": true
}}"#
    )
}

/// `c_EmptyVM` of the operation completion samples.
pub fn c_empty_vm() -> String {
    empty_vm(1024, 2)
}

/// The empty VM without ShouldTerminateOnLastHandleClosed.
pub fn persistent_vm(owner: &str) -> String {
    format!(
        r#"{{"SchemaVersion":{{"Major":2,"Minor":1}},"Owner":"{owner}",
            "VirtualMachine":{{"Chipset":{{"Uefi":{{}}}},
            "ComputeTopology":{{"Memory":{{"SizeInMB":64}},"Processor":{{"Count":1}}}}}}}}"#
    )
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// An id unique within this test process.
pub fn unique_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fails the test, loudly, when this machine cannot run VMs.
pub fn require_kvm() {
    let path = std::path::Path::new("/dev/kvm");
    assert!(
        path.exists(),
        "/dev/kvm is missing: these tests boot real virtual machines and need KVM \
         (load kvm_intel, kvm_amd or kvm_pvm); they are never skipped"
    );
    assert!(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .is_ok(),
        "/dev/kvm cannot be opened for reading and writing: run the tests as root or \
         join the group that owns /dev/kvm"
    );
}

/// A manual-reset event, as the samples' `wil::unique_event`.
#[derive(Default)]
pub struct EventObject {
    set: Mutex<bool>,
    cond: Condvar,
}

impl EventObject {
    pub fn set(&self) {
        *self.set.lock() = true;
        self.cond.notify_all();
    }

    pub fn reset(&self) {
        *self.set.lock() = false;
    }

    /// Waits for the event; false on timeout.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut set = self.set.lock();
        let deadline = std::time::Instant::now() + timeout;
        while !*set {
            if self.cond.wait_until(&mut set, deadline).timed_out() {
                return *set;
            }
        }
        true
    }
}

/// Generous bound for things that should happen in milliseconds.
pub const SOON: Duration = Duration::from_secs(20);
