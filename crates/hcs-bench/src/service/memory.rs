//! The memory comparison: PSS and RSS of the client process, hcsd and its workers with
//! many running empty VMs, against the embedded host's process.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use super::{host_name, Hosts};
use crate::cli::Options;
use crate::system::{flat_cycle, unique_id, EMPTY_VM_JSON};
use crate::{BenchError, Result};

/// Memory figures of one process, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Memory {
    pub(super) pss: u64,
    pub(super) rss: u64,
}

pub(super) fn memory_of(pid: u32) -> Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| format!("/proc/{pid}/smaps_rollup: {e}"))?;
    Ok(Memory {
        pss: kib(&text, "Pss:")?,
        rss: kib(&text, "Rss:")?,
    })
}

fn kib(text: &str, name: &str) -> Result<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| BenchError(format!("no {name} in /proc")))
}

fn mem_available() -> Result<u64> {
    let text =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    kib(&text, "MemAvailable:")
}

/// What one memory run saw at one moment.
#[derive(Debug, Clone, Default)]
struct MemorySnapshot {
    client: Memory,
    hcsd: Memory,
    workers: Vec<Memory>,
    available: u64,
}

impl MemorySnapshot {
    fn take(client: u32, hosts: &Hosts, service: bool) -> Result<MemorySnapshot> {
        let mut snapshot = MemorySnapshot {
            client: memory_of(client)?,
            available: mem_available()?,
            ..MemorySnapshot::default()
        };
        if service {
            snapshot.hcsd = memory_of(hosts.hcsd.pid())?;
            for pid in hosts.hcsd.workers() {
                // A worker may exit between the listing and the read.
                if let Ok(memory) = memory_of(pid) {
                    snapshot.workers.push(memory);
                }
            }
        }
        Ok(snapshot)
    }

    fn workers_pss(&self) -> u64 {
        self.workers.iter().map(|m| m.pss).sum()
    }

    fn workers_rss(&self) -> u64 {
        self.workers.iter().map(|m| m.rss).sum()
    }
}

/// A memory child: stdin to tell it to go on, stdout for its steps.
struct Stepper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Stepper {
    fn expect(&mut self, step: &str) -> Result<String> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .map_err(|e| format!("reading the memory child: {e}"))?;
            if n == 0 {
                return Err(BenchError(format!(
                    "the memory child ended before {step:?}"
                )));
            }
            if let Some(rest) = line.trim_end().strip_prefix(step) {
                return Ok(rest.trim().to_owned());
            }
        }
    }

    fn go_on(&mut self) -> Result<()> {
        writeln!(self.stdin).map_err(|e| BenchError(format!("the memory child is gone: {e}")))
    }
}

pub(super) fn memory_comparison(options: &Options, hosts: &Hosts) -> Result<()> {
    let n = options.vms;
    println!();
    println!(
        "### Memory: {n} running empty VMs (examples/empty-vm.json: 1024 MB, 2 vCPUs), PSS from \
         /proc/PID/smaps_rollup"
    );
    let embedded = memory_run(n, hosts, false)?;
    let service = memory_run(n, hosts, true)?;
    let [e_before, e_with, e_after] = &embedded;
    let [s_before, s_with, s_after] = &service;
    let per_vm = |kib: i64| kib as f64 / n.max(1) as f64;
    let d = |a: u64, b: u64| b as i64 - a as i64;
    let e_per_vm = per_vm(d(e_before.client.pss, e_with.client.pss));
    let s_total_before = s_before.hcsd.pss + s_before.workers_pss();
    let s_total_with = s_with.hcsd.pss + s_with.workers_pss();
    let s_per_vm = per_vm(d(s_total_before, s_total_with));
    let workers = s_with.workers.len().max(1) as f64;
    println!();
    println!(
        "| {:<44} | {:>10} | {:>12} | {:>10} | {:>11} |",
        "KiB",
        "before",
        format!("with {n} VMs"),
        "after",
        "per VM"
    );
    println!(
        "|{:-<46}|{:->12}|{:->14}|{:->12}|{:->13}|",
        "", ":", ":", ":", ":"
    );
    let row = |name: &str, before: u64, with: u64, after: u64| {
        println!(
            "| {name:<44} | {before:>10} | {with:>12} | {after:>10} | {:>11.1} |",
            per_vm(d(before, with))
        );
    };
    row(
        "embedded: client process PSS",
        e_before.client.pss,
        e_with.client.pss,
        e_after.client.pss,
    );
    row(
        "embedded: client process RSS",
        e_before.client.rss,
        e_with.client.rss,
        e_after.client.rss,
    );
    row(
        "embedded: system MemAvailable drop",
        0,
        e_before.available.saturating_sub(e_with.available),
        e_before.available.saturating_sub(e_after.available),
    );
    row(
        "service: hcsd PSS",
        s_before.hcsd.pss,
        s_with.hcsd.pss,
        s_after.hcsd.pss,
    );
    row(
        "service: workers' PSS, summed",
        s_before.workers_pss(),
        s_with.workers_pss(),
        s_after.workers_pss(),
    );
    row(
        "service: workers' RSS, summed",
        s_before.workers_rss(),
        s_with.workers_rss(),
        s_after.workers_rss(),
    );
    row(
        "service: hcsd + workers PSS",
        s_total_before,
        s_total_with,
        s_after.hcsd.pss + s_after.workers_pss(),
    );
    row(
        "service: client process PSS",
        s_before.client.pss,
        s_with.client.pss,
        s_after.client.pss,
    );
    row(
        "service: system MemAvailable drop",
        0,
        s_before.available.saturating_sub(s_with.available),
        s_before.available.saturating_sub(s_after.available),
    );
    println!();
    println!(
        "  {} workers with {n} VMs: PSS {:.0} KiB and RSS {:.0} KiB per worker",
        s_with.workers.len(),
        s_with.workers_pss() as f64 / workers,
        s_with.workers_rss() as f64 / workers,
    );
    println!(
        "  per VM: service (hcsd + workers PSS) {s_per_vm:.0} KiB, embedded (process PSS growth) \
         {e_per_vm:.0} KiB: {:.1}x",
        s_per_vm / e_per_vm.max(1.0),
    );
    println!(
        "  per VM, system memory (MemAvailable drop; noisy, includes the kernel's KVM objects): \
         service {:.0} KiB, embedded {:.0} KiB",
        per_vm(d(s_with.available, s_before.available)),
        per_vm(d(e_with.available, e_before.available)),
    );
    println!(
        "  after terminate and close: {} workers left, hcsd PSS {} KiB (was {})",
        s_after.workers.len(),
        s_after.hcsd.pss,
        s_before.hcsd.pss
    );
    Ok(())
}

