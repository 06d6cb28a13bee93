//! The three patterns of the operation completion samples (HCS-API §8.2), on a real VM.

mod common;

use common::{c_empty_vm, require_kvm, unique_id, EventObject, SOON};
use hcs::api::*;
use hcs::{event_options, Event, EventType, HResult, OperationType, INFINITE};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Pattern (a): wait for the operation synchronously.
#[test]
fn pattern_a_wait_for_operation() {
    require_kvm();
    let operation = create_operation(0, None);
    let system = create_compute_system(&unique_id("Test"), &c_empty_vm(), operation, None)
        .expect("create accepted");
    let (hresult, document) = wait_for_operation_result(operation, INFINITE);
    assert_eq!(hresult, HResult::S_OK, "{document:?}");
    assert_eq!(document, None, "a successful create carries no document");
    close_operation(operation);
    close_compute_system(system);
}

/// Pattern (b): the operation's own callback, which closes its own operation (rule 11).
#[test]
fn pattern_b_operation_callback_closes_its_operation() {
    require_kvm();
    let done = Arc::new(EventObject::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let (d, c) = (Arc::clone(&done), Arc::clone(&calls));
    let context = 0xC0FFEE;
    let operation = create_operation(
        context,
        Some(Arc::new(move |op, ctx| {
            assert_eq!(ctx, context);
            assert_eq!(get_operation_type(op), OperationType::Create);
            let (hresult, document) = get_operation_result(op);
            assert_eq!(hresult, HResult::S_OK, "{document:?}");
            close_operation(op);
            c.fetch_add(1, Ordering::SeqCst);
            d.set();
        })),
    );
    let system = create_compute_system(&unique_id("Test"), &c_empty_vm(), operation, None)
        .expect("create accepted");
    assert!(done.wait(SOON), "the completion callback never ran");
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one callback");
    assert_eq!(
        get_operation_id(operation),
        hcs::HCS_INVALID_OPERATION_ID,
        "closed"
    );
    close_compute_system(system);
}

/// Pattern (c): the system's event callback with EnableOperationCallbacks, registered
/// after the create was issued; the create still reaches it (rule 55). Then an operation
/// with its own callback is refused (rule 33) and the system is not started, while a
/// plain operation still completes as an event.
#[test]
fn pattern_c_event_callback_gets_operation_completions() {
    require_kvm();
    let done = Arc::new(EventObject::default());
    let seen: Arc<parking_lot::Mutex<Vec<(OperationType, HResult)>>> = Arc::default();
    let system = create_compute_system(
        &unique_id("Test"),
        &c_empty_vm(),
        create_operation(0, None),
        None,
    )
    .expect("create accepted");
    let (d, s) = (Arc::clone(&done), Arc::clone(&seen));
    let hresult = set_compute_system_callback(
        system,
        event_options::ENABLE_OPERATION_CALLBACKS,
        0,
        Some(Arc::new(move |event: &Event, _| {
            if event.event_type != EventType::OperationCallback {
                return;
            }
            assert_eq!(event.event_data, None);
            let op = event.operation.expect("the event names the operation");
            let (hresult, _) = get_operation_result(op);
            s.lock().push((get_operation_type(op), hresult));
            close_operation(op);
            d.set();
        })),
    );
    assert_eq!(hresult, HResult::S_OK);
    assert!(
        done.wait(SOON),
        "the create completion never reached the event callback"
    );
    assert_eq!(*seen.lock(), vec![(OperationType::Create, HResult::S_OK)]);

    // An operation with a callback is refused, synchronously; nothing starts.
    done.reset();
    let with_callback = create_operation(0, Some(Arc::new(|_, _| {})));
    assert_eq!(
        start_compute_system(system, with_callback, None),
        HResult::HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET
    );
    assert_eq!(
        get_operation_result(with_callback).0,
        HResult::HCS_E_OPERATION_NOT_STARTED,
        "the refused operation stays un-armed"
    );
    close_operation(with_callback);
    let query = create_operation(0, None);
    assert_eq!(
        get_compute_system_properties(system, query, None),
        HResult::S_OK
    );
    assert!(done.wait(SOON));
    assert!(
        seen.lock()[1] == (OperationType::GetProperties, HResult::S_OK),
        "{:?}",
        seen.lock()
    );

    // A plain operation still completes as an event.
    done.reset();
    assert_eq!(
        start_compute_system(system, create_operation(0, None), None),
        HResult::S_OK
    );
    assert!(done.wait(SOON));
    assert_eq!(seen.lock()[2], (OperationType::Start, HResult::S_OK));
    close_compute_system(system);
}
