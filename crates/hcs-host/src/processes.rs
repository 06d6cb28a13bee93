//! Guest processes of one compute system: the table of processes created through the host,
//! the handles bound to them, their exit statuses, and the translation of HCS process
//! documents into guest-agent requests.
//!
//! A process enters the table when the agent reports it created, and its `ProcessExited`
//! is told to every handle bound to it, exactly once per handle, always after the reply
//! that bound the handle (both are delivered under the table's lock). An exited process
//! stays in the table while a handle to it is open, so that requests on it answer
//! `HCS_E_PROCESS_ALREADY_STOPPED`. A process is known by its guest pid and the boot of
//! the guest it ran in ([`ProcessKey`]): a guest that reboots in place reuses pids.

use crate::peer::Peer;
use hcs_guest_protocol as proto;
use hcs_protocol::Failure;
use hcs_protocol::{HostMessage, Notification, ProcessHandle};
use hcs_schema::{HResult, ProcessParameters, ProcessSignal, SignalValue};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

/// How a guest process ended, as far as the host knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// It exited with this code (128 + n for signal n).
    Exited(i32),
    /// The system stopped first; the code is the reason (`LastWaitResult`).
    Lost(HResult),
}

/// A process of the table: its guest pid in one boot of the guest (the system's count of
/// guest resets when it was created), as a guest that reboots in place reuses pids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ProcessKey {
    /// How many times the guest had reset itself when the process was created.
    pub boot: u64,
    /// The guest pid.
    pub pid: u32,
}

#[derive(Default)]
struct Entry {
    ending: Option<Ending>,
    handles: Vec<(Weak<Peer>, ProcessHandle)>,
}

/// The processes of one system.
#[derive(Default)]
pub(crate) struct ProcessTable {
    entries: Mutex<HashMap<ProcessKey, Entry>>,
}

/// The `ProcessStatus` of guest process `pid` lost with its system for `reason`.
pub fn lost_status_document(pid: u32, reason: HResult) -> String {
    status_document(pid, Some(Ending::Lost(reason)))
}

/// The `ProcessStatus` document of `pid`.
pub(crate) fn status_document(pid: u32, ending: Option<Ending>) -> String {
    let status = hcs_schema::ProcessStatus {
        process_id: Some(pid),
        exited: Some(ending.is_some()),
        exit_code: match ending {
            Some(Ending::Exited(code)) => Some(code as u32),
            _ => None,
        },
        last_wait_result: Some(match ending {
            Some(Ending::Lost(reason)) => reason.0,
            _ => 0,
        }),
    };
    serde_json::to_string(&status).unwrap_or_else(|_| "{}".into())
}

fn exited_message(handle: ProcessHandle, pid: u32, ending: Ending) -> HostMessage {
    HostMessage::Notification(Notification::ProcessExited {
        handle,
        status: status_document(pid, Some(ending)),
    })
}

impl ProcessTable {
    /// Binds `handle` of `session` to `key` and delivers `reply` to it, then the exit if the
    /// process has already ended. With `must_exist`, an unknown or exited pid is refused
    /// (`HcsOpenProcess`) and the reply is not sent.
    pub fn bind(
        &self,
        session: &Arc<Peer>,
        handle: ProcessHandle,
        key: ProcessKey,
        must_exist: bool,
        reply: HostMessage,
    ) -> Result<(), HostMessage> {
        let mut entries = self.entries.lock();
        if must_exist && entries.get(&key).is_none_or(|e| e.ending.is_some()) {
            return Err(reply);
        }
        let entry = entries.entry(key).or_default();
        entry.handles.push((Arc::downgrade(session), handle));
        let ending = entry.ending;
        session.deliver(reply);
        if let Some(ending) = ending {
            session.deliver(exited_message(handle, key.pid, ending));
        }
        Ok(())
    }

