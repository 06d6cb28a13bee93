//! The operation rules of HCS-API §2.2 and §10 (rules 1–16), through the flat API, on
//! real VMs. Pending operations are made deterministic with `hold_system_requests`,
//! which keeps the host's queue for one system busy while the VM runs.

mod common;

use common::{c_empty_vm, require_kvm, unique_id, EventObject, SOON};
use hcs::api::*;
use hcs::{HResult, HcsOperation, HcsSystem, OperationType, HCS_INVALID_OPERATION_ID, INFINITE};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A created (not started) empty VM and its handle.
fn created_vm() -> HcsSystem {
    require_kvm();
    let op = create_operation(0, None);
    let system = create_compute_system(&unique_id("op"), &c_empty_vm(), op, None).unwrap();
    let (hresult, doc) = wait_for_operation_result(op, INFINITE);
    assert_eq!(hresult, HResult::S_OK, "{doc:?}");
    close_operation(op);
    system
}

#[test]
fn rule_1_new_operation_has_type_none_unique_id_and_its_context() {
    let a = create_operation(42, None);
    let b = create_operation(43, None);
    assert_ne!(a, HcsOperation::NULL);
    assert_eq!(get_operation_type(a), OperationType::None);
    assert_ne!(get_operation_id(a), HCS_INVALID_OPERATION_ID);
    assert_ne!(get_operation_id(a), get_operation_id(b));
    assert_eq!(get_operation_context(a), 42);
    assert_eq!(get_operation_context(b), 43);
    close_operation(a);
    close_operation(b);
}

#[test]
fn rule_2_never_used_operation_answers_not_started_at_once() {
    let op = create_operation(0, None);
    assert_eq!(
        get_operation_result(op),
        (HResult::HCS_E_OPERATION_NOT_STARTED, None)
    );
    let started = Instant::now();
    assert_eq!(
        wait_for_operation_result(op, INFINITE),
        (HResult::HCS_E_OPERATION_NOT_STARTED, None)
    );
    assert_eq!(
        wait_for_operation_result(op, 0),
        (HResult::HCS_E_OPERATION_NOT_STARTED, None)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "INFINITE on an unused op returns at once"
    );
    close_operation(op);
}

