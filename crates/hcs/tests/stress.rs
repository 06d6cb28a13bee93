//! Stress: 16 threads x 1,000 operations on real VMs, mixing the three completion styles
//! (wait with random timeouts, operation callbacks that sometimes close their operation,
//! system event callbacks with EnableOperationCallbacks), with VM churn. Every accepted
//! call is completed exactly once; nothing deadlocks; at the end no handle, system or VM
//! is left (HCS-API rules 4, 10–12, 28, 33, 55, 56).
//!
//! This file holds one test so that its leak check sees only its own objects.

mod common;

use common::{empty_vm, require_kvm, unique_id};
use hcs::api::*;
use hcs::{event_options, Event, HResult, HcsOperation, HcsSystem, GENERIC_ALL, INFINITE};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const THREADS: usize = 16;
const OPERATIONS: usize = 1_000;
/// Each thread replaces its VM this often.
const CHURN_EVERY: usize = 100;

/// Per-call delivery counters, indexed by the token carried in the operation's context.
struct Ledger {
    deliveries: Vec<AtomicU32>,
    /// Calls whose operation was closed before completion: 0 or 1 deliveries allowed.
    abandoned: Vec<AtomicU32>,
    next: AtomicUsize,
}

impl Ledger {
    fn token(&self) -> usize {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        assert!(token < self.deliveries.len(), "ledger too small");
        token
    }

    fn delivered(&self, token: usize) {
        self.deliveries[token].fetch_add(1, Ordering::SeqCst);
    }
}

struct Vm {
    /// Plain handle: waits and operation callbacks.
    plain: HcsSystem,
    /// Second handle with an event callback taking operation completions.
    evented: HcsSystem,
}

fn new_vm(ledger: &Arc<Ledger>) -> Vm {
    let id = unique_id("stress");
    let op = create_operation(0, None);
    let plain = create_compute_system(&id, &empty_vm(64, 1), op, None).expect("create accepted");
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    close_operation(op);
    let evented = open_compute_system(&id, GENERIC_ALL).expect("open");
    let ledger = Arc::clone(ledger);
    let registered = set_compute_system_callback(
        evented,
        event_options::ENABLE_OPERATION_CALLBACKS,
        0,
        Some(Arc::new(move |event: &Event, _| {
            if let Some(op) = event.operation {
                let token = get_operation_context(op);
                assert_ne!(get_operation_result(op).0, HResult::HCS_E_OPERATION_PENDING);
                ledger.delivered(token);
                close_operation(op);
            }
        })),
    );
    assert_eq!(registered, HResult::S_OK);
    let start = create_operation(0, None);
    assert_eq!(start_compute_system(plain, start, None), HResult::S_OK);
    assert_eq!(wait_for_operation_result(start, INFINITE).0, HResult::S_OK);
    close_operation(start);
    Vm { plain, evented }
}

fn drop_vm(vm: Vm) {
    // Terminate-on-last-close: closing both handles ends the VM.
    close_compute_system(vm.evented);
    close_compute_system(vm.plain);
}

/// One request on `system` through `op`.
fn issue(system: HcsSystem, op: HcsOperation, rng: &mut StdRng) -> HResult {
    match rng.gen_range(0..10) {
        0 => pause_compute_system(system, op, None),
        1 => resume_compute_system(system, op, None),
        2 => modify_compute_system(
            system,
            op,
            r#"{"ResourcePath":"VirtualMachine/ComputeTopology/Memory/SizeInMB","RequestType":"Update","Settings":64}"#,
            0,
        ),
        _ => get_compute_system_properties(system, op, None),
    }
}

