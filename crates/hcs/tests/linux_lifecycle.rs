//! Linux guests that stop: graceful shutdown through the agent, terminate with processes
//! running (each closing the guest connection before the exit, HCS-API §4.1), a kernel panic, a crash, QEMU killed from outside, and the documents that must
//! be refused (missing kernel, unreadable initrd, command line too long), and guests that
//! reboot: in place without `StopOnReset`, a graceful exit with it. Each test that
//! stops its VM boots its own. Rule numbers are HCS-API.md's.

mod common;
mod linux;

use hcs::{ComputeSystem, EventStream, EventType, HResult};
use serde_json::Value;
use std::time::{Duration, Instant};

/// One of these tests' VMs at a time: TCG boots of several at once on two cores would
/// only measure the contention.
static ONE_VM: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn booted(prefix: &str, document: &str) -> ComputeSystem {
    let id = common::unique_id(prefix);
    let system = ComputeSystem::create(&id, document).wait().expect("create");
    system.start().wait().expect("boot to agent-ready");
    system
}

fn exit_status(system: &ComputeSystem) -> Value {
    let status = system
        .wait_for_exit(Some(Duration::from_secs(60)))
        .expect("the system exits");
    serde_json::from_str(&status).unwrap()
}

/// The types of the events of `events` up to the exit, and of any that follow it within a
/// moment (so that a duplicate would show). `GuestConnectionClosed` carries no data.
fn events_through_exit(events: &EventStream) -> Vec<EventType> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while !seen.contains(&EventType::SystemExited) {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = events
            .recv_timeout(left)
            .unwrap_or_else(|| panic!("no SystemExited event; saw {seen:?}"));
        if event.event_type == EventType::SystemGuestConnectionClosed {
            assert_eq!(event.event_data, None, "GuestConnectionClosed has no data");
        }
        seen.push(event.event_type);
    }
    while let Some(event) = events.recv_timeout(Duration::from_millis(300)) {
        seen.push(event.event_type);
    }
    seen
}

fn sleeper(system: &ComputeSystem) -> hcs::Process {
    system
        .create_process(r#"{"CommandArgs":["sleep","1000"]}"#)
        .expect("sleep runs")
}

#[test]
fn rule_53_graceful_shutdown_through_the_agent_closes_the_guest_connection_then_exits_gracefully() {
    let _one = ONE_VM.lock();
    let system = booted("linux-shutdown", &linux::linux_vm());
    let events = system.events().expect("event callback");
    let process = sleeper(&system);
    system.shutdown(None).wait().expect("shutdown completes");
    // Rule 53: the exit is recorded before the shutdown completes.
    let status = exit_status(&system);
    assert_eq!(status["ExitType"], "GracefulExit", "{status}");
    assert_eq!(status["Status"], 0);
    // §4.1: the expected close of the guest connection is raised too, once, before the exit.
    assert_eq!(
        events_through_exit(&events),
        [
            EventType::SystemGuestConnectionClosed,
            EventType::SystemExited
        ]
    );
    // The agent ended the process before powering off; the host reports it lost.
    let ended = process
        .wait_for_exit(Some(Duration::from_secs(10)))
        .unwrap();
    let ended: Value = serde_json::from_str(&ended).unwrap();
    assert_eq!(ended["Exited"], true);
}

#[test]
fn rule_53_terminate_while_processes_run_closes_the_guest_connection_then_exits() {
    let _one = ONE_VM.lock();
    let system = booted("linux-terminate", &linux::linux_vm());
    let events = system.events().expect("event callback");
    let processes: Vec<_> = (0..3).map(|_| sleeper(&system)).collect();
    system.terminate().wait().expect("terminate");
    let status = exit_status(&system);
    assert_eq!(status["ExitType"], "ForcedExit");
    // §4.1: GuestConnectionClosed once, then the exit (rule 26: one exit event).
    assert_eq!(
        events_through_exit(&events),
        [
            EventType::SystemGuestConnectionClosed,
            EventType::SystemExited
        ]
    );
    for process in &processes {
        let error = process
            .wait_for_exit_code(Some(Duration::from_secs(10)))
            .unwrap_err();
        assert_eq!(error.hresult, HResult::HCS_E_TERMINATED);
    }
    // A process in a stopped system.
    let refused = system
        .create_process(r#"{"CommandArgs":["true"]}"#)
        .unwrap_err();
    assert_eq!(refused.hresult, HResult::HCS_E_SYSTEM_NOT_FOUND);
}

#[test]
fn rule_52_a_guest_kernel_panic_is_an_unexpected_exit_with_guest_critical_error() {
    let _one = ONE_VM.lock();
    let system = booted("linux-panic", &linux::linux_vm());
    let _ = system.create_process(r#"{"CommandArgs":["sh","-c","echo c > /proc/sysrq-trigger"]}"#);
    let status = exit_status(&system);
    assert_eq!(status["ExitType"], "UnexpectedExit", "{status}");
    assert_eq!(status["Status"], HResult::HCS_E_GUEST_CRITICAL_ERROR.0);
    assert_eq!(
        status["Attribution"][1]["WorkerExit"]["Detail"],
        "GuestCrash"
    );
}

#[test]
fn rule_52_hcs_crash_compute_system_panics_the_guest() {
    let _one = ONE_VM.lock();
    let system = booted("linux-crash", &linux::linux_vm());
    system
        .crash(None)
        .wait()
        .expect("the crash NMI is delivered");
    let status = exit_status(&system);
    assert_eq!(status["ExitType"], "UnexpectedExit", "{status}");
    assert_eq!(status["Status"], HResult::HCS_E_GUEST_CRITICAL_ERROR.0);
}

#[test]
fn qemu_killed_from_outside_is_an_unexpected_exit_and_nothing_is_left() {
    let _one = ONE_VM.lock();
    let system = booted("linux-killed", &linux::linux_vm());
    let process = sleeper(&system);
    let pids = linux::qemu_pids(system.id());
    assert_eq!(pids.len(), 1, "one QEMU for {}: {pids:?}", system.id());
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) }, 0);
    let status = exit_status(&system);
    assert_eq!(status["ExitType"], "UnexpectedExit", "{status}");
    assert_eq!(status["Status"], HResult::HCS_E_UNEXPECTED_EXIT.0);
    assert_eq!(
        status["Attribution"][1]["WorkerExit"]["Detail"],
        "ProcessUnexpectedExit"
    );
    assert!(process
        .wait_for_exit_code(Some(Duration::from_secs(10)))
        .is_err());
    // The system is gone: its id is free and nothing of it is left running.
    let reopened = ComputeSystem::open(system.id()).unwrap_err();
    assert_eq!(reopened.hresult, HResult::HCS_E_SYSTEM_NOT_FOUND);
    std::thread::sleep(Duration::from_millis(500));
    assert!(linux::qemu_pids(system.id()).is_empty());
}

