//! Part 5, the C layer's cost: completion latency through `libcomputecore`'s exported C
//! functions against the same through `hcs::api`, in one run on one running empty VM.
//!
//! The C functions are called exactly as a C program calls them (UTF-16 strings in,
//! `PWSTR` results allocated by the library and freed with `LocalFree`, `extern "C"`
//! callbacks with a `void*` context); the bench links the library's Rust crate, so the
//! only difference between the rows of a pair is the C boundary itself. Request: a
//! `GetProperties` without a query, whose result document (about 300 bytes of JSON) is read
//! in both, so the C rows include converting it to UTF-16 and freeing it.
//!
//! - `wait`: issue + `WaitForOperationResult(INFINITE)` on one reused operation, reading
//!   the document.
//! - `callback starts`: a fresh operation with a completion callback (created and closed
//!   outside the timed span); the time is taken as the callback starts.
//!
//! - `get completed result`: `GetOperationResult` on an operation that has completed,
//!   with no thread hand-off at all: the boundary's own cost (for C: converting the
//!   document to UTF-16, allocating it, registering it, and `LocalFree`), which the two
//!   styles above contain but which their wake-up noise hides.
//!
//! The styles are interleaved request by request, in a fresh random order each round, so
//! drift, noise and the effect of what ran just before fall on all of them alike. The goal: the C layer adds under 2 us at p50.

use std::ffi::c_void;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use computecore as c;
use hcs::{api, ComputeSystem, HResult, HcsOperation, HcsSystem, INFINITE};

use crate::cli::{Options, Part};
use crate::stats::{goal_line, interleaved, table, Goal, Samples, Summary, Unit};
use crate::system::{issue, unique_id, wait_ok, EMPTY_VM_JSON};
use crate::{latency, BenchError, Result};

const STYLES: [&str; 6] = [
    "Rust: wait",
    "C: wait",
    "Rust: callback starts",
    "C: callback starts",
    "Rust: get completed result",
    "C: get completed result",
];

