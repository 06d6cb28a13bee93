//! The host's rules against a scripted engine (`hcs_test_support::FakeEngine`): every row
//! of the HCS-API §3.3 state table through a session, rules 53 and 54, the create checks,
//! and the guest session's edges. No `/dev/kvm`, no QEMU: each test takes milliseconds.
//! The same rules are tested again on real VMs by the `hcs` and `hcsd` suites.

use crate::{Host, HostConfig, Session};
use hcs_engine::{EngineError, EngineExit, EngineLimits};
use hcs_protocol::{Diagnostic, HostMessage, Notification, Request, RequestBody, SystemRequest};
use hcs_schema::HResult;
use hcs_test_support::{Call, FakeEngine, Recorder};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A host on a fake engine, one session on it, and what the session received.
struct Harness {
    engine: FakeEngine,
    _host: Host,
    sink: Arc<Recorder>,
    session: Session,
    next_id: AtomicU64,
    dir: PathBuf,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

impl Harness {
    fn new() -> Harness {
        Harness::with_engine(FakeEngine::new())
    }

    fn with_engine(engine: FakeEngine) -> Harness {
        let dir = std::env::temp_dir().join(format!(
            "hcs-host-unit-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // A "kernel" that exists and can be read: the plan checks no more.
        std::fs::write(dir.join("vmlinuz"), b"not a kernel").unwrap();
        let config = HostConfig {
            runtime_dir: dir.join("run"),
            guest_connect_timeout: Duration::from_millis(200),
            test_hooks: true,
            qemu: Default::default(),
        };
        let host = Host::new(config, vec![Arc::new(engine.clone())]);
        let sink = Arc::new(Recorder::default());
        let session = host.open_session(sink.clone());
        Harness {
            engine,
            _host: host,
            sink,
            session,
            next_id: AtomicU64::new(1),
            dir,
        }
    }

    /// A Linux guest without a guest connection: shut down through the power button.
    fn linux_vm(&self, extra: &str) -> String {
        format!(
            r#"{{"SchemaVersion":{{"Major":2,"Minor":1}},"Owner":"unit",{extra}
            "VirtualMachine":{{"Chipset":{{"LinuxKernelDirect":{{"KernelFilePath":"{}",
            "KernelCmdLine":"console=ttyS0"}}}},
            "ComputeTopology":{{"Memory":{{"SizeInMB":256}},"Processor":{{"Count":2}}}}}}}}"#,
            self.dir.join("vmlinuz").display()
        )
    }

    fn send(&self, body: RequestBody) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.session.send(Request { id, body });
        id
    }

    /// Waits for the reply to `id`: its position among the messages, code and document.
    fn reply(&self, id: u64) -> (usize, HResult, Option<String>) {
        let (at, reply) = self.sink.reply(id);
        (at, reply.result, reply.document)
    }

    fn call(&self, body: RequestBody) -> HResult {
        let id = self.send(body);
        self.reply(id).1
    }

    fn on(&self, handle: u64, request: SystemRequest) -> HResult {
        self.call(RequestBody::System { handle, request })
    }

    fn create(&self, handle: u64, id: &str, configuration: String) -> HResult {
        self.call(RequestBody::CreateSystem {
            handle,
            id: id.into(),
            configuration,
        })
    }

    /// The positions of the `GuestConnectionClosed` told to `handle`.
    fn connection_closes(&self, handle: u64) -> Vec<usize> {
        self.sink
            .messages
            .lock()
            .iter()
            .enumerate()
            .filter_map(|(at, m)| match m {
                HostMessage::Notification(Notification::GuestConnectionClosed { handle: h })
                    if *h == handle =>
                {
                    Some(at)
                }
                _ => None,
            })
            .collect()
    }

