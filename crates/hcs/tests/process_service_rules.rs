//! The process functions (HCS-API §3.4), the host service functions (§3.5), the VM
//! utility functions (§3.6) and the newer operation functions (§2.4) through the flat
//! API, on real VMs.
//!
//! The empty VM has no guest, so no process can start in it: these tests pin down the
//! documented answers for that case (§3.3's CreateProcess row, rules 39–42 as far as they
//! apply without a guest), and the handle, callback and wait behaviour of process handles.

mod common;

use common::{c_empty_vm, require_kvm, unique_id, EventObject};
use hcs::api::*;
use hcs::{
    event_options, operation_options, HResult, HcsProcess, HcsSystem, OperationType, INFINITE,
};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PARAMETERS: &str = r#"{"CommandArgs":["/bin/echo","hi"],"CreateStdOutPipe":true}"#;

fn call(issue: impl FnOnce(hcs::HcsOperation) -> HResult) -> (HResult, Option<String>) {
    let op = create_operation(0, None);
    let accepted = issue(op);
    let outcome = if accepted.succeeded() {
        wait_for_operation_result(op, INFINITE)
    } else {
        (accepted, None)
    };
    close_operation(op);
    outcome
}

fn created_vm() -> HcsSystem {
    require_kvm();
    let op = create_operation(0, None);
    let system = create_compute_system(&unique_id("proc"), &c_empty_vm(), op, None).unwrap();
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    close_operation(op);
    system
}

fn running_vm() -> HcsSystem {
    let system = created_vm();
    assert_eq!(
        call(|op| start_compute_system(system, op, None)).0,
        HResult::S_OK
    );
    system
}

fn error_message(document: Option<String>) -> String {
    let doc: Value = serde_json::from_str(&document.expect("a ResultError")).unwrap();
    doc["ErrorMessage"].as_str().unwrap().to_owned()
}

/// Creates a process and waits; returns the handle and the outcome.
fn create_process_and_wait(
    system: HcsSystem,
    parameters: &str,
) -> (HcsProcess, HResult, Option<String>) {
    let op = create_operation(0, None);
    let process = create_process(system, parameters, op, None).expect("accepted");
    assert_eq!(get_operation_type(op), OperationType::CreateProcess);
    assert_eq!(get_process_from_operation(op), Some(process), "O-18");
    let (hresult, document) = wait_for_operation_result(op, INFINITE);
    close_operation(op);
    (process, hresult, document)
}

#[test]
fn create_process_in_a_created_system_is_invalid_state() {
    let system = created_vm();
    let (process, hresult, document) = create_process_and_wait(system, PARAMETERS);
    assert_eq!(hresult, HResult::HCS_E_INVALID_STATE);
    assert!(error_message(document).contains("Created"));
    close_process(process);
    close_compute_system(system);
}