/// One memory child on one host: snapshots before, with the VMs running, and after.
fn memory_run(n: usize, hosts: &Hosts, service: bool) -> Result<[MemorySnapshot; 3]> {
    let mut command = hosts.child(service, &["memory".to_owned(), n.to_string()]);
    command.stdin(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("spawning a memory child: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut stepper = Stepper {
        child,
        stdin,
        stdout,
    };
    let pid = stepper.child.id();
    let outcome = (|| -> Result<[MemorySnapshot; 3]> {
        stepper.expect("baseline")?;
        // Workers of the warm-up cycle leave on their own.
        wait_for_no_workers(hosts)?;
        let before = MemorySnapshot::take(pid, hosts, service)?;
        stepper.go_on()?;
        let started = stepper.expect("running")?;
        let with = MemorySnapshot::take(pid, hosts, service)?;
        stepper.go_on()?;
        stepper.expect("stopped")?;
        if service {
            wait_for_no_workers(hosts)?;
        }
        std::thread::sleep(Duration::from_millis(300));
        let after = MemorySnapshot::take(pid, hosts, service)?;
        println!(
            "  {}: {n} VMs created and started in {started} s",
            host_name(service)
        );
        Ok([before, with, after])
    })();
    // The child exits when its stdin closes (or is killed if it is stuck).
    drop(stepper.stdin);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match stepper.child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = stepper.child.kill();
                let _ = stepper.child.wait();
                break;
            }
        }
    }
    outcome
}

fn wait_for_no_workers(hosts: &Hosts) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !hosts.hcsd.workers().is_empty() {
        if Instant::now() > deadline {
            return Err("hcsd's workers did not exit within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The child side: a warm-up cycle, `baseline`; on a line from stdin, `n` VMs created and
/// started, `running SECONDS`; on the next, all terminated and closed, `stopped`; exits when
/// stdin ends.
pub(super) fn child_memory(n: usize) -> Result<()> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    let mut next = || -> Result<()> {
        line.clear();
        stdin
            .read_line(&mut line)
            .map_err(|e| BenchError(format!("stdin: {e}")))
            .map(drop)
    };
    flat_cycle(&unique_id("svc-mem-warm", 0, 0), EMPTY_VM_JSON)?;
    say("baseline");
    next()?;
    let started = Instant::now();
    let (systems, outcome) = crate::memory::start_empty_vms("svc-mem", n);
    let seconds = started.elapsed().as_secs_f64();
    if outcome.is_ok() {
        // Let the vCPUs reach their HLT and the allocators settle.
        std::thread::sleep(Duration::from_millis(500));
        say(&format!("running {seconds:.2}"));
        next()?;
    }
    for system in &systems {
        let _ = system.terminate().wait();
    }
    drop(systems);
    outcome?;
    std::thread::sleep(Duration::from_millis(300));
    say("stopped");
    next()?;
    Ok(())
}

fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}
