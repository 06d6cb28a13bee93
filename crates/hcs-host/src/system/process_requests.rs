//! Processes through a system: `HcsCreateProcess` and `HcsOpenProcess`, and the requests on
//! a process (terminate, signal, info, properties, modify), carried to the guest agent.

use super::System;
use crate::lifecycle::{self, Verb, Verdict};
use crate::peer::{Peer, Requester};
use crate::processes::{Ending, ProcessKey};
use crate::refusals;
use hcs_guest_protocol as proto;
use hcs_protocol::{
    Failure, HostMessage, ProcessHandle, ProcessRequest, Reply, StartedProcess, StdHandles,
    SystemRequest,
};
use hcs_schema::HResult;
use std::sync::Arc;

impl System {
    /// `HcsCreateProcess`: checked on the worker, then run on a thread of its own so that
    /// other requests (and other creates) need not wait for the guest.
    pub(super) fn create_process(
        self: &Arc<Self>,
        seq: u64,
        requester: Option<Requester>,
        handle: ProcessHandle,
        parameters: &str,
    ) {
        let Some(requester) = requester else {
            return;
        };
        let phase = "CreateProcess";
        let checked = (|| {
            let parameters = hcs_schema::parse::<hcs_schema::ProcessParameters>(parameters)?;
            let life = self.life();
            match lifecycle::verdict(life, Verb::CreateProcess) {
                Verdict::Run(_) if !self.settings.guest_connection => Err(Failure::new(
                    HResult::HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
                    format!(
                        "compute system '{}' has no guest to run a process in: processes \
                         need VirtualMachine.GuestConnection and a guest with the agent",
                        self.id
                    ),
                )),
                Verdict::Run(_) => {
                    let guest = self.guest_in_boot().ok_or_else(|| {
                        Failure::new(
                            HResult::HCS_E_CONNECTION_CLOSED,
                            format!("the guest agent of '{}' is not connected", self.id),
                        )
                    })?;
                    Ok((guest, crate::processes::create_request(&parameters)?))
                }
                Verdict::NotFound => Err(self.not_found()),
                _ => Err(refusals::invalid_state(
                    Verb::CreateProcess.words(),
                    &self.id,
                    life,
                )),
            }
        })();
        let ((guest, boot), (request, [stdin, stdout, stderr])) = match checked {
            Ok(ready) => ready,
            Err(failure) => return requester.reply_outcome(Err(failure), phase),
        };
        let system = Arc::clone(self);
        let work = move || {
            let outcome = guest.create_process(request, stdin, stdout, stderr);
            let peer = requester.peer.upgrade();
            match (outcome, peer) {
                (Ok(streams), Some(peer)) => {
                    let key = ProcessKey {
                        boot,
                        pid: streams.pid,
                    };
                    let reply = HostMessage::Reply(Reply::started(
                        requester.request_id,
                        StartedProcess {
                            pid: streams.pid,
                            std_handles: StdHandles::new(
                                streams.stdin,
                                streams.stdout,
                                streams.stderr,
                            ),
                        },
                    ));
                    // Binding cannot be refused here (`must_exist` is false).
                    let _ = system.processes.bind(&peer, handle, key, false, reply);
                    // The guest rebooted under the create: the process is gone with it.
                    if system.guest_boot() != boot {
                        system
                            .processes
                            .ended(key, Ending::Lost(HResult::HCS_E_CONNECTION_CLOSED));
                    }
                }
                // Nobody to hand the streams to: dropping them closes them.
                (Ok(_), None) => {}
                (Err(failure), _) => match system.cut_cause(seq) {
                    Some(cause) => system.reply_cut(
                        &requester,
                        &cause,
                        &SystemRequest::CreateProcess {
                            process: handle,
                            parameters: String::new(),
                        },
                    ),
                    None => requester.reply_outcome(Err(failure), phase),
                },
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("hcs-create-process".into())
            .spawn(work)
        {
            tracing::warn!(error = %e, "no thread for a process create");
        }
    }

    /// `HcsOpenProcess`: binds `handle` to a running process created through this host.
    pub fn open_process(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        request_id: u64,
        handle: ProcessHandle,
        key: ProcessKey,
    ) -> bool {
        let reply = HostMessage::Reply(Reply::new(request_id, HResult::S_OK, None));
        self.processes.bind(peer, handle, key, true, reply).is_ok()
    }

    /// A request on process `key` (from a handle of `created` = made by HcsCreateProcess).
    pub fn process_request(
        self: &Arc<Self>,
        requester: Requester,
        key: ProcessKey,
        created: bool,
        request: ProcessRequest,
    ) {
        let pid = key.pid;
        let phase = request.phase();
        let ending = self.processes.ending(key);
        let stopped = || refusals::process_stopped(pid);
        let to_guest = match &request {
            ProcessRequest::GetInfo if !created => {
                return requester.reply_outcome(
                    Err(Failure::new(
                        HResult::HCS_E_PROCESS_INFO_NOT_AVAILABLE,
                        format!(
                            "process {pid} was opened by id: its start-up information \
                             belongs to the handle that created it"
                        ),
                    )),
                    phase,
                );
            }
            ProcessRequest::GetInfo => {
                let document = serde_json::json!({ "ProcessId": pid }).to_string();
                return requester.reply_outcome(Ok(Some(document)), phase);
            }
            ProcessRequest::GetProperties(_) => {
                let document = crate::processes::status_document(pid, ending);
                return requester.reply_outcome(Ok(Some(document)), phase);
            }
            ProcessRequest::Terminate => match ending {
                Some(_) => return requester.reply_outcome(Err(stopped()), phase),
                None => proto::Request::Signal {
                    pid,
                    signal: libc::SIGKILL,
                },
            },
            ProcessRequest::Signal(options) => {
                let signal = match crate::processes::signal_number(options.as_deref()) {
                    Ok(signal) => signal,
                    Err(failure) => return requester.reply_outcome(Err(failure), phase),
                };
                if ending.is_some() {
                    return requester.reply_outcome(Err(stopped()), phase);
                }
                proto::Request::Signal { pid, signal }
            }
            ProcessRequest::Modify(settings) => match modify_request(pid, settings) {
                Ok(Some(_)) if ending.is_some() => {
                    return requester.reply_outcome(Err(stopped()), phase)
                }
                Ok(Some(request)) => request,
                Ok(None) => return requester.reply_outcome(Ok(None), phase),
                Err(failure) => return requester.reply_outcome(Err(failure), phase),
            },
        };
        // A process of an earlier boot of the guest is gone with it.
        let Some(guest) = self
            .guest_in_boot()
            .and_then(|(guest, boot)| (boot == key.boot).then_some(guest))
        else {
            return requester.reply_outcome(Err(stopped()), phase);
        };
        let system = Arc::clone(self);
        let work = move || {
            let outcome = guest.request(to_guest).map(|_| None);
            // A process that ended meanwhile answers as ended (rule 41).
            let outcome = match outcome {
                Err(f)
                    if f.hresult == HResult::HCS_E_CONNECTION_CLOSED
                        || system.processes.ending(key).is_some() =>
                {
                    if system.processes.ending(key).is_some() {
                        Err(refusals::process_stopped(pid))
                    } else {
                        Err(f)
                    }
                }
                other => other,
            };
            requester.reply_outcome(outcome, phase);
        };
        if let Err(e) = std::thread::Builder::new()
            .name("hcs-process-request".into())
            .spawn(work)
        {
            tracing::warn!(error = %e, "no thread for a process request");
        }
    }
}

/// The agent request for a `ProcessModifyRequest`, or `None` when there is nothing to ask
/// (closing the host's own ends of stdout or stderr is the client's business).
fn modify_request(pid: u32, settings: &str) -> Result<Option<proto::Request>, Failure> {
    let request = hcs_schema::parse::<hcs_schema::ProcessModifyRequest>(settings)?;
    match request.operation {
        Some(hcs_schema::ModifyOperation::ConsoleSize) => {
            let size = request.console_size.ok_or_else(|| {
                Failure::at(
                    HResult::HCS_E_INVALID_JSON,
                    "$.ConsoleSize",
                    "required for the ConsoleSize operation",
                )
            })?;
            Ok(Some(proto::Request::ResizeConsole {
                pid,
                rows: size.height.unwrap_or(24),
                cols: size.width.unwrap_or(80),
            }))
        }
        Some(hcs_schema::ModifyOperation::CloseHandle) => {
            let handle = request.close_handle.and_then(|c| c.handle).ok_or_else(|| {
                Failure::at(
                    HResult::HCS_E_INVALID_JSON,
                    "$.CloseHandle.Handle",
                    "required for the CloseHandle operation",
                )
            })?;
            Ok(match handle {
                hcs_schema::StdHandle::StdIn | hcs_schema::StdHandle::All => {
                    Some(proto::Request::CloseStdin { pid })
                }
                hcs_schema::StdHandle::StdOut | hcs_schema::StdHandle::StdErr => None,
            })
        }
        None => Err(Failure::at(
            HResult::HCS_E_INVALID_JSON,
            "$.Operation",
            "required property is missing",
        )),
    }
}
