//! The messages between a client and a host: requests, replies and notifications.
//!
//! Every client talks to a host through these messages only, whether the host runs in
//! the client's process (the embedded host) or in the service. A client opens a
//! [`crate::Session`], sends [`Request`]s, and receives [`HostMessage`]s in order per
//! compute system: a reply for every request, and notifications for the system handles
//! it holds. The messages are serde types so that a socket transport carries them as is.
//!
//! System handles are numbers chosen by the client, unique within its session; the host
//! binds them to compute systems on create and open, so the client can hand a handle to
//! its caller before the host has answered (HCS-API rule 20).

use hcs_schema::HResult;
use serde::{Deserialize, Serialize};

/// A client-chosen number naming one system handle within a session.
pub type SystemHandle = u64;

/// A client-chosen number naming one process handle within a session (never equal to a
/// system handle of the same session).
pub type ProcessHandle = u64;

/// A request and the number its reply will carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, echoed by the reply.
    pub id: u64,
    /// What is asked.
    pub body: RequestBody,
}

/// What a client can ask of a host. Documents travel as JSON text, exactly as the client
/// gave them: the host parses and validates them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RequestBody {
    /// `HcsCreateComputeSystem`: bind `handle` to a new system.
    CreateSystem {
        /// The handle to bind.
        handle: SystemHandle,
        /// The system id.
        id: String,
        /// The `ComputeSystem` document.
        configuration: String,
    },
    /// `HcsOpenComputeSystem`: bind `handle` to an existing system.
    OpenSystem {
        /// The handle to bind.
        handle: SystemHandle,
        /// The system id.
        id: String,
    },
    /// `HcsCloseComputeSystem`.
    CloseSystem {
        /// The handle to release.
        handle: SystemHandle,
    },
    /// `HcsEnumerateComputeSystems`.
    Enumerate {
        /// A `SystemQuery` document, or none for every system.
        query: Option<String>,
    },
    /// A request on one system.
    System {
        /// The handle it is made through.
        handle: SystemHandle,
        /// What is asked.
        request: SystemRequest,
    },
    /// `HcsOpenProcess`: bind `process` to the process `pid` of the system of `system`.
    OpenProcess {
        /// The system handle it is made through.
        system: SystemHandle,
        /// The process handle to bind.
        process: ProcessHandle,
        /// The process id in the guest.
        pid: u32,
    },
    /// `HcsCloseProcess`.
    CloseProcess {
        /// The handle to release.
        handle: ProcessHandle,
    },
    /// A request on one process.
    Process {
        /// The handle it is made through.
        handle: ProcessHandle,
        /// What is asked.
        request: ProcessRequest,
    },
    /// `HcsGetServiceProperties` with its `Service_PropertyQuery`.
    GetServiceProperties {
        /// The query, or none.
        query: Option<String>,
    },
    /// `HcsModifyServiceSettings` with its `ModificationRequest`.
    ModifyServiceSettings {
        /// The request.
        settings: String,
    },
    /// `HcsSubmitWerReport` with its `CrashReport`.
    SubmitWerReport {
        /// The report.
        report: String,
    },
    /// Diagnostics (not an HCS call): keep the request queue of the system of `handle`
    /// blocked until [`RequestBody::ReleaseHold`] with the same `hold`, so that operations
    /// issued meanwhile stay pending. Fails with `HCS_E_SYSTEM_NOT_FOUND` once the system
    /// has stopped.
    HoldSystem {
        /// The system handle.
        handle: SystemHandle,
        /// A client-chosen number naming the hold.
        hold: u64,
    },
    /// Diagnostics: releases a [`RequestBody::HoldSystem`].
    ReleaseHold {
        /// The hold's number.
        hold: u64,
    },
    /// Diagnostics: how many compute systems and VMs the host has, as
    /// `{"Systems":N,"Vms":N}`.
    LiveCounts,
}

