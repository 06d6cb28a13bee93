//! Part `service`: the Host Compute Service `hcsd` against the embedded host, in the same
//! run: what a client pays for having its compute systems in the service (one worker
//! process per VM) rather than inside its own process.
//!
//! ```text
//!  measured                       service                        embedded (the peer)
//!  GetProperties round trip       a client process, HCS_HOST=    a client process, HCS_HOST=
//!  (wait and callback)            service -> hcsd -> worker      embedded (the host's thread)
//!  VMs/s, create+start+           16 client processes            16 threads in one process,
//!  terminate+close                through one hcsd               and 16 embedded processes
//!  memory, 100 running VMs        PSS of hcsd + its workers      PSS growth of the process
//! ```
//!
//! The client chooses its host once per process, so every measurement runs in a child
//! process (this binary again, with the hidden `--service-child ROLE` arguments and
//! `HCS_HOST` set) that prints its figures on stdout; the latency children alternate,
//! embedded and service, so that both see the same machine. `hcsd` is started by the part
//! on a scratch socket and state directory (`target/release/hcsd` next to this binary, or
//! `--hcsd PATH`), and killed with its workers at the end.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hcs::{api, ComputeSystem, HcsOperation, HcsSystem};

use crate::cli::{Options, Part};
use crate::stats::{table, Samples, Summary, Unit};
use crate::system::{document_for, flat_cycle, issue, unique_id, wait_ok, EMPTY_VM_JSON};
use crate::{latency, BenchError, Result};

/// The hidden first argument that makes this binary a measuring child.
pub const CHILD_FLAG: &str = "--service-child";

/// Client processes (and embedded threads) of the throughput comparison.
const CLIENTS: usize = 16;

/// The small VM of the throughput comparison, (MB, vCPUs).
const SMALL_VM: (u64, u32) = (64, 1);

/// Latency children per host, alternating (embedded, service, embedded, service).
const LATENCY_ROUNDS: usize = 2;

/// Where the two hosts are: the scratch `hcsd`, and how to point a child at either.
struct Hosts {
    hcsd: Hcsd,
}