    /// Releases a handle; forgets a process that has ended and has no handle left.
    pub fn unbind(&self, session_id: u64, handle: ProcessHandle) {
        let mut entries = self.entries.lock();
        let Some(key) = find(&entries, session_id, handle) else {
            return;
        };
        if let Some(entry) = entries.get_mut(&key) {
            entry
                .handles
                .retain(|(s, h)| !(*h == handle && s.upgrade().is_none_or(|s| s.id == session_id)));
            if entry.handles.is_empty() && entry.ending.is_some() {
                entries.remove(&key);
            }
        }
    }

    /// The process that `handle` of session `session_id` is bound to, if any.
    pub fn key_of(&self, session_id: u64, handle: ProcessHandle) -> Option<ProcessKey> {
        find(&self.entries.lock(), session_id, handle)
    }

    /// Records how `key` ended and tells its handles (once: a second report is ignored).
    pub fn ended(&self, key: ProcessKey, ending: Ending) {
        let mut entries = self.entries.lock();
        let entry = entries.entry(key).or_default();
        if entry.ending.is_some() {
            return;
        }
        entry.ending = Some(ending);
        for (session, handle) in &entry.handles {
            if let Some(session) = session.upgrade() {
                session.deliver(exited_message(*handle, key.pid, ending));
            }
        }
    }

    /// The system stopped or its guest connection ended: every process still running is
    /// lost with `reason`.
    pub fn lose_all(&self, reason: HResult) {
        let running: Vec<ProcessKey> = self
            .entries
            .lock()
            .iter()
            .filter(|(_, e)| e.ending.is_none())
            .map(|(key, _)| *key)
            .collect();
        for key in running {
            self.ended(key, Ending::Lost(reason));
        }
    }

    /// How `key` ended, if it has.
    pub fn ending(&self, key: ProcessKey) -> Option<Ending> {
        self.entries.lock().get(&key).and_then(|e| e.ending)
    }
}

fn find(
    entries: &HashMap<ProcessKey, Entry>,
    session_id: u64,
    handle: ProcessHandle,
) -> Option<ProcessKey> {
    entries.iter().find_map(|(key, entry)| {
        entry
            .handles
            .iter()
            .any(|(s, h)| *h == handle && s.upgrade().is_some_and(|s| s.id == session_id))
            .then_some(*key)
    })
}

/// `PATH` for a process whose environment sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Splits a command line on whitespace, double quotes grouping (HCS-API §7.5: no shell).
pub(crate) fn split_command_line(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                started = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if started {
                    args.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        args.push(current);
    }
    args
}

/// What a `ProcessParameters` document asks of the agent, and which pipes it wants
/// (stdin, stdout, stderr).
pub(crate) fn create_request(
    parameters: &ProcessParameters,
) -> Result<(proto::CreateProcess, [bool; 3]), Failure> {
    let argv = match &parameters.command_args {
        Some(args) if !args.is_empty() => args.clone(),
        _ => {
            let line = parameters.command_line.as_deref().unwrap_or("");
            let mut argv = split_command_line(line);
            if argv.is_empty() {
                if let Some(app) = parameters
                    .application_name
                    .as_deref()
                    .filter(|a| !a.is_empty())
                {
                    argv.push(app.to_owned());
                }
            }
            argv
        }
    };
    if argv.is_empty() {
        return Err(Failure::at(
            HResult::E_INVALIDARG,
            "$.CommandLine",
            "no program to run: give CommandLine, CommandArgs or ApplicationName",
        ));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(Failure::at(
            HResult::E_INVALIDARG,
            "$.CommandArgs",
            "an argument contains a NUL character",
        ));
    }
    let mut env: BTreeMap<String, String> = parameters.environment.clone().unwrap_or_default();
    if env.keys().any(|k| k.is_empty() || k.contains(['=', '\0']))
        || env.values().any(|v| v.contains('\0'))
    {
        return Err(Failure::at(
            HResult::E_INVALIDARG,
            "$.Environment",
            "a variable name is empty or contains '=' or NUL, or a value contains NUL",
        ));
    }
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());
    let terminal = if parameters.emulate_console.unwrap_or(false) {
        let size = parameters.console_size.as_deref().unwrap_or(&[]);
        let rows = size.first().copied().filter(|r| *r > 0).unwrap_or(24);
        let cols = size.get(1).copied().filter(|c| *c > 0).unwrap_or(80);
        Some((rows, cols))
    } else {
        None
    };
    let pipes = [
        parameters.create_std_in_pipe.unwrap_or(false),
        parameters.create_std_out_pipe.unwrap_or(false),
        // With a console, stderr goes to the terminal (HCS-API §7.5).
        parameters.create_std_err_pipe.unwrap_or(false) && terminal.is_none(),
    ];
    let request = proto::CreateProcess {
        argv,
        env,
        cwd: parameters
            .working_directory
            .clone()
            .filter(|d| !d.is_empty()),
        user: parameters.user.clone().filter(|u| !u.is_empty()),
        terminal,
        ..proto::CreateProcess::default()
    };
    Ok((request, pipes))
}

