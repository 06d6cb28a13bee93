//! Linux guests end to end (issue "Linux guests"): a real Debian kernel under QEMU, the
//! `hcs-guest` agent as its init, and processes run through the HCS process functions.
//!
//! One VM is shared by the tests that only run processes (booting one takes seconds under
//! TCG); tests that stop their VM boot their own. Rule numbers are HCS-API.md's.

mod common;
mod linux;

use hcs::{api, event_options, ComputeSystem, Event, EventType, HResult, Process};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The shared VM, booted on first use (Start waits for the agent: boot to agent-ready).
fn shared() -> &'static ComputeSystem {
    static SYSTEM: OnceLock<ComputeSystem> = OnceLock::new();
    SYSTEM.get_or_init(|| {
        let system = ComputeSystem::create(&common::unique_id("linux-shared"), &linux::linux_vm())
            .wait()
            .expect("create the shared Linux VM");
        system
            .start()
            .wait()
            .expect("boot the shared Linux VM to agent-ready");
        system
    })
}

fn params(args: &[&str], extra: Value) -> String {
    let mut doc = json!({
        "CommandArgs": args,
        "CreateStdOutPipe": true,
        "CreateStdErrPipe": true,
    });
    if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            doc.insert(k.clone(), v.clone());
        }
    }
    doc.to_string()
}

/// Runs a command to its end: (exit code, stdout, stderr).
fn run(system: &ComputeSystem, args: &[&str], extra: Value) -> (i32, String, String) {
    let mut process = system
        .create_process(&params(args, extra))
        .unwrap_or_else(|e| panic!("create {args:?}: {e}"));
    let mut out = String::new();
    let mut err = String::new();
    let mut stdout = process.take_stdout().expect("stdout pipe");
    let mut stderr = process.take_stderr().expect("stderr pipe");
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        stderr.read_to_string(&mut err).unwrap();
        err
    });
    stdout.read_to_string(&mut out).unwrap();
    err.push_str(&reader.join().unwrap());
    let code = process
        .wait_for_exit_code(Some(Duration::from_secs(60)))
        .expect("the process exits");
    (code, out, err)
}

#[test]
fn boot_to_agent_ready_reports_the_guest_connection() {
    let system = shared();
    let properties = system
        .properties(Some(r#"{"PropertyTypes":["GuestConnection"]}"#))
        .wait()
        .unwrap();
    let properties: Value = serde_json::from_str(&properties).unwrap();
    assert_eq!(properties["State"], "Running");
    assert_eq!(properties["RuntimeOsType"], "Linux");
    let info = &properties["GuestConnectionInfo"];
    assert_eq!(info["ProtocolVersion"], 1, "{properties}");
    assert!(
        info["GuestDefinedCapabilities"]["Kernel"]
            .as_str()
            .is_some_and(|k| k.contains("cloud-amd64")),
        "{properties}"
    );
}

#[test]
fn rule_39_echo_hello_gives_a_pid_and_the_requested_pipes_only() {
    let system = shared();
    let operation = hcs::Operation::new();
    let handle = api::create_process(
        system.handle(),
        r#"{"CommandLine":"echo hello","CreateStdOutPipe":true}"#,
        operation.handle(),
        None,
    )
    .unwrap();
    operation.wait(Some(Duration::from_secs(60))).unwrap();
    let info = api::get_operation_process_information(operation.handle()).unwrap();
    assert!(info.process_id > 0);
    assert!(info.std_input.is_none() && info.std_error.is_none());
    let fd = info.std_output.expect("stdout was asked for");
    // SAFETY: the getter handed this descriptor to us.
    let mut stdout = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut text = String::new();
    stdout.read_to_string(&mut text).unwrap();
    assert_eq!(text, "hello\n");
    // Rule 40: HcsGetProcessInfo gives the same pid later.
    let again = hcs::Operation::new();
    assert_eq!(api::get_process_info(handle, again.handle()), HResult::S_OK);
    again.wait(Some(Duration::from_secs(10))).unwrap();
    let later = api::get_operation_process_information(again.handle()).unwrap();
    assert_eq!(later.process_id, info.process_id);
    let (result, status) = api::wait_for_process_exit(handle, 60_000);
    assert_eq!(result, HResult::S_OK);
    let status: Value = serde_json::from_str(&status.unwrap()).unwrap();
    assert_eq!(status["Exited"], true);
    assert_eq!(status["ExitCode"], 0);
    api::close_process(handle);
}

#[test]
fn exit_codes_and_stderr_apart_from_stdout() {
    let system = shared();
    assert_eq!(run(system, &["true"], json!({})).0, 0);
    assert_eq!(run(system, &["false"], json!({})).0, 1);
    let (code, out, err) = run(
        system,
        &["sh", "-c", "echo to-out; echo to-err >&2; exit 42"],
        json!({}),
    );
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (42, "to-out\n", "to-err\n")
    );
}

#[test]
fn environment_and_working_directory() {
    let (code, out, _) = run(
        shared(),
        &["sh", "-c", "echo $GREETING; pwd"],
        json!({"Environment": {"GREETING": "hi there"}, "WorkingDirectory": "/tmp"}),
    );
    assert_eq!((code, out.as_str()), (0, "hi there\n/tmp\n"));
}

#[test]
fn stdin_piped_to_cat_then_eof() {
    let mut process = shared()
        .create_process(&params(&["cat"], json!({"CreateStdInPipe": true})))
        .unwrap();
    let mut stdin = process.take_stdin().unwrap();
    let mut stdout = process.take_stdout().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(b"line one\nline two\n").unwrap();
        // Dropping stdin gives cat EOF.
    });
    let mut text = String::new();
    stdout.read_to_string(&mut text).unwrap();
    writer.join().unwrap();
    assert_eq!(text, "line one\nline two\n");
    assert_eq!(
        process
            .wait_for_exit_code(Some(Duration::from_secs(30)))
            .unwrap(),
        0
    );
}

