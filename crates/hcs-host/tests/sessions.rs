//! The host's message protocol, seen from a session: one reply per request, the exit
//! notification to every handle before the reply of the request that stopped the system
//! (HCS-API rule 53), and a session that ends closing its handles, as a client that dies
//! (rule 28). Real VMs on /dev/kvm.

use hcs_host::{Host, HostConfig};
use hcs_protocol::{HostMessage, Notification, Request, RequestBody, SystemRequest};
use hcs_schema::HResult;
use hcs_test_support::Recorder;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EMPTY_VM: &str = r#"{"SchemaVersion":{"Major":2,"Minor":1},"Owner":"t",
    "VirtualMachine":{"Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{"SizeInMB":64},"Processor":{"Count":1}}},
    "ShouldTerminateOnLastHandleClosed":true}"#;

fn require_kvm() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: these tests run real VMs and are never skipped"
    );
}

fn system(handle: u64, request: SystemRequest) -> RequestBody {
    RequestBody::System { handle, request }
}

#[test]
fn rule_53_exit_notifications_precede_the_terminate_reply_on_every_handle() {
    require_kvm();
    let host = Host::with_default_engines(HostConfig::from_env());
    let sink = Arc::new(Recorder::default());
    let session = host.open_session(sink.clone());
    let id = format!("sessions-{}", std::process::id());
    let send = |id: u64, body: RequestBody| session.send(Request { id, body });
    send(
        1,
        RequestBody::CreateSystem {
            handle: 10,
            id: id.clone(),
            configuration: EMPTY_VM.into(),
        },
    );
    assert_eq!(sink.reply(1).1.result, HResult::S_OK);
    send(
        2,
        RequestBody::OpenSystem {
            handle: 11,
            id: id.clone(),
        },
    );
    assert_eq!(sink.reply(2).1.result, HResult::S_OK);
    send(3, system(10, SystemRequest::Start));
    assert_eq!(sink.reply(3).1.result, HResult::S_OK);
    send(4, system(11, SystemRequest::Terminate));
    let (at, reply) = sink.reply(4);
    assert_eq!(reply.result, HResult::S_OK);
    let messages = sink.messages.lock();
    let exits: Vec<(usize, u64)> = messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| match m {
            HostMessage::Notification(Notification::SystemExited { handle, .. }) => {
                Some((i, *handle))
            }
            _ => None,
        })
        .collect();
    assert_eq!(exits.len(), 2, "one notification per handle: {messages:?}");
    assert!(
        exits.iter().all(|&(i, _)| i < at),
        "notifications come before the reply"
    );
    let mut handles: Vec<u64> = exits.iter().map(|&(_, h)| h).collect();
    handles.sort();
    assert_eq!(handles, vec![10, 11]);
    // HCS-API §4.1: the empty VM has no guest connection, so none closes.
    assert!(
        !messages.iter().any(|m| matches!(
            m,
            HostMessage::Notification(Notification::GuestConnectionClosed { .. })
        )),
        "{messages:?}"
    );
    assert_eq!(host.system_count(), 0);
    assert_eq!(host.live_vm_count(), 0);
}

#[test]
fn rule_28_a_session_that_ends_closes_its_handles() {
    require_kvm();
    let host = Host::with_default_engines(HostConfig::from_env());
    let sink = Arc::new(Recorder::default());
    let session = host.open_session(sink.clone());
    let id = format!("dying-{}", std::process::id());
    session.send(Request {
        id: 1,
        body: RequestBody::CreateSystem {
            handle: 1,
            id: id.clone(),
            configuration: EMPTY_VM.into(),
        },
    });
    assert_eq!(sink.reply(1).1.result, HResult::S_OK);
    session.send(Request {
        id: 2,
        body: system(1, SystemRequest::Start),
    });
    assert_eq!(sink.reply(2).1.result, HResult::S_OK);
    // Another client watches the same system.
    let watcher_sink = Arc::new(Recorder::default());
    let watcher = host.open_session(watcher_sink.clone());
    watcher.send(Request {
        id: 1,
        body: RequestBody::OpenSystem {
            handle: 5,
            id: id.clone(),
        },
    });
    assert_eq!(watcher_sink.reply(1).1.result, HResult::S_OK);
    drop(session); // the first client dies: its handle counts as closed
    assert_eq!(
        host.system_count(),
        1,
        "the watcher's handle keeps the system"
    );
    drop(watcher); // the last handle goes: terminate-on-last-close
    let deadline = Instant::now() + Duration::from_secs(20);
    while host.system_count() > 0 || host.live_vm_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the system outlived its last session"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn every_request_gets_exactly_one_reply_even_on_unknown_handles() {
    require_kvm();
    let host = Host::with_default_engines(HostConfig::from_env());
    let sink = Arc::new(Recorder::default());
    let session = host.open_session(sink.clone());
    for (id, request) in [
        SystemRequest::Start,
        SystemRequest::Terminate,
        SystemRequest::GetProperties(None),
        SystemRequest::Modify("{}".into()),
    ]
    .into_iter()
    .enumerate()
    {
        session.send(Request {
            id: id as u64,
            body: system(999, request),
        });
        assert_eq!(sink.reply(id as u64).1.result, HResult::E_HANDLE);
    }
    session.send(Request {
        id: 50,
        body: RequestBody::CloseSystem { handle: 999 },
    });
    assert_eq!(sink.reply(50).1.result, HResult::S_OK);
    session.send(Request {
        id: 51,
        body: RequestBody::Enumerate {
            query: Some("[".into()),
        },
    });
    assert_eq!(sink.reply(51).1.result, HResult::HCS_E_INVALID_JSON);
    let replies = sink.messages.lock().len();
    assert_eq!(replies, 6, "one reply per request, nothing else");
}