impl Hosts {
    /// A child of this binary running `role`, on the service or the embedded host.
    fn child(&self, service: bool, role: &[String]) -> Command {
        let mut command =
            Command::new(std::env::current_exe().unwrap_or_else(|_| "hcs-bench".into()));
        command.arg(CHILD_FLAG).args(role);
        if service {
            command
                .env(hcs::api::HOST_ENV, "service")
                .env("HCS_SOCKET", &self.hcsd.socket);
        } else {
            command.env(hcs::api::HOST_ENV, "embedded");
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command
    }
}

/// Runs the part and prints its tables and ratios.
pub fn run(options: &Options) -> Result<()> {
    hcs_kvm::check_kvm().map_err(|e| format!("the service part needs /dev/kvm: {e}"))?;
    println!("## The service (hcsd) against the embedded host");
    println!("reproduce: {}", options.reproduce(Part::Service));
    let binary = match &options.hcsd {
        Some(path) => path.clone(),
        None => {
            // target/release/hcs-bench, or target/release/deps/hcs-bench-HASH under
            // `cargo bench`: hcsd is in target/release.
            let exe = std::env::current_exe().map_err(|e| format!("where is this binary: {e}"))?;
            let dir = exe.parent().unwrap_or(Path::new("."));
            let dir = match dir.file_name() {
                Some(name) if name == "deps" => dir.parent().unwrap_or(dir),
                _ => dir,
            };
            dir.join("hcsd")
        }
    };
    if !binary.exists() {
        return Err(BenchError(format!(
            "{} is missing: build it first (cargo build --release -p hcsd) or pass --hcsd PATH",
            binary.display()
        )));
    }
    let hosts = Hosts {
        hcsd: Hcsd::start(&binary)?,
    };
    println!(
        "hcsd: {} (pid {}), socket {}",
        binary.display(),
        hosts.hcsd.pid(),
        hosts.hcsd.socket.display()
    );
    // Memory first, while hcsd is fresh: the throughput runs leave its allocator holding
    // memory (printed at the end).
    let fresh = memory_of(hosts.hcsd.pid())?;
    let outcome = memory_comparison(options, &hosts)
        .and_then(|()| latency_comparison(options, &hosts))
        .and_then(|()| throughput_comparison(options, &hosts));
    if let Ok(now) = memory_of(hosts.hcsd.pid()) {
        println!();
        println!(
            "hcsd at the end of the part: PSS {} KiB, RSS {} KiB (at its start: PSS {} KiB, RSS {} KiB)",
            now.pss, now.rss, fresh.pss, fresh.rss
        );
    }
    let leftover = hosts.hcsd.workers();
    drop(hosts);
    outcome?;
    if !leftover.is_empty() {
        return Err(BenchError(format!(
            "workers were left running at the end (killed): {leftover:?}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Latency

fn latency_comparison(options: &Options, hosts: &Hosts) -> Result<()> {
    let per_child = options.requests.div_ceil(LATENCY_ROUNDS).max(1);
    println!();
    println!(
        "### Completion latency: GetProperties on one running empty VM ({} requests per style \
         and host, in {LATENCY_ROUNDS} alternating child processes per host)",
        per_child * LATENCY_ROUNDS
    );
    // [embedded wait, embedded callback, service wait, service callback]
    let mut samples: Vec<Samples> = (0..4).map(|_| Samples::default()).collect();
    for _ in 0..LATENCY_ROUNDS {
        for (slot, service) in [(0, false), (2, true)] {
            let role = [
                "latency".to_owned(),
                per_child.to_string(),
                options.warmup.to_string(),
            ];
            let output = hosts
                .child(service, &role)
                .output()
                .map_err(|e| format!("running a latency child: {e}"))?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() {
                return Err(BenchError(format!(
                    "the latency child ({}) failed: {}\n{stdout}",
                    host_name(service),
                    output.status
                )));
            }
            for (offset, style) in ["wait", "callback"].iter().enumerate() {
                for value in durations(&stdout, style)? {
                    samples[slot + offset].push(value);
                }
            }
        }
    }
    let names = [
        "embedded: wait",
        "embedded: callback starts",
        "service: wait",
        "service: callback starts",
    ];
    let summaries: Vec<Option<Summary>> = samples.iter().map(Samples::summary).collect();
    let rows: Vec<(&str, Option<Summary>)> = names.iter().copied().zip(summaries.clone()).collect();
    println!();
    print!("{}", table(Unit::Micros, &rows));
    println!();
    println!("added by the service (service - embedded), and service / embedded:");
    for (style, embedded, service) in [
        ("wait", summaries[0], summaries[2]),
        ("callback starts", summaries[1], summaries[3]),
    ] {
        let (Some(e), Some(s)) = (embedded, service) else {
            continue;
        };
        let added = Unit::Micros.of(s.median) - Unit::Micros.of(e.median);
        let added99 = Unit::Micros.of(s.p99) - Unit::Micros.of(e.p99);
        println!(
            "  {style:<16} p50 +{added:>7.1} us ({}), p99 +{added99:>7.1} us   ratio p50 {:.2}x, p99 {:.2}x",
            if added < 50.0 {
                "goal < 50 us: met"
            } else {
                "goal < 50 us: NOT met"
            },
            s.median.as_secs_f64() / e.median.as_secs_f64(),
            s.p99.as_secs_f64() / e.p99.as_secs_f64(),
        );
    }
    Ok(())
}

/// The child side: one running empty VM, `requests` rounds of a blocking wait and a
/// completion callback in random order; prints `wait NS,NS,...` and `callback NS,...`.
fn child_latency(requests: usize, warmup: usize) -> Result<()> {
    let system = ComputeSystem::create(&unique_id("svc-lat", 0, 0), EMPTY_VM_JSON)
        .wait()
        .map_err(|e| format!("create: {e}"))?;
    system.start().wait().map_err(|e| format!("start: {e}"))?;
    let handle = system.handle();
    let reused = api::create_operation(0, None);
    let (tx, rx) = mpsc::channel::<Instant>();
    let callback: hcs::OperationCompletion = Arc::new(move |_, _| {
        let _ = tx.send(Instant::now());
    });
    let outcome = crate::stats::interleaved(2, warmup.max(1) * 20, requests, |style| match style {
        0 => wait_once(handle, reused),
        _ => latency::callback_style(handle, &callback, &rx),
    });
    api::close_operation(reused);
    let _ = system.terminate().wait();
    let samples = outcome?;
    for (name, set) in ["wait", "callback"].iter().zip(samples) {
        println!("{name} {}", nanos(set.values()));
    }
    Ok(())
}

fn wait_once(system: HcsSystem, operation: HcsOperation) -> Result<Duration> {
    let start = Instant::now();
    issue(
        api::get_compute_system_properties(system, operation, None),
        "GetProperties",
    )?;
    wait_ok(operation, "GetProperties")?;
    Ok(start.elapsed())
}

// ---------------------------------------------------------------------------------------
// Throughput

/// One line of the throughput table.
struct Rate {
    name: String,
    vms: usize,
    elapsed: Duration,
    cycle: Option<Summary>,
}

impl Rate {
    fn per_second(&self) -> f64 {
        self.vms as f64 / self.elapsed.as_secs_f64()
    }
}

fn throughput_comparison(options: &Options, hosts: &Hosts) -> Result<()> {
    let (memory_mb, vcpus) = SMALL_VM;
    println!();
    println!(
        "### Throughput: empty VMs ({memory_mb} MB, {vcpus} vCPU) created, started, terminated \
         and closed for {:?} by {CLIENTS} clients",
        options.duration
    );
    let service = cycles(options, hosts, true, CLIENTS, 1)?;
    let threads = cycles(options, hosts, false, 1, CLIENTS)?;
    let processes = cycles(options, hosts, false, CLIENTS, 1)?;
    let rates = [
        Rate {
            name: format!("service: {CLIENTS} client processes, one hcsd"),
            ..service
        },
        Rate {
            name: format!("embedded: {CLIENTS} threads in one process"),
            ..threads
        },
        Rate {
            name: format!("embedded: {CLIENTS} processes"),
            ..processes
        },
    ];
    println!();
    println!(
        "| {:<40} | {:>6} | {:>7} | {:>8} | {:>12} | {:>12} |",
        "clients", "VMs", "seconds", "VMs/s", "cycle p50 ms", "cycle p99 ms"
    );
    println!(
        "|{:-<42}|{:->8}|{:->9}|{:->10}|{:->14}|{:->14}|",
        "", ":", ":", ":", ":", ":"
    );
    for r in &rates {
        let (p50, p99) = r
            .cycle
            .map(|s| (Unit::Millis.of(s.median), Unit::Millis.of(s.p99)))
            .unwrap_or((f64::NAN, f64::NAN));
        println!(
            "| {:<40} | {:>6} | {:>7.2} | {:>8.1} | {:>12.3} | {:>12.3} |",
            r.name,
            r.vms,
            r.elapsed.as_secs_f64(),
            r.per_second(),
            p50,
            p99
        );
    }
    println!();
    println!(
        "  service / embedded (threads):   {:.2}x VMs/s",
        rates[0].per_second() / rates[1].per_second()
    );
    println!(
        "  service / embedded (processes): {:.2}x VMs/s",
        rates[0].per_second() / rates[2].per_second()
    );
    Ok(())
}

/// `processes` children with `threads` client threads each, cycling VMs from a common
/// start for the part's duration.
fn cycles(
    options: &Options,
    hosts: &Hosts,
    service: bool,
    processes: usize,
    threads: usize,
) -> Result<Rate> {
    // Every child connects and warms up first, then all start together.
    let start_at = unix_ms() + 1500 + 50 * processes as u64;
    let role = [
        "cycles".to_owned(),
        options.duration.as_secs_f64().to_string(),
        threads.to_string(),
        start_at.to_string(),
    ];
    let children: Vec<Child> = (0..processes)
        .map(|_| {
            hosts
                .child(service, &role)
                .spawn()
                .map_err(|e| BenchError(format!("spawning a throughput child: {e}")))
        })
        .collect::<Result<_>>()?;
    let mut vms = 0;
    let mut elapsed = Duration::ZERO;
    let mut all = Samples::default();
    let mut failure = None;
    for child in children {
        let output = child
            .wait_with_output()
            .map_err(|e| format!("waiting for a throughput child: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            failure.get_or_insert(format!(
                "a throughput child ({}) failed: {}\n{stdout}",
                host_name(service),
                output.status
            ));
            continue;
        }
        let done = field(&stdout, "done")?;
        let mut words = done.split_whitespace();
        vms += words
            .next()
            .and_then(|w| w.parse::<usize>().ok())
            .unwrap_or(0);
        let ns = words
            .next()
            .and_then(|w| w.parse::<u64>().ok())
            .unwrap_or(0);
        elapsed = elapsed.max(Duration::from_nanos(ns));
        for value in durations(&stdout, "cycles")? {
            all.push(value);
        }
    }
    if let Some(failure) = failure {
        return Err(BenchError(failure));
    }
    Ok(Rate {
        name: String::new(),
        vms,
        elapsed,
        cycle: all.summary(),
    })
}

/// The child side: `threads` threads cycle the small VM from `start_at` (Unix ms) for
/// `seconds`; prints `done VMS ELAPSED_NS` (from the common start) and `cycles NS,...`.
fn child_cycles(seconds: f64, threads: usize, start_at: u64) -> Result<()> {
    let document = Arc::new(document_for(SMALL_VM.0, SMALL_VM.1)?);
    flat_cycle(&unique_id("svc-warm", 0, 0), &document)?;
    let wait = start_at.saturating_sub(unix_ms());
    std::thread::sleep(Duration::from_millis(wait));
    let started = Instant::now();
    // A child that starts late counts its lateness: elapsed is from the common start.
    let late = Duration::from_millis(unix_ms().saturating_sub(start_at));
    let deadline = started + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let document = Arc::clone(&document);
            std::thread::spawn(move || -> Result<Vec<Duration>> {
                let mut cycles = Vec::new();
                while Instant::now() < deadline {
                    cycles.push(flat_cycle(
                        &unique_id("svc-tp", t, cycles.len()),
                        &document,
                    )?);
                }
                Ok(cycles)
            })
        })
        .collect();
    let mut all = Samples::default();
    let mut count = 0;
    for worker in workers {
        let cycles = worker
            .join()
            .map_err(|_| BenchError::from("a client thread panicked"))??;
        count += cycles.len();
        for c in cycles {
            all.push(c);
        }
    }
    let elapsed = started.elapsed() + late;
    println!("done {count} {}", elapsed.as_nanos());
    println!("cycles {}", nanos(all.values()));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Memory

/// Memory figures of one process, KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    pss: u64,
    rss: u64,
}

fn memory_of(pid: u32) -> Result<Memory> {
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

fn memory_comparison(options: &Options, hosts: &Hosts) -> Result<()> {
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
fn child_memory(n: usize) -> Result<()> {
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

// ---------------------------------------------------------------------------------------
// Children

/// Runs the child role in `args` (after [`CHILD_FLAG`]); returns the exit code.
pub fn child_main(args: &[String]) -> i32 {
    let number = |i: usize| -> Result<f64> {
        args.get(i)
            .and_then(|a| a.parse::<f64>().ok())
            .ok_or_else(|| BenchError(format!("{CHILD_FLAG}: bad arguments {args:?}")))
    };
    let outcome = match args.first().map(String::as_str) {
        Some("latency") => {
            number(1).and_then(|r| number(2).and_then(|w| child_latency(r as usize, w as usize)))
        }
        Some("cycles") => number(1).and_then(|s| {
            number(2).and_then(|t| number(3).and_then(|at| child_cycles(s, t as usize, at as u64)))
        }),
        Some("memory") => number(1).and_then(|n| child_memory(n as usize)),
        _ => Err(BenchError(format!("{CHILD_FLAG}: unknown role {args:?}"))),
    };
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hcs-bench {CHILD_FLAG} ({}): {e}", host_label());
            1
        }
    }
}

fn host_label() -> String {
    format!("{:?}", api::host_kind())
}

fn host_name(service: bool) -> &'static str {
    if service {
        "service"
    } else {
        "embedded"
    }
}

/// Durations as a comma-separated list of nanoseconds.
fn nanos(samples: &[Duration]) -> String {
    samples
        .iter()
        .map(|d| d.as_nanos().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The rest of the line of `stdout` that starts with `name `.
fn field<'a>(stdout: &'a str, name: &str) -> Result<&'a str> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .ok_or_else(|| BenchError(format!("no {name:?} line in the child's output:\n{stdout}")))
}

/// The durations of the line `name NS,NS,...`.
fn durations(stdout: &str, name: &str) -> Result<Vec<Duration>> {
    field(stdout, name)?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .map(Duration::from_nanos)
                .map_err(|_| BenchError(format!("not a number in the {name:?} line: {s}")))
        })
        .collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// The scratch hcsd

/// An `hcsd` of this run: socket and state directory in a scratch directory; killed with
/// its workers on drop.
struct Hcsd {
    dir: PathBuf,
    socket: PathBuf,
    state: PathBuf,
    child: Child,
}

impl Hcsd {
    fn start(binary: &Path) -> Result<Hcsd> {
        let dir = std::env::temp_dir().join(format!("hcs-bench-service-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.join("hcsd.log"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("hcsd.sock");
        let state = dir.join("state");
        let child = Command::new(binary)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let hcsd = Hcsd {
            dir,
            socket,
            state,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !hcsd.socket.exists() {
            if Instant::now() > deadline {
                return Err(BenchError(format!(
                    "hcsd did not make its socket within 20 s; its log:\n{}",
                    std::fs::read_to_string(hcsd.dir.join("hcsd.log")).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(hcsd)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Pids of the worker processes of this state directory.
    fn workers(&self) -> Vec<u32> {
        hcs_test_support::pids_with_cmdline(&[" worker ", &self.state.to_string_lossy()])
    }
}

impl Drop for Hcsd {
    fn drop(&mut self) {
        for pid in self.workers() {
            // SAFETY: plain kill(2) on a worker of the hcsd this part started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