#[test]
fn closing_stdin_through_modify_process_gives_eof_and_cat_exits() {
    let mut process = shared()
        .create_process(&params(&["cat"], json!({"CreateStdInPipe": true})))
        .unwrap();
    let mut stdin = process.take_stdin().unwrap();
    let mut stdout = process.take_stdout().unwrap();
    stdin.write_all(b"kept\n").unwrap();
    let mut echoed = [0u8; 5];
    stdout.read_exact(&mut echoed).unwrap();
    // The close is asked for with our end of stdin still open: only the modify ends cat.
    process
        .modify(r#"{"Operation":"CloseHandle","CloseHandle":{"Handle":"StdIn"}}"#)
        .wait()
        .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(
        process
            .wait_for_exit_code(Some(Duration::from_secs(30)))
            .unwrap(),
        0
    );
    assert_eq!(
        format!("{}{rest}", String::from_utf8_lossy(&echoed)),
        "kept\n"
    );
    drop(stdin);
}

#[test]
fn closing_stdin_right_after_writing_keeps_every_byte_written() {
    let mut process = shared()
        .create_process(&params(&["cat"], json!({"CreateStdInPipe": true})))
        .unwrap();
    let mut stdin = process.take_stdin().unwrap();
    let mut stdout = process.take_stdout().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        stdout.read_to_end(&mut all).unwrap();
        all
    });
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    stdin.write_all(&data).unwrap();
    // At once: the close travels on the control connection and overtakes bytes still on
    // their way through the vsock device; the agent drains them before closing.
    process
        .modify(r#"{"Operation":"CloseHandle","CloseHandle":{"Handle":"StdIn"}}"#)
        .wait()
        .unwrap();
    let echoed = reader.join().unwrap();
    assert_eq!(echoed.len(), data.len(), "bytes lost at the close");
    assert!(echoed == data, "bytes changed on the way");
    assert_eq!(
        process
            .wait_for_exit_code(Some(Duration::from_secs(30)))
            .unwrap(),
        0
    );
    drop(stdin);
}

