//! `hcsctl` as an operator uses it: the built binary, its exit codes and its output.
//!
//! `validate` needs no VM. The `run` tests boot the empty VM on the built-in VMM and need
//! `/dev/kvm`: without it they fail (never skip) with a message saying so.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const HCSCTL: &str = env!("CARGO_BIN_EXE_hcsctl");

/// Generous: the machine is shared and has two cores.
const TIMEOUT: Duration = Duration::from_secs(60);

fn empty_vm() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/empty-vm.json")
}

fn hcsctl(args: &[&str]) -> Output {
    Command::new(HCSCTL)
        .args(args)
        .output()
        .expect("hcsctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `json` to a file of its own under the test target's temporary directory.
fn document(name: &str, json: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hcsctl-tests");
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, json).expect("document written");
    path
}

/// The empty VM with `topology` as its ComputeTopology and `chipset` as its Chipset.
fn vm_document(name: &str, chipset: &str, topology: &str) -> PathBuf {
    document(
        name,
        &format!(
            r#"{{"SchemaVersion":{{"Major":2,"Minor":1}},"Owner":"hcsctl-test",
                "VirtualMachine":{{"Chipset":{chipset},"ComputeTopology":{topology}}},
                "ShouldTerminateOnLastHandleClosed":true}}"#
        ),
    )
}

fn require_kvm() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: the `hcsctl run` tests boot a VM on the built-in VMM and need \
         KVM (load kvm_intel, kvm_amd or kvm_pvm); they fail rather than skip"
    );
}

/// Runs `hcsctl validate` with and without `--json` and checks both reports: exit 1, every
/// `(path, HRESULT name, HRESULT value)` expected present.
fn assert_invalid(doc: &Path, expected: &[(&str, &str, u32)]) {
    let path = doc.to_str().expect("UTF-8 path");
    let text = hcsctl(&["validate", path]);
    assert_eq!(
        text.status.code(),
        Some(1),
        "{}{}",
        stdout(&text),
        stderr(&text)
    );
    let out = stdout(&text);
    for (json_path, name, value) in expected {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("error: {json_path}: ")))
            .unwrap_or_else(|| panic!("no error at {json_path} in:\n{out}"));
        assert!(
            line.ends_with(&format!("[{name} (0x{value:08X})]")),
            "{line}"
        );
    }

    let json = hcsctl(&["validate", "--json", path]);
    assert_eq!(json.status.code(), Some(1), "{}", stderr(&json));
    let report: Value = serde_json::from_str(stdout(&json).trim()).expect("one JSON report");
    assert_eq!(report["valid"], false);
    let errors = report["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), out.lines().count(), "{report}");
    for (json_path, name, value) in expected {
        let error = errors
            .iter()
            .find(|e| e["path"] == *json_path)
            .unwrap_or_else(|| panic!("no error at {json_path} in {report}"));
        assert_eq!(error["hresultName"], *name);
        assert_eq!(error["hresult"].as_i64(), Some(i64::from(*value as i32)));
        assert!(!error["message"].as_str().unwrap_or("").is_empty());
    }
}

const INVALID_JSON: (&str, u32) = ("HCS_E_INVALID_JSON", 0x8037_010D);
const UEFI: &str = r#"{"Uefi":{}}"#;

#[test]
fn validate_accepts_the_empty_vm() {
    let path = empty_vm();
    let path = path.to_str().expect("UTF-8 path");
    let text = hcsctl(&["validate", path]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let out = stdout(&text);
    assert!(out.starts_with("ok: "), "{out}");
    assert!(
        out.contains(
            "is a valid ComputeSystem document (VirtualMachine, 2 vCPUs, 1024 MB, engine:"
        ),
        "{out}"
    );

    let json = hcsctl(&["validate", "--json", path]);
    assert_eq!(json.status.code(), Some(0));
    let report: Value = serde_json::from_str(stdout(&json).trim()).expect("JSON report");
    assert_eq!(report["valid"], true);
    assert_eq!(report["errors"], Value::Array(Vec::new()));
}

#[test]
fn validate_names_an_unknown_property() {
    let doc = document(
        "unknown-field",
        r#"{"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},
            "ComputeTopology":{"Memory":{"SizeInMB":1024},"Processor":{"Count":2,"Countt":3}}}}"#,
    );
    assert_invalid(
        &doc,
        &[(
            "$.VirtualMachine.ComputeTopology.Processor.Countt",
            INVALID_JSON.0,
            INVALID_JSON.1,
        )],
    );
}