/// The Linux signal for `SignalProcessOptions` (HCS-API §3.4): console signals by name, or
/// a signal number; no options = SIGTERM.
pub(crate) fn signal_number(options: Option<&str>) -> Result<i32, Failure> {
    let Some(options) = options else {
        return Ok(libc::SIGTERM);
    };
    let options = hcs_schema::parse::<hcs_schema::SignalProcessOptions>(options)?;
    match options.signal {
        None => Ok(libc::SIGTERM),
        Some(SignalValue::Named(name)) => Ok(match name {
            ProcessSignal::CtrlC => libc::SIGINT,
            ProcessSignal::CtrlBreak => libc::SIGQUIT,
            ProcessSignal::CtrlClose | ProcessSignal::CtrlLogOff => libc::SIGHUP,
            ProcessSignal::CtrlShutdown => libc::SIGTERM,
        }),
        Some(SignalValue::Number(n)) if (1..=64).contains(&n) => Ok(n),
        Some(SignalValue::Number(n)) => Err(Failure::at(
            HResult::E_INVALIDARG,
            "$.Signal",
            format!("{n} is not a Linux signal number (1 to 64)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_on_whitespace_with_quotes() {
        assert_eq!(split_command_line("echo  hi"), ["echo", "hi"]);
        assert_eq!(
            split_command_line(r#"sh -c "echo a  b" """#),
            ["sh", "-c", "echo a  b", ""]
        );
        assert!(split_command_line("   ").is_empty());
    }

    #[test]
    fn signals_map_from_names_and_numbers() {
        assert_eq!(signal_number(None).unwrap(), libc::SIGTERM);
        assert_eq!(
            signal_number(Some(r#"{"Signal":"CtrlC"}"#)).unwrap(),
            libc::SIGINT
        );
        assert_eq!(signal_number(Some(r#"{"Signal":9}"#)).unwrap(), 9);
        assert_eq!(
            signal_number(Some(r#"{"Signal":99}"#)).unwrap_err().hresult,
            HResult::E_INVALIDARG
        );
        assert_eq!(
            signal_number(Some(r#"{"Signal":"Nope"}"#))
                .unwrap_err()
                .hresult,
            HResult::HCS_E_INVALID_JSON
        );
    }

    #[test]
    fn parameters_become_an_agent_request() {
        let parameters: ProcessParameters = hcs_schema::parse(
            r#"{"CommandLine":"cat -","CreateStdInPipe":true,"CreateStdOutPipe":true,
                "Environment":{"A":"1"},"WorkingDirectory":"/tmp"}"#,
        )
        .unwrap();
        let (request, pipes) = create_request(&parameters).unwrap();
        assert_eq!(request.argv, ["cat", "-"]);
        assert_eq!(request.env["A"], "1");
        assert!(request.env.contains_key("PATH"));
        assert_eq!(request.cwd.as_deref(), Some("/tmp"));
        assert_eq!(pipes, [true, true, false]);
        let empty: ProcessParameters = hcs_schema::parse(r#"{"CommandLine":"  "}"#).unwrap();
        assert_eq!(
            create_request(&empty).unwrap_err().hresult,
            HResult::E_INVALIDARG
        );
    }
}