#[test]
fn the_process_list_property_lists_the_guest_processes() {
    let system = shared();
    let process = system
        .create_process(&params(&["sleep", "600"], json!({})))
        .unwrap();
    let pid = process.pid();
    let properties = system
        .properties(Some(r#"{"PropertyTypes":["ProcessList"]}"#))
        .wait()
        .unwrap();
    let properties: Value = serde_json::from_str(&properties).unwrap();
    let list = properties["ProcessList"].as_array().expect("a ProcessList");
    let sleep = list
        .iter()
        .find(|p| p["ProcessId"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not in {list:?}"));
    assert_eq!(sleep["ImageName"], "sleep", "{sleep}");
    // The agent is PID 1 of the guest.
    assert!(list.iter().any(|p| p["ProcessId"] == 1), "{list:?}");
    // Only when asked for.
    let plain: Value = serde_json::from_str(&system.properties(None).wait().unwrap()).unwrap();
    assert!(plain.get("ProcessList").is_none(), "{plain}");
    process.terminate().wait().unwrap();
}

#[test]
fn console_size_at_create_and_through_modify_process() {
    let mut process = shared()
        .create_process(&params(
            &["sh", "-c", "stty size; read line; stty size"],
            json!({"EmulateConsole": true, "ConsoleSize": [30, 90], "CreateStdInPipe": true}),
        ))
        .unwrap();
    // With a console, stderr goes to the terminal: no pipe of its own.
    assert!(process.take_stderr().is_none());
    let mut stdin = process.take_stdin().unwrap();
    let mut stdout = process.take_stdout().unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains('\n') {
        let n = stdout.read(&mut buffer).unwrap();
        assert!(n > 0, "end of output before the first size: {seen:?}");
        seen.extend_from_slice(&buffer[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&seen), "30 90\r\n");
    process
        .modify(r#"{"Operation":"ConsoleSize","ConsoleSize":{"Height":40,"Width":100}}"#)
        .wait()
        .unwrap();
    stdin.write_all(b"go\n").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(
        process
            .wait_for_exit_code(Some(Duration::from_secs(30)))
            .unwrap(),
        0
    );
    // The terminal echoes the typed line, then the new size.
    assert_eq!(rest, "go\r\n40 100\r\n");
    drop(stdin);
    // Without a console there is nothing to resize.
    let plain = shared()
        .create_process(&params(&["sleep", "1000"], json!({})))
        .unwrap();
    assert_eq!(
        plain
            .modify(r#"{"Operation":"ConsoleSize","ConsoleSize":{"Height":40,"Width":100}}"#)
            .wait()
            .unwrap_err()
            .hresult,
        HResult::E_INVALIDARG
    );
    plain.terminate().wait().unwrap();
}

#[test]
fn rule_42_process_properties_while_running_and_after_the_exit() {
    let system = shared();
    let running = system
        .create_process(&params(&["sleep", "1000"], json!({})))
        .unwrap();
    let status: Value = serde_json::from_str(&running.properties().wait().unwrap()).unwrap();
    assert_eq!(status["ProcessId"], running.pid(), "{status}");
    assert_eq!(status["Exited"], false, "{status}");
    assert!(status.get("ExitCode").is_none(), "{status}");
    running.terminate().wait().unwrap();
    running
        .wait_for_exit_code(Some(Duration::from_secs(30)))
        .unwrap();
    let status: Value = serde_json::from_str(&running.properties().wait().unwrap()).unwrap();
    assert_eq!(status["Exited"], true, "{status}");
    assert_eq!(status["ExitCode"], 128 + 9, "{status}");

    let exited = system
        .create_process(&params(&["sh", "-c", "exit 5"], json!({})))
        .unwrap();
    assert_eq!(
        exited
            .wait_for_exit_code(Some(Duration::from_secs(30)))
            .unwrap(),
        5
    );
    let status: Value = serde_json::from_str(&exited.properties().wait().unwrap()).unwrap();
    assert_eq!(status["ProcessId"], exited.pid(), "{status}");
    assert_eq!(status["Exited"], true, "{status}");
    assert_eq!(status["ExitCode"], 5, "{status}");
    assert_eq!(status["LastWaitResult"], 0, "{status}");
}

#[test]
fn a_hundred_megabytes_through_stdout_without_loss() {
    const SIZE: usize = 100 << 20;
    let mut process = shared()
        .create_process(&params(
            &[
                "sh",
                "-c",
                "head -c 104857600 /dev/urandom >/tmp/big && cat /tmp/big && md5sum /tmp/big >&2",
            ],
            json!({}),
        ))
        .unwrap();
    let mut stdout = process.take_stdout().unwrap();
    let mut stderr = process.take_stderr().unwrap();
    let mut total = 0usize;
    let mut digest = md5::Context::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = stdout.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        digest.consume(&buffer[..n]);
        total += n;
    }
    let mut guest_sum = String::new();
    stderr.read_to_string(&mut guest_sum).unwrap();
    assert_eq!(
        process
            .wait_for_exit_code(Some(Duration::from_secs(60)))
            .unwrap(),
        0
    );
    assert_eq!(total, SIZE);
    let ours = format!("{:x}", digest.compute());
    assert_eq!(guest_sum.split_whitespace().next(), Some(ours.as_str()));
    run(shared(), &["rm", "-f", "/tmp/big"], json!({}));
}

#[test]
fn rule_41_signals_reach_the_process_and_an_exited_one_answers_already_stopped() {
    let process = shared()
        .create_process(&params(&["sleep", "1000"], json!({})))
        .unwrap();
    process.signal(Some(r#"{"Signal":15}"#)).wait().unwrap();
    assert_eq!(
        process
            .wait_for_exit_code(Some(Duration::from_secs(30)))
            .unwrap(),
        128 + 15
    );
    let again = process
        .signal(Some(r#"{"Signal":"CtrlC"}"#))
        .wait()
        .unwrap_err();
    assert_eq!(again.hresult, HResult::HCS_E_PROCESS_ALREADY_STOPPED);
    let terminate = process.terminate().wait().unwrap_err();
    assert_eq!(terminate.hresult, HResult::HCS_E_PROCESS_ALREADY_STOPPED);

    let killed = shared()
        .create_process(&params(&["sleep", "1000"], json!({})))
        .unwrap();
    killed.terminate().wait().unwrap();
    assert_eq!(
        killed
            .wait_for_exit_code(Some(Duration::from_secs(30)))
            .unwrap(),
        128 + 9
    );
}

#[test]
fn rule_35_process_exited_reaches_the_process_callback_once() {
    let process = shared()
        .create_process(&params(&["sh", "-c", "sleep 0.5; exit 7"], json!({})))
        .unwrap();
    let (sender, receiver) = crossbeam_channel::unbounded::<Event>();
    let registered = api::set_process_callback(
        process.handle(),
        event_options::NONE,
        0,
        Some(Arc::new(move |event: &Event, _| {
            let _ = sender.send(event.clone());
        })),
    );
    assert_eq!(registered, HResult::S_OK);
    let event = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("ProcessExited");
    assert_eq!(event.event_type, EventType::ProcessExited);
    let status: Value = serde_json::from_str(event.event_data.as_deref().unwrap()).unwrap();
    assert_eq!(status["ProcessId"], process.pid());
    assert_eq!(status["ExitCode"], 7);
    assert_eq!(status["LastWaitResult"], 0);
    assert!(
        receiver.recv_timeout(Duration::from_millis(300)).is_err(),
        "only once"
    );
}

#[test]
fn fifty_processes_at_once() {
    let system = shared();
    let processes: Vec<Process> = (0..50)
        .map(|i| {
            system
                .create_process(&params(
                    &["sh", "-c", &format!("echo {i}; exit {}", i % 7)],
                    json!({}),
                ))
                .unwrap()
        })
        .collect();
    for (i, mut process) in processes.into_iter().enumerate() {
        let mut out = String::new();
        process
            .take_stdout()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, format!("{i}\n"));
        assert_eq!(
            process
                .wait_for_exit_code(Some(Duration::from_secs(60)))
                .unwrap(),
            (i % 7) as i32
        );
    }
}

#[test]
fn open_process_by_pid_and_bad_process_requests() {
    let system = shared();
    let process = system
        .create_process(&params(&["sleep", "1000"], json!({})))
        .unwrap();
    let opened = system.open_process(process.pid()).unwrap();
    let info = hcs::Operation::new();
    assert_eq!(
        api::get_process_info(opened.handle(), info.handle()),
        HResult::S_OK
    );
    assert_eq!(
        info.wait(Some(Duration::from_secs(10)))
            .unwrap_err()
            .hresult,
        HResult::HCS_E_PROCESS_INFO_NOT_AVAILABLE
    );
    opened.terminate().wait().unwrap();
    assert_eq!(
        process
            .wait_for_exit_code(Some(Duration::from_secs(30)))
            .unwrap(),
        137
    );
    let gone = system.open_process(process.pid()).unwrap_err();
    assert_eq!(gone.hresult, HResult::ERROR_NOT_FOUND);
    let missing = system
        .create_process(&params(&["/no/such/program"], json!({})))
        .unwrap_err();
    assert_eq!(missing.hresult, HResult::ERROR_FILE_NOT_FOUND);
    let empty = system.create_process(r#"{"CommandLine":""}"#).unwrap_err();
    assert_eq!(empty.hresult, HResult::E_INVALIDARG);
    let bad_signal = system
        .create_process(&params(&["sleep", "1000"], json!({})))
        .unwrap();
    assert_eq!(
        bad_signal
            .signal(Some(r#"{"Signal":99}"#))
            .wait()
            .unwrap_err()
            .hresult,
        HResult::E_INVALIDARG
    );
    bad_signal.terminate().wait().unwrap();
}
