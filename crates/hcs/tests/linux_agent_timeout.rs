//! A Linux guest whose agent never connects: Start fails with `HCS_E_CONNECTION_TIMEOUT`
//! after the host's guest-connect timeout (shortened here through
//! `HCS_GUEST_CONNECT_TIMEOUT_MS`), never hangs, and leaves nothing running. Its own test
//! binary, because the timeout is a process-wide setting.
//!
//! The timeout is read by the host's process, so this test always uses the embedded host
//! (`HCS_HOST=embedded`): a service reads its own environment, not this test's.

mod common;
mod linux;

use hcs::{ComputeSystem, HResult};
use std::time::{Duration, Instant};

#[test]
fn an_agent_that_never_connects_fails_the_start_with_connection_timeout() {
    std::env::set_var("HCS_GUEST_CONNECT_TIMEOUT_MS", "4000");
    std::env::set_var("HCS_HOST", "embedded");
    // `rdinit=/bin/sh` boots a shell instead of the agent: nothing ever connects.
    let document = linux::linux_vm_with(256, "rdinit=/bin/sh", "");
    let id = common::unique_id("linux-no-agent");
    let system = ComputeSystem::create(&id, &document).wait().unwrap();
    let began = Instant::now();
    let error = system.start().wait().unwrap_err();
    assert_eq!(error.hresult, HResult::HCS_E_CONNECTION_TIMEOUT, "{error}");
    assert!(began.elapsed() < Duration::from_secs(60));
    let status = system.wait_for_exit(Some(Duration::from_secs(30))).unwrap();
    assert!(status.contains("UnexpectedExit"), "{status}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(linux::qemu_pids(&id).is_empty(), "QEMU left running");
}
