//! The messages between a client and a host: requests, replies and notifications.
//!
//! Every client talks to a host through these messages only, whether the host runs in
//! the client's process (the embedded host) or in the service. A client opens a session
//! (`hcs_host::Session`), sends [`Request`]s, and receives [`HostMessage`]s in order per
//! compute system: a reply for every request, and notifications for the system handles
//! it holds. The messages are serde types so that a socket transport carries them as is;
//! the descriptors of a [`StartedProcess`] travel beside them (see [`crate::StdHandles`]).
//!
//! System handles are numbers chosen by the client, unique within its session; the host
//! binds them to compute systems on create and open, so the client can hand a handle to
//! its caller before the host has answered (HCS-API rule 20).

use crate::{Failure, StdHandles};
use hcs_schema::HResult;
use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;

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
    /// Not an HCS call: judge a `ComputeSystem` document as a create on this host would,
    /// creating nothing. Answered with a [`crate::Validation`] document.
    ValidateDocument {
        /// The `ComputeSystem` document.
        configuration: String,
    },
    /// Not an HCS call: the host socket of a ComPort's `NamedPipe` value (`\\.\pipe\NAME`
    /// or an absolute path), as this host would create it. Answered with
    /// `{"Socket":"/path"}` (`null` for `""`: disconnected).
    ComPortSocket {
        /// The `NamedPipe` value.
        named_pipe: String,
    },
    /// For tests of the operation model only: refused (`E_ACCESSDENIED`) by a host not
    /// started for tests (see `docs/settings.md`).
    Diagnostic(Diagnostic),
}

/// Requests that exist for tests: a production host refuses them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Diagnostic {
    /// Keep the request queue of the system of `handle` blocked until
    /// [`Diagnostic::ReleaseHold`] with the same `hold`, so that operations issued
    /// meanwhile stay pending. Fails with `HCS_E_SYSTEM_NOT_FOUND` once the system has
    /// stopped.
    HoldSystem {
        /// The system handle.
        handle: SystemHandle,
        /// A client-chosen number naming the hold.
        hold: u64,
    },
    /// Releases a [`Diagnostic::HoldSystem`].
    ReleaseHold {
        /// The hold's number.
        hold: u64,
    },
    /// How many compute systems and VMs the host has, as `{"Systems":N,"Vms":N}`.
    LiveCounts,
}

impl Diagnostic {
    /// The name used in logs and error documents.
    pub fn phase(&self) -> &'static str {
        match self {
            Diagnostic::HoldSystem { .. } => "HoldSystem",
            Diagnostic::ReleaseHold { .. } => "ReleaseHold",
            Diagnostic::LiveCounts => "LiveCounts",
        }
    }
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
            RequestBody::ValidateDocument { .. } => "Validate",
            RequestBody::ComPortSocket { .. } => "ComPortSocket",
            RequestBody::Diagnostic(diagnostic) => diagnostic.phase(),
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
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id.
    pub id: u64,
    /// The outcome.
    pub result: HResult,
    /// The result document: call data on success, a `ResultError` on failure (if any).
    pub document: Option<String>,
    /// What a successful `CreateProcess` started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<StartedProcess>,
}

impl Reply {
    /// A reply with `result` and `document`.
    pub fn new(id: u64, result: HResult, document: Option<String>) -> Reply {
        Reply {
            id,
            result,
            document,
            process: None,
        }
    }

    /// The reply to request `id`: the document on success, else the failure's HRESULT
    /// and its `ResultError` for `phase` ("Construct", "Start", ...).
    pub fn outcome(id: u64, outcome: Result<Option<String>, Failure>, phase: &str) -> Reply {
        match outcome {
            Ok(document) => Reply::new(id, HResult::S_OK, document),
            Err(failure) => Reply::new(id, failure.hresult, Some(failure.document(phase))),
        }
    }

    /// The reply of a `CreateProcess` that started `process`.
    pub fn started(id: u64, process: StartedProcess) -> Reply {
        Reply {
            process: Some(process),
            ..Reply::new(id, HResult::S_OK, None)
        }
    }
}

/// A process `CreateProcess` started: its id in the guest and the host ends of the std
/// handles it was created with, owned by whoever holds the reply.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct StartedProcess {
    /// The process id in the guest.
    pub pid: u32,
    /// Its std handles.
    pub std_handles: StdHandles,
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
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum HostMessage {
    /// The answer to a request.
    Reply(Reply),
    /// An event.
    Notification(Notification),
}

impl HostMessage {
    /// Takes out the descriptors this message owns, for a frame to carry beside it
    /// (see [`StdHandles::detach`]); none for most messages.
    pub fn detach_fds(&mut self) -> Vec<OwnedFd> {
        match self {
            HostMessage::Reply(Reply {
                process: Some(process),
                ..
            }) => process.std_handles.detach(),
            _ => Vec::new(),
        }
    }

    /// Gives the message the descriptors its frame brought (see [`StdHandles::attach`]);
    /// those it has no place for are dropped, closing them.
    pub fn attach_fds(&mut self, fds: Vec<OwnedFd>) {
        match self {
            HostMessage::Reply(Reply {
                process: Some(process),
                ..
            }) => drop(process.std_handles.attach(fds)),
            _ => drop(fds),
        }
    }
}

/// Where a session's messages go. Called from host threads (and, for requests the host
/// can answer at once, from inside `hcs_host::Session::send`); messages about one system
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
            RequestBody::ValidateDocument {
                configuration: "{}".into(),
            },
            RequestBody::ComPortSocket {
                named_pipe: r"\\.\pipe\x".into(),
            },
            RequestBody::Diagnostic(Diagnostic::HoldSystem { handle: 1, hold: 2 }),
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
            HostMessage::Reply(Reply::new(
                7,
                HResult::HCS_E_INVALID_STATE,
                Some(r#"{"Error":-2143878907}"#.into()),
            )),
            HostMessage::Reply(Reply::started(
                8,
                StartedProcess {
                    pid: 42,
                    std_handles: StdHandles {
                        stdin: Some(crate::Descriptor::InFrame),
                        stdout: None,
                        stderr: Some(crate::Descriptor::InFrame),
                    },
                },
            )),
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
