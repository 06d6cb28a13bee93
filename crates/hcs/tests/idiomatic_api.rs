//! The idiomatic Rust API: `ComputeSystem::create(..)`, blocking waits, `.await`, event
//! streams, and owned handles that close themselves.

mod common;

use common::{c_empty_vm, persistent_vm, require_kvm, unique_id};
use futures::StreamExt;
use hcs::{ComputeSystem, EventType, HResult, Operation};
use std::time::Duration;

#[test]
fn create_start_properties_terminate_blocking() {
    require_kvm();
    let system = ComputeSystem::create(&unique_id("rs"), &c_empty_vm())
        .wait()
        .unwrap();
    let events = system.events().unwrap();
    system.start().wait().unwrap();
    let props: serde_json::Value =
        serde_json::from_str(&system.properties(None).wait().unwrap()).unwrap();
    assert_eq!(props["State"], "Running");
    system.pause(None).wait().unwrap();
    system.resume().wait().unwrap();
    system.terminate().wait().unwrap();
    let exited = events
        .recv_timeout(Duration::from_secs(20))
        .expect("SystemExited");
    assert_eq!(exited.event_type, EventType::SystemExited);
    let status = system.wait_for_exit(Some(Duration::ZERO)).unwrap();
    assert!(status.contains("ForcedExit"));
}

#[tokio::test(flavor = "current_thread")]
async fn create_start_terminate_with_await() {
    require_kvm();
    let system = ComputeSystem::create(&unique_id("async"), &c_empty_vm())
        .await
        .unwrap();
    let mut events = system.events().unwrap();
    system.start().await.unwrap();
    let err = system.start().await.unwrap_err();
    assert_eq!(err.hresult, HResult::HCS_E_INVALID_STATE);
    assert!(err.to_string().contains("HCS_E_INVALID_STATE"), "{err}");
    system.terminate().await.unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("an event in time")
        .expect("stream open");
    assert_eq!(exited.event_type, EventType::SystemExited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_awaits_in_parallel() {
    require_kvm();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async {
                let system = ComputeSystem::create(&unique_id("par"), &c_empty_vm()).await?;
                system.start().await?;
                for _ in 0..10 {
                    system
                        .properties(Some(r#"{"PropertyTypes":["Statistics"]}"#))
                        .await?;
                }
                system.terminate().await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

#[test]
fn failed_create_reports_the_hresult_and_its_message() {
    require_kvm();
    let err = ComputeSystem::create(
        &unique_id("bad"),
        r#"{"SchemaVersion":{"Major":2,"Minor":1}}"#,
    )
    .wait()
    .unwrap_err();
    assert_eq!(err.hresult, HResult::HCS_E_INVALID_JSON);
    assert!(err.message().unwrap().contains("VirtualMachine"));
    let err = ComputeSystem::create("", &c_empty_vm()).wait().unwrap_err();
    assert_eq!(err.hresult, HResult::E_INVALIDARG);
}

#[test]
fn open_enumerate_and_drop_closes_handles() {
    require_kvm();
    let owner = unique_id("owner");
    let id = unique_id("open");
    let system = ComputeSystem::create(&id, &persistent_vm(&owner))
        .wait()
        .unwrap();
    drop(system); // no terminate-on-close: the system stays
    let again = ComputeSystem::open(&id).unwrap();
    let list = hcs::enumerate(Some(&format!(r#"{{"Owners":["{owner}"]}}"#)))
        .wait()
        .unwrap();
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["Id"], id.as_str());
    again.terminate().wait().unwrap();
    assert_eq!(
        ComputeSystem::open(&id).unwrap_err().hresult,
        HResult::HCS_E_SYSTEM_NOT_FOUND
    );
}

#[test]
fn second_event_stream_on_one_handle_is_refused() {
    require_kvm();
    let system = ComputeSystem::create(&unique_id("ev2"), &c_empty_vm())
        .wait()
        .unwrap();
    let _events = system.events().unwrap();
    assert_eq!(
        system.events().unwrap_err().hresult,
        HResult::HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET
    );
}

#[test]
fn operation_wait_timeout_and_result_of_an_unused_operation() {
    let op = Operation::new();
    assert_eq!(
        op.result().unwrap_err().hresult,
        HResult::HCS_E_OPERATION_NOT_STARTED
    );
    assert_eq!(
        op.wait(Some(Duration::from_millis(1))).unwrap_err().hresult,
        HResult::HCS_E_OPERATION_NOT_STARTED
    );
}
