//! The client against a service (HCS-API rule 36 and the handshake), with a fake `hcsd`
//! inside this test process (`fake_service`). The client is process-global: every test
//! here uses it with `HCS_HOST=service` on the fake's socket, one test at a time.

mod fake_service;

use fake_service::FakeService;
use hcs::api::*;
use hcs::{event_options, Event, EventType, HResult, HcsOperation, HcsSystem, INFINITE};
use hcs_protocol::{Diagnostic, RequestBody, SystemRequest};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(20);
const DOC: &str = r#"{"SchemaVersion":{"Major":2,"Minor":1}}"#;

static FAKE: OnceLock<FakeService> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// The fake service, with the client pointed at it; held by one test at a time.
fn fake() -> (&'static FakeService, MutexGuard<'static, ()>) {
    let fake = FAKE.get_or_init(|| {
        let fake = FakeService::start();
        // Before the client's first use, which reads them; every test comes here first.
        std::env::set_var("HCS_HOST", "service");
        std::env::set_var("HCS_SOCKET", &fake.socket);
        fake
    });
    (fake, SERIAL.lock())
}

/// Events of one handle, by type.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    changed: Condvar,
}

impl Recorder {
    fn callback(self: &Arc<Self>) -> hcs::EventCallback {
        let me = Arc::clone(self);
        Arc::new(move |event: &Event, _| {
            me.events.lock().push(event.clone());
            me.changed.notify_all();
        })
    }

    fn count(&self, kind: EventType) -> usize {
        self.events
            .lock()
            .iter()
            .filter(|e| e.event_type == kind)
            .count()
    }

    fn wait_for(&self, kind: EventType) {
        let deadline = Instant::now() + SOON;
        let mut events = self.events.lock();
        while !events.iter().any(|e| e.event_type == kind) {
            assert!(
                !self.changed.wait_until(&mut events, deadline).timed_out(),
                "no {kind:?} event; got {:?}",
                *events
            );
        }
    }
}

fn create(id: &str) -> HcsSystem {
    let op = create_operation(0, None);
    let system = create_compute_system(id, DOC, op, None).unwrap();
    let (result, document) = wait_for_operation_result(op, INFINITE);
    assert_eq!(result, HResult::S_OK, "{document:?}");
    close_operation(op);
    system
}

fn message(document: Option<&str>) -> String {
    let value: serde_json::Value = serde_json::from_str(document.expect("a document")).unwrap();
    value["ErrorMessage"].as_str().unwrap().to_owned()
}

