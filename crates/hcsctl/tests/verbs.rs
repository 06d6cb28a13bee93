//! The operator verbs (`list`, `create`, `start` … `exec`, `completions`) through the built
//! binary against the embedded host: argument parsing, exit codes, error output, `--json`.
//!
//! Every invocation sets `HCS_HOST=embedded`, so that a service running on this machine is
//! never touched. The one test that creates a VM needs `/dev/kvm` and fails (never skips)
//! without it. The same verbs against the service: `service.rs`.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const HCSCTL: &str = env!("CARGO_BIN_EXE_hcsctl");

/// `HCS_E_SYSTEM_NOT_FOUND` as the signed int32 of HCS documents.
const NOT_FOUND: i64 = -2143878898;

fn hcsctl(args: &[&str]) -> Output {
    Command::new(HCSCTL)
        .args(args)
        .env("HCS_HOST", "embedded")
        .stdin(Stdio::null())
        .output()
        .expect("hcsctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    )
}

fn empty_vm() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/empty-vm.json")
}

#[test]
fn verbs_on_an_unknown_system_exit_1_naming_the_hresult() {
    let verbs: &[&[&str]] = &[
        &["start", "nosuch"],
        &["pause", "nosuch"],
        &["resume", "nosuch"],
        &["shutdown", "nosuch"],
        &["terminate", "nosuch"],
        &["save", "nosuch", "state.vmrs"],
        &["wait", "--timeout", "1", "nosuch"],
        &["properties", "nosuch"],
        &["events", "--timeout", "1", "nosuch"],
        &["console", "nosuch"],
        &["exec", "nosuch", "--", "true"],
    ];
    for args in verbs {
        let output = hcsctl(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            describe(&output)
        );
        let err = stderr(&output);
        assert!(
            err.contains("error: HCS_E_SYSTEM_NOT_FOUND (0x8037010E): "),
            "{args:?}: {err}"
        );
        assert!(
            stdout(&output).is_empty(),
            "{args:?}: {}",
            describe(&output)
        );
    }
}

#[test]
fn json_errors_are_one_object_on_stdout() {
    for args in [
        &["--json", "start", "nosuch"][..],
        &["terminate", "nosuch", "--json"][..],
        &["properties", "--json", "nosuch"][..],
    ] {
        let output = hcsctl(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            describe(&output)
        );
        let value: Value = serde_json::from_str(stdout(&output).trim())
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", describe(&output)));
        assert_eq!(value["error"]["hresult"], NOT_FOUND, "{value}");
        assert_eq!(value["error"]["name"], "HCS_E_SYSTEM_NOT_FOUND", "{value}");
        assert!(value["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

#[test]
fn list_of_nothing() {
    let json = hcsctl(&["list", "--json"]);
    assert_eq!(json.status.code(), Some(0), "{}", describe(&json));
    assert_eq!(stdout(&json).trim(), "[]");
    let filtered = hcsctl(&[
        "--json", "list", "--owner", "a", "--owner", "b", "--id", "x",
    ]);
    assert_eq!(filtered.status.code(), Some(0), "{}", describe(&filtered));
    assert_eq!(stdout(&filtered).trim(), "[]");
    let table = hcsctl(&["list"]);
    assert_eq!(table.status.code(), Some(0), "{}", describe(&table));
    assert_eq!(stdout(&table).trim(), "ID  OWNER  STATE  TYPE  RUNTIME");
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &["start"],
        &["exec", "nosuch"],
        &["events", "--timeout", "soon", "nosuch"],
        &["wait", "--timeout", "-1", "nosuch"],
        &["console", "--port", "2", "nosuch"],
        &["completions", "tcsh"],
        &["frobnicate"],
    ];
    for args in cases {
        let output = hcsctl(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            describe(&output)
        );
        assert!(
            stdout(&output).is_empty(),
            "{args:?}: {}",
            describe(&output)
        );
    }
    let json = hcsctl(&["--json", "frobnicate"]);
    assert_eq!(json.status.code(), Some(2), "{}", describe(&json));
    let value: Value = serde_json::from_str(stdout(&json).trim()).expect("a JSON error");
    assert!(value["error"]["hresult"].is_null(), "{value}");
    assert_eq!(value["error"]["name"], "USAGE", "{value}");
    let console = hcsctl(&["run", "--json", "--console", "/nonexistent/doc.json"]);
    assert_eq!(console.status.code(), Some(2), "{}", describe(&console));
}

#[test]
fn unreadable_files_exit_2() {
    for args in [
        &["create", "/nonexistent/hcsctl/doc.json"][..],
        &["modify", "nosuch", "/nonexistent/hcsctl/settings.json"][..],
    ] {
        let output = hcsctl(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            describe(&output)
        );
        let err = stderr(&output);
        assert!(err.contains("/nonexistent/hcsctl/"), "{err}");
        assert!(err.contains("No such file or directory"), "{err}");
    }
    let json = hcsctl(&["--json", "create", "/nonexistent/hcsctl/doc.json"]);
    let value: Value = serde_json::from_str(stdout(&json).trim()).expect("a JSON error");
    assert_eq!(value["error"]["name"], "FILE_UNREADABLE", "{value}");
}

#[test]
fn modify_reads_its_request_from_stdin() {
    let mut child = Command::new(HCSCTL)
        .args(["modify", "nosuch", "-"])
        .env("HCS_HOST", "embedded")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hcsctl starts");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(br#"{"ResourcePath":"VirtualMachine/ComputeTopology/Memory/SizeInMB","RequestType":"Update","Settings":1024}"#)
        .expect("request written");
    let output = child.wait_with_output().expect("hcsctl ends");
    // The request was read (not exit 2); the system does not exist.
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(stderr(&output).contains("HCS_E_SYSTEM_NOT_FOUND"));
}

#[test]
fn create_of_an_invalid_document_names_the_hresult() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hcsctl-verbs");
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let doc = dir.join("count-0.json");
    std::fs::write(
        &doc,
        r#"{"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},
            "ComputeTopology":{"Memory":{"SizeInMB":1024},"Processor":{"Count":0}}}}"#,
    )
    .expect("document written");
    let output = hcsctl(&["create", doc.to_str().expect("UTF-8 path")]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stderr(&output).contains("error: HCS_E_INVALID_JSON (0x8037010D): "),
        "{}",
        describe(&output)
    );
    assert!(stdout(&output).is_empty(), "nothing was created");
}

