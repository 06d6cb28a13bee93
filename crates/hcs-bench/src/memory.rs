//! Part 4, memory: the process's resident set before and with N (100 by default) idle empty
//! VMs of 1024 MB running, and the overhead per VM. Beside the process's own RSS it reports
//! the system's `MemAvailable`, which also sees what the kernel allocates for each VM (KVM's
//! vCPU and MMU structures, thread stacks' kernel side) and RSS does not.

use std::time::Instant;

use hcs::ComputeSystem;

use crate::cli::{Options, Part};
use crate::system::{flat_cycle, unique_id, EMPTY_VM_JSON};
use crate::{BenchError, Result};

/// Figures read from `/proc` at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `VmRSS` of this process, KiB.
    pub rss_kib: u64,
    /// `VmSize` of this process, KiB.
    pub size_kib: u64,
    /// Threads of this process.
    pub threads: u64,
    /// The system's `MemAvailable`, KiB.
    pub available_kib: u64,
}

impl Snapshot {
    /// Reads `/proc/self/status` and `/proc/meminfo`.
    pub fn take() -> Result<Snapshot> {
        let status = std::fs::read_to_string("/proc/self/status")
            .map_err(|e| format!("/proc/self/status: {e}"))?;
        let meminfo =
            std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
        Ok(Snapshot {
            rss_kib: field(&status, "VmRSS:")?,
            size_kib: field(&status, "VmSize:")?,
            threads: field(&status, "Threads:")?,
            available_kib: field(&meminfo, "MemAvailable:")?,
        })
    }
}

fn field(text: &str, name: &str) -> Result<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| BenchError(format!("no {name} in /proc")))
}

/// The outcome of part 4.
#[derive(Debug, Clone, Copy)]
pub struct MemoryResults {
    /// VMs held running.
    pub vms: usize,
    /// Before any of them.
    pub before: Snapshot,
    /// With all of them running.
    pub with_vms: Snapshot,
    /// After terminating and closing them all.
    pub after: Snapshot,
    /// Seconds to create and start them all.
    pub start_seconds: f64,
}

/// Runs part 4 and prints its table.
pub fn run(options: &Options) -> Result<MemoryResults> {
    hcs_kvm::check_kvm().map_err(|e| format!("the memory part needs /dev/kvm: {e}"))?;
    let n = options.vms;
    println!("## 4. Memory: process RSS with {n} idle empty VMs (1024 MB, 2 vCPUs) running");
    println!("reproduce: {}", options.reproduce(Part::Memory));

    // The client, its dispatcher threads and the embedded host exist after one cycle.
    flat_cycle(&unique_id("mem-warm", 0, 0), EMPTY_VM_JSON)?;
    let before = Snapshot::take()?;
    let started = Instant::now();
    let (systems, outcome) = start_empty_vms("mem", n);
    let start_seconds = started.elapsed().as_secs_f64();
    // Let the vCPUs reach their HLT and the allocator settle.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let with_vms = Snapshot::take()?;
    for system in &systems {
        let _ = system.terminate().wait();
    }
    drop(systems);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = Snapshot::take()?;
    outcome?;

    let results = MemoryResults {
        vms: n,
        before,
        with_vms,
        after,
        start_seconds,
    };
    print(&results);
    Ok(results)
}

/// Creates and starts `n` empty VMs with ids from `prefix`, one after another. The VMs
/// that started, and whether all did (the caller ends them either way).
pub(crate) fn start_empty_vms(prefix: &str, n: usize) -> (Vec<ComputeSystem>, Result<()>) {
    let mut systems = Vec::with_capacity(n);
    let outcome = (|| -> Result<()> {
        for i in 0..n {
            let system = ComputeSystem::create(&unique_id(prefix, 0, i), EMPTY_VM_JSON)
                .wait()
                .map_err(|e| format!("create VM {i}: {e}"))?;
            system
                .start()
                .wait()
                .map_err(|e| format!("start VM {i}: {e}"))?;
            systems.push(system);
        }
        Ok(())
    })();
    (systems, outcome)
}

fn mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}

fn print(r: &MemoryResults) {
    let n = r.vms.max(1) as i64;
    let d = |f: fn(&Snapshot) -> u64| f(&r.with_vms) as i64 - f(&r.before) as i64;
    let used = |s: &Snapshot| -> i64 { -(s.available_kib as i64) };
    println!();
    println!(
        "| {:<30} | {:>12} | {:>14} | {:>12} | {:>12} |",
        "",
        "before",
        format!("with {} VMs", r.vms),
        "after",
        "per VM"
    );
    println!(
        "|{:-<32}|{:->14}|{:->16}|{:->14}|{:->14}|",
        "", ":", ":", ":", ":"
    );
    println!(
        "| {:<30} | {:>12.1} | {:>14.1} | {:>12.1} | {:>12.3} |",
        "process RSS, MiB",
        mib(r.before.rss_kib as i64),
        mib(r.with_vms.rss_kib as i64),
        mib(r.after.rss_kib as i64),
        mib(d(|s| s.rss_kib) / n),
    );
    println!(
        "| {:<30} | {:>12.1} | {:>14.1} | {:>12.1} | {:>12.1} |",
        "process virtual size, GiB",
        mib(r.before.size_kib as i64) / 1024.0,
        mib(r.with_vms.size_kib as i64) / 1024.0,
        mib(r.after.size_kib as i64) / 1024.0,
        mib(d(|s| s.size_kib) / n) / 1024.0,
    );
    println!(
        "| {:<30} | {:>12} | {:>14} | {:>12} | {:>12.1} |",
        "process threads",
        r.before.threads,
        r.with_vms.threads,
        r.after.threads,
        d(|s| s.threads) as f64 / n as f64,
    );
    println!(
        "| {:<30} | {:>12.1} | {:>14.1} | {:>12.1} | {:>12.3} |",
        "system MemAvailable, MiB",
        mib(r.before.available_kib as i64),
        mib(r.with_vms.available_kib as i64),
        mib(r.after.available_kib as i64),
        mib((used(&r.with_vms) - used(&r.before)) / n),
    );
    println!();
    println!(
        "per-VM overhead: {:.1} KiB of process RSS, {:.1} KiB of system memory (MemAvailable drop, \
         includes the kernel's KVM objects); {} VMs created and started in {:.2} s",
        (r.with_vms.rss_kib as f64 - r.before.rss_kib as f64) / n as f64,
        (r.before.available_kib as f64 - r.with_vms.available_kib as f64) / n as f64,
        r.vms,
        r.start_seconds
    );
    println!();
}