#[test]
fn validate_refuses_zero_processors() {
    let doc = vm_document(
        "count-0",
        UEFI,
        r#"{"Memory":{"SizeInMB":1024},"Processor":{"Count":0}}"#,
    );
    assert_invalid(
        &doc,
        &[(
            "$.VirtualMachine.ComputeTopology.Processor.Count",
            INVALID_JSON.0,
            INVALID_JSON.1,
        )],
    );
}

#[test]
fn validate_refuses_zero_memory_and_reports_every_error() {
    let doc = vm_document(
        "size-0",
        UEFI,
        r#"{"Memory":{"SizeInMB":0},"Processor":{"Count":0}}"#,
    );
    assert_invalid(
        &doc,
        &[
            (
                "$.VirtualMachine.ComputeTopology.Memory.SizeInMB",
                INVALID_JSON.0,
                INVALID_JSON.1,
            ),
            (
                "$.VirtualMachine.ComputeTopology.Processor.Count",
                INVALID_JSON.0,
                INVALID_JSON.1,
            ),
        ],
    );
}

#[test]
fn validate_refuses_malformed_json() {
    let doc = document("malformed", r#"{"SchemaVersion": {"Major": 2,"#);
    let output = hcsctl(&["validate", doc.to_str().expect("UTF-8 path")]);
    assert!(
        stdout(&output).contains("malformed JSON"),
        "{}",
        stdout(&output)
    );
    assert_invalid(&doc, &[("$.SchemaVersion", INVALID_JSON.0, INVALID_JSON.1)]);
}

#[test]
fn validate_requires_a_schema_version() {
    let doc = document(
        "no-schema-version",
        r#"{"VirtualMachine":{"Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{"SizeInMB":1024}}}}"#,
    );
    assert_invalid(&doc, &[("$.SchemaVersion", INVALID_JSON.0, INVALID_JSON.1)]);
}

#[test]
fn validate_names_a_missing_kernel_file() {
    let doc = vm_document(
        "linux-kernel-direct",
        r#"{"LinuxKernelDirect":{"KernelFilePath":"/nonexistent/vmlinuz","KernelCmdLine":"console=ttyS0"}}"#,
        r#"{"Memory":{"SizeInMB":512},"Processor":{"Count":1}}"#,
    );
    assert_invalid(
        &doc,
        &[(
            "$.VirtualMachine.Chipset.LinuxKernelDirect.KernelFilePath",
            "HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)",
            0x8007_0002,
        )],
    );
}

#[test]
fn unreadable_files_exit_2_naming_the_file() {
    for command in ["run", "validate"] {
        let output = hcsctl(&[command, "/nonexistent/hcsctl/doc.json"]);
        assert_eq!(output.status.code(), Some(2), "{command}");
        let err = stderr(&output);
        assert!(err.contains("/nonexistent/hcsctl/doc.json"), "{err}");
        assert!(err.contains("No such file or directory"), "{err}");
        assert!(stdout(&output).is_empty());
    }
}

#[test]
fn run_of_an_invalid_document_reports_the_hresult_and_exits_1() {
    let doc = vm_document(
        "run-count-0",
        UEFI,
        r#"{"Memory":{"SizeInMB":1024},"Processor":{"Count":0}}"#,
    );
    let output = hcsctl(&["run", doc.to_str().expect("UTF-8 path")]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains(
            "error: HCS_E_INVALID_JSON (0x8037010D): $.VirtualMachine.ComputeTopology.Processor.Count: "
        ),
        "{err}"
    );
    assert!(stdout(&output).is_empty(), "nothing was created");
}

#[test]
fn help_explains_each_subcommand_with_an_example() {
    for args in [
        &["--help"][..],
        &["run", "--help"][..],
        &["validate", "--help"][..],
        &["help", "run"][..],
    ] {
        let output = hcsctl(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let out = stdout(&output);
        assert!(out.contains("Usage:"), "{args:?}: {out}");
        assert!(out.contains("Example"), "{args:?}: {out}");
    }
    let run = stdout(&hcsctl(&["run", "--help"]));
    assert!(run.contains("--json") && run.contains("--id"), "{run}");
    let usage = hcsctl(&["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
}

/// A running `hcsctl run`, killed if the test ends early.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(args: &[&str]) -> Running {
        let mut child = Command::new(HCSCTL)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hcsctl starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// Collects lines until one matches `done` (returned last) or the timeout.
    fn read_until(&self, seen: &mut Vec<String>, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let matched = done(&line);
                    seen.push(line);
                    if matched {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Like [`Running::read_until`], but a miss fails the test with hcsctl's stderr.
    fn expect_line(&mut self, seen: &mut Vec<String>, what: &str, done: impl Fn(&str) -> bool) {
        if self.read_until(seen, done) {
            return;
        }
        let _ = self.child.kill();
        let (code, err) = self.wait();
        panic!("no {what} line (hcsctl ended, or {TIMEOUT:?} passed); exit {code:?}; stdout: {seen:?}; stderr: {err}");
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped; no memory is
        // involved.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// The exit code, within the timeout; stderr for messages.
    fn wait(&mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => {
                    let mut err = String::new();
                    if let Some(mut stderr) = self.child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
                    }
                    return (status.code(), err);
                }
                None if Instant::now() > deadline => panic!("hcsctl did not exit in {TIMEOUT:?}"),
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn run_prints_lifecycle_and_exits_0_on_sigterm() {
    require_kvm();
    let path = empty_vm();
    let mut running = Running::spawn(&["run", path.to_str().expect("UTF-8 path")]);
    let mut seen = Vec::new();
    running.expect_line(&mut seen, "'started'", |l| l.contains("  started "));
    assert!(seen[0].contains("  created empty-vm-"), "{seen:?}");
    assert!(seen[1].contains("(2 vCPUs, 1024 MB)"), "{seen:?}");

    running.signal(libc::SIGTERM);
    running.expect_line(&mut seen, "SystemExited", |l| {
        l.contains("  SystemExited  ")
    });
    let last = seen.last().map(String::as_str).unwrap_or("");
    assert!(
        last.contains("SystemExited  ForcedExit status=0x00000000"),
        "{last}"
    );
    // `<RFC3339 time>  <event>  <detail>`
    let time = last.split("  ").next().unwrap_or("");
    assert!(
        time.len() >= 20 && time.ends_with('Z') && time.contains('T'),
        "{last}"
    );

    let (code, err) = running.wait();
    assert_eq!(code, Some(0), "stderr: {err}; stdout: {seen:?}");
    assert!(err.contains("running; press Ctrl-C to terminate"), "{err}");
}

#[test]
fn run_json_prints_one_object_per_line() {
    require_kvm();
    let path = empty_vm();
    let mut running = Running::spawn(&[
        "run",
        "--json",
        "--id",
        "hcsctl-json-test",
        path.to_str().expect("UTF-8 path"),
    ]);
    let mut seen = Vec::new();
    running.expect_line(&mut seen, "Started", |l| l.contains(r#""event":"Started""#));

    running.signal(libc::SIGINT);
    running.expect_line(&mut seen, "SystemExited", |l| {
        l.contains(r#""event":"SystemExited""#)
    });
    let (code, err) = running.wait();
    assert_eq!(code, Some(0), "stderr: {err}");
    // Anything printed after the exit event, too.
    seen.extend(running.lines.try_iter());

    let objects: Vec<Value> = seen
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for object in &objects {
        assert_eq!(object["system"], "hcsctl-json-test", "{object}");
        assert!(object["time"].is_string(), "{object}");
    }
    let events: Vec<&str> = objects.iter().filter_map(|o| o["event"].as_str()).collect();
    assert_eq!(events.first(), Some(&"Created"), "{events:?}");
    assert_eq!(events.get(1), Some(&"Started"), "{events:?}");
    assert_eq!(events.last(), Some(&"SystemExited"), "{events:?}");
    let started = &objects[1]["data"];
    assert_eq!(started["ProcessorCount"], 2);
    assert_eq!(started["MemorySizeInMB"], 1024);
    let exit = &objects[objects.len() - 1]["data"];
    assert_eq!(exit["ExitType"], "ForcedExit");
    assert_eq!(exit["Status"], 0);
    assert!(
        !err.contains("press Ctrl-C"),
        "no prompt in --json mode: {err}"
    );
}

#[test]
fn a_second_signal_while_terminating_is_ignored() {
    require_kvm();
    let path = empty_vm();
    let mut running = Running::spawn(&["run", path.to_str().expect("UTF-8 path")]);
    let mut seen = Vec::new();
    running.expect_line(&mut seen, "'started'", |l| l.contains("  started "));
    running.signal(libc::SIGINT);
    running.signal(libc::SIGTERM);
    running.signal(libc::SIGINT);
    running.expect_line(&mut seen, "SystemExited", |l| {
        l.contains("  SystemExited  ")
    });
    let (code, err) = running.wait();
    assert_eq!(code, Some(0), "stderr: {err}; stdout: {seen:?}");
    let terminating = seen.iter().filter(|l| l.contains("  terminating ")).count();
    assert_eq!(terminating, 1, "one terminate only: {seen:?}");
}
