//! Events and event callbacks (HCS-API §4, rules 26, 29, 32–34, 52, 55, 56), on real VMs.

mod common;

use common::{c_empty_vm, require_kvm, unique_id, EventObject, SOON};
use hcs::api::*;
use hcs::{
    event_options, Event, EventType, HResult, HcsSystem, OperationType, GENERIC_ALL, INFINITE,
};
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn created(doc: &str) -> (String, HcsSystem) {
    require_kvm();
    let id = unique_id("ev");
    let op = create_operation(0, None);
    let system = create_compute_system(&id, doc, op, None).unwrap();
    assert_eq!(wait_for_operation_result(op, INFINITE).0, HResult::S_OK);
    close_operation(op);
    (id, system)
}

fn run(issue: impl FnOnce(hcs::HcsOperation) -> HResult) -> HResult {
    let op = create_operation(0, None);
    let accepted = issue(op);
    let result = if accepted.succeeded() {
        wait_for_operation_result(op, INFINITE).0
    } else {
        accepted
    };
    close_operation(op);
    result
}

/// Records every event of a handle.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    signal: EventObject,
}

impl Recorder {
    fn register(self: &Arc<Self>, system: HcsSystem, options: u32) -> HResult {
        let me = Arc::clone(self);
        set_compute_system_callback(
            system,
            options,
            0,
            Some(Arc::new(move |event: &Event, _| {
                if let Some(op) = event.operation {
                    close_operation(op);
                }
                me.events.lock().push(event.clone());
                me.signal.set();
            })),
        )
    }

    fn of_type(&self, kind: EventType) -> Vec<Event> {
        self.events
            .lock()
            .iter()
            .filter(|e| e.event_type == kind)
            .cloned()
            .collect()
    }

    fn wait_for(&self, kind: EventType) -> Event {
        let deadline = std::time::Instant::now() + SOON;
        loop {
            if let Some(event) = self.of_type(kind).into_iter().next() {
                return event;
            }
            assert!(std::time::Instant::now() < deadline, "no {kind:?} event");
            self.signal.reset();
            self.signal.wait(Duration::from_millis(20));
        }
    }
}

fn exit_status(event: &Event) -> Value {
    serde_json::from_str(
        event
            .event_data
            .as_deref()
            .expect("SystemExited carries data"),
    )
    .unwrap()
}

