//! Part 3, throughput: N client threads (16 by default), each creating, starting and
//! terminating its own empty VMs through the flat API in a loop for a fixed time; VMs per
//! second overall, and each cycle's latency under that load. Run for a small VM (64 MB,
//! 1 vCPU) and for the example's (1024 MB, 2 vCPUs).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::cli::{Options, Part};
use crate::stats::{goal_line, Goal, Samples, Summary, Unit};
use crate::system::{document_for, flat_cycle, unique_id};
use crate::{BenchError, Result};

/// The VM sizes the part runs, (MB, vCPUs).
pub const SIZES: [(u64, u32); 2] = [(64, 1), (1024, 2)];

/// The outcome for one VM size.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// Guest memory, MB.
    pub memory_mb: u64,
    /// vCPUs per VM.
    pub vcpus: u32,
    /// Completed cycles.
    pub vms: usize,
    /// Wall time from the common start to the last thread's end.
    pub elapsed: Duration,
    /// Latency of one cycle under load.
    pub latency: Option<Summary>,
}

impl Throughput {
    /// Completed cycles per second.
    pub fn per_second(&self) -> f64 {
        self.vms as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs part 3 and prints its table and goals.
pub fn run(options: &Options) -> Result<Vec<Throughput>> {
    hcs_kvm::check_kvm().map_err(|e| format!("the throughput part needs /dev/kvm: {e}"))?;
    println!(
        "## 3. Throughput: {} client threads x (create + start + terminate) for {:?}",
        options.threads, options.duration
    );
    println!("reproduce: {}", options.reproduce(Part::Throughput));
    let mut results = Vec::new();
    for (memory_mb, vcpus) in SIZES {
        results.push(one_size(options, memory_mb, vcpus)?);
    }

    println!();
    println!(
        "| {:<18} | {:>7} | {:>8} | {:>9} | {:>13} | {:>10} |",
        "VM", "VMs", "seconds", "VMs/s", "cycle p50 ms", "cycle p99 ms"
    );
    println!(
        "|{:-<20}|{:->9}|{:->10}|{:->11}|{:->15}|{:->14}|",
        "", ":", ":", ":", ":", ":"
    );
    for r in &results {
        let (p50, p99) = r
            .latency
            .map(|s| (Unit::Millis.of(s.median), Unit::Millis.of(s.p99)))
            .unwrap_or((f64::NAN, f64::NAN));
        println!(
            "| {:<18} | {:>7} | {:>8.2} | {:>9.1} | {:>13.3} | {:>12.3} |",
            format!("{} MB, {} vCPU", r.memory_mb, r.vcpus),
            r.vms,
            r.elapsed.as_secs_f64(),
            r.per_second(),
            p50,
            p99
        );
    }
    println!();
    println!("goals:");
    for r in &results {
        println!(
            "{}",
            goal_line(
                &format!("{} MB, {} vCPU", r.memory_mb, r.vcpus),
                r.per_second(),
                "VMs/s",
                Goal::AtLeast(500.0)
            )
        );
    }
    println!();
    Ok(results)
}

fn one_size(options: &Options, memory_mb: u64, vcpus: u32) -> Result<Throughput> {
    let document = Arc::new(document_for(memory_mb, vcpus)?);
    let threads = options.threads.max(1);
    let duration = options.duration;
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let document = Arc::clone(&document);
            let barrier = Arc::clone(&barrier);
            std::thread::Builder::new()
                .name(format!("bench-client-{t}"))
                .spawn(move || -> Result<Samples> {
                    barrier.wait();
                    let deadline = Instant::now() + duration;
                    let mut samples = Samples::default();
                    let mut i = 0;
                    while Instant::now() < deadline {
                        let id = unique_id(&format!("tp{memory_mb}"), t, i);
                        samples.push(flat_cycle(&id, &document)?);
                        i += 1;
                    }
                    Ok(samples)
                })
                .map_err(|e| BenchError(format!("spawning a client thread: {e}")))
        })
        .collect::<Result<_>>()?;
    barrier.wait();
    let start = Instant::now();
    let mut all = Samples::default();
    let mut first_error = None;
    for worker in workers {
        match worker.join() {
            Ok(Ok(samples)) => all.extend(samples),
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(_) => first_error = first_error.or(Some("a client thread panicked".into())),
        }
    }
    let elapsed = start.elapsed();
    if let Some(error) = first_error {
        return Err(error);
    }
    Ok(Throughput {
        memory_mb,
        vcpus,
        vms: all.len(),
        elapsed,
        latency: all.summary(),
    })
}
