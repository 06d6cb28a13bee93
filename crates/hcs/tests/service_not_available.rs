//! `HCS_HOST=service` with no service answering: every call fails with
//! `HCS_E_SERVICE_NOT_AVAILABLE` and a document saying what to do. The client is
//! process-global, so this test binary points it at a socket nobody listens on before
//! its first use.

use hcs::api::*;
use hcs::{HResult, GENERIC_ALL, INFINITE};
use std::sync::Once;

const DOC: &str = r#"{"SchemaVersion":{"Major":2,"Minor":1}}"#;

fn no_service() -> String {
    static SETUP: Once = Once::new();
    let socket = std::env::temp_dir().join(format!("hcs-no-service-{}.sock", std::process::id()));
    SETUP.call_once(|| {
        std::env::set_var("HCS_HOST", "service");
        std::env::set_var("HCS_SOCKET", &socket);
    });
    socket.display().to_string()
}

fn assert_actionable(document: Option<&str>, socket: &str) {
    let value: serde_json::Value = serde_json::from_str(document.expect("a document")).unwrap();
    assert_eq!(
        value["Error"].as_i64(),
        Some(i64::from(HResult::HCS_E_SERVICE_NOT_AVAILABLE.0))
    );
    let text = value["ErrorMessage"].as_str().unwrap();
    assert!(text.contains(socket), "names the socket: {text}");
    assert!(text.contains("hcsd"), "says to start hcsd: {text}");
    assert!(
        text.contains("HCS_HOST=embedded"),
        "names the way out: {text}"
    );
}

#[test]
fn rule_36_service_forced_without_a_service_fails_create_with_service_not_available() {
    let socket = no_service();
    assert_eq!(host_kind(), HostKind::Service);
    let op = create_operation(0, None);
    let system = create_compute_system("nowhere", DOC, op, None).unwrap();
    let (result, document) = wait_for_operation_result(op, INFINITE);
    assert_eq!(result, HResult::HCS_E_SERVICE_NOT_AVAILABLE);
    assert_actionable(document.as_deref(), &socket);
    // The handle made without a connection fails the same way, and closes fine.
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    assert_eq!(
        wait_for_operation_result(op, INFINITE).0,
        HResult::HCS_E_SERVICE_NOT_AVAILABLE
    );
    close_compute_system(system);
    close_operation(op);
}

#[test]
fn rule_36_service_forced_without_a_service_fails_enumerate_open_and_service_calls() {
    let socket = no_service();
    let op = create_operation(0, None);
    assert_eq!(enumerate_compute_systems(None, op), HResult::S_OK);
    let (result, document) = wait_for_operation_result(op, INFINITE);
    assert_eq!(result, HResult::HCS_E_SERVICE_NOT_AVAILABLE);
    assert_actionable(document.as_deref(), &socket);
    close_operation(op);
    assert_eq!(
        open_compute_system("nowhere", GENERIC_ALL),
        Err(HResult::HCS_E_SERVICE_NOT_AVAILABLE)
    );
    let (result, document) = get_service_properties(None);
    assert_eq!(result, HResult::HCS_E_SERVICE_NOT_AVAILABLE);
    assert_actionable(document.as_deref(), &socket);
    let error = hcs::enumerate(None).wait().unwrap_err();
    assert_eq!(error.hresult, HResult::HCS_E_SERVICE_NOT_AVAILABLE);
    assert!(error.to_string().contains("hcsd"), "{error}");
    let counts = live_counts();
    assert_eq!((counts.systems, counts.vms), (0, 0));
}