#[test]
fn create_on_the_embedded_host_warns_that_the_system_ends_with_hcsctl() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: this test creates a VM on the built-in VMM and needs KVM \
         (load kvm_intel, kvm_amd or kvm_pvm); it fails rather than skips"
    );
    let doc = empty_vm();
    let output = hcsctl(&[
        "create",
        "--id",
        "hcsctl-verbs-embedded",
        doc.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(stdout(&output).trim(), "hcsctl-verbs-embedded");
    let err = stderr(&output);
    assert!(
        err.contains("warning: the host is the embedded one"),
        "{err}"
    );
    assert!(err.contains("ends with it"), "{err}");
    let json = hcsctl(&["--json", "create", doc.to_str().unwrap()]);
    assert_eq!(json.status.code(), Some(0), "{}", describe(&json));
    let value: Value = serde_json::from_str(stdout(&json).trim()).expect("JSON");
    assert_eq!(value["host"], "embedded", "{value}");
    assert!(value["system"]
        .as_str()
        .is_some_and(|id| id.starts_with("empty-vm-")));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = hcsctl(&["completions", shell]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            describe(&output)
        );
        let script = stdout(&output);
        assert!(script.contains("hcsctl"), "{shell}: {script}");
        for verb in ["list", "create", "terminate", "exec", "console"] {
            assert!(script.contains(verb), "{shell}: no {verb}");
        }
    }
}

#[test]
fn every_verb_has_help_with_an_example_and_exit_codes() {
    for verb in [
        "list",
        "create",
        "start",
        "pause",
        "resume",
        "shutdown",
        "terminate",
        "save",
        "wait",
        "properties",
        "modify",
        "events",
        "console",
        "exec",
        "completions",
    ] {
        let output = hcsctl(&[verb, "--help"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{verb}: {}",
            describe(&output)
        );
        let help = stdout(&output);
        assert!(help.contains("Example"), "{verb}: {help}");
        assert!(help.contains("Exit codes"), "{verb}: {help}");
        assert!(help.contains("--json"), "{verb}: {help}");
    }
    let top = stdout(&hcsctl(&["--help"]));
    for text in [
        "0  success",
        "1  an HCS call failed",
        "2  usage error",
        "CMD's own exit code",
    ] {
        assert!(top.contains(text), "no {text:?} in:\n{top}");
    }
}