fn worker(seed: u64, ledger: Arc<Ledger>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut vm = new_vm(&ledger);
    // Operation-callback operations we keep open until their callback has run.
    let mut kept: Vec<(HcsOperation, usize)> = Vec::new();
    // Calls reported through the evented handle; it stays open until they arrive, since
    // closing a handle drops its undelivered events (rule 29).
    let mut evented: Vec<usize> = Vec::new();
    for n in 0..OPERATIONS {
        if n > 0 && n % CHURN_EVERY == 0 {
            await_events(&ledger, &mut evented);
            drop_vm(vm);
            vm = new_vm(&ledger);
        }
        let token = ledger.token();
        match rng.gen_range(0..3) {
            // Style 1: wait, sometimes with a short timeout first.
            0 => {
                let op = create_operation(token, None);
                assert_eq!(issue(vm.plain, op, &mut rng), HResult::S_OK);
                if rng.gen_bool(0.5) {
                    let (hresult, _) = wait_for_operation_result(op, rng.gen_range(0..2));
                    if hresult == HResult::HCS_E_OPERATION_TIMEOUT {
                        // Still pending, or completed since the wait gave up.
                        assert_ne!(
                            get_operation_result(op).0,
                            HResult::HCS_E_OPERATION_NOT_STARTED
                        );
                    }
                }
                let (hresult, _) = wait_for_operation_result(op, INFINITE);
                assert_ne!(hresult, HResult::HCS_E_OPERATION_TIMEOUT);
                ledger.delivered(token);
                close_operation(op);
            }
            // Style 2: the operation's own callback, closing it half the time.
            1 => {
                let close_inside = rng.gen_bool(0.5);
                let l = Arc::clone(&ledger);
                let op = create_operation(
                    token,
                    Some(Arc::new(move |op, context| {
                        l.delivered(context);
                        if close_inside {
                            close_operation(op);
                        }
                    })),
                );
                if rng.gen_ratio(1, 20) {
                    // Abandon it: closed while (probably) pending; at most one delivery.
                    assert_eq!(issue(vm.plain, op, &mut rng), HResult::S_OK);
                    close_operation(op);
                    ledger.abandoned[token].store(1, Ordering::SeqCst);
                } else {
                    assert_eq!(issue(vm.plain, op, &mut rng), HResult::S_OK);
                    if !close_inside {
                        kept.push((op, token));
                    }
                }
            }
            // Style 3: the event callback of the second handle.
            _ => {
                let op = create_operation(token, None);
                assert_eq!(issue(vm.evented, op, &mut rng), HResult::S_OK);
                evented.push(token);
                // An operation with its own callback is refused on that handle.
                if rng.gen_ratio(1, 10) {
                    let refused = create_operation(0, Some(Arc::new(|_, _| {})));
                    assert_eq!(
                        issue(vm.evented, refused, &mut rng),
                        HResult::HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET
                    );
                    close_operation(refused);
                }
            }
        }
        // Close kept operations whose callback has run.
        kept.retain(|&(op, token)| {
            if ledger.deliveries[token].load(Ordering::SeqCst) > 0 {
                close_operation(op);
                false
            } else {
                true
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kept.is_empty() {
        if Instant::now() > deadline {
            let states: Vec<_> = kept
                .iter()
                .map(|&(op, _)| (get_operation_type(op), get_operation_result(op).0))
                .collect();
            panic!("operation callbacks never ran: {states:?}");
        }
        kept.retain(|&(op, token)| {
            let done = ledger.deliveries[token].load(Ordering::SeqCst) > 0;
            if done {
                close_operation(op);
            }
            !done
        });
        std::thread::sleep(Duration::from_millis(1));
    }
    await_events(&ledger, &mut evented);
    drop_vm(vm);
}

fn await_events(ledger: &Ledger, tokens: &mut Vec<usize>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    tokens.retain(|&t| ledger.deliveries[t].load(Ordering::SeqCst) == 0);
    while !tokens.is_empty() {
        assert!(
            Instant::now() < deadline,
            "event deliveries never arrived: {tokens:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
        tokens.retain(|&t| ledger.deliveries[t].load(Ordering::SeqCst) == 0);
    }
}

#[test]
fn sixteen_threads_thousand_operations_each_every_completion_exactly_once() {
    require_kvm();
    let capacity = THREADS * OPERATIONS;
    let ledger = Arc::new(Ledger {
        deliveries: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
        abandoned: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
        next: AtomicUsize::new(0),
    });
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            std::thread::Builder::new()
                .name(format!("stress-{i}"))
                .spawn(move || worker(0x5EED + i as u64, ledger))
                .unwrap()
        })
        .collect();
    for thread in threads {
        thread.join().expect("a stress thread failed");
    }
    // Event-callback completions of the last VMs may still be in flight: give them a
    // bounded moment, then check the ledger.
    let issued = ledger.next.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing = (0..issued)
            .filter(|&t| {
                ledger.abandoned[t].load(Ordering::SeqCst) == 0
                    && ledger.deliveries[t].load(Ordering::SeqCst) == 0
            })
            .count();
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut abandoned = 0;
    for token in 0..issued {
        let delivered = ledger.deliveries[token].load(Ordering::SeqCst);
        if ledger.abandoned[token].load(Ordering::SeqCst) == 1 {
            abandoned += 1;
            assert!(
                delivered <= 1,
                "call {token} delivered {delivered} times after close"
            );
        } else {
            assert_eq!(delivered, 1, "call {token} delivered {delivered} times");
        }
    }
    assert_eq!(issued, capacity);
    eprintln!(
        "{issued} operations ({abandoned} abandoned) on {} VMs in {:?}",
        THREADS * (OPERATIONS / CHURN_EVERY),
        started.elapsed()
    );
    // Nothing left: handles, systems, VMs (terminate-on-close finishes asynchronously).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = live_counts();
        if live.systems == 0 && live.vms == 0 || Instant::now() > deadline {
            assert_eq!(live.operations, 0, "{live:?}");
            assert_eq!(live.system_handles, 0, "{live:?}");
            assert_eq!(live.systems, 0, "{live:?}");
            assert_eq!(live.vms, 0, "{live:?}");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
