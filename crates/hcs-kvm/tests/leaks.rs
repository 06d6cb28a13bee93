//! Stopping a VM gives back every thread, fd and mapping it had.
//!
//! Process-wide counts are only meaningful when nothing else in the process creates VMs or
//! threads meanwhile, so this binary holds a single test that checks its scenarios one after
//! the other. Each comparison is against a baseline taken after a warm-up, which lets the
//! process reach its steady state first (the kick signal handler, malloc arenas and glibc's
//! cache of thread stacks for up to four vCPU threads at once).

mod common;

use std::time::Duration;

use common::*;
use hcs_kvm::{VmExitReason, VmState};

/// What the process holds.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    fds: usize,
    mappings: usize,
    vcpu_threads: usize,
    threads: usize,
}

fn footprint() -> Footprint {
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let mappings = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count();
    let tasks: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .collect();
    Footprint {
        fds,
        mappings,
        vcpu_threads: tasks.iter().filter(|c| c.starts_with("vcpu")).count(),
        threads: tasks.len(),
    }
}

/// The footprint once the threads that just ended have left /proc (a joined thread can
/// linger there for a moment while the kernel reaps it).
fn settled_footprint(baseline: &Footprint) -> Footprint {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = footprint();
        if now == *baseline || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Resident memory of the process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn every_kind_of_cycle() {
    // Started and stopped.
    for vcpus in [1, 2, 4] {
        let h = idle(1024, vcpus);
        h.vm.start().unwrap();
        h.vm.stop();
    }
    // Stopped while paused.
    let h = code(2, counter_code());
    h.vm.start().unwrap();
    h.vm.pause().unwrap();
    h.vm.stop();
    // The guest ended itself, then stop.
    let h = code(2, shutdown_code());
    h.vm.start().unwrap();
    assert_eq!(h.wait_exit(), VmExitReason::PowerOff);
    h.vm.stop();
    // Never started.
    let h = idle(64, 2);
    h.vm.stop();
    // Dropped without stop.
    let h = idle(256, 2);
    h.vm.start().unwrap();
    drop(h);
}

#[test]
fn stopped_vms_leave_nothing_behind() {
    require_kvm();
    for _ in 0..3 {
        every_kind_of_cycle();
    }
    let baseline = settled_footprint(&footprint());
    assert_eq!(baseline.vcpu_threads, 0);

    // One VM: while it lives it holds fds, mappings and threads (but next to no memory:
    // guest RAM is not touched); after stop, none.
    let rss_before = rss_kib();
    let h = idle(1024, 2);
    h.vm.start().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let rss_growth = rss_kib().saturating_sub(rss_before);
    assert!(
        rss_growth < 16 * 1024,
        "a started idle 1 GiB VM grew the process by {rss_growth} KiB"
    );
    let running = footprint();
    assert!(running.fds > baseline.fds, "a VM holds fds");
    assert!(running.mappings > baseline.mappings, "a VM holds mappings");
    assert_eq!(running.vcpu_threads, 2);
    h.vm.stop();
    assert_eq!(h.vm.state(), VmState::Stopped);
    assert_eq!(settled_footprint(&baseline), baseline, "after one stop");
    drop(h);

    every_kind_of_cycle();
    assert_eq!(settled_footprint(&baseline), baseline, "after every kind");

    for i in 0..300 {
        let h = idle(1024, 1 + i % 4);
        h.vm.start().unwrap();
        if i % 3 == 0 {
            h.vm.pause().unwrap();
        }
        h.vm.stop();
    }
    assert_eq!(settled_footprint(&baseline), baseline, "after 300 VMs");
}
