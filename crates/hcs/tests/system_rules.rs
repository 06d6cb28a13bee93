//! The compute-system rules of HCS-API §3.2, §3.3 and §10 (rules 17–31, 46–49, 53, 54),
//! through the flat API, on real VMs: every bad input gives the documented HRESULT and a
//! readable `ResultError`, and leaves nothing behind.

mod common;

use common::{c_empty_vm, empty_vm, persistent_vm, require_kvm, unique_id};
use hcs::api::*;
use hcs::{HResult, HcsSystem, GENERIC_ALL, INFINITE};
use serde_json::Value;
use std::time::Duration;

/// Runs one async call on a fresh operation and returns its outcome.
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

fn create(id: &str, doc: &str) -> (HcsSystem, HResult, Option<String>) {
    let op = create_operation(0, None);
    let system = create_compute_system(id, doc, op, None).expect("create accepted");
    let (hresult, document) = wait_for_operation_result(op, INFINITE);
    close_operation(op);
    (system, hresult, document)
}

fn state_of(system: HcsSystem) -> String {
    let (hresult, doc) = call(|op| get_compute_system_properties(system, op, None));
    assert_eq!(hresult, HResult::S_OK, "{doc:?}");
    let props: Value = serde_json::from_str(&doc.unwrap()).unwrap();
    props["State"].as_str().unwrap().to_owned()
}

/// Asserts a failed create: its code, a ResultError naming `needle`, and no system left.
fn assert_create_fails(doc: &str, expected: HResult, needle: &str) {
    require_kvm();
    let id = unique_id("bad");
    let (system, hresult, document) = create(&id, doc);
    assert_eq!(hresult, expected, "{document:?}");
    let error: Value = serde_json::from_str(document.as_deref().expect("a ResultError")).unwrap();
    assert_eq!(error["Error"], expected.0);
    let message = error["ErrorMessage"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "message {message:?} should name {needle:?}"
    );
    // Nothing half-made: the id is free and unknown.
    assert_eq!(
        open_compute_system(&id, GENERIC_ALL),
        Err(HResult::HCS_E_SYSTEM_NOT_FOUND)
    );
    assert_eq!(
        call(|op| start_compute_system(system, op, None)).0,
        HResult::HCS_E_SYSTEM_NOT_FOUND
    );
    close_compute_system(system);
}

#[test]
fn rule_17_invalid_json_is_refused() {
    assert_create_fails("{ not json", HResult::HCS_E_INVALID_JSON, "malformed JSON");
    assert_create_fails("", HResult::HCS_E_INVALID_JSON, "$");
}

#[test]
fn rule_17_none_or_two_of_virtual_machine_container_hosted_system() {
    assert_create_fails(
        r#"{"SchemaVersion":{"Major":2,"Minor":1}}"#,
        HResult::HCS_E_INVALID_JSON,
        "VirtualMachine",
    );
    assert_create_fails(
        r#"{"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},
            "ComputeTopology":{"Memory":{"SizeInMB":64}}},"Container":{}}"#,
        HResult::HCS_E_INVALID_JSON,
        "Container",
    );
}

#[test]
fn rule_46_unknown_property_names_its_path() {
    let doc = c_empty_vm().replace("\"Count\": 2", "\"Count\": 2, \"Countt\": 1");
    assert_create_fails(
        &doc,
        HResult::HCS_E_INVALID_JSON,
        "$.VirtualMachine.ComputeTopology.Processor.Countt",
    );
}

