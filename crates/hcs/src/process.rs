//! The idiomatic process API: a guest process with owned stdio and a handle that closes
//! itself.
//!
//! ```no_run
//! # fn demo(system: &hcs::ComputeSystem) -> Result<(), hcs::Error> {
//! use std::io::Read;
//! let mut process = system.create_process(
//!     r#"{"CommandArgs":["uname","-a"],"CreateStdOutPipe":true}"#,
//! )?;
//! let mut output = String::new();
//! process.take_stdout().unwrap().read_to_string(&mut output).unwrap();
//! let status = process.wait_for_exit(None)?; // a `ProcessStatus` document
//! # Ok(()) }
//! ```

use crate::api;
use crate::error::{check, Error};
use crate::idiomatic::{document, nothing, timeout_ms, ComputeSystem, Operation, Pending};
use crate::types::{HcsOperation, HcsProcess, ProcessInformation};
use hcs_schema::HResult;
use std::fs::File;
use std::os::fd::{FromRawFd, RawFd};
use std::time::Duration;

/// A process in a compute system's guest; dropping it closes the handle (the process
/// goes on).
#[derive(Debug)]
pub struct Process {
    handle: HcsProcess,
    pid: u32,
    stdio: [Option<File>; 3],
}

/// Owns a descriptor that this process was just handed.
fn file(fd: Option<RawFd>) -> Option<File> {
    // SAFETY: the descriptor was handed to us by `get_operation_process_information`,
    // which transfers its ownership; nothing else owns it.
    fd.map(|fd| unsafe { File::from_raw_fd(fd) })
}

impl ComputeSystem {
    /// Starts a process from a `ProcessParameters` document and waits until it runs.
    pub fn create_process(&self, parameters: &str) -> Result<Process, Error> {
        let operation = Operation::new();
        let handle = api::create_process(self.handle(), parameters, operation.handle(), None)
            .map_err(Error::from_hresult)?;
        let result = operation.wait(None);
        let info = api::get_operation_process_information(operation.handle());
        match (result, info) {
            (
                Ok(_),
                Some(ProcessInformation {
                    process_id,
                    std_input,
                    std_output,
                    std_error,
                }),
            ) => Ok(Process {
                handle,
                pid: process_id,
                stdio: [file(std_input), file(std_output), file(std_error)],
            }),
            (Err(error), _) => {
                api::close_process(handle);
                Err(error)
            }
            (Ok(_), None) => {
                api::close_process(handle);
                Err(Error::from_hresult(HResult::E_UNEXPECTED))
            }
        }
    }

    /// Opens a running process of this system by its guest pid.
    pub fn open_process(&self, pid: u32) -> Result<Process, Error> {
        let handle = api::open_process(self.handle(), pid, crate::types::GENERIC_ALL)
            .map_err(Error::from_hresult)?;
        Ok(Process {
            handle,
            pid,
            stdio: [None, None, None],
        })
    }
}

impl Process {
    /// The raw handle, for the flat API.
    pub fn handle(&self) -> HcsProcess {
        self.handle
    }

    /// The process id in the guest.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The process's stdin (write to it; drop it to give the process EOF), once.
    pub fn take_stdin(&mut self) -> Option<File> {
        self.stdio[0].take()
    }

    /// The process's stdout (read it to EOF), once.
    pub fn take_stdout(&mut self) -> Option<File> {
        self.stdio[1].take()
    }

    /// The process's stderr, once.
    pub fn take_stderr(&mut self) -> Option<File> {
        self.stdio[2].take()
    }

    fn call(&self, issue: impl FnOnce(HcsProcess, HcsOperation) -> HResult) -> Pending<()> {
        let operation = Operation::new();
        let started = issue(self.handle, operation.handle());
        Pending::new(operation, started, nothing)
    }

    /// Sends a signal, with `SignalProcessOptions` (`{"Signal":15}` or `{"Signal":"CtrlC"}`).
    pub fn signal(&self, options: Option<&str>) -> Pending<()> {
        self.call(|p, o| api::signal_process(p, o, options))
    }

    /// Kills the process (SIGKILL).
    pub fn terminate(&self) -> Pending<()> {
        self.call(|p, o| api::terminate_process(p, o, None))
    }

    /// Applies a `ProcessModifyRequest` (close stdin, console size).
    pub fn modify(&self, settings: &str) -> Pending<()> {
        self.call(|p, o| api::modify_process(p, o, settings))
    }

    /// The `ProcessStatus` document.
    pub fn properties(&self) -> Pending<String> {
        let operation = Operation::new();
        let started = api::get_process_properties(self.handle, operation.handle(), None);
        Pending::new(operation, started, document)
    }

    /// Blocks until the process exits (`None` = no limit); returns its `ProcessStatus`.
    pub fn wait_for_exit(&self, timeout: Option<Duration>) -> Result<String, Error> {
        let (hresult, status) = api::wait_for_process_exit(self.handle, timeout_ms(timeout));
        check(hresult, status).map(document)
    }

    /// Blocks until the process exits and returns its exit code; an error if it was lost
    /// with its system (`LastWaitResult` set).
    pub fn wait_for_exit_code(&self, timeout: Option<Duration>) -> Result<i32, Error> {
        let status = self.wait_for_exit(timeout)?;
        let status: hcs_schema::ProcessStatus =
            hcs_schema::parse(&status).map_err(|_| Error::from_hresult(HResult::E_UNEXPECTED))?;
        match status.last_wait_result {
            Some(code) if code != 0 => Err(Error::from_hresult(HResult(code))),
            _ => Ok(status.exit_code.unwrap_or(0) as i32),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        api::close_process(self.handle);
    }
}