fn refused(document: &str) -> hcs::Error {
    let id = common::unique_id("linux-refused");
    let error = ComputeSystem::create(&id, document).wait().unwrap_err();
    // Rule 48: nothing half-made, the id free.
    assert_eq!(
        ComputeSystem::open(&id).unwrap_err().hresult,
        HResult::HCS_E_SYSTEM_NOT_FOUND
    );
    assert!(linux::qemu_pids(&id).is_empty());
    error
}

#[test]
fn rule_53_shutdown_without_a_guest_connection_presses_the_power_button() {
    let _one = ONE_VM.lock();
    // The same guest without HvSocket and GuestConnection: the host cannot reach the
    // agent, and the start does not wait for the boot.
    let mut document: Value = serde_json::from_str(&linux::linux_vm()).unwrap();
    let vm = document["VirtualMachine"].as_object_mut().unwrap();
    vm.remove("GuestConnection");
    vm["Devices"].as_object_mut().unwrap().remove("HvSocket");
    let id = common::unique_id("linux-button");
    let system = ComputeSystem::create(&id, &document.to_string())
        .wait()
        .expect("create");
    let events = system.events().expect("event callback");
    system.start().wait().expect("start");
    // At once, during the boot: a press before the guest watches the button is lost, so
    // the host presses again until the guest's agent powers it off.
    system
        .shutdown(None)
        .wait()
        .expect("the guest powers off on the power button");
    let status = exit_status(&system);
    assert_eq!(status["ExitType"], "GracefulExit", "{status}");
    assert_eq!(status["Status"], 0);
    // §4.1: no guest connection, so no GuestConnectionClosed.
    assert_eq!(events_through_exit(&events), [EventType::SystemExited]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(linux::qemu_pids(&id).is_empty());
}

#[test]
fn qemu_killed_during_boot_fails_the_start_with_how_it_ended() {
    let _one = ONE_VM.lock();
    let id = common::unique_id("linux-killed-boot");
    let system = ComputeSystem::create(&id, &linux::linux_vm())
        .wait()
        .expect("create");
    let start = system.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let pid = loop {
        if let Some(pid) = linux::qemu_pids(&id).first() {
            break *pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no QEMU for {id} 30 s after start"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let error = start.wait().expect_err("the start fails");
    // The error document says what became of QEMU, in words.
    let message = message(&error);
    assert!(
        message.contains("QEMU") && message.contains("signal 9"),
        "{error:?}: {message}"
    );
    assert!(!message.contains("ProcessDied"), "{message}");
    let status = exit_status(&system);
    assert_eq!(status["ExitType"], "UnexpectedExit", "{status}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(linux::qemu_pids(&id).is_empty());
}

fn message(error: &hcs::Error) -> String {
    let document: Value = serde_json::from_str(error.document.as_deref().unwrap_or("{}")).unwrap();
    document["ErrorMessage"].as_str().unwrap_or("").to_owned()
}

#[test]
fn bad_documents_are_refused_naming_the_problem() {
    let good = linux::linux_vm();
    let kernel = serde_json::to_string(&linux::kernel()).unwrap();
    let initrd = serde_json::to_string(&linux::initrd()).unwrap();

    let missing = refused(&good.replace(&kernel, r#""/nonexistent/vmlinuz""#));
    assert_eq!(missing.hresult, HResult::ERROR_FILE_NOT_FOUND);
    assert!(
        message(&missing).contains("/nonexistent/vmlinuz"),
        "{}",
        message(&missing)
    );

    // A directory cannot be read as an initrd (root reads any file, whatever its mode).
    let unreadable = refused(&good.replace(&initrd, r#""/tmp""#));
    assert_eq!(unreadable.hresult, HResult::E_ACCESSDENIED);
    assert!(
        message(&unreadable).contains("InitRdPath"),
        "{}",
        message(&unreadable)
    );

    let long = "x".repeat(4096);
    let too_long = refused(&linux::linux_vm_with(512, &long, ""));
    assert_eq!(too_long.hresult, HResult::HCS_E_INVALID_JSON);
    assert!(
        message(&too_long).contains("KernelCmdLine"),
        "{}",
        message(&too_long)
    );

    let vhdx = refused(&linux::linux_vm_with(
        512,
        "",
        r#""Scsi":{"0":{"Attachments":{"0":{"Type":"VirtualDisk","Path":"/tmp/disk.vhdx"}}}}"#,
    ));
    assert_eq!(vhdx.hresult, HResult::ERROR_NOT_SUPPORTED);
}

#[test]
fn a_process_in_a_system_that_is_not_started_is_invalid_state() {
    let id = common::unique_id("linux-created");
    let system = ComputeSystem::create(&id, &linux::linux_vm())
        .wait()
        .unwrap();
    let error = system
        .create_process(r#"{"CommandArgs":["true"]}"#)
        .unwrap_err();
    assert_eq!(error.hresult, HResult::HCS_E_INVALID_STATE);
    system.terminate().wait().unwrap();
}

#[test]
fn com_port_is_a_unix_socket_in_the_pipe_directory_with_the_console() {
    let _one = ONE_VM.lock();
    let name = common::unique_id("com");
    let document = linux::linux_vm_with(
        512,
        "",
        &format!(r#""ComPorts":{{"0":{{"NamedPipe":"\\\\.\\pipe\\{name}"}}}}"#),
    );
    let id = common::unique_id("linux-com");
    let system = ComputeSystem::create(&id, &document)
        .wait()
        .expect("create");
    let socket = hcs::api::com_port_socket(&format!(r"\\.\pipe\{name}"))
        .expect("the host names the socket")
        .expect("a connected port");
    let mut console = std::os::unix::net::UnixStream::connect(&socket)
        .unwrap_or_else(|e| panic!("{}: {e}", socket.display()));
    // Read while the guest boots: a console nobody reads stalls the guest's serial port,
    // as on real hardware.
    console
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        // The kernel's console is ttyS0: everything until QEMU ends closes the socket.
        while let Ok(n) = std::io::Read::read(&mut console, &mut buffer) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    system.start().wait().expect("boot");
    system.terminate().wait().unwrap();
    let seen = reader.join().unwrap();
    assert!(seen.contains("hcs-guest"), "console output: {seen}");
}

/// The standard Linux VM without `StopOnReset`: a guest reset reboots it in place.
fn rebooting_vm() -> String {
    let mut document: Value = serde_json::from_str(&linux::linux_vm()).unwrap();
    let removed = document["VirtualMachine"]
        .as_object_mut()
        .unwrap()
        .remove("StopOnReset");
    assert_eq!(removed, Some(Value::Bool(true)));
    document.to_string()
}

/// Runs `echo back` as soon as the guest's agent takes processes again (within `within`):
/// its output and exit code.
fn echo_back(system: &ComputeSystem, within: Duration) -> (String, i32) {
    let deadline = Instant::now() + within;
    let mut process = loop {
        match system.create_process(r#"{"CommandArgs":["echo","back"],"CreateStdOutPipe":true}"#) {
            Ok(process) => break process,
            // No agent until the new boot's connects.
            Err(error) if error.hresult == HResult::HCS_E_CONNECTION_CLOSED => {
                assert!(
                    Instant::now() < deadline,
                    "no guest agent {within:?} after the reboot: {error:?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => panic!("create_process after the reboot: {error:?}"),
        }
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut process.take_stdout().unwrap(), &mut text).unwrap();
    let code = process
        .wait_for_exit_code(Some(Duration::from_secs(30)))
        .unwrap();
    (text, code)
}

fn state(system: &ComputeSystem) -> String {
    let properties: Value = serde_json::from_str(&system.properties(None).wait().unwrap()).unwrap();
    properties["State"].as_str().unwrap_or("").to_owned()
}

/// The next event within `timeout`, if any.
fn next_event(events: &EventStream, timeout: Duration) -> Option<EventType> {
    events.recv_timeout(timeout).map(|e| e.event_type)
}

#[test]
fn a_guest_that_reboots_itself_without_stop_on_reset_reboots_in_place() {
    let _one = ONE_VM.lock();
    let system = booted("linux-reboot", &rebooting_vm());
    let events = system.events().expect("event callback");
    let sleeping = sleeper(&system);
    // The agent may answer before the guest resets, or the connection may close first.
    let reboot = system.create_process(r#"{"CommandArgs":["reboot","-f"]}"#);
    if let Err(error) = &reboot {
        assert_eq!(error.hresult, HResult::HCS_E_CONNECTION_CLOSED, "{error:?}");
    }
    // The guest connection closes once; the system does not exit.
    assert_eq!(
        next_event(&events, Duration::from_secs(60)),
        Some(EventType::SystemGuestConnectionClosed)
    );
    // The processes of the old boot are lost with the connection.
    let lost = sleeping
        .wait_for_exit_code(Some(Duration::from_secs(10)))
        .unwrap_err();
    assert_eq!(lost.hresult, HResult::HCS_E_CONNECTION_CLOSED);
    assert_eq!(state(&system), "Running");
    let started = Instant::now();
    let (text, code) = echo_back(&system, Duration::from_secs(60));
    eprintln!("agent back {:?} after the reset", started.elapsed());
    assert_eq!((text.as_str(), code), ("back\n", 0));
    assert_eq!(state(&system), "Running");
    // Nothing else happened meanwhile: no exit, no second close.
    assert_eq!(next_event(&events, Duration::from_millis(300)), None);
    // The new boot's connection closes at the terminate, then the one exit.
    system.terminate().wait().expect("terminate");
    let status = exit_status(&system);
    assert_eq!(status["ExitType"], "ForcedExit", "{status}");
    assert_eq!(
        events_through_exit(&events),
        [
            EventType::SystemGuestConnectionClosed,
            EventType::SystemExited
        ]
    );
}

#[test]
fn shutdown_type_reboot_without_stop_on_reset_completes_and_the_guest_comes_back() {
    let _one = ONE_VM.lock();
    let system = booted("linux-reboot-op", &rebooting_vm());
    let events = system.events().expect("event callback");
    system
        .shutdown(Some(r#"{"Type":"Reboot"}"#))
        .wait()
        .expect("the reboot completes");
    assert_eq!(state(&system), "Running");
    assert_eq!(
        next_event(&events, Duration::from_secs(10)),
        Some(EventType::SystemGuestConnectionClosed)
    );
    let (text, code) = echo_back(&system, Duration::from_secs(60));
    assert_eq!((text.as_str(), code), ("back\n", 0));
    assert_eq!(state(&system), "Running");
    assert_eq!(next_event(&events, Duration::from_millis(300)), None);
    system.terminate().wait().expect("terminate");
    let status = exit_status(&system);
    assert_eq!(status["ExitType"], "ForcedExit", "{status}");
}

#[test]
fn a_guest_reset_with_stop_on_reset_is_a_graceful_exit() {
    let _one = ONE_VM.lock();
    let system = booted("linux-stop-on-reset", &linux::linux_vm());
    let _ = system.create_process(r#"{"CommandArgs":["reboot","-f"]}"#);
    let status = exit_status(&system);
    assert_eq!(status["ExitType"], "GracefulExit", "{status}");
    assert_eq!(status["Status"], 0);
}
