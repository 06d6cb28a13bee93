//! The throughput comparison: small VMs created, started, terminated and closed by
//! client processes through one hcsd, against embedded client threads and processes.

use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{durations, field, host_name, nanos, Hosts};
use crate::cli::Options;
use crate::stats::{Samples, Summary, Unit};
use crate::system::{document_for, flat_cycle, unique_id};
use crate::{BenchError, Result};

/// Client processes (and embedded threads) of the throughput comparison.
const CLIENTS: usize = 16;

/// The small VM of the throughput comparison, (MB, vCPUs).
const SMALL_VM: (u64, u32) = (64, 1);

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

pub(super) fn throughput_comparison(options: &Options, hosts: &Hosts) -> Result<()> {
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
pub(super) fn child_cycles(seconds: f64, threads: usize, start_at: u64) -> Result<()> {
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

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
