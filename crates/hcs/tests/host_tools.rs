//! What tools ask of the host besides the HCS calls, against whichever host this process
//! talks to (`scripts/test` runs this file against the embedded host and, in its service
//! stage, against hcsd): the host judges documents as its create would, names the socket
//! of a ComPort's pipe, and answers the test requests only because it was started for tests.

mod common;

use hcs::api::{com_port_socket, live_counts, validate_document};
use hcs::HResult;

#[test]
fn the_host_validates_a_document_as_its_create_would() {
    let valid = validate_document(&common::c_empty_vm()).expect("the host answers");
    assert!(valid.is_valid(), "{valid:?}");
    assert_eq!(valid.engine.as_deref(), Some("kvm"));
    assert_eq!((valid.vcpus, valid.memory_mb), (Some(2), Some(1024)));

    let zero = common::empty_vm(0, 0);
    let invalid = validate_document(&zero).expect("the host answers");
    let paths: Vec<&str> = invalid.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "$.VirtualMachine.ComputeTopology.Memory.SizeInMB",
            "$.VirtualMachine.ComputeTopology.Processor.Count"
        ]
    );
    assert!(invalid
        .problems
        .iter()
        .all(|p| p.hresult == HResult::HCS_E_INVALID_JSON && !p.message.is_empty()));
    assert!(invalid.engine.is_none());

    let malformed = validate_document("{").expect("the host answers");
    assert!(!malformed.is_valid());
}

#[test]
fn the_host_names_the_socket_of_a_com_port_pipe() {
    let socket = com_port_socket(r"\\.\pipe\tools-com1")
        .expect("a pipe name is valid")
        .expect("a connected port");
    assert!(socket.ends_with("pipe/tools-com1"), "{}", socket.display());
    assert!(socket.is_absolute());
    assert_eq!(com_port_socket("").expect("disconnected is valid"), None);
    assert_eq!(
        com_port_socket("/tmp/x.sock").unwrap().as_deref(),
        Some(std::path::Path::new("/tmp/x.sock"))
    );
    for bad in ["relative", r"\\.\pipe\..", r"\\.\pipe\a/b"] {
        let error = com_port_socket(bad).expect_err(bad);
        assert_eq!(error.hresult, HResult::E_INVALIDARG, "{bad}");
        assert!(error.message().is_some(), "{bad}");
    }
}

/// The tests' host was started for tests (HCS_TEST_HOOKS=1 from .cargo/config.toml, or
/// `hcsd --test-hooks` in the service stage), so the test requests are answered: the live
/// counts see a system of ours (a refused request would read as zero).
#[test]
fn a_host_started_for_tests_answers_the_test_requests() {
    common::require_kvm();
    let id = common::unique_id("tools");
    let system = hcs::ComputeSystem::create(&id, &common::c_empty_vm())
        .wait()
        .expect("create");
    assert!(live_counts().systems >= 1);
    system.terminate().wait().expect("terminate");
}
