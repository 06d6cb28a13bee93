//! Choosing the host, once per process on first use: `HCS_HOST` and whether a service
//! answers. Each case runs this test binary again as a child process with its own
//! environment (the client is process-global), and the child reports what it chose.

mod fake_service;

use std::process::Command;

/// Set in a child: the host kind it must report.
const EXPECT: &str = "HCS_TEST_EXPECT_HOST";

/// Runs `child_reports_its_host` in a new process with `env`, expecting `kind`.
fn run_child(env: &[(&str, &str)], kind: &str) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_reports_its_host",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("HCS_HOST")
        .env_remove("HCS_SOCKET")
        .env(EXPECT, kind);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("1 passed"),
        "child with {env:?} did not choose {kind}:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The child: does nothing unless run by `run_child`.
#[test]
fn child_reports_its_host() {
    let Ok(expected) = std::env::var(EXPECT) else {
        return;
    };
    let kind = format!("{:?}", hcs::api::host_kind());
    assert_eq!(kind, expected);
    // A call that needs the host works with either.
    let _ = hcs::api::live_counts();
}

fn nowhere() -> String {
    std::env::temp_dir()
        .join(format!("hcs-nowhere-{}.sock", std::process::id()))
        .display()
        .to_string()
}

#[test]
fn unset_without_a_service_uses_the_embedded_host() {
    run_child(&[("HCS_SOCKET", &nowhere())], "Embedded");
}

#[test]
fn auto_with_a_service_uses_it() {
    let fake = fake_service::FakeService::start();
    let socket = fake.socket.display().to_string();
    run_child(&[("HCS_SOCKET", &socket)], "Service");
    run_child(&[("HCS_HOST", "auto"), ("HCS_SOCKET", &socket)], "Service");
    assert_eq!(fake.hellos().len(), 2);
}

#[test]
fn embedded_is_used_even_when_a_service_answers() {
    let fake = fake_service::FakeService::start();
    let socket = fake.socket.display().to_string();
    run_child(
        &[("HCS_HOST", "embedded"), ("HCS_SOCKET", &socket)],
        "Embedded",
    );
    assert!(fake.hellos().is_empty());
}

#[test]
fn service_is_used_even_when_none_answers() {
    run_child(
        &[("HCS_HOST", "service"), ("HCS_SOCKET", &nowhere())],
        "Service",
    );
}

#[test]
fn an_unknown_setting_counts_as_auto() {
    run_child(
        &[("HCS_HOST", "bogus"), ("HCS_SOCKET", &nowhere())],
        "Embedded",
    );
    let fake = fake_service::FakeService::start();
    let socket = fake.socket.display().to_string();
    run_child(&[("HCS_HOST", "bogus"), ("HCS_SOCKET", &socket)], "Service");
}

#[test]
fn a_refusing_service_in_auto_mode_leaves_the_embedded_host() {
    let fake = fake_service::FakeService::start();
    fake.refuse_next(hcs::HResult::E_ACCESSDENIED, "not in the hcs group");
    let socket = fake.socket.display().to_string();
    run_child(&[("HCS_SOCKET", &socket)], "Embedded");
}