impl RequestBody {
    /// The name used in logs and in error documents' phase ("Construct", "Open", ...).
    pub fn phase(&self) -> &'static str {
        match self {
            RequestBody::CreateSystem { .. } => "Construct",
            RequestBody::OpenSystem { .. } => "Open",
            RequestBody::CloseSystem { .. } => "Close",
            RequestBody::Enumerate { .. } => "Enumerate",
            RequestBody::System { request, .. } => request.phase(),
            RequestBody::OpenProcess { .. } => "OpenProcess",
            RequestBody::CloseProcess { .. } => "CloseProcess",
            RequestBody::Process { request, .. } => request.phase(),
            RequestBody::GetServiceProperties { .. } => "GetServiceProperties",
            RequestBody::ModifyServiceSettings { .. } => "ModifyServiceSettings",
            RequestBody::SubmitWerReport { .. } => "SubmitWerReport",
            RequestBody::HoldSystem { .. } => "HoldSystem",
            RequestBody::ReleaseHold { .. } => "ReleaseHold",
            RequestBody::LiveCounts => "LiveCounts",
        }
    }
}

/// The asynchronous requests on one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProcessRequest {
    /// `HcsTerminateProcess`.
    Terminate,
    /// `HcsSignalProcess` with its `SignalProcessOptions`.
    Signal(Option<String>),
    /// `HcsGetProcessInfo`.
    GetInfo,
    /// `HcsGetProcessProperties` with its query.
    GetProperties(Option<String>),
    /// `HcsModifyProcess` with its `ProcessModifyRequest`.
    Modify(String),
}

impl ProcessRequest {
    /// The name used in logs and in error documents' phase.
    pub fn phase(&self) -> &'static str {
        match self {
            ProcessRequest::Terminate => "TerminateProcess",
            ProcessRequest::Signal(_) => "SignalProcess",
            ProcessRequest::GetInfo => "GetProcessInfo",
            ProcessRequest::GetProperties(_) => "GetProcessProperties",
            ProcessRequest::Modify(_) => "ModifyProcess",
        }
    }
}

/// The asynchronous requests on one compute system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SystemRequest {
    /// `HcsStartComputeSystem`.
    Start,
    /// `HcsShutDownComputeSystem` with its `ShutdownOptions`.
    Shutdown(Option<String>),
    /// `HcsTerminateComputeSystem`.
    Terminate,
    /// `HcsCrashComputeSystem` with its `CrashOptions`.
    Crash(Option<String>),
    /// `HcsPauseComputeSystem` with its `PauseOptions`.
    Pause(Option<String>),
    /// `HcsResumeComputeSystem`.
    Resume,
    /// `HcsSaveComputeSystem` with its `SaveOptions`.
    Save(Option<String>),
    /// `HcsGetComputeSystemProperties` with its `System_PropertyQuery`.
    GetProperties(Option<String>),
    /// `HcsModifyComputeSystem` with its `ModifySettingRequest`.
    Modify(String),
    /// `HcsCreateProcess`: bind `process` to a new process started with `parameters`.
    CreateProcess {
        /// The process handle to bind.
        process: ProcessHandle,
        /// The `ProcessParameters` document.
        parameters: String,
    },
}

impl SystemRequest {
    /// The name used in logs and in error documents' phase ("Start", "Pause", ...).
    pub fn phase(&self) -> &'static str {
        match self {
            SystemRequest::Start => "Start",
            SystemRequest::Shutdown(_) => "Shutdown",
            SystemRequest::Terminate => "Terminate",
            SystemRequest::Crash(_) => "Crash",
            SystemRequest::Pause(_) => "Pause",
            SystemRequest::Resume => "Resume",
            SystemRequest::Save(_) => "Save",
            SystemRequest::GetProperties(_) => "GetProperties",
            SystemRequest::Modify(_) => "Modify",
            SystemRequest::CreateProcess { .. } => "CreateProcess",
        }
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id.
    pub id: u64,
    /// The outcome.
    pub result: HResult,
    /// The result document: call data on success, a `ResultError` on failure (if any).
    pub document: Option<String>,
}