/// Runs part 5 and prints its table and the C-minus-Rust differences.
pub fn run(options: &Options) -> Result<Vec<(&'static str, Summary)>> {
    hcs_kvm::check_kvm().map_err(|e| format!("the c-api part needs /dev/kvm: {e}"))?;
    println!("## 5. The C layer: completion latency through libcomputecore vs hcs::api");
    println!("reproduce: {}", options.reproduce(Part::CApi));

    let system = ComputeSystem::create(&unique_id("capi", 0, 0), EMPTY_VM_JSON)
        .wait()
        .map_err(|e| format!("create: {e}"))?;
    system.start().wait().map_err(|e| format!("start: {e}"))?;
    let outcome = measure(system.handle(), options);
    let _ = system.terminate().wait();
    let samples = outcome?;

    let summaries: Vec<(&'static str, Summary)> = STYLES
        .iter()
        .zip(&samples)
        .filter_map(|(name, s)| s.summary().map(|summary| (*name, summary)))
        .collect();
    let rows: Vec<(&str, Option<Summary>)> =
        summaries.iter().map(|(n, s)| (*n, Some(*s))).collect();
    println!();
    print!("{}", table(Unit::Micros, &rows));
    print_differences(&summaries);
    if c::outstanding_strings() != 0 {
        return Err(BenchError(format!(
            "{} result strings were not freed",
            c::outstanding_strings()
        )));
    }
    Ok(summaries)
}

fn measure(system: HcsSystem, options: &Options) -> Result<Vec<Samples>> {
    let c_system = system.0 as usize as *mut c_void;
    let reused = api::create_operation(0, None);
    let c_reused = c::HcsCreateOperation(std::ptr::null(), None);
    let (tx, rx) = mpsc::channel::<Instant>();
    let rust_callback: hcs::OperationCompletion = {
        let tx = tx.clone();
        Arc::new(move |_, _| {
            let _ = tx.send(Instant::now());
        })
    };
    // The C callback's context: the channel, as a C program would pass a pointer to its
    // own event object.
    let c_context: *const mpsc::Sender<Instant> = &tx;

    // Operations that stay completed, for the boundary-only rows.
    let done = api::create_operation(0, None);
    issue(
        api::get_compute_system_properties(system, done, None),
        "GetProperties",
    )?;
    wait_ok(done, "GetProperties")?;
    let c_done = c::HcsCreateOperation(std::ptr::null(), None);
    // SAFETY: null options are allowed; the handles are numbers, never dereferenced.
    let accepted = unsafe { c::HcsGetComputeSystemProperties(c_system, c_done, std::ptr::null()) };
    c_check(accepted, "HcsGetComputeSystemProperties")?;
    // SAFETY: a null result pointer is allowed.
    let waited = unsafe { c::HcsWaitForOperationResult(c_done, INFINITE, std::ptr::null_mut()) };
    c_check(waited, "HcsWaitForOperationResult")?;

    let measure_one = |style: usize| -> Result<Duration> {
        match style {
            0 => rust_wait(system, reused),
            1 => c_wait(c_system, c_reused),
            2 => latency::callback_style(system, &rust_callback, &rx),
            3 => c_callback_style(c_system, c_context.cast(), &rx),
            4 => rust_get(done),
            _ => c_get(c_done),
        }
    };
    let outcome = interleaved(
        STYLES.len(),
        options.warmup.max(1) * 20,
        options.requests,
        measure_one,
    );
    api::close_operation(reused);
    c::HcsCloseOperation(c_reused);
    api::close_operation(done);
    c::HcsCloseOperation(c_done);
    outcome
}

fn rust_get(operation: HcsOperation) -> Result<Duration> {
    let start = Instant::now();
    let (hresult, document) = api::get_operation_result(operation);
    let elapsed = start.elapsed();
    if hresult != HResult::S_OK || document.is_none() {
        return Err(format!("GetOperationResult: {hresult:?}").into());
    }
    Ok(elapsed)
}

fn c_get(operation: *mut c_void) -> Result<Duration> {
    let mut document: *mut u16 = std::ptr::null_mut();
    let start = Instant::now();
    // SAFETY: `document` is a valid out-pointer.
    let hresult = unsafe { c::HcsGetOperationResult(operation, &mut document) };
    let freed = c::LocalFree(document.cast());
    let elapsed = start.elapsed();
    c_check(hresult, "HcsGetOperationResult")?;
    if document.is_null() || !freed.is_null() {
        return Err("HcsGetOperationResult gave no document to free".into());
    }
    Ok(elapsed)
}

fn rust_wait(system: HcsSystem, operation: HcsOperation) -> Result<Duration> {
    let start = Instant::now();
    issue(
        api::get_compute_system_properties(system, operation, None),
        "GetProperties",
    )?;
    let document = wait_ok(operation, "GetProperties")?;
    let elapsed = start.elapsed();
    document.ok_or("GetProperties gave no document")?;
    Ok(elapsed)
}

fn c_check(hresult: i32, what: &str) -> Result<()> {
    if HResult(hresult).failed() {
        return Err(BenchError(format!("{what}: {:?}", HResult(hresult))));
    }
    Ok(())
}

fn c_wait(system: *mut c_void, operation: *mut c_void) -> Result<Duration> {
    let mut document: *mut u16 = std::ptr::null_mut();
    let start = Instant::now();
    // SAFETY: null options are allowed; the handles are numbers, never dereferenced.
    let accepted = unsafe { c::HcsGetComputeSystemProperties(system, operation, std::ptr::null()) };
    c_check(accepted, "HcsGetComputeSystemProperties")?;
    // SAFETY: `document` is a valid out-pointer.
    let hresult = unsafe { c::HcsWaitForOperationResult(operation, INFINITE, &mut document) };
    let elapsed = start.elapsed();
    let freed = c::LocalFree(document.cast());
    c_check(hresult, "HcsWaitForOperationResult")?;
    if document.is_null() || !freed.is_null() {
        return Err("HcsWaitForOperationResult gave no document to free".into());
    }
    Ok(elapsed)
}

/// The C completion callback: stamps the time into the channel its context points to.
unsafe extern "C" fn stamp(_operation: *mut c_void, context: *mut c_void) {
    let now = Instant::now();
    // SAFETY: the context is the `Sender` owned by `measure`, alive for the whole part;
    // `Sender` may be used from any thread.
    let sender = unsafe { &*context.cast::<mpsc::Sender<Instant>>() };
    let _ = sender.send(now);
}

fn c_callback_style(
    system: *mut c_void,
    context: *const c_void,
    started: &mpsc::Receiver<Instant>,
) -> Result<Duration> {
    let operation = c::HcsCreateOperation(context, Some(stamp));
    let start = Instant::now();
    // SAFETY: null options are allowed; the handles are numbers, never dereferenced.
    let accepted = unsafe { c::HcsGetComputeSystemProperties(system, operation, std::ptr::null()) };
    let outcome = c_check(accepted, "HcsGetComputeSystemProperties").and_then(|()| {
        started
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| BenchError::from("the C completion callback never ran"))
    });
    c::HcsCloseOperation(operation);
    Ok(outcome?.saturating_duration_since(start))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_differences(summaries: &[(&'static str, Summary)]) {
    let find = |name: &str| summaries.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
    println!();
    println!("the C layer (C - Rust, same run; goal: under 2 us added at p50):");
    for (rust, c_row) in [
        (STYLES[0], STYLES[1]),
        (STYLES[2], STYLES[3]),
        (STYLES[4], STYLES[5]),
    ] {
        let (Some(rust_s), Some(c_s)) = (find(rust), find(c_row)) else {
            continue;
        };
        let added = us(c_s.median) - us(rust_s.median);
        println!(
            "{}",
            goal_line(
                &format!("{c_row} p50 - {rust} p50"),
                added,
                "us",
                Goal::AtMost(2.0)
            )
        );
        println!(
            "  {:<40} {:>10.2} x      p99 added {:.1} us",
            format!("{c_row} / {rust} (p50)"),
            c_s.median.as_secs_f64() / rust_s.median.as_secs_f64(),
            us(c_s.p99) - us(rust_s.p99)
        );
    }
}
