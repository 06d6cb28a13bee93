//! What a compute system holds on the host, through the HCS API: a started VM runs
//! `Count` vCPU threads, an idle VM uses (almost) no CPU, and terminate gives back every
//! thread, file descriptor and mapping. One test, so that no other test of this binary
//! changes the process's counts while it measures.
//!
//! It measures this process, so it always uses the embedded host (`HCS_HOST=embedded`,
//! set before the client's first use): with the service, the VM would run in one of
//! hcsd's worker processes.

mod common;

use common::{empty_vm, require_kvm, unique_id};
use hcs::ComputeSystem;
use std::time::Duration;

fn vcpu_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| {
            // vCPU threads are named vcpu0, vcpu1, ... (not this test's own thread).
            let name = name.trim_end();
            name.strip_prefix("vcpu")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Mappings of 512 MiB or more: guest memory (thread stacks, which glibc caches after
/// threads end, are far smaller).
fn large_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (start, end) = line.split_whitespace().next()?.split_once('-')?;
            let size = u64::from_str_radix(end, 16).ok()? - u64::from_str_radix(start, 16).ok()?;
            Some(size >= 512 << 20)
        })
        .filter(|&large| large)
        .count()
}

fn cpu_time_100ns(system: &ComputeSystem) -> u64 {
    let props = system
        .properties(Some(r#"{"PropertyTypes":["Statistics"]}"#))
        .wait()
        .unwrap();
    let props: serde_json::Value = serde_json::from_str(&props).unwrap();
    props["Statistics"]["Processor"]["TotalRuntime100ns"]
        .as_u64()
        .unwrap()
}

#[test]
fn vcpus_idle_cost_and_teardown() {
    require_kvm();
    std::env::set_var("HCS_HOST", "embedded");
    // Warm up the process (dispatcher threads, host, signal handler) so that counts
    // below compare like with like.
    let warm = ComputeSystem::create(&unique_id("warm"), &empty_vm(64, 1))
        .wait()
        .unwrap();
    warm.start().wait().unwrap();
    warm.terminate().wait().unwrap();
    drop(warm);
    std::thread::sleep(Duration::from_millis(100));

    let (fds_before, maps_before) = (fds(), large_mappings());
    assert_eq!(vcpu_threads(), 0);
    for count in [1u32, 2, 4] {
        let system = ComputeSystem::create(&unique_id("vcpus"), &empty_vm(1024, count))
            .wait()
            .unwrap();
        assert_eq!(vcpu_threads(), 0, "no vCPU runs before start");
        system.start().wait().unwrap();
        assert_eq!(
            vcpu_threads(),
            count as usize,
            "a started VM holds Count vCPUs"
        );
        assert_eq!(
            large_mappings(),
            maps_before + 1,
            "guest memory is one mapping"
        );

        // Idle: the firmware halts; vCPUs block in the kernel.
        let before = cpu_time_100ns(&system);
        std::thread::sleep(Duration::from_millis(500));
        let used = cpu_time_100ns(&system) - before;
        // 500 ms of wall time per vCPU; allow 2% of it.
        let budget = 500 * 10_000 * u64::from(count) / 50;
        assert!(used < budget, "idle VM used {used} x100ns of CPU in 500 ms");

        system.terminate().wait().unwrap();
        drop(system);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(vcpu_threads(), 0, "vCPU threads joined");
    assert_eq!(fds(), fds_before, "no file descriptor left");
    assert_eq!(large_mappings(), maps_before, "guest memory unmapped");
    let live = hcs::api::live_counts();
    assert_eq!((live.systems, live.vms), (0, 0), "{live:?}");
}
