//! The service across processes: compute systems that outlive their clients and `hcsd`
//! itself, the faults a service must survive, and access control. Each test runs its own
//! `hcsd` (socket and state directory in a scratch directory) and real VMs on /dev/kvm.

mod common;

use common::*;
use hcs_protocol::{Notification, RequestBody, SystemRequest};
use hcs_schema::HResult;
use std::time::{Duration, Instant};

/// HCS-API rules 27 and 28 across a restart: `hcsd` killed with SIGKILL (and stopped
/// with SIGTERM) leaves its VMs running, even one with ShouldTerminateOnLastHandleClosed
/// (a restart is not a close); the next `hcsd` finds them from the state directory and a
/// new client reopens and terminates them.
#[test]
fn restart_keeps_vms_running_and_a_new_client_reopens_and_terminates_them() {
    require_kvm();
    let dir = scratch("restart");
    let mut hcsd = Hcsd::start(&dir);
    let mut client = hcsd.client();
    client.ok(create(1, "keep-a", empty_vm("restart", true)));
    client.ok(on(1, SystemRequest::Start));
    client.ok(create(2, "keep-b", empty_vm("restart", false)));
    let workers = hcsd.worker_pids();
    assert_eq!(workers.len(), 2, "one worker process per VM");

    for signal in [libc::SIGKILL, libc::SIGTERM] {
        hcsd.kill(signal);
        // SIGTERM says goodbye (clients' pending operations end with
        // HCS_E_SERVICE_DISCONNECT); SIGKILL just closes the socket.
        assert_eq!(
            client.wait_closed().map(|(result, _)| result),
            (signal == libc::SIGTERM).then_some(HResult::HCS_E_SERVICE_DISCONNECT)
        );
        assert_eq!(
            hcsd.worker_pids(),
            workers,
            "workers survive hcsd ({signal})"
        );
        hcsd.restart();
        client = hcsd.client();
        assert_eq!(
            enumerate(&client, None),
            ["keep-a", "keep-b"],
            "the restarted hcsd finds both systems"
        );
        // keep-b has no ShouldTerminateOnLastHandleClosed: open and close freely.
        client.ok(open(7, "keep-b"));
        let state = client
            .ok(on(7, SystemRequest::GetProperties(None)))
            .unwrap();
        assert!(state.contains(r#""State":"Created""#), "{state}");
        client.ok(close(7));
    }
    // keep-a's handles went with the old hcsd's connections without being closed; a
    // handle reopened now is its only one, and closing it terminates it (rule 28).
    let client = hcsd.client();
    client.ok(open(9, "keep-a"));
    let state = client
        .ok(on(9, SystemRequest::GetProperties(None)))
        .unwrap();
    assert!(state.contains(r#""State":"Running""#), "{state}");
    client.ok(close(9));
    wait_until("keep-a is terminated by its last close", || {
        enumerate(&client, None) == ["keep-b"]
    });
    client.ok(open(11, "keep-b"));
    client.ok(on(11, SystemRequest::Terminate));
    client.ok(close(11));
    wait_until("workers exit", || hcsd.worker_pids().is_empty());
    assert!(enumerate(&client, None).is_empty());
    assert!(
        std::fs::read_dir(hcsd.state.join("workers"))
            .unwrap()
            .next()
            .is_none(),
        "no worker record is left behind"
    );
}

/// A worker killed from outside ends its VM as an `UnexpectedExit` told to every handle
/// in every session, its pending operations fail, and nothing else is touched: another
/// VM and the service keep working, and no descriptor or process is left behind.
#[test]
fn a_killed_worker_is_an_unexpected_exit_for_every_handle_and_nothing_else() {
    require_kvm();
    let dir = scratch("worker-killed");
    let hcsd = Hcsd::start(&dir);
    let first = hcsd.client();
    let fds_before = hcsd.fd_count();
    first.ok(create(1, "victim", empty_vm("faults", false)));
    first.ok(on(1, SystemRequest::Start));
    first.ok(create(2, "bystander", empty_vm("faults", false)));
    first.ok(on(2, SystemRequest::Start));
    let second = hcsd.client();
    second.ok(open(5, "victim"));
    // A pending operation: the system's queue is held, so Pause waits behind it.
    second.ok(RequestBody::Diagnostic(
        hcs_protocol::Diagnostic::HoldSystem { handle: 5, hold: 1 },
    ));
    let pause = second.send(on(5, SystemRequest::Pause(None)));
    // The worker answers an enumeration only after it has read the Pause before it.
    assert_eq!(enumerate(&second, None), ["bystander", "victim"]);

    let victim = hcs_worker_of(&hcsd, "victim");
    // SAFETY: plain kill(2) on the test's own worker process.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };

    for (client, handle) in [(&first, 1), (&second, 5)] {
        let exited = client.wait_notification(
            |n| matches!(n, Notification::SystemExited { handle: h, .. } if *h == handle),
            "SystemExited after the worker was killed",
        );
        assert_eq!(exit_type(&exited).as_deref(), Some("UnexpectedExit"));
    }
    let (reply, _) = second.wait(pause);
    assert_eq!(reply.result, HResult::HCS_E_UNEXPECTED_EXIT);
    assert!(reply.document.unwrap().contains("worker process"));
    // Rule 27 from then on; close still works.
    assert_eq!(
        first.call(on(1, SystemRequest::Terminate)).result,
        HResult::HCS_E_SYSTEM_ALREADY_STOPPED
    );
    assert_eq!(
        first.call(on(1, SystemRequest::GetProperties(None))).result,
        HResult::HCS_E_SYSTEM_NOT_FOUND
    );
    assert_eq!(
        second.call(open(6, "victim")).result,
        HResult::HCS_E_SYSTEM_NOT_FOUND
    );
    first.ok(close(1));
    second.ok(close(5));
    // The other VM never noticed.
    assert_eq!(enumerate(&second, None), ["bystander"]);
    let state = first.ok(on(2, SystemRequest::GetProperties(None))).unwrap();
    assert!(state.contains(r#""State":"Running""#), "{state}");
    // The id is free again.
    first.ok(create(3, "victim", empty_vm("faults", false)));
    first.ok(on(3, SystemRequest::Terminate));
    first.ok(on(2, SystemRequest::Terminate));
    first.ok(close(2));
    first.ok(close(3));
    wait_until("workers exit", || hcsd.worker_pids().is_empty());
    drop(second);
    wait_until("hcsd's descriptors return to their count", || {
        hcsd.fd_count() <= fds_before
    });
}

/// HCS-API rule 28 across processes: a client process killed with SIGKILL counts as
/// closing its handles, so its system with ShouldTerminateOnLastHandleClosed is
/// terminated, and one without it runs on for others to open.
/// The requests made for tests exist only in an hcsd started for tests: without
/// `--test-hooks`, a client that asks to hold another's system, or for live counts, is
/// refused with `E_ACCESSDENIED`, and the system's queue keeps moving.
#[test]
fn without_test_hooks_hcsd_refuses_the_test_requests() {
    require_kvm();
    let dir = scratch("no-test-hooks");
    let hcsd = Hcsd::start_with(&dir, false);
    let client = hcsd.client();
    client.ok(create(1, "production", empty_vm("prod", true)));
    for body in [
        RequestBody::Diagnostic(hcs_protocol::Diagnostic::HoldSystem { handle: 1, hold: 7 }),
        RequestBody::Diagnostic(hcs_protocol::Diagnostic::ReleaseHold { hold: 7 }),
        RequestBody::Diagnostic(hcs_protocol::Diagnostic::LiveCounts),
    ] {
        let reply = client.call(body);
        assert_eq!(reply.result, HResult::E_ACCESSDENIED);
        let document = reply.document.unwrap_or_default();
        assert!(document.contains("--test-hooks"), "{document}");
    }
    // Nothing holds the queue: the start completes.
    client.ok(on(1, SystemRequest::Start));
    client.ok(on(1, SystemRequest::Terminate));
    client.ok(close(1));
}

#[test]
fn rule_28_a_client_killed_with_sigkill_counts_as_closing_its_handles() {
    require_kvm();
    let dir = scratch("client-killed");
    let hcsd = Hcsd::start(&dir);
    let watcher = hcsd.client();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "client_process_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_SOCKET, &hcsd.socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    wait_until("the client process created both systems", || {
        enumerate(&watcher, None) == ["ephemeral", "lasting"]
    });
    // Someone else holds the lasting one: the ephemeral one has only the killed client.
    watcher.ok(open(1, "ephemeral"));
    watcher.ok(close(1));
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until("the ephemeral system is terminated", || {
        enumerate(&watcher, None) == ["lasting"]
    });
    watcher.ok(open(2, "lasting"));
    watcher.ok(on(2, SystemRequest::Terminate));
    watcher.ok(close(2));
    wait_until("workers exit", || hcsd.worker_pids().is_empty());
}

const HELPER_SOCKET: &str = "HCSD_TEST_HELPER_SOCKET";

/// Not a check of its own: the client process of
/// [`rule_28_a_client_killed_with_sigkill_counts_as_closing_its_handles`]. It creates
/// two systems and waits to be killed. Without the variable it does nothing.
#[test]
fn client_process_helper() {
    let Some(socket) = std::env::var_os(HELPER_SOCKET) else {
        return;
    };
    let client = TestClient::connect(std::path::Path::new(&socket));
    client.ok(create(1, "ephemeral", empty_vm("killed-client", true)));
    client.ok(on(1, SystemRequest::Start));
    client.ok(create(2, "lasting", empty_vm("killed-client", false)));
    std::thread::sleep(Duration::from_secs(600));
}

/// Events reach every handle that registered, in every session: one SystemExited per
/// handle, two handles in one session included.
#[test]
fn rule_53_system_exited_reaches_every_handle_in_every_session() {
    require_kvm();
    let dir = scratch("events");
    let hcsd = Hcsd::start(&dir);
    let a = hcsd.client();
    let b = hcsd.client();
    a.ok(create(1, "shared", empty_vm("events", false)));
    a.ok(on(1, SystemRequest::Start));
    b.ok(open(1, "shared"));
    b.ok(open(2, "shared"));
    a.ok(on(1, SystemRequest::Terminate));
    for (client, handle) in [(&a, 1), (&b, 1), (&b, 2)] {
        let n = client.wait_notification(
            |n| matches!(n, Notification::SystemExited { handle: h, .. } if *h == handle),
            "SystemExited",
        );
        assert_eq!(exit_type(&n).as_deref(), Some("ForcedExit"));
    }
    let exits = b
        .notifications()
        .iter()
        .filter(|n| matches!(n, Notification::SystemExited { .. }))
        .count();
    assert_eq!(exits, 2, "exactly once per handle");
    for (client, handle) in [(&a, 1), (&b, 1), (&b, 2)] {
        client.ok(close(handle));
    }
}

/// `HcsEnumerateComputeSystems` sees every client's systems, filtered by Owner and Ids
/// (§7.9 SystemQuery: AND across fields, OR within one).
#[test]
fn enumerate_lists_every_clients_systems_by_owner_and_id() {
    require_kvm();
    let dir = scratch("enumerate");
    let hcsd = Hcsd::start(&dir);
    let a = hcsd.client();
    let b = hcsd.client();
    a.ok(create(1, "a1", empty_vm("alice", false)));
    a.ok(create(2, "a2", empty_vm("alice", false)));
    b.ok(create(1, "b1", empty_vm("bob", false)));
    assert_eq!(enumerate(&b, None), ["a1", "a2", "b1"]);
    assert_eq!(enumerate(&b, Some(r#"{"Owners":["alice"]}"#)), ["a1", "a2"]);
    assert_eq!(enumerate(&a, Some(r#"{"Owners":["bob"]}"#)), ["b1"]);
    assert_eq!(enumerate(&a, Some(r#"{"Ids":["a2","b1"]}"#)), ["a2", "b1"]);
    assert_eq!(
        enumerate(&a, Some(r#"{"Ids":["a2","b1"],"Owners":["bob"]}"#)),
        ["b1"]
    );
    let bad = a.call(RequestBody::Enumerate {
        query: Some("{".into()),
    });
    assert_eq!(bad.result, HResult::HCS_E_INVALID_JSON);
    for (client, handle) in [(&a, 1), (&a, 2), (&b, 1)] {
        client.ok(on(handle, SystemRequest::Terminate));
        client.ok(close(handle));
    }
    wait_until("workers exit", || hcsd.worker_pids().is_empty());
}

/// A malformed message, an oversized one, and a socket closed in the middle of a
/// message each end only that connection (with `HCS_E_PROTOCOL_ERROR` where the service
/// can still say so); everyone else is served on, and nothing leaks.
#[test]
fn bad_messages_end_only_their_own_connection() {
    require_kvm();
    let dir = scratch("bad-messages");
    let hcsd = Hcsd::start(&dir);
    let good = hcsd.client();
    good.ok(create(1, "steady", empty_vm("faults", false)));
    good.ok(on(1, SystemRequest::Start));
    let fds_before = hcsd.fd_count();

    let malformed = hcsd.client();
    malformed.send_raw(b"{\"Request\": nonsense");
    let (result, message) = malformed.wait_closed().expect("a Closing message");
    assert_eq!(result, HResult::HCS_E_PROTOCOL_ERROR);
    assert!(message.contains("malformed"), "{message}");

    let oversized = hcsd.client();
    {
        use std::io::Write;
        let mut stream = &oversized.stream;
        stream.write_all(&(64u32 << 20).to_le_bytes()).unwrap();
        stream.write_all(&0u32.to_le_bytes()).unwrap();
    }
    let (result, message) = oversized.wait_closed().expect("a Closing message");
    assert_eq!(result, HResult::HCS_E_PROTOCOL_ERROR);
    assert!(message.contains("limit"), "{message}");

    let cut = hcsd.client();
    {
        use std::io::Write;
        let mut stream = &cut.stream;
        stream.write_all(&100u32.to_le_bytes()).unwrap();
        stream.write_all(&0u32.to_le_bytes()).unwrap();
        stream.write_all(b"{\"Requ").unwrap();
        stream.shutdown(std::net::Shutdown::Both).unwrap();
    }
    cut.wait_closed();

    let state = good.ok(on(1, SystemRequest::GetProperties(None))).unwrap();
    assert!(state.contains(r#""State":"Running""#), "{state}");
    drop((malformed, oversized, cut));
    wait_until("hcsd's descriptors return to their count", || {
        hcsd.fd_count() <= fds_before
    });
    good.ok(on(1, SystemRequest::Terminate));
    good.ok(close(1));
}

/// A peer that is not root, not hcsd's user and not in the service's group is refused
/// with `HCS_E_ACCESS_DENIED` and a message saying how to get access.
#[test]
fn a_peer_outside_the_group_is_refused_with_access_denied() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = scratch("access");
    let hcsd = Hcsd::start(&dir);
    // Open the socket file to everyone so that hcsd's own check is what refuses.
    for path in [&dir, &hcsd.socket] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "outsider_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_SOCKET, &hcsd.socket)
        .env("HCSD_TEST_OUTSIDER", "1")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("refused: HCS_E_ACCESS_DENIED") && text.contains("usermod -aG"),
        "the outsider was not refused as expected:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(hcsd.log().contains("client refused"));
    // The service serves others on.
    hcsd.client()
        .ok(RequestBody::GetServiceProperties { query: None });
}

/// Not a check of its own: run as user `nobody` by
/// [`a_peer_outside_the_group_is_refused_with_access_denied`].
#[test]
fn outsider_helper() {
    if std::env::var_os("HCSD_TEST_OUTSIDER").is_none() {
        return;
    }
    let socket = std::env::var_os(HELPER_SOCKET).unwrap();
    let stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    let (mut reader, mut writer) = hcs_wire::frame::split(stream).unwrap();
    writer
        .send(
            &hcs_wire::ClientMessage::Hello {
                versions: vec![hcs_wire::PROTOCOL_VERSION],
                client: "outsider".into(),
            },
            &[],
        )
        .unwrap();
    match reader.recv::<hcs_wire::ServiceMessage>() {
        Ok(Some((hcs_wire::ServiceMessage::Refused { result, message }, _))) => {
            println!("refused: {} {message}", result.name().unwrap_or("?"))
        }
        other => println!("not refused: {other:?}"),
    }
}

/// A client offering only protocol versions the service does not speak is refused with
/// `HCS_E_UNSUPPORTED_PROTOCOL_VERSION`.
#[test]
fn an_unknown_protocol_version_is_refused() {
    let dir = scratch("version");
    let hcsd = Hcsd::start(&dir);
    let stream = std::os::unix::net::UnixStream::connect(&hcsd.socket).unwrap();
    let (mut reader, mut writer) = hcs_wire::frame::split(stream).unwrap();
    writer
        .send(
            &hcs_wire::ClientMessage::Hello {
                versions: vec![99],
                client: "future".into(),
            },
            &[],
        )
        .unwrap();
    match reader.recv::<hcs_wire::ServiceMessage>() {
        Ok(Some((hcs_wire::ServiceMessage::Refused { result, .. }, _))) => {
            assert_eq!(result, HResult::HCS_E_UNSUPPORTED_PROTOCOL_VERSION)
        }
        other => panic!("not refused: {other:?}"),
    }
}

/// A second `hcsd` on the same state directory is refused (one service per directory).
#[test]
fn a_second_hcsd_on_the_same_state_directory_is_refused() {
    let dir = scratch("second");
    let hcsd = Hcsd::start(&dir);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hcsd"))
        .arg("--socket")
        .arg(dir.join("other.sock"))
        .arg("--state-dir")
        .arg(&hcsd.state)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("another hcsd"));
}

fn hcs_worker_of(hcsd: &Hcsd, id: &str) -> u32 {
    let found = processes_mentioning(&hcsd.state.to_string_lossy(), &format!("--id {id}"));
    assert_eq!(found.len(), 1, "one worker for {id}: {found:?}");
    found[0]
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