/// Something that happened to a system, told to every handle of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notification {
    /// The system stopped; sent once to each handle bound to it, before the reply of the
    /// request that stopped it (HCS-API rule 53).
    SystemExited {
        /// The handle told.
        handle: SystemHandle,
        /// The `SystemExitStatus` document.
        status: String,
    },
    /// The guest agent's connection ended (`HcsEventSystemGuestConnectionClosed`),
    /// expectedly or not: its agent exited, or the guest powered off, was terminated or
    /// crashed. Sent once to each handle bound to the system when it ended, and only for
    /// a system whose Start made a guest connection; when a stop ends it, before that
    /// stop's `SystemExited`.
    GuestConnectionClosed {
        /// The handle told.
        handle: SystemHandle,
    },
    /// A guest process ended (or was lost with its system); sent once to each process
    /// handle bound to it, after the reply that bound the handle.
    ProcessExited {
        /// The process handle told.
        handle: ProcessHandle,
        /// The `ProcessStatus` document.
        status: String,
    },
}

/// A message from the host to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HostMessage {
    /// The answer to a request.
    Reply(Reply),
    /// An event.
    Notification(Notification),
}

/// Where a session's messages go. Called from host threads (and, for requests the host
/// can answer at once, from inside [`crate::Session::send`]); messages about one system
/// arrive in order. Implementations must return promptly and never call back into the
/// session from inside `deliver`.
pub trait MessageSink: Send + Sync {
    /// Takes one message.
    fn deliver(&self, message: HostMessage);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message survives a trip through JSON unchanged, as a socket transport
    /// (the service) will carry them.
    #[test]
    fn messages_round_trip_through_json() {
        let requests = vec![
            RequestBody::CreateSystem {
                handle: 1,
                id: "vm".into(),
                configuration: "{}".into(),
            },
            RequestBody::OpenSystem {
                handle: 2,
                id: "vm".into(),
            },
            RequestBody::CloseSystem { handle: 2 },
            RequestBody::Enumerate {
                query: Some(r#"{"Owners":["a"]}"#.into()),
            },
            RequestBody::System {
                handle: 1,
                request: SystemRequest::Pause(Some("{}".into())),
            },
            RequestBody::System {
                handle: 1,
                request: SystemRequest::Terminate,
            },
            RequestBody::System {
                handle: 1,
                request: SystemRequest::CreateProcess {
                    process: 3,
                    parameters: r#"{"CommandLine":"true"}"#.into(),
                },
            },
            RequestBody::OpenProcess {
                system: 1,
                process: 4,
                pid: 42,
            },
            RequestBody::Process {
                handle: 3,
                request: ProcessRequest::Signal(Some(r#"{"Signal":15}"#.into())),
            },
            RequestBody::CloseProcess { handle: 3 },
            RequestBody::GetServiceProperties {
                query: Some(r#"{"PropertyTypes":["Basic"]}"#.into()),
            },
        ];
        for (id, body) in requests.into_iter().enumerate() {
            let request = Request {
                id: id as u64,
                body,
            };
            let text = serde_json::to_string(&request).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), request);
        }
        let messages = vec![
            HostMessage::Reply(Reply {
                id: 7,
                result: HResult::HCS_E_INVALID_STATE,
                document: Some(r#"{"Error":-2143878907}"#.into()),
            }),
            HostMessage::Notification(Notification::GuestConnectionClosed { handle: 1 }),
            HostMessage::Notification(Notification::SystemExited {
                handle: 1,
                status: r#"{"Status":0,"ExitType":"ForcedExit"}"#.into(),
            }),
        ];
        for message in messages {
            let text = serde_json::to_string(&message).unwrap();
            assert_eq!(serde_json::from_str::<HostMessage>(&text).unwrap(), message);
        }
    }
}