    /// Waits until `handle`'s system has an agent connected (its `GuestConnection`
    /// properties name the fake agent).
    fn wait_agent(&self, handle: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let id = self.send(RequestBody::System {
                handle,
                request: SystemRequest::GetProperties(Some(
                    r#"{"PropertyTypes":["GuestConnection"]}"#.into(),
                )),
            });
            let (_, result, document) = self.reply(id);
            assert_eq!(result, HResult::S_OK);
            if document.unwrap_or_default().contains("fake-agent") {
                return;
            }
            assert!(Instant::now() < deadline, "the agent did not connect");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The positions and statuses of the `SystemExited` told to `handle`.
    fn exits(&self, handle: u64) -> Vec<(usize, String)> {
        self.sink
            .messages
            .lock()
            .iter()
            .enumerate()
            .filter_map(|(at, m)| match m {
                HostMessage::Notification(Notification::SystemExited { handle: h, status })
                    if *h == handle =>
                {
                    Some((at, status.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Waits until `handle` was told its system exited; its position and status.
    fn wait_exit(&self, handle: u64) -> (usize, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(exit) = self.exits(handle).pop() {
                return exit;
            }
            assert!(Instant::now() < deadline, "no exit for handle {handle}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn state(&self, handle: u64) -> String {
        let id = self.send(RequestBody::System {
            handle,
            request: SystemRequest::GetProperties(None),
        });
        let (_, result, document) = self.reply(id);
        assert_eq!(result, HResult::S_OK);
        let value: serde_json::Value = serde_json::from_str(&document.unwrap()).unwrap();
        value["State"].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum In {
    Created,
    Running,
    Paused,
    Stopped,
}

/// A system of `h` on `handle`, brought to `state`.
fn system_in(h: &Harness, handle: u64, state: In) {
    let id = format!("table-{handle}");
    assert_eq!(h.create(handle, &id, h.linux_vm("")), HResult::S_OK);
    if state != In::Created {
        assert_eq!(h.on(handle, SystemRequest::Start), HResult::S_OK);
    }
    match state {
        In::Paused => assert_eq!(h.on(handle, SystemRequest::Pause(None)), HResult::S_OK),
        In::Stopped => assert_eq!(h.on(handle, SystemRequest::Terminate), HResult::S_OK),
        _ => {}
    }
}

/// HCS-API §3.3, every row and column, through a session: the code each request gets in
/// each state, and the state a successful one leads to.
#[test]
fn every_row_of_the_state_table() {
    use HResult as R;
    const NO_GUEST: HResult = HResult::HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION;
    let modify = r#"{"ResourcePath":"VirtualMachine/ComputeTopology/Memory/SizeInMB","RequestType":"Update","Settings":256}"#;
    let process = r#"{"CommandLine":"/bin/true"}"#;
    let rows: Vec<(SystemRequest, [(R, &str); 4])> = vec![
        (
            SystemRequest::Start,
            [
                (R::S_OK, "Running"),
                (R::HCS_E_INVALID_STATE, "Running"),
                (R::HCS_E_INVALID_STATE, "Paused"),
                (R::HCS_E_SYSTEM_NOT_FOUND, ""),
            ],
        ),
        (
            SystemRequest::Pause(None),
            [
                (R::HCS_E_INVALID_STATE, "Created"),
                (R::S_OK, "Paused"),
                (R::HCS_E_INVALID_STATE, "Paused"),
                (R::HCS_E_SYSTEM_NOT_FOUND, ""),
            ],
        ),
        (
            SystemRequest::Resume,
            [
                (R::HCS_E_INVALID_STATE, "Created"),
                (R::HCS_E_INVALID_STATE, "Running"),
                (R::S_OK, "Running"),
                (R::HCS_E_SYSTEM_NOT_FOUND, ""),
            ],
        ),
        (
            SystemRequest::Save(None),
            [
                (R::HCS_E_INVALID_STATE, "Created"),
                (R::HCS_E_INVALID_STATE, "Running"),
                // Allowed by the table; no engine here can save yet.
                (R::ERROR_NOT_SUPPORTED, "Paused"),
                (R::HCS_E_SYSTEM_NOT_FOUND, ""),
            ],
        ),
        (
            SystemRequest::Shutdown(None),
            [
                (R::HCS_E_INVALID_STATE, "Created"),
                (R::S_OK, ""),
                (R::HCS_E_INVALID_STATE, "Paused"),
                (R::HCS_E_SYSTEM_ALREADY_STOPPED, ""),
            ],
        ),
        (
            SystemRequest::Terminate,
            [
                (R::S_OK, ""),
                (R::S_OK, ""),
                (R::S_OK, ""),
                (R::HCS_E_SYSTEM_ALREADY_STOPPED, ""),
            ],
        ),
        (
            SystemRequest::Crash(None),
            [
                (R::HCS_E_INVALID_STATE, "Created"),
                (R::S_OK, "Running"),
                (R::HCS_E_INVALID_STATE, "Paused"),
                (R::HCS_E_SYSTEM_NOT_FOUND, ""),
            ],
        ),
        (
            SystemRequest::Modify(modify.into()),
            [
                (R::S_OK, "Created"),
                (R::S_OK, "Running"),
                (R::HCS_E_INVALID_STATE, "Paused"),
                (R::HCS_E_SYSTEM_NOT_FOUND, ""),
            ],
        ),
        (
            SystemRequest::GetProperties(None),
            [
                (R::S_OK, "Created"),
                (R::S_OK, "Running"),
                (R::S_OK, "Paused"),
                (R::HCS_E_SYSTEM_NOT_FOUND, ""),
            ],
        ),
        (
            SystemRequest::CreateProcess {
                process: 9999,
                parameters: process.into(),
            },
            [
                (R::HCS_E_INVALID_STATE, "Created"),
                // Allowed by the table; this system has no guest connection.
                (NO_GUEST, "Running"),
                (R::HCS_E_INVALID_STATE, "Paused"),
                (R::HCS_E_SYSTEM_NOT_FOUND, ""),
            ],
        ),
    ];
    let h = Harness::new();
    let mut handle = 0;
    for (request, cells) in rows {
        for (state, (want, after)) in [In::Created, In::Running, In::Paused, In::Stopped]
            .into_iter()
            .zip(cells)
        {
            handle += 1;
            system_in(&h, handle, state);
            let got = h.on(handle, request.clone());
            assert_eq!(got, want, "{} while {state:?}", request.phase());
            if after.is_empty() {
                // The system has exited (or had): told once.
                h.wait_exit(handle);
                assert_eq!(
                    h.exits(handle).len(),
                    1,
                    "{} while {state:?}",
                    request.phase()
                );
            } else {
                assert_eq!(
                    h.state(handle),
                    after,
                    "{} while {state:?}",
                    request.phase()
                );
                assert_eq!(h.on(handle, SystemRequest::Terminate), R::S_OK);
            }
        }
    }
    assert_eq!(h.engine.live_vms(), 0, "every VM stopped");
}

/// Rule 53: requests pending at a terminate complete with `HCS_E_TERMINATED`, after the
/// exit was told; the terminate itself succeeds once the exit is told.
#[test]
fn rule_53_a_terminate_cuts_pending_requests_with_terminated() {
    let h = Harness::new();
    assert_eq!(h.create(1, "held", h.linux_vm("")), HResult::S_OK);
    assert_eq!(h.on(1, SystemRequest::Start), HResult::S_OK);
    let hold = Diagnostic::HoldSystem { handle: 1, hold: 1 };
    assert_eq!(h.call(RequestBody::Diagnostic(hold)), HResult::S_OK);
    let pending: Vec<u64> = [
        SystemRequest::Pause(None),
        SystemRequest::GetProperties(None),
        SystemRequest::Shutdown(None),
    ]
    .into_iter()
    .map(|request| h.send(RequestBody::System { handle: 1, request }))
    .collect();
    let terminate = h.send(RequestBody::System {
        handle: 1,
        request: SystemRequest::Terminate,
    });
    let (at, result, _) = h.reply(terminate);
    assert_eq!(result, HResult::S_OK);
    let (exit_at, status) = h.wait_exit(1);
    assert!(
        exit_at < at,
        "the exit is told before the terminate's reply"
    );
    assert!(status.contains("ForcedExit"), "{status}");
    let release = Diagnostic::ReleaseHold { hold: 1 };
    assert_eq!(h.call(RequestBody::Diagnostic(release)), HResult::S_OK);
    for id in pending {
        let (at, result, document) = h.reply(id);
        assert_eq!(result, HResult::HCS_E_TERMINATED);
        assert!(at > exit_at);
        assert!(document.unwrap().contains("was terminated"));
    }
}

/// Rule 53: a Start cut short by the guest ending itself fails with
/// `HCS_E_TERMINATED_DURING_START`; the exit is unexpected.
#[test]
fn rule_53_a_start_cut_short_by_the_guest_is_terminated_during_start() {
    let h = Harness::new();
    assert_eq!(h.create(1, "dies", h.linux_vm("")), HResult::S_OK);
    let gate = h.engine.block_next(Call::Start);
    let start = h.send(RequestBody::System {
        handle: 1,
        request: SystemRequest::Start,
    });
    assert!(gate.wait_reached(Duration::from_secs(5)));
    h.engine.last_vm().guest_exits(EngineExit::TripleFault);
    let (_, result, _) = h.reply(start);
    assert_eq!(result, HResult::HCS_E_TERMINATED_DURING_START);
    assert!(h.wait_exit(1).1.contains("UnexpectedExit"));
}

/// Rule 53: other requests pending when the guest ends unexpectedly get
/// `HCS_E_UNEXPECTED_EXIT`; a pending graceful shutdown completes with `S_OK`.
#[test]
fn rule_53_an_unexpected_exit_and_a_graceful_one() {
    let h = Harness::new();
    assert_eq!(h.create(1, "crash", h.linux_vm("")), HResult::S_OK);
    assert_eq!(h.on(1, SystemRequest::Start), HResult::S_OK);
    let hold = Diagnostic::HoldSystem { handle: 1, hold: 1 };
    assert_eq!(h.call(RequestBody::Diagnostic(hold)), HResult::S_OK);
    let pause = h.send(RequestBody::System {
        handle: 1,
        request: SystemRequest::Pause(None),
    });
    h.engine.last_vm().guest_exits(EngineExit::GuestPanic);
    h.wait_exit(1);
    let release = Diagnostic::ReleaseHold { hold: 1 };
    assert_eq!(h.call(RequestBody::Diagnostic(release)), HResult::S_OK);
    assert_eq!(h.reply(pause).1, HResult::HCS_E_UNEXPECTED_EXIT);

    // The power button powers the fake guest off: the shutdown is graceful.
    assert_eq!(h.create(2, "graceful", h.linux_vm("")), HResult::S_OK);
    assert_eq!(h.on(2, SystemRequest::Start), HResult::S_OK);
    let shutdown = h.send(RequestBody::System {
        handle: 2,
        request: SystemRequest::Shutdown(None),
    });
    let (at, result, _) = h.reply(shutdown);
    assert_eq!(result, HResult::S_OK);
    let (exit_at, status) = h.wait_exit(2);
    assert!(exit_at < at, "the exit is told before the shutdown's reply");
    assert!(status.contains("GracefulExit"), "{status}");
}

/// Rule 54: a terminate never waits behind a request the engine is stuck in; the stuck
/// request is cut short with `HCS_E_TERMINATED`.
#[test]
fn rule_54_terminate_does_not_wait_for_a_stuck_engine_call() {
    let h = Harness::new();
    assert_eq!(h.create(1, "stuck", h.linux_vm("")), HResult::S_OK);
    let gate = h.engine.block_next(Call::Start);
    let start = h.send(RequestBody::System {
        handle: 1,
        request: SystemRequest::Start,
    });
    assert!(gate.wait_reached(Duration::from_secs(5)));
    // The gate stays closed: only the stop can end the call.
    assert_eq!(h.on(1, SystemRequest::Terminate), HResult::S_OK);
    assert_eq!(h.reply(start).1, HResult::HCS_E_TERMINATED);
    assert!(h.engine.last_vm().calls().contains(&Call::Stop));
}

/// Rule 28 with rule 53: closing the last handle of a terminate-on-close system stops it,
/// and what was pending completes with `HCS_E_TERMINATED`.
#[test]
fn the_last_handle_closing_terminates_and_cuts_pending_requests() {
    let h = Harness::new();
    let doc = h.linux_vm(r#""ShouldTerminateOnLastHandleClosed":true,"#);
    assert_eq!(h.create(1, "closing", doc), HResult::S_OK);
    assert_eq!(h.on(1, SystemRequest::Start), HResult::S_OK);
    let gate = h.engine.block_next(Call::Pause);
    let pause = h.send(RequestBody::System {
        handle: 1,
        request: SystemRequest::Pause(None),
    });
    assert!(gate.wait_reached(Duration::from_secs(5)));
    assert_eq!(
        h.call(RequestBody::CloseSystem { handle: 1 }),
        HResult::S_OK
    );
    assert_eq!(h.reply(pause).1, HResult::HCS_E_TERMINATED);
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.engine.live_vms() > 0 {
        assert!(Instant::now() < deadline, "the VM was not stopped");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The create checks: an engine failure maps to its HRESULT and leaves nothing behind
/// (the id is free again); the chosen engine's limits apply.
#[test]
fn create_failures_leave_nothing_and_the_engines_limits_apply() {
    let h = Harness::new();
    h.engine.fail_next(
        Call::Create,
        EngineError::OutOfResources("no memory".into()),
    );
    assert_eq!(h.create(1, "again", h.linux_vm("")), HResult::E_OUTOFMEMORY);
    assert_eq!(
        h.on(1, SystemRequest::Start),
        HResult::HCS_E_SYSTEM_NOT_FOUND
    );
    assert_eq!(h.create(2, "again", h.linux_vm("")), HResult::S_OK);
    assert_eq!(
        h.create(3, "again", h.linux_vm("")),
        HResult::HCS_E_SYSTEM_ALREADY_EXISTS
    );
    assert_eq!(h.on(2, SystemRequest::Terminate), HResult::S_OK);

    h.engine.set_limits(Some(EngineLimits {
        max_vcpus: 1,
        max_memory_mb: 4096,
    }));
    let id = h.send(RequestBody::CreateSystem {
        handle: 4,
        id: "too-big".into(),
        configuration: h.linux_vm(""),
    });
    let (_, result, document) = h.reply(id);
    assert_eq!(result, HResult::HCS_E_INVALID_JSON);
    assert!(document
        .unwrap()
        .contains("$.VirtualMachine.ComputeTopology.Processor.Count"));
    assert_eq!(h.engine.live_vms(), 0);
}

/// The test requests are refused by a host not configured for tests.
#[test]
fn a_host_without_test_hooks_refuses_the_test_requests() {
    let engine = FakeEngine::new();
    let config = HostConfig {
        test_hooks: false,
        ..HostConfig::from_env()
    };
    let host = Host::new(config, vec![Arc::new(engine)]);
    let sink = Arc::new(Recorder::default());
    let session = host.open_session(sink.clone());
    session.send(Request {
        id: 1,
        body: RequestBody::Diagnostic(Diagnostic::LiveCounts),
    });
    let messages = sink.messages.lock();
    match messages.first() {
        Some(HostMessage::Reply(reply)) => assert_eq!(reply.result, HResult::E_ACCESSDENIED),
        other => panic!("{other:?}"),
    }
}

/// The guest session: a guest that resets itself without `StopOnReset` reboots in place
/// (the system stays Running, nothing is told); a guest connection that never comes fails
/// the start and stops the system.
#[test]
fn guest_resets_in_place_and_a_missing_agent_fails_the_start() {
    let h = Harness::new();
    assert_eq!(h.create(1, "reboots", h.linux_vm("")), HResult::S_OK);
    assert_eq!(h.on(1, SystemRequest::Start), HResult::S_OK);
    h.engine.last_vm().guest_resets();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.state(1), "Running");
    assert!(h.exits(1).is_empty());
    assert_eq!(h.on(1, SystemRequest::Terminate), HResult::S_OK);

    let doc = h.linux_vm("").replace(
        r#""VirtualMachine":{"#,
        r#""VirtualMachine":{"GuestConnection":{},"#,
    );
    assert_eq!(h.create(2, "no-agent", doc), HResult::S_OK);
    assert_eq!(
        h.on(2, SystemRequest::Start),
        HResult::HCS_E_CONNECTION_TIMEOUT
    );
    assert!(h.wait_exit(2).1.contains("UnexpectedExit"));
}

/// The guest session with an agent: Start completes once the agent has connected; a guest
/// that resets itself in place ends that connection (`GuestConnectionClosed` once, the
/// system stays Running) and the new boot's agent connects again; a shutdown goes through
/// the agent and is graceful, and the end of the connection is told before the exit.
#[test]
fn the_guest_session_across_a_reboot_in_place() {
    let h = Harness::with_engine(FakeEngine::new().with_agent());
    let doc = h.linux_vm("").replace(
        r#""VirtualMachine":{"#,
        r#""VirtualMachine":{"GuestConnection":{},"#,
    );
    assert_eq!(h.create(1, "agent", doc), HResult::S_OK);
    assert_eq!(h.on(1, SystemRequest::Start), HResult::S_OK);
    h.wait_agent(1);
    assert!(h.connection_closes(1).is_empty());

    h.engine.last_vm().guest_resets();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.connection_closes(1).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no GuestConnectionClosed after the reset"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(h.state(1), "Running");
    h.wait_agent(1);
    assert_eq!(
        h.connection_closes(1).len(),
        1,
        "told once for the first boot"
    );
    assert!(h.exits(1).is_empty());

    let shutdown = h.send(RequestBody::System {
        handle: 1,
        request: SystemRequest::Shutdown(None),
    });
    let (at, result, _) = h.reply(shutdown);
    assert_eq!(result, HResult::S_OK);
    let (exit_at, status) = h.wait_exit(1);
    assert!(status.contains("GracefulExit"), "{status}");
    assert!(exit_at < at);
    let closes = h.connection_closes(1);
    assert_eq!(closes.len(), 2, "once per connection");
    assert!(closes[1] < exit_at, "the connection's end before the exit");
    assert!(!h.engine.last_vm().calls().contains(&Call::PowerButton));
}