#[test]
fn rule_46_wrong_type_and_out_of_range_values() {
    let doc = c_empty_vm().replace("\"Count\": 2", "\"Count\": \"two\"");
    assert_create_fails(
        &doc,
        HResult::HCS_E_INVALID_JSON,
        "$.VirtualMachine.ComputeTopology.Processor.Count",
    );
    assert_create_fails(
        &empty_vm(1024, 0),
        HResult::HCS_E_INVALID_JSON,
        "Processor.Count",
    );
    assert_create_fails(&empty_vm(0, 1), HResult::HCS_E_INVALID_JSON, "SizeInMB");
    assert_create_fails(
        &empty_vm(1024, 100_000),
        HResult::HCS_E_INVALID_JSON,
        "Processor.Count",
    );
    assert_create_fails(
        &empty_vm(1 << 40, 1),
        HResult::HCS_E_INVALID_JSON,
        "SizeInMB",
    );
    let doc = c_empty_vm().replace("\"Count\": 2", "\"Count\": -1");
    assert_create_fails(&doc, HResult::HCS_E_INVALID_JSON, "Processor.Count");
}

#[test]
fn rule_47_schema_version_major_must_be_2() {
    let doc = c_empty_vm().replace("\"Major\": 2", "\"Major\": 3");
    assert_create_fails(&doc, HResult::HCS_E_INVALID_JSON, "SchemaVersion");
    let doc = c_empty_vm().replace("\"SchemaVersion\": { \"Major\": 2, \"Minor\": 1 },", "");
    assert_create_fails(&doc, HResult::HCS_E_INVALID_JSON, "SchemaVersion");
    // Any minor is accepted.
    require_kvm();
    let doc = c_empty_vm().replace("\"Minor\": 1", "\"Minor\": 9");
    let (system, hresult, document) = create(&unique_id("minor"), &doc);
    assert_eq!(hresult, HResult::S_OK, "{document:?}");
    close_compute_system(system);
}

#[test]
fn rule_48_well_formed_but_unsupported_requests_name_what_is_missing() {
    assert_create_fails(
        r#"{"SchemaVersion":{"Major":2,"Minor":1},"Owner":"Sample","VirtualMachine":{
            "Chipset":{"Uefi":{"BootThis":{"DevicePath":"Primary disk","DiskNumber":0,"DeviceType":"ScsiDrive"}}},
            "ComputeTopology":{"Memory":{"Backing":"Virtual","SizeInMB":2048},"Processor":{"Count":2}},
            "Devices":{"Scsi":{"Primary disk":{"Attachments":{"0":{"Type":"VirtualDisk","Path":"/nonexistent.vhdx"}}}}}}}"#,
        HResult::ERROR_NOT_SUPPORTED,
        "$.VirtualMachine.Chipset.Uefi.BootThis",
    );
    assert_create_fails(
        r#"{"SchemaVersion":{"Major":2,"Minor":1},"Container":{}}"#,
        HResult::ERROR_NOT_SUPPORTED,
        "$.Container",
    );
}

#[test]
fn rule_18_duplicate_id_fails_through_the_operation() {
    require_kvm();
    let id = unique_id("dup");
    let (first, hresult, _) = create(&id, &c_empty_vm());
    assert_eq!(hresult, HResult::S_OK);
    let (second, hresult, document) = create(&id, &c_empty_vm());
    assert_eq!(hresult, HResult::HCS_E_SYSTEM_ALREADY_EXISTS);
    assert!(document.unwrap().contains(&id));
    // The first system is untouched.
    assert_eq!(state_of(first), "Created");
    close_compute_system(second);
    close_compute_system(first);
}

#[test]
fn rule_19_open_unknown_id_fails_and_known_id_gives_an_independent_handle() {
    require_kvm();
    assert_eq!(
        open_compute_system(&unique_id("nobody"), GENERIC_ALL),
        Err(HResult::HCS_E_SYSTEM_NOT_FOUND)
    );
    let id = unique_id("open");
    let (system, hresult, _) = create(&id, &persistent_vm("o"));
    assert_eq!(hresult, HResult::S_OK);
    let other = open_compute_system(&id, GENERIC_ALL).unwrap();
    assert_ne!(other, system);
    close_compute_system(system);
    assert_eq!(state_of(other), "Created", "the other handle still works");
    assert_eq!(
        call(|op| terminate_compute_system(other, op, None)).0,
        HResult::S_OK
    );
    close_compute_system(other);
}