#[test]
fn rule_26_terminate_gives_one_forced_exit_event_per_handle() {
    let (id, system) = created(&c_empty_vm());
    let other = open_compute_system(&id, GENERIC_ALL).unwrap();
    let (a, b) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    assert_eq!(a.register(system, event_options::NONE), HResult::S_OK);
    assert_eq!(b.register(other, event_options::NONE), HResult::S_OK);
    assert_eq!(
        run(|op| start_compute_system(system, op, None)),
        HResult::S_OK
    );
    assert_eq!(
        run(|op| terminate_compute_system(system, op, None)),
        HResult::S_OK
    );
    for recorder in [&a, &b] {
        let status = exit_status(&recorder.wait_for(EventType::SystemExited));
        assert_eq!(status["ExitType"], "ForcedExit");
        assert_eq!(status["Status"], 0);
        assert_eq!(
            status["Attribution"][0]["SystemExit"]["Detail"],
            "Terminate"
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        a.of_type(EventType::SystemExited).len(),
        1,
        "exactly one per callback"
    );
    assert_eq!(b.of_type(EventType::SystemExited).len(), 1);
    assert!(
        a.of_type(EventType::OperationCallback).is_empty(),
        "rule 34"
    );
    for recorder in [&a, &b] {
        assert!(
            recorder
                .of_type(EventType::SystemGuestConnectionClosed)
                .is_empty(),
            "§4.1: the empty VM has no guest connection to close"
        );
    }
    close_compute_system(system);
    close_compute_system(other);
}

/// A guest that triple-faults: the built-in firmware has no NMI handler, so the crash
/// NMI faults with an empty IDT and the CPU shuts down.
#[test]
fn rule_26_and_52_a_guest_that_triple_faults_exits_unexpectedly() {
    let (_, system) = created(&c_empty_vm());
    let recorder = Arc::new(Recorder::default());
    assert_eq!(
        recorder.register(system, event_options::NONE),
        HResult::S_OK
    );
    assert_eq!(
        run(|op| start_compute_system(system, op, None)),
        HResult::S_OK
    );
    assert_eq!(
        run(|op| crash_compute_system(system, op, Some(r#"{"Type":"CrashGuest"}"#))),
        HResult::S_OK
    );
    let status = exit_status(&recorder.wait_for(EventType::SystemExited));
    assert_eq!(status["ExitType"], "UnexpectedExit");
    assert_eq!(status["Status"], HResult::HCS_E_UNEXPECTED_EXIT.0);
    assert_eq!(
        status["Attribution"][0]["SystemExit"]["Detail"],
        "UnexpectedExit"
    );
    assert_eq!(
        status["Attribution"][1]["WorkerExit"]["Detail"],
        "TripleFault"
    );
    let (hresult, waited) = wait_for_compute_system_exit(system, INFINITE);
    assert_eq!(hresult, HResult::S_OK);
    assert_eq!(
        serde_json::from_str::<Value>(&waited.unwrap()).unwrap(),
        status
    );
    assert_eq!(
        run(|op| start_compute_system(system, op, None)),
        HResult::HCS_E_SYSTEM_NOT_FOUND
    );
    close_compute_system(system);
}

#[test]
fn rule_57_an_extra_handle_keeps_the_system_and_its_close_raises_no_event() {
    let (id, system) = created(&c_empty_vm());
    let watcher = open_compute_system(&id, GENERIC_ALL).unwrap();
    let recorder = Arc::new(Recorder::default());
    assert_eq!(
        recorder.register(watcher, event_options::NONE),
        HResult::S_OK
    );
    close_compute_system(system);
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        recorder.of_type(EventType::SystemExited).is_empty(),
        "another handle is open"
    );
    close_compute_system(watcher);
    assert!(
        recorder.of_type(EventType::SystemExited).is_empty(),
        "rule 29: no event after close"
    );
}

#[test]
fn rule_29_no_callback_after_close_returns() {
    let (_, system) = created(&c_empty_vm());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    assert_eq!(
        set_compute_system_callback(
            system,
            event_options::NONE,
            0,
            Some(Arc::new(move |_, _| {
                c.fetch_add(1, Ordering::SeqCst);
            }))
        ),
        HResult::S_OK
    );
    // Closing with terminate-on-last-close produces no event for the closed handle.
    close_compute_system(system);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn rule_32_second_registration_fails() {
    let (_, system) = created(&c_empty_vm());
    let cb: hcs::EventCallback = Arc::new(|_, _| {});
    assert_eq!(
        set_compute_system_callback(system, 0, 0, Some(Arc::clone(&cb))),
        HResult::S_OK
    );
    assert_eq!(
        set_compute_system_callback(system, 0, 0, Some(cb)),
        HResult::HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET
    );
    close_compute_system(system);
}

#[test]
fn rule_49_bad_registration_arguments() {
    let (_, system) = created(&c_empty_vm());
    assert_eq!(
        set_compute_system_callback(system, 0, 0, None),
        HResult::E_POINTER
    );
    assert_eq!(
        set_compute_system_callback(system, 0x8, 0, Some(Arc::new(|_, _| {}))),
        HResult::E_INVALIDARG
    );
    // hcsshim registers with the live-migration bit alone: accepted.
    assert_eq!(
        set_compute_system_callback(
            system,
            event_options::ENABLE_LIVE_MIGRATION_EVENTS,
            0,
            Some(Arc::new(|_, _| {}))
        ),
        HResult::S_OK
    );
    close_compute_system(system);
}

#[test]
fn rule_33_operation_completions_arrive_as_events_and_own_callbacks_are_refused() {
    let (_, system) = created(&c_empty_vm());
    let recorder = Arc::new(Recorder::default());
    assert_eq!(
        recorder.register(system, event_options::ENABLE_OPERATION_CALLBACKS),
        HResult::S_OK
    );
    let op = create_operation(0, Some(Arc::new(|_, _| {})));
    assert_eq!(
        pause_compute_system(system, op, None),
        HResult::HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET
    );
    assert_eq!(get_operation_type(op), OperationType::None);
    close_operation(op);
    // The plain operation's completion is an event; the callback closes it.
    let op = create_operation(0, None);
    assert_eq!(start_compute_system(system, op, None), HResult::S_OK);
    let event = recorder.wait_for(EventType::OperationCallback);
    assert_eq!(event.operation, Some(op));
    assert_eq!(event.event_data, None);
    close_compute_system(system);
}

#[test]
fn rule_55_completions_before_registration_are_reported_once_unless_read() {
    require_kvm();
    // Completed, unread: reported right after the registration.
    let unread = create_operation(0, None);
    let system = create_compute_system(&unique_id("r55"), &c_empty_vm(), unread, None).unwrap();
    // Completed and read: never reported.
    std::thread::sleep(Duration::from_millis(20));
    let read = create_operation(0, None);
    assert_eq!(
        get_compute_system_properties(system, read, None),
        HResult::S_OK
    );
    assert_eq!(wait_for_operation_result(read, INFINITE).0, HResult::S_OK);
    assert_eq!(wait_for_operation_result(unread, INFINITE).0, HResult::S_OK);
    // `unread` was read just now too, so make a fresh unread completion.
    let fresh = create_operation(0, None);
    assert_eq!(
        get_compute_system_properties(system, fresh, None),
        HResult::S_OK
    );
    // Most likely complete by now; if not, it is reported when it completes: once, either way.
    std::thread::sleep(Duration::from_millis(50));
    let recorder = Arc::new(Recorder::default());
    assert_eq!(
        recorder.register(system, event_options::ENABLE_OPERATION_CALLBACKS),
        HResult::S_OK
    );
    let event = recorder.wait_for(EventType::OperationCallback);
    assert_eq!(event.operation, Some(fresh));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        recorder.of_type(EventType::OperationCallback).len(),
        1,
        "no read call reported"
    );
    close_operation(read);
    close_operation(unread);
    close_compute_system(system);
}

#[test]
fn rule_56_a_blocked_callback_on_one_handle_delays_nothing_on_another() {
    let (_, a) = created(&c_empty_vm());
    let (_, b) = created(&c_empty_vm());
    let release = Arc::new(EventObject::default());
    let blocked = Arc::new(EventObject::default());
    let (r, bl) = (Arc::clone(&release), Arc::clone(&blocked));
    assert_eq!(
        set_compute_system_callback(
            a,
            event_options::ENABLE_OPERATION_CALLBACKS,
            0,
            Some(Arc::new(move |event: &Event, _| {
                bl.set();
                r.wait(SOON);
                if let Some(op) = event.operation {
                    close_operation(op);
                }
            }))
        ),
        HResult::S_OK
    );
    let recorder = Arc::new(Recorder::default());
    assert_eq!(
        recorder.register(b, event_options::ENABLE_OPERATION_CALLBACKS),
        HResult::S_OK
    );
    assert_eq!(
        start_compute_system(a, create_operation(0, None), None),
        HResult::S_OK
    );
    assert!(blocked.wait(SOON));
    assert_eq!(
        start_compute_system(b, create_operation(0, None), None),
        HResult::S_OK
    );
    recorder.wait_for(EventType::OperationCallback);
    release.set();
    close_compute_system(a);
    close_compute_system(b);
}

#[test]
fn rule_56_events_of_one_handle_are_serial_and_close_waits_for_the_running_callback() {
    let (_, system) = created(&c_empty_vm());
    let running = Arc::new(AtomicUsize::new(0));
    let overlap = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (ru, ov, fi) = (
        Arc::clone(&running),
        Arc::clone(&overlap),
        Arc::clone(&finished),
    );
    assert_eq!(
        set_compute_system_callback(
            system,
            event_options::ENABLE_OPERATION_CALLBACKS,
            0,
            Some(Arc::new(move |event: &Event, _| {
                if ru.fetch_add(1, Ordering::SeqCst) > 0 {
                    ov.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
                if let Some(op) = event.operation {
                    close_operation(op);
                }
                ru.fetch_sub(1, Ordering::SeqCst);
                fi.fetch_add(1, Ordering::SeqCst);
            }))
        ),
        HResult::S_OK
    );
    for _ in 0..5 {
        assert_eq!(
            get_compute_system_properties(system, create_operation(0, None), None),
            HResult::S_OK
        );
    }
    while finished.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    close_compute_system(system);
    let after_close = finished.load(Ordering::SeqCst);
    assert_eq!(
        running.load(Ordering::SeqCst),
        0,
        "close waited for the running callback"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        finished.load(Ordering::SeqCst),
        after_close,
        "nothing ran after close"
    );
    assert_eq!(
        overlap.load(Ordering::SeqCst),
        0,
        "events of one handle never overlap"
    );
}

#[test]
fn callbacks_may_call_any_api_including_closing_their_own_handle() {
    let (_, system) = created(&c_empty_vm());
    let done = Arc::new(EventObject::default());
    let d = Arc::clone(&done);
    assert_eq!(
        set_compute_system_callback(
            system,
            event_options::ENABLE_OPERATION_CALLBACKS,
            system.0 as usize,
            Some(Arc::new(move |event: &Event, ctx| {
                if let Some(op) = event.operation {
                    // A new request from inside the callback, waited for right here.
                    let props = create_operation(0, None);
                    let own = HcsSystem(ctx as u64);
                    assert_eq!(
                        get_compute_system_properties(own, props, None),
                        HResult::S_OK
                    );
                    assert_eq!(wait_for_operation_result(props, INFINITE).0, HResult::S_OK);
                    close_operation(props);
                    close_operation(op);
                    close_compute_system(own);
                    d.set();
                }
            }))
        ),
        HResult::S_OK
    );
    assert_eq!(
        start_compute_system(system, create_operation(0, None), None),
        HResult::S_OK
    );
    assert!(done.wait(SOON));
}
