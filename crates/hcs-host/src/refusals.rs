//! Every refusal the host gives, worded once: the HRESULT and the sentence a person reads.
//!
//! The embedded host, the systems and `hcsd`'s router all answer with these, so the same
//! mistake reads the same whichever host a client talks to. Engine failures become
//! HRESULTs here too ([`engine_failure`], [`engine_unavailable`]).

use crate::lifecycle::Life;
use hcs_engine::EngineError;
use hcs_protocol::{Failure, ProcessHandle, SystemHandle};
use hcs_schema::HResult;

/// A system handle this session never opened (or closed).
pub fn unknown_system_handle(handle: SystemHandle) -> Failure {
    Failure::new(
        HResult::E_HANDLE,
        format!("system handle {handle} is not open in this session"),
    )
}

/// A system handle whose create failed before a system existed.
pub fn never_created() -> Failure {
    Failure::new(
        HResult::HCS_E_SYSTEM_NOT_FOUND,
        "this handle's compute system was never created: its create failed",
    )
}

/// A create of an id in use.
pub fn already_exists(id: &str) -> Failure {
    Failure::new(
        HResult::HCS_E_SYSTEM_ALREADY_EXISTS,
        format!("a compute system with id '{id}' already exists"),
    )
}

/// An open of an id that names no system.
pub fn no_such_system(id: &str) -> Failure {
    Failure::new(
        HResult::HCS_E_SYSTEM_NOT_FOUND,
        format!("no compute system with id '{id}' exists"),
    )
}

/// A request on a system that has stopped or was never created (HCS-API rule 27).
pub fn system_not_found(id: &str) -> Failure {
    Failure::new(
        HResult::HCS_E_SYSTEM_NOT_FOUND,
        format!("compute system '{id}' does not exist (it has stopped or was never created)"),
    )
}

/// A shutdown or terminate of a system that has stopped.
pub fn already_stopped(id: &str) -> Failure {
    Failure::new(
        HResult::HCS_E_SYSTEM_ALREADY_STOPPED,
        format!("compute system '{id}' has already stopped"),
    )
}

/// A request the system's state does not allow (HCS-API §3.3).
pub(crate) fn invalid_state(verb: &str, id: &str, life: Life) -> Failure {
    Failure::new(
        HResult::HCS_E_INVALID_STATE,
        format!(
            "cannot {verb} compute system '{id}' while it is {}",
            life.state_name()
        ),
    )
}

/// A process handle whose create did not succeed.
pub fn no_process(handle: ProcessHandle) -> Failure {
    Failure::new(
        HResult::ERROR_NOT_FOUND,
        format!("process handle {handle} names no process: its HcsCreateProcess did not succeed"),
    )
}

/// An open of a pid the system did not start.
pub fn no_such_process(id: &str, pid: u32) -> Failure {
    Failure::new(
        HResult::ERROR_NOT_FOUND,
        format!(
            "compute system '{id}' has no running process with id {pid} started through this host"
        ),
    )
}

/// A request on a process that has exited.
pub fn process_stopped(pid: u32) -> Failure {
    Failure::new(
        HResult::HCS_E_PROCESS_ALREADY_STOPPED,
        format!("process {pid} has already exited"),
    )
}

/// A hold on a system that is not running (a test request).
pub fn nothing_to_hold() -> Failure {
    Failure::new(
        HResult::HCS_E_SYSTEM_NOT_FOUND,
        "no running compute system to hold",
    )
}

/// A test request sent to a host not started for tests.
pub fn test_hooks_disabled(phase: &str) -> Failure {
    Failure::new(
        HResult::E_ACCESSDENIED,
        format!(
            "{phase} is a request for tests: this host was not started with its test hooks \
             (hcsd --test-hooks, or HCS_TEST_HOOKS=1 for an embedded host)"
        ),
    )
}

/// No engine of this host can run VMs at all.
pub fn engine_unavailable(error: &EngineError) -> Failure {
    Failure::new(
        HResult::HCS_E_HYPERV_NOT_INSTALLED,
        format!("virtual machines cannot run on this host: {error}"),
    )
}

/// An engine call that failed while the host did `what` (`"build the virtual machine"`,
/// `"start 'vm'"`): the one mapping from engine errors to HRESULTs.
pub fn engine_failure(what: &str, error: &EngineError) -> Failure {
    let hresult = match error {
        EngineError::Unavailable(_) => HResult::HCS_E_HYPERV_NOT_INSTALLED,
        EngineError::OutOfResources(_) => HResult::E_OUTOFMEMORY,
        EngineError::Ended(_) => HResult::HCS_E_UNEXPECTED_EXIT,
        EngineError::Failed(_) => HResult::E_FAIL,
    };
    Failure::new(hresult, format!("could not {what}: {error}"))
}