#[test]
fn rule_20_handle_is_usable_while_the_create_is_pending() {
    require_kvm();
    let op = create_operation(0, None);
    let system = create_compute_system(&unique_id("early"), &c_empty_vm(), op, None).unwrap();
    // Queued behind the create, in order.
    let start = create_operation(0, None);
    assert_eq!(start_compute_system(system, start, None), HResult::S_OK);
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    assert_eq!(wait_for_operation_result(start, INFINITE).0, HResult::S_OK);
    assert_eq!(state_of(system), "Running");
    close_operation(op);
    close_operation(start);
    close_compute_system(system);
}

#[test]
fn rule_21_reserved_parameters_are_checked_synchronously() {
    require_kvm();
    assert_eq!(open_compute_system("x", 0), Err(HResult::E_INVALIDARG));
    let op = create_operation(0, None);
    assert_eq!(
        create_compute_system("", &c_empty_vm(), op, None),
        Err(HResult::E_INVALIDARG)
    );
    let (system, _, _) = create(&unique_id("reserved"), &c_empty_vm());
    assert_eq!(
        terminate_compute_system(system, op, Some("{}")),
        HResult::E_INVALIDARG
    );
    assert_eq!(
        resume_compute_system(system, op, Some("{}")),
        HResult::E_INVALIDARG
    );
    assert_eq!(
        modify_compute_system(system, op, "{}", 1),
        HResult::E_INVALIDARG
    );
    assert_eq!(
        get_operation_result(op).0,
        HResult::HCS_E_OPERATION_NOT_STARTED
    );
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn rule_22_properties_always_have_id_and_system_type_and_memory_on_request() {
    require_kvm();
    let id = unique_id("props");
    let (system, _, _) = create(&id, &empty_vm(256, 1));
    let (_, doc) = call(|op| get_compute_system_properties(system, op, None));
    let props: Value = serde_json::from_str(&doc.unwrap()).unwrap();
    assert_eq!(props["Id"], id.as_str());
    assert_eq!(props["SystemType"], "VirtualMachine");
    assert_eq!(props["Owner"], "Sample");
    assert!(props.get("Memory").is_none());
    let (_, doc) = call(|op| {
        get_compute_system_properties(
            system,
            op,
            Some(
                r#"{"PropertyTypes":["Memory","Statistics","TerminateOnLastHandleClosed","GuestConnection"]}"#,
            ),
        )
    });
    let props: Value = serde_json::from_str(&doc.unwrap()).unwrap();
    assert_eq!(
        props["Memory"]["VirtualMachineMemory"]["AssignedMemory"],
        256
    );
    assert!(props["Statistics"]["Timestamp"].is_string());
    assert_eq!(props["TerminateOnLastHandleClosed"], true);
    assert!(
        props.get("GuestConnectionInfo").is_none(),
        "unanswerable types are omitted"
    );
    let (hresult, _) = call(|op| {
        get_compute_system_properties(system, op, Some(r#"{"PropertyTypes":["Bogus"]}"#))
    });
    assert_eq!(hresult, HResult::HCS_E_INVALID_JSON);
    close_compute_system(system);
}

#[test]
fn rule_23_enumerate_returns_an_array_filtered_by_the_query() {
    require_kvm();
    let owner = unique_id("owner");
    let id = unique_id("enum");
    let (system, _, _) = create(&id, &persistent_vm(&owner));
    let (hresult, doc) = call(|op| enumerate_compute_systems(None, op));
    assert_eq!(hresult, HResult::S_OK);
    let all: Vec<Value> = serde_json::from_str(&doc.unwrap()).unwrap();
    assert!(all.iter().any(|p| p["Id"] == id.as_str()));
    let query = format!(r#"{{"Owners":["{owner}"],"Types":["VirtualMachine"]}}"#);
    let (_, doc) = call(|op| enumerate_compute_systems(Some(&query), op));
    let mine: Vec<Value> = serde_json::from_str(&doc.unwrap()).unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["Id"], id.as_str());
    let (_, doc) = call(|op| enumerate_compute_systems(Some(r#"{"Ids":["no-such-id"]}"#), op));
    assert_eq!(doc.unwrap(), "[]");
    let (hresult, _) = call(|op| enumerate_compute_systems(Some(r#"{"Owner":["x"]}"#), op));
    assert_eq!(hresult, HResult::HCS_E_INVALID_JSON);
    assert_eq!(
        call(|op| terminate_compute_system(system, op, None)).0,
        HResult::S_OK
    );
    close_compute_system(system);
}

/// §3.3: each request in each state gives the transition or the listed code, and an
/// invalid request changes nothing.
#[test]
fn rule_25_state_table_of_section_3_3() {
    require_kvm();
    let (system, _, _) = create(&unique_id("states"), &c_empty_vm());
    // Created
    assert_eq!(
        call(|op| pause_compute_system(system, op, None)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(
        call(|op| resume_compute_system(system, op, None)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(
        call(|op| save_compute_system(system, op, None)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(
        call(|op| shut_down_compute_system(system, op, None)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(
        call(|op| crash_compute_system(system, op, None)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(state_of(system), "Created");
    assert_eq!(
        call(|op| start_compute_system(system, op, None)).0,
        HResult::S_OK
    );
    // Running
    assert_eq!(state_of(system), "Running");
    assert_eq!(
        call(|op| start_compute_system(system, op, None)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(
        call(|op| resume_compute_system(system, op, None)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(
        call(|op| save_compute_system(
            system,
            op,
            Some(r#"{"SaveType":"ToFile","SaveStateFilePath":"/tmp/x.vmrs"}"#)
        ))
        .0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(state_of(system), "Running");
    assert_eq!(
        call(|op| pause_compute_system(
            system,
            op,
            Some(r#"{"SuspensionLevel":"Suspend","HostedNotification":{"Reason":"Save"}}"#)
        ))
        .0,
        HResult::S_OK
    );
    // Paused
    assert_eq!(state_of(system), "Paused");
    assert_eq!(
        call(|op| start_compute_system(system, op, None)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(
        call(|op| pause_compute_system(system, op, None)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(
        call(|op| shut_down_compute_system(system, op, None)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(
        call(|op| crash_compute_system(system, op, None)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(
        call(|op| modify_compute_system(system, op, r#"{"ResourcePath":"VirtualMachine/ComputeTopology/Memory/SizeInMB","RequestType":"Update","Settings":1024}"#, 0)).0,
        HResult::HCS_E_INVALID_STATE
    );
    assert_eq!(state_of(system), "Paused");
    assert_eq!(
        call(|op| resume_compute_system(system, op, None)).0,
        HResult::S_OK
    );
    assert_eq!(state_of(system), "Running");
    // Bad options documents are refused through the operation, state unchanged.
    assert_eq!(
        call(|op| pause_compute_system(system, op, Some(r#"{"SuspensionLevel":"Deep"}"#))).0,
        HResult::HCS_E_INVALID_JSON
    );
    assert_eq!(state_of(system), "Running");
    assert_eq!(
        call(|op| terminate_compute_system(system, op, None)).0,
        HResult::S_OK
    );
    close_compute_system(system);
}

#[test]
fn shutdown_of_an_empty_vm_answers_not_configured_and_never_hangs() {
    require_kvm();
    let (system, _, _) = create(&unique_id("shutdown"), &c_empty_vm());
    assert_eq!(
        call(|op| start_compute_system(system, op, None)).0,
        HResult::S_OK
    );
    let (hresult, doc) = call(|op| shut_down_compute_system(system, op, None));
    assert_eq!(hresult, HResult::HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION);
    assert!(
        doc.unwrap().contains("HcsTerminateComputeSystem"),
        "the message says what to do"
    );
    assert_eq!(state_of(system), "Running");
    close_compute_system(system);
}

#[test]
fn rule_24_and_27_after_an_exit_the_id_is_free_and_old_handles_answer() {
    require_kvm();
    let id = unique_id("exit");
    let (system, _, _) = create(&id, &c_empty_vm());
    assert_eq!(
        call(|op| start_compute_system(system, op, None)).0,
        HResult::S_OK
    );
    assert_eq!(
        call(|op| terminate_compute_system(system, op, None)).0,
        HResult::S_OK
    );
    // Rule 53: the exit is recorded before the terminate completes.
    let (hresult, status) = wait_for_compute_system_exit(system, 0);
    assert_eq!(hresult, HResult::S_OK);
    let status: Value = serde_json::from_str(&status.unwrap()).unwrap();
    assert_eq!(status["ExitType"], "ForcedExit");
    assert_eq!(status["Status"], 0);
    // Rule 24 and 27.
    assert_eq!(
        call(|op| terminate_compute_system(system, op, None)).0,
        HResult::HCS_E_SYSTEM_ALREADY_STOPPED
    );
    assert_eq!(
        call(|op| shut_down_compute_system(system, op, None)).0,
        HResult::HCS_E_SYSTEM_ALREADY_STOPPED
    );
    // §3.3, the "stopped / exited" column.
    for (name, hresult) in [
        ("start", call(|op| start_compute_system(system, op, None)).0),
        ("pause", call(|op| pause_compute_system(system, op, None)).0),
        (
            "resume",
            call(|op| resume_compute_system(system, op, None)).0,
        ),
        ("save", call(|op| save_compute_system(system, op, None)).0),
        ("crash", call(|op| crash_compute_system(system, op, None)).0),
        (
            "properties",
            call(|op| get_compute_system_properties(system, op, None)).0,
        ),
        (
            "modify",
            call(|op| modify_compute_system(system, op, "{}", 0)).0,
        ),
    ] {
        assert_eq!(
            hresult,
            HResult::HCS_E_SYSTEM_NOT_FOUND,
            "{name} after exit"
        );
    }
    assert_eq!(
        open_compute_system(&id, GENERIC_ALL),
        Err(HResult::HCS_E_SYSTEM_NOT_FOUND)
    );
    let (again, hresult, _) = create(&id, &c_empty_vm());
    assert_eq!(hresult, HResult::S_OK, "the id is free again");
    close_compute_system(again);
    close_compute_system(system);
}

#[test]
fn rule_28_last_handle_close_terminates_only_with_the_flag() {
    require_kvm();
    // With the flag: closing the last handle terminates, in the Created state too.
    let id = unique_id("last");
    let (system, _, _) = create(&id, &c_empty_vm());
    let extra = open_compute_system(&id, GENERIC_ALL).unwrap();
    close_compute_system(system);
    // Rule 57: another handle keeps it alive.
    assert_eq!(state_of(extra), "Created");
    close_compute_system(extra);
    let gone = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        open_compute_system(&id, GENERIC_ALL).is_err()
    });
    assert!(gone, "the last close must terminate the system");
    // Without the flag: the system survives every close.
    let id = unique_id("stays");
    let (system, _, _) = create(&id, &persistent_vm("stays"));
    close_compute_system(system);
    let reopened = open_compute_system(&id, GENERIC_ALL).expect("still there");
    assert_eq!(
        call(|op| terminate_compute_system(reopened, op, None)).0,
        HResult::S_OK
    );
    close_compute_system(reopened);
}

#[test]
fn rule_30_wait_for_exit_times_out_then_every_waiter_gets_the_status() {
    require_kvm();
    let (system, _, _) = create(&unique_id("waitexit"), &c_empty_vm());
    assert_eq!(
        wait_for_compute_system_exit(system, 50).0,
        HResult::HCS_E_OPERATION_TIMEOUT
    );
    let waiters: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || wait_for_compute_system_exit(system, INFINITE)))
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        call(|op| terminate_compute_system(system, op, None)).0,
        HResult::S_OK
    );
    let late = wait_for_compute_system_exit(system, 0);
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap(), late);
    }
    assert_eq!(late.0, HResult::S_OK);
    close_compute_system(system);
}

#[test]
fn rule_31_modify_on_an_empty_vm() {
    require_kvm();
    let (system, _, _) = create(&unique_id("modify"), &c_empty_vm());
    let same = r#"{"ResourcePath":"VirtualMachine/ComputeTopology/Memory/SizeInMB","RequestType":"Update","Settings":1024}"#;
    assert_eq!(
        call(|op| modify_compute_system(system, op, same, 0)).0,
        HResult::S_OK
    );
    let bigger = r#"{"ResourcePath":"VirtualMachine/ComputeTopology/Memory/SizeInMB","RequestType":"Update","Settings":4096}"#;
    assert_eq!(
        call(|op| modify_compute_system(system, op, bigger, 0)).0,
        HResult::ERROR_NOT_SUPPORTED
    );
    let unknown = r#"{"ResourcePath":"VirtualMachine/Devices/Floppy","RequestType":"Add"}"#;
    assert_eq!(
        call(|op| modify_compute_system(system, op, unknown, 0)).0,
        HResult::E_INVALIDARG
    );
    let remove = r#"{"ResourcePath":"VirtualMachine/Devices/ComPorts/0","RequestType":"Remove"}"#;
    assert_eq!(
        call(|op| modify_compute_system(system, op, remove, 0)).0,
        HResult::ERROR_NOT_FOUND
    );
    assert_eq!(
        call(|op| modify_compute_system(system, op, "{", 0)).0,
        HResult::HCS_E_INVALID_JSON
    );
    close_compute_system(system);
}

#[test]
fn rule_53_and_54_terminate_never_waits_and_pending_requests_get_terminated() {
    require_kvm();
    let (system, _, _) = create(&unique_id("cut"), &c_empty_vm());
    let hold = hold_system_requests(system).unwrap();
    let start = create_operation(0, None);
    assert_eq!(start_compute_system(system, start, None), HResult::S_OK);
    let terminate = create_operation(0, None);
    assert_eq!(
        terminate_compute_system(system, terminate, None),
        HResult::S_OK
    );
    // The terminate completes while the queue is still held.
    assert_eq!(
        wait_for_operation_result(terminate, 10_000).0,
        HResult::S_OK
    );
    assert_eq!(wait_for_compute_system_exit(system, 0).0, HResult::S_OK);
    drop(hold);
    let (hresult, doc) = wait_for_operation_result(start, INFINITE);
    assert_eq!(hresult, HResult::HCS_E_TERMINATED, "{doc:?}");
    close_operation(start);
    close_operation(terminate);
    close_compute_system(system);
}

#[test]
fn rule_49_double_close_and_closed_system_handles() {
    require_kvm();
    let (system, _, _) = create(&unique_id("close"), &c_empty_vm());
    close_compute_system(system);
    close_compute_system(system);
    close_compute_system(HcsSystem::NULL);
    let op = create_operation(0, None);
    assert_eq!(start_compute_system(system, op, None), HResult::E_HANDLE);
    assert_eq!(wait_for_compute_system_exit(system, 0).0, HResult::E_HANDLE);
    assert_eq!(
        set_compute_system_callback(system, 0, 0, Some(std::sync::Arc::new(|_, _| {}))),
        HResult::E_HANDLE
    );
    assert_eq!(
        get_operation_result(op).0,
        HResult::HCS_E_OPERATION_NOT_STARTED
    );
    close_operation(op);
}