#[test]
fn create_process_without_a_guest_connection_is_not_configured() {
    let system = running_vm();
    let (process, hresult, document) = create_process_and_wait(system, PARAMETERS);
    assert_eq!(hresult, HResult::HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION);
    assert!(error_message(document).contains("GuestConnection"));
    // Requests on the process that never started: not found, through the operation.
    for (name, outcome) in [
        ("terminate", call(|op| terminate_process(process, op, None))),
        (
            "signal",
            call(|op| signal_process(process, op, Some(r#"{"Signal":15}"#))),
        ),
        ("info", call(|op| get_process_info(process, op))),
        (
            "properties",
            call(|op| get_process_properties(process, op, None)),
        ),
        (
            "modify",
            call(|op| {
                modify_process(
                    process,
                    op,
                    r#"{"Operation":"CloseHandle","CloseHandle":{"Handle":"StdIn"}}"#,
                )
            }),
        ),
    ] {
        assert_eq!(outcome.0, HResult::ERROR_NOT_FOUND, "{name}");
        assert!(
            error_message(outcome.1).contains("did not succeed"),
            "{name}"
        );
    }
    assert_eq!(
        wait_for_process_exit(process, 10).0,
        HResult::HCS_E_OPERATION_TIMEOUT,
        "rule 30: a process that never ran never exits"
    );
    close_process(process);
    close_compute_system(system);
}

#[test]
fn rule_46_malformed_process_parameters_are_invalid_json() {
    let system = running_vm();
    let (process, hresult, document) =
        create_process_and_wait(system, r#"{"CommandLine":"x","Bogus":1}"#);
    assert_eq!(hresult, HResult::HCS_E_INVALID_JSON);
    assert!(error_message(document).contains("Bogus"));
    close_process(process);
    close_compute_system(system);
}

#[test]
fn rule_49_process_argument_errors_are_synchronous() {
    let system = running_vm();
    let op = create_operation(0, None);
    assert_eq!(
        create_process(HcsSystem::NULL, PARAMETERS, op, None),
        Err(HResult::E_HANDLE)
    );
    assert_eq!(
        create_process(system, PARAMETERS, hcs::HcsOperation::NULL, None),
        Err(HResult::E_HANDLE)
    );
    assert_eq!(
        get_operation_type(op),
        OperationType::None,
        "rule 9: not armed"
    );
    for hresult in [
        terminate_process(HcsProcess::NULL, op, None),
        signal_process(HcsProcess(0x1234), op, None),
        get_process_info(HcsProcess::NULL, op),
        get_process_properties(HcsProcess::NULL, op, None),
        modify_process(HcsProcess::NULL, op, "{}"),
        set_process_callback(HcsProcess::NULL, 0, 0, Some(Arc::new(|_, _| {}))),
        wait_for_process_exit(HcsProcess::NULL, 0).0,
    ] {
        assert_eq!(hresult, HResult::E_HANDLE);
    }
    assert_eq!(open_process(HcsSystem::NULL, 1, 0), Err(HResult::E_HANDLE));
    // Rule 21: TerminateProcess options are reserved.
    let (process, _, _) = create_process_and_wait(system, PARAMETERS);
    assert_eq!(
        terminate_process(process, op, Some("{}")),
        HResult::E_INVALIDARG
    );
    assert_eq!(
        set_process_callback(process, 0x8, 0, Some(Arc::new(|_, _| {}))),
        HResult::E_INVALIDARG
    );
    assert_eq!(
        set_process_callback(process, 0, 0, None),
        HResult::E_POINTER
    );
    close_process(process);
    close_process(process); // a double close is harmless
    assert_eq!(
        get_process_info(process, op),
        HResult::E_HANDLE,
        "closed handle"
    );
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn open_process_of_an_unknown_pid_is_not_found() {
    let system = running_vm();
    assert_eq!(open_process(system, 42, 0), Err(HResult::ERROR_NOT_FOUND));
    close_compute_system(system);
}

#[test]
fn rule_32_33_process_callbacks_register_once_and_take_operation_completions() {
    let system = running_vm();
    let (process, _, _) = create_process_and_wait(system, PARAMETERS);
    let reported = Arc::new(AtomicUsize::new(0));
    let signal = Arc::new(EventObject::default());
    let (r, s) = (Arc::clone(&reported), Arc::clone(&signal));
    let callback: hcs::EventCallback = Arc::new(move |event, _| {
        assert_eq!(event.event_type, hcs::EventType::OperationCallback);
        let op = event.operation.unwrap();
        assert_eq!(get_operation_result(op).0, HResult::ERROR_NOT_FOUND);
        close_operation(op);
        r.fetch_add(1, Ordering::SeqCst);
        s.set();
    });
    assert_eq!(
        set_process_callback(
            process,
            event_options::ENABLE_OPERATION_CALLBACKS,
            0,
            Some(callback.clone())
        ),
        HResult::S_OK
    );
    assert_eq!(
        set_process_callback(process, 0, 0, Some(callback)),
        HResult::HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET
    );
    // Rule 33 on a process handle: an operation with its own callback is refused...
    let with_callback = create_operation(0, Some(Arc::new(|_, _| {})));
    assert_eq!(
        get_process_info(process, with_callback),
        HResult::HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET
    );
    close_operation(with_callback);
    // ... and a callback-less one reports to the process callback.
    let op = create_operation(0, None);
    assert_eq!(get_process_info(process, op), HResult::S_OK);
    assert!(signal.wait(Duration::from_secs(10)));
    assert_eq!(reported.load(Ordering::SeqCst), 1);
    close_process(process);
    close_compute_system(system);
}

#[test]
fn rule_43_service_properties() {
    let (hresult, document) = get_service_properties(Some(r#"{"PropertyTypes":["Basic"]}"#));
    assert_eq!(hresult, HResult::S_OK);
    let doc: Value = serde_json::from_str(&document.unwrap()).unwrap();
    assert_eq!(
        doc["Properties"][0]["SupportedSchemaVersions"][0]["Major"],
        2
    );
    // The ServiceSample's "Memory" query (HCS-API §9 item 2).
    let (hresult, document) = get_service_properties(Some(r#"{"PropertyTypes":["Memory"]}"#));
    assert_eq!(hresult, HResult::HCS_E_INVALID_JSON);
    assert!(error_message(document).contains("Memory"));
    let (hresult, _) = modify_service_settings(
        r#"{"PropertyType":"CpuGroup","Settings":{"Operation":"CreateGroup"}}"#,
    );
    assert_eq!(hresult, HResult::ERROR_NOT_SUPPORTED);
    assert_eq!(
        submit_wer_report(r#"{"SystemId":"x","CrashParameters":[0,0,0,0,0]}"#),
        HResult::S_OK
    );
}

#[test]
fn operation_properties_report_type_times_and_failure() {
    let system = running_vm();
    let op = create_operation(0, None);
    let info: Value = serde_json::from_str(&get_operation_properties(op, None).unwrap()).unwrap();
    assert_eq!(info["Operation"], "None");
    assert!(info.get("StartTimestamp").is_none());
    assert_eq!(pause_compute_system(system, op, None), HResult::S_OK);
    wait_for_operation_result(op, INFINITE);
    assert_eq!(pause_compute_system(system, op, None), HResult::S_OK);
    assert_eq!(
        wait_for_operation_result(op, INFINITE).0,
        HResult::HCS_E_INVALID_STATE
    );
    let info: Value =
        serde_json::from_str(&get_operation_properties(op, Some("{}")).unwrap()).unwrap();
    assert_eq!(info["Operation"], "Pause");
    assert!(info["StartTimestamp"].as_str().unwrap().ends_with('Z'));
    assert!(info["EndTimestamp"].is_string());
    assert_eq!(
        info["FailureInfo"]["Result"],
        HResult::HCS_E_INVALID_STATE.0
    );
    assert_eq!(
        get_operation_properties(op, Some(r#"{"x":1}"#)),
        Err(HResult::E_INVALIDARG)
    );
    assert_eq!(
        get_operation_properties(hcs::HcsOperation::NULL, None),
        Err(HResult::E_HANDLE)
    );
    assert_eq!(add_resource_to_operation(op), HResult::E_NOTIMPL);
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn operations_with_notifications_complete_like_plain_ones() {
    let system = running_vm();
    let op = create_operation_with_notifications(
        operation_options::PROGRESS_UPDATE,
        7,
        Arc::new(|_, _| {}),
    )
    .expect("created");
    assert_eq!(get_operation_context(op), 7);
    assert_eq!(
        get_compute_system_properties(system, op, None),
        HResult::S_OK
    );
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    close_operation(op);
    assert!(create_operation_with_notifications(0x10, 0, Arc::new(|_, _| {})).is_none());
    close_compute_system(system);
}

#[test]
fn process_handles_are_released_by_close() {
    let system = running_vm();
    let handles: Vec<_> = (0..20)
        .map(|_| create_process_and_wait(system, PARAMETERS).0)
        .collect();
    assert!(live_counts().process_handles >= 20);
    let op = create_operation(0, None);
    for process in handles {
        close_process(process);
        assert_eq!(get_process_info(process, op), HResult::E_HANDLE);
    }
    close_operation(op);
    close_compute_system(system);
}
