//! The latency comparison: GetProperties round trips (blocking wait and completion
//! callback) on one running empty VM, in alternating embedded and service child processes.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hcs::{api, ComputeSystem, HcsOperation, HcsSystem};

use super::{durations, host_name, nanos, Hosts};
use crate::cli::Options;
use crate::stats::{table, Samples, Summary, Unit};
use crate::system::{issue, unique_id, wait_ok, EMPTY_VM_JSON};
use crate::{BenchError, Result};

/// Latency children per host, alternating (embedded, service, embedded, service).
const LATENCY_ROUNDS: usize = 2;

pub(super) fn latency_comparison(options: &Options, hosts: &Hosts) -> Result<()> {
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
pub(super) fn child_latency(requests: usize, warmup: usize) -> Result<()> {
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
        _ => crate::latency::callback_style(handle, &callback, &rx),
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