/// Drops the fake's connections and waits until the client has seen the loss.
fn lose_the_service(fake: &FakeService) {
    let probe = create(&unique("probe"));
    let events = Arc::new(Recorder::default());
    assert_eq!(
        set_compute_system_callback(probe, 0, 0, Some(events.callback())),
        HResult::S_OK
    );
    fake.drop_connections();
    events.wait_for(EventType::ServiceDisconnect);
    close_compute_system(probe);
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn is_start(body: &RequestBody, handle: HcsSystem) -> bool {
    matches!(body, RequestBody::System { handle: h, request: SystemRequest::Start } if *h == handle.0)
}

#[test]
fn rule_36_the_client_says_hello_and_uses_the_service() {
    let (fake, _serial) = fake();
    let system = create(&unique("hello"));
    assert_eq!(host_kind(), HostKind::Service);
    let hello = fake.hellos().last().cloned().unwrap();
    assert_eq!(hello.versions, vec![hcs_wire::PROTOCOL_VERSION]);
    assert!(
        hello.client.starts_with("service_rules"),
        "{}",
        hello.client
    );
    // The diagnostics go through the protocol too.
    let counts = live_counts();
    assert_eq!((counts.systems, counts.vms), (3, 2));
    assert!(counts.system_handles >= 1);
    let hold = hold_system_requests(system).expect("a hold");
    drop(hold);
    let requests = fake.requests();
    let hold_id = requests.iter().find_map(|(_, r)| match r.body {
        RequestBody::Diagnostic(Diagnostic::HoldSystem { handle, hold }) if handle == system.0 => {
            Some(hold)
        }
        _ => None,
    });
    let hold_id = hold_id.expect("HoldSystem went to the service");
    assert!(
        requests
            .iter()
            .any(|(_, r)| r.body
                == RequestBody::Diagnostic(Diagnostic::ReleaseHold { hold: hold_id }))
    );
    close_compute_system(system);
    fake.wait_for_request(|b| *b == RequestBody::CloseSystem { handle: system.0 });
}

#[test]
fn rule_36_pending_operations_complete_with_service_disconnect_exactly_once() {
    let (fake, _serial) = fake();

    // Callback style.
    let callback_system = create(&unique("callback"));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let callback_op = create_operation(
        0,
        Some(Arc::new(move |op: HcsOperation, _| {
            seen.lock().push(get_operation_result(op));
        })),
    );
    assert_eq!(
        start_compute_system(callback_system, callback_op, None),
        HResult::S_OK
    );

    // Wait style.
    let wait_system = create(&unique("wait"));
    let wait_op = create_operation(0, None);
    assert_eq!(
        start_compute_system(wait_system, wait_op, None),
        HResult::S_OK
    );

    // Event-callback style, which also gets the ServiceDisconnect event.
    let event_system = create(&unique("event"));
    let events = Arc::new(Recorder::default());
    assert_eq!(
        set_compute_system_callback(
            event_system,
            event_options::ENABLE_OPERATION_CALLBACKS,
            0,
            Some(events.callback())
        ),
        HResult::S_OK
    );
    let event_op = create_operation(0, None);
    assert_eq!(
        start_compute_system(event_system, event_op, None),
        HResult::S_OK
    );

    // An exit wait and a synchronous open, both pending at the loss.
    let exit_wait = std::thread::spawn(move || wait_for_compute_system_exit(wait_system, INFINITE));
    let held_open = std::thread::spawn(|| open_compute_system("held-open", hcs::GENERIC_ALL));

    for system in [callback_system, wait_system, event_system] {
        fake.wait_for_request(|b| is_start(b, system));
    }
    fake.wait_for_request(|b| matches!(b, RequestBody::OpenSystem { id, .. } if id == "held-open"));
    fake.drop_connections();

    let (result, document) = wait_for_operation_result(wait_op, 20_000);
    assert_eq!(result, HResult::HCS_E_SERVICE_DISCONNECT);
    let text = message(document.as_deref());
    assert!(
        text.contains(&fake.socket.display().to_string()),
        "the error names the socket: {text}"
    );
    events.wait_for(EventType::OperationCallback);
    events.wait_for(EventType::ServiceDisconnect);
    assert_eq!(
        get_operation_result(event_op).0,
        HResult::HCS_E_SERVICE_DISCONNECT
    );
    assert_eq!(
        exit_wait.join().unwrap().0,
        HResult::HCS_E_SERVICE_DISCONNECT
    );
    assert_eq!(
        held_open.join().unwrap(),
        Err(HResult::HCS_E_SERVICE_DISCONNECT)
    );
    let deadline = Instant::now() + SOON;
    while calls.lock().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let calls = calls.lock().clone();
    assert_eq!(
        calls.len(),
        1,
        "the completion callback ran once: {calls:?}"
    );
    assert_eq!(calls[0].0, HResult::HCS_E_SERVICE_DISCONNECT);
    assert_eq!(events.count(EventType::OperationCallback), 1);
    assert_eq!(events.count(EventType::ServiceDisconnect), 1);

    for op in [callback_op, wait_op, event_op] {
        close_operation(op);
    }
    for system in [callback_system, wait_system, event_system] {
        close_compute_system(system);
    }
}

#[test]
fn rule_36_old_handles_close_fine_and_fail_other_calls_and_a_later_open_reconnects() {
    let (fake, _serial) = fake();
    let id = unique("survivor");
    let system = create(&id);
    let events = Arc::new(Recorder::default());
    assert_eq!(
        set_compute_system_callback(system, 0, 0, Some(events.callback())),
        HResult::S_OK
    );
    let process_op = create_operation(0, None);
    let process = create_process(system, r#"{"CommandLine":"sh"}"#, process_op, None).unwrap();
    assert_eq!(
        wait_for_operation_result(process_op, INFINITE).0,
        HResult::S_OK
    );
    let process_events = Arc::new(Recorder::default());
    assert_eq!(
        set_process_callback(process, 0, 0, Some(process_events.callback())),
        HResult::S_OK
    );
    let hellos_before = fake.hellos().len();

    fake.drop_connections();
    events.wait_for(EventType::ServiceDisconnect);
    process_events.wait_for(EventType::ServiceDisconnect);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(events.count(EventType::ServiceDisconnect), 1);
    assert_eq!(process_events.count(EventType::ServiceDisconnect), 1);

    // Calls on the old handles fail at once, with a document; nothing reaches a service.
    let requests_before = fake.requests().len();
    let op = create_operation(0, None);
    assert_eq!(
        get_compute_system_properties(system, op, None),
        HResult::S_OK
    );
    let (result, document) = wait_for_operation_result(op, 1000);
    assert_eq!(result, HResult::HCS_E_SERVICE_DISCONNECT);
    assert!(message(document.as_deref()).contains("lost"));
    assert_eq!(terminate_process(process, op, None), HResult::S_OK);
    assert_eq!(
        wait_for_operation_result(op, 1000).0,
        HResult::HCS_E_SERVICE_DISCONNECT
    );
    assert!(hold_system_requests(system).is_none());
    assert_eq!(
        open_process(system, 42, 0).unwrap_err(),
        HResult::HCS_E_SERVICE_DISCONNECT
    );
    assert_eq!(
        wait_for_compute_system_exit(system, 0).0,
        HResult::HCS_E_SERVICE_DISCONNECT
    );
    assert_eq!(fake.requests().len(), requests_before);
    assert_eq!(fake.hellos().len(), hellos_before);

    // They close fine.
    close_process(process);
    close_compute_system(system);

    // A later open makes a new connection and works.
    let reopened = open_compute_system(&id, hcs::GENERIC_ALL).expect("reopened");
    assert_eq!(fake.hellos().len(), hellos_before + 1);
    assert_eq!(
        get_compute_system_properties(reopened, op, None),
        HResult::S_OK
    );
    let (result, document) = wait_for_operation_result(op, INFINITE);
    assert_eq!(result, HResult::S_OK);
    assert_eq!(document.as_deref(), Some(r#"{"Id":"fake"}"#));
    close_operation(op);
    close_operation(process_op);
    close_compute_system(reopened);
    assert_eq!(
        open_compute_system("missing-system", hcs::GENERIC_ALL),
        Err(HResult::HCS_E_SYSTEM_NOT_FOUND)
    );
}

#[test]
fn rule_36_a_closing_service_completes_pending_operations() {
    let (fake, _serial) = fake();
    let system = create(&unique("closing"));
    let op = create_operation(0, None);
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    fake.wait_for_request(|b| is_start(b, system));
    fake.close_connections(HResult::E_UNEXPECTED, "hcsd is stopping");
    let (result, document) = wait_for_operation_result(op, 20_000);
    assert_eq!(result, HResult::HCS_E_SERVICE_DISCONNECT);
    assert!(
        message(document.as_deref()).contains("hcsd is stopping"),
        "{document:?}"
    );
    close_operation(op);
    close_compute_system(system);
}

#[test]
fn rule_36_a_refused_hello_gives_its_hresult() {
    let (fake, _serial) = fake();
    for code in [
        HResult::E_ACCESSDENIED,
        HResult::HCS_E_UNSUPPORTED_PROTOCOL_VERSION,
    ] {
        lose_the_service(fake);
        fake.refuse_next(code, "not for you");
        let op = create_operation(0, None);
        let system = create_compute_system(&unique("refused"), DOC, op, None).unwrap();
        let (result, document) = wait_for_operation_result(op, INFINITE);
        assert_eq!(result, code);
        let text = message(document.as_deref());
        assert!(
            text.contains("refused") && text.contains("not for you"),
            "{text}"
        );
        close_compute_system(system);
        // The next call connects again, and is welcome.
        assert_eq!(enumerate_compute_systems(None, op), HResult::S_OK);
        assert_eq!(
            wait_for_operation_result(op, INFINITE),
            (HResult::S_OK, Some("[]".to_owned()))
        );
        close_operation(op);
    }
}

#[test]
fn rule_39_std_handles_cross_the_service_socket() {
    let (fake, _serial) = fake();
    let system = create(&unique("stdio"));
    let op = create_operation(0, None);
    let process = create_process(system, r#"{"CommandLine":"cat"}"#, op, None).unwrap();
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    let info = get_operation_process_information(op).expect("process information");
    assert_eq!(info.process_id, 42);
    assert!(info.std_error.is_none());
    let (mut stdin_service, mut stdout_service) = fake.take_process_ends().pop().unwrap();
    // SAFETY: the getter handed these descriptors to the caller, this test.
    let stdin = unsafe { OwnedFd::from_raw_fd(info.std_input.unwrap()) };
    // SAFETY: as above.
    let stdout = unsafe { OwnedFd::from_raw_fd(info.std_output.unwrap()) };
    std::fs::File::from(stdin).write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    stdin_service.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    stdout_service.write_all(b"pong").unwrap();
    std::fs::File::from(stdout).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
    close_operation(op);
    close_process(process);
    close_compute_system(system);
}

#[test]
fn rule_36_requests_racing_the_loss_all_complete_exactly_once() {
    let (fake, _serial) = fake();
    let systems: Vec<HcsSystem> = (0..4).map(|_| create(&unique("race"))).collect();
    let callbacks = Arc::new(AtomicUsize::new(0));
    let armed = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = systems
        .iter()
        .map(|&system| {
            let callbacks = Arc::clone(&callbacks);
            let armed = Arc::clone(&armed);
            std::thread::spawn(move || {
                let counter = Arc::clone(&callbacks);
                let op = create_operation(
                    0,
                    Some(Arc::new(move |_, _| {
                        counter.fetch_add(1, Ordering::SeqCst);
                    })),
                );
                let mut disconnected = 0;
                for _ in 0..300 {
                    assert_eq!(
                        get_compute_system_properties(system, op, None),
                        HResult::S_OK
                    );
                    armed.fetch_add(1, Ordering::SeqCst);
                    let (result, _) = wait_for_operation_result(op, 20_000);
                    match result {
                        HResult::S_OK => assert_eq!(disconnected, 0, "no success after the loss"),
                        HResult::HCS_E_SERVICE_DISCONNECT => disconnected += 1,
                        other => panic!("unexpected {other}"),
                    }
                }
                (op, disconnected)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    fake.drop_connections();
    let mut ops = Vec::new();
    for thread in threads {
        let (op, disconnected) = thread.join().unwrap();
        assert!(disconnected > 0, "the loss was seen");
        ops.push(op);
    }
    let deadline = Instant::now() + SOON;
    while callbacks.load(Ordering::SeqCst) < armed.load(Ordering::SeqCst)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        callbacks.load(Ordering::SeqCst),
        armed.load(Ordering::SeqCst),
        "one callback per completion"
    );
    for op in ops {
        close_operation(op);
    }
    for system in systems {
        close_compute_system(system);
    }
}