#[test]
fn rule_3_pending_get_does_not_block() {
    let system = created_vm();
    let hold = hold_system_requests(system).unwrap();
    let op = create_operation(0, None);
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    assert_eq!(
        get_operation_result(op),
        (HResult::HCS_E_OPERATION_PENDING, None)
    );
    drop(hold);
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn rule_4_wait_times_out_after_its_timeout_and_the_work_still_completes() {
    let system = created_vm();
    let hold = hold_system_requests(system).unwrap();
    let op = create_operation(0, None);
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    for timeout_ms in [0u32, 1, 50, 200] {
        let started = Instant::now();
        let (hresult, doc) = wait_for_operation_result(op, timeout_ms);
        let waited = started.elapsed();
        assert_eq!(hresult, HResult::HCS_E_OPERATION_TIMEOUT);
        assert_eq!(doc, None);
        assert!(
            waited >= Duration::from_millis(u64::from(timeout_ms)),
            "returned after {waited:?}, before its {timeout_ms} ms"
        );
    }
    drop(hold);
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn rule_4_infinite_wait_returns_when_the_work_completes() {
    let system = created_vm();
    let hold = hold_system_requests(system).unwrap();
    let op = create_operation(0, None);
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    let waiter = std::thread::spawn(move || wait_for_operation_result(op, INFINITE));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished(), "an INFINITE wait must not time out");
    drop(hold);
    assert_eq!(waiter.join().unwrap().0, HResult::S_OK);
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn rule_5_completed_get_and_wait_return_the_calls_result_and_document() {
    let system = created_vm();
    let op = create_operation(0, None);
    assert_eq!(
        get_compute_system_properties(system, op, Some(r#"{"PropertyTypes":["Memory"]}"#)),
        HResult::S_OK
    );
    let (hresult, document) = wait_for_operation_result(op, INFINITE);
    assert_eq!(hresult, HResult::S_OK);
    let document: serde_json::Value = serde_json::from_str(&document.unwrap()).unwrap();
    assert_eq!(document["SystemType"], "VirtualMachine");
    // Failure: the result is the call's HRESULT with a ResultError document.
    assert_eq!(pause_compute_system(system, op, None), HResult::S_OK);
    let (hresult, document) = wait_for_operation_result(op, INFINITE);
    assert_eq!(hresult, HResult::HCS_E_INVALID_STATE);
    let error: serde_json::Value = serde_json::from_str(&document.unwrap()).unwrap();
    assert_eq!(error["Error"], HResult::HCS_E_INVALID_STATE.0);
    assert!(error["ErrorMessage"].as_str().unwrap().contains("Created"));
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn rule_6_operation_type_is_reported_while_pending_and_after() {
    let system = created_vm();
    let hold = hold_system_requests(system).unwrap();
    let op = create_operation(0, None);
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    assert_eq!(get_operation_type(op), OperationType::Start);
    drop(hold);
    wait_for_operation_result(op, INFINITE);
    assert_eq!(get_operation_type(op), OperationType::Start);
    close_operation(op);
    close_compute_system(system);
}

/// The Quick Start re-uses one operation: Create → Start → GetProperties → Terminate.
#[test]
fn rule_7_completed_operation_tracks_the_next_call() {
    require_kvm();
    let op = create_operation(0, None);
    let system = create_compute_system(&unique_id("reuse"), &c_empty_vm(), op, None).unwrap();
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    assert_eq!(get_operation_type(op), OperationType::Create);
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    assert_eq!(get_operation_type(op), OperationType::Start);
    assert_eq!(
        get_compute_system_properties(system, op, None),
        HResult::S_OK
    );
    let (hresult, doc) = wait_for_operation_result(op, INFINITE);
    assert_eq!(hresult, HResult::S_OK);
    assert!(doc.unwrap().contains("\"Running\""));
    assert_eq!(terminate_compute_system(system, op, None), HResult::S_OK);
    assert_eq!(
        wait_for_operation_result(op, INFINITE),
        (HResult::S_OK, None)
    );
    assert_eq!(get_operation_type(op), OperationType::Terminate);
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn rule_8_pending_operation_given_to_another_call_fails_and_keeps_its_tracking() {
    let system = created_vm();
    let hold = hold_system_requests(system).unwrap();
    let op = create_operation(0, None);
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    assert_eq!(
        pause_compute_system(system, op, None),
        HResult::HCS_E_OPERATION_ALREADY_STARTED
    );
    assert_eq!(get_operation_type(op), OperationType::Start);
    drop(hold);
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn rule_9_synchronous_failure_leaves_the_operation_unarmed_and_fires_nothing() {
    let system = created_vm();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let op = create_operation(
        0,
        Some(Arc::new(move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
        })),
    );
    // Reserved options must be NULL (rule 21): a synchronous E_INVALIDARG.
    assert_eq!(
        start_compute_system(system, op, Some("{}")),
        HResult::E_INVALIDARG
    );
    assert_eq!(
        get_operation_result(op).0,
        HResult::HCS_E_OPERATION_NOT_STARTED
    );
    assert_eq!(get_operation_type(op), OperationType::None);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn rule_10_callback_runs_exactly_once_with_the_current_context_and_a_final_result() {
    let system = created_vm();
    let done = Arc::new(EventObject::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let (d, c) = (Arc::clone(&done), Arc::clone(&calls));
    let caller = std::thread::current().id();
    let op = create_operation(
        1,
        Some(Arc::new(move |op, context| {
            assert_ne!(
                std::thread::current().id(),
                caller,
                "never on the caller's thread"
            );
            assert_eq!(context, 2, "the context current at completion");
            assert_ne!(get_operation_result(op).0, HResult::HCS_E_OPERATION_PENDING);
            c.fetch_add(1, Ordering::SeqCst);
            d.set();
        })),
    );
    assert_eq!(set_operation_context(op, 2), HResult::S_OK);
    assert_eq!(
        get_compute_system_properties(system, op, None),
        HResult::S_OK
    );
    assert!(done.wait(SOON));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn rule_11_closing_an_operation_inside_its_own_callback_is_safe() {
    let system = created_vm();
    let done = Arc::new(EventObject::default());
    let d = Arc::clone(&done);
    let op = create_operation(
        0,
        Some(Arc::new(move |op, _| {
            close_operation(op);
            close_operation(op); // double close: a no-op
            assert_eq!(get_operation_result(op).0, HResult::E_HANDLE);
            d.set();
        })),
    );
    assert_eq!(
        get_compute_system_properties(system, op, None),
        HResult::S_OK
    );
    assert!(done.wait(SOON));
    close_compute_system(system);
}

#[test]
fn rule_12_closing_while_the_work_runs_lets_it_finish_and_no_callback_follows() {
    let system = created_vm();
    let hold = hold_system_requests(system).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let op = create_operation(
        0,
        Some(Arc::new(move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
        })),
    );
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    close_operation(op);
    drop(hold);
    // The start went on: the system is running.
    let check = create_operation(0, None);
    assert_eq!(
        get_compute_system_properties(system, check, None),
        HResult::S_OK
    );
    let (_, doc) = wait_for_operation_result(check, INFINITE);
    assert!(doc.unwrap().contains("\"Running\""));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no callback after close");
    close_operation(check);
    close_compute_system(system);
}

#[test]
fn rule_13_cancel_is_not_implemented() {
    let op = create_operation(0, None);
    assert_eq!(cancel_operation(op), HResult::E_NOTIMPL);
    close_operation(op);
}

#[test]
fn rule_14_id_is_constant_and_invalid_handles_answer_invalid_values() {
    let system = created_vm();
    let op = create_operation(0, None);
    let id = get_operation_id(op);
    assert_eq!(
        get_compute_system_from_operation(op),
        None,
        "not active yet"
    );
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    assert_eq!(get_compute_system_from_operation(op), Some(system));
    wait_for_operation_result(op, INFINITE);
    assert_eq!(get_operation_id(op), id);
    close_operation(op);
    assert_eq!(get_operation_id(op), HCS_INVALID_OPERATION_ID);
    assert_eq!(
        get_operation_id(HcsOperation::NULL),
        HCS_INVALID_OPERATION_ID
    );
    assert_eq!(get_operation_type(op), OperationType::None);
    assert_eq!(get_compute_system_from_operation(op), None);
    close_compute_system(system);
}

#[test]
fn rule_16_repeated_reads_give_the_same_result_and_equal_documents() {
    let system = created_vm();
    let op = create_operation(0, None);
    assert_eq!(
        get_compute_system_properties(system, op, None),
        HResult::S_OK
    );
    let first = wait_for_operation_result(op, INFINITE);
    assert_eq!(first, get_operation_result(op));
    assert_eq!(first, wait_for_operation_result(op, 0));
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn o_14_setters_replace_context_and_callback_but_not_while_pending() {
    let system = created_vm();
    let hold = hold_system_requests(system).unwrap();
    let op = create_operation(1, None);
    assert_eq!(set_operation_context(op, 5), HResult::S_OK);
    assert_eq!(get_operation_context(op), 5);
    assert_eq!(set_operation_callback(op, 6, None), HResult::E_POINTER);
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    assert_eq!(
        set_operation_context(op, 7),
        HResult::HCS_E_OPERATION_ALREADY_STARTED
    );
    assert_eq!(
        set_operation_callback(op, 7, Some(Arc::new(|_, _| {}))),
        HResult::HCS_E_OPERATION_ALREADY_STARTED
    );
    drop(hold);
    wait_for_operation_result(op, INFINITE);
    let done = Arc::new(EventObject::default());
    let d = Arc::clone(&done);
    assert_eq!(
        set_operation_callback(
            op,
            8,
            Some(Arc::new(move |_, ctx| {
                assert_eq!(ctx, 8);
                d.set();
            }))
        ),
        HResult::S_OK
    );
    assert_eq!(
        get_compute_system_properties(system, op, None),
        HResult::S_OK
    );
    assert!(done.wait(SOON));
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn rule_49_closed_and_null_handles_answer_e_handle() {
    let op = create_operation(0, None);
    close_operation(op);
    close_operation(op);
    assert_eq!(get_operation_result(op).0, HResult::E_HANDLE);
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::E_HANDLE);
    assert_eq!(set_operation_context(op, 1), HResult::E_HANDLE);
    assert_eq!(get_operation_context(op), 0);
    let live = create_operation(0, None);
    assert_eq!(
        start_compute_system(HcsSystem::NULL, live, None),
        HResult::E_HANDLE
    );
    assert_eq!(
        start_compute_system(HcsSystem(op.0), live, None),
        HResult::E_HANDLE,
        "wrong kind"
    );
    assert_eq!(enumerate_compute_systems(None, op), HResult::E_HANDLE);
    assert_eq!(
        get_operation_result(live).0,
        HResult::HCS_E_OPERATION_NOT_STARTED
    );
    close_operation(live);
}

/// O-7 with a completion callback: an operation re-used right after a wait returned is
/// accepted even while its callback is still queued or running on another thread (the
/// re-use waits for that callback), and every call gets exactly one callback.
#[test]
fn o_7_reuse_right_after_wait_waits_for_the_previous_callback() {
    let system = created_vm();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let op = create_operation(
        0,
        Some(Arc::new(move |_, _| {
            // A slow callback makes the overlap certain.
            std::thread::sleep(Duration::from_millis(1));
            c.fetch_add(1, Ordering::SeqCst);
        })),
    );
    const ROUNDS: usize = 200;
    for _ in 0..ROUNDS {
        assert_eq!(
            get_compute_system_properties(system, op, None),
            HResult::S_OK
        );
        assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    }
    // Every earlier call's callback ran before the next re-use was accepted; the last
    // one runs unless the close below comes first (O-12), so wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls.load(Ordering::SeqCst) < ROUNDS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    close_operation(op);
    assert_eq!(calls.load(Ordering::SeqCst), ROUNDS);
    close_compute_system(system);
}
