//! The lifecycle of a compute system as pure tables: which state a request may run in and
//! where it leads (HCS-API §3.3), and what a request pending when the system stops
//! completes with (rules 53 and 54). No locks, no engine: the rest of `system` asks these
//! functions, and their unit tests read like the tables of HCS-API.md.
//!
//! ```text
//!            Create ok            Start             Pause
//! Creating ───────────> Created ───────> Running ───────> Paused
//!    │ create fails        │                │  <─────────────┘ Resume
//!    v                     └──── Terminate, last-handle close, guest exit ────> Stopping ──> Stopped
//! Failed                                   (from Created, Running or Paused)
//! ```

use hcs_engine::EngineExit;
use hcs_protocol::SystemRequest;
use hcs_schema::HResult;

/// Where a system is in its life (HCS-API §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    Creating,
    Created,
    Running,
    Paused,
    Stopping,
    Stopped,
    /// The create failed: the system never existed.
    Failed,
}

impl Life {
    /// The HCS name of the state, as `Properties.State` spells it.
    pub fn state_name(self) -> &'static str {
        match self {
            Life::Creating | Life::Created => "Created",
            Life::Running => "Running",
            Life::Paused => "Paused",
            Life::Stopping | Life::Stopped | Life::Failed => "Stopped",
        }
    }

    /// Stopping or stopped (the exit is under way or done).
    pub fn has_stopped(self) -> bool {
        matches!(self, Life::Stopping | Life::Stopped)
    }
}

/// The requests of the §3.3 table, without their documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Start,
    Pause,
    Resume,
    Save,
    Shutdown,
    Terminate,
    Crash,
    Modify,
    GetProperties,
    CreateProcess,
}

impl Verb {
    /// The verb of a request.
    pub fn of(request: &SystemRequest) -> Verb {
        match request {
            SystemRequest::Start => Verb::Start,
            SystemRequest::Pause(_) => Verb::Pause,
            SystemRequest::Resume => Verb::Resume,
            SystemRequest::Save(_) => Verb::Save,
            SystemRequest::Shutdown(_) => Verb::Shutdown,
            SystemRequest::Terminate => Verb::Terminate,
            SystemRequest::Crash(_) => Verb::Crash,
            SystemRequest::Modify(_) => Verb::Modify,
            SystemRequest::GetProperties(_) => Verb::GetProperties,
            SystemRequest::CreateProcess { .. } => Verb::CreateProcess,
        }
    }

    /// How an invalid-state refusal words it ("cannot start compute system ...").
    pub fn words(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Save => "save",
            Verb::Shutdown => "shut down",
            Verb::Terminate => "terminate",
            Verb::Crash => "crash",
            Verb::Modify => "modify",
            Verb::GetProperties => "query",
            Verb::CreateProcess => "create a process in",
        }
    }
}

/// What the §3.3 table says of a request in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Run it; `Some(state)` is where a successful engine call leads.
    Run(Option<Life>),
    /// Wait in the queue: the system is still being created.
    Queue,
    /// Stop the system (Terminate in a live state: at once, never behind the queue).
    Stop,
    /// Refuse with `HCS_E_INVALID_STATE`.
    InvalidState,
    /// Refuse with `HCS_E_SYSTEM_NOT_FOUND` (a stopped or never-created system, rule 27).
    NotFound,
    /// Refuse with `HCS_E_SYSTEM_ALREADY_STOPPED`.
    AlreadyStopped,
}

/// HCS-API §3.3: what `verb` does to a system in state `life`.
pub(crate) fn verdict(life: Life, verb: Verb) -> Verdict {
    use Life as L;
    use Verb as V;
    use Verdict::*;
    match (life, verb) {
        (L::Failed, _) => NotFound,
        (L::Stopping | L::Stopped, V::Shutdown | V::Terminate) => AlreadyStopped,
        (L::Stopping | L::Stopped, _) => NotFound,
        (L::Creating, V::Terminate) => Queue,
        (L::Creating, _) => Queue,
        (_, V::Terminate) => Stop,
        (L::Created, V::Start) => Run(Some(L::Running)),
        (L::Running, V::Pause) => Run(Some(L::Paused)),
        (L::Paused, V::Resume) => Run(Some(L::Running)),
        // Saving needs a paused system (HCS-API rule 58).
        (L::Paused, V::Save) => Run(None),
        (L::Running, V::Shutdown | V::Crash | V::CreateProcess) => Run(None),
        (L::Created | L::Running, V::Modify) => Run(None),
        (_, V::GetProperties) => Run(None),
        _ => InvalidState,
    }
}

/// Why a system stopped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StopCause {
    Terminate,
    LastHandleClosed,
    Guest(EngineExit),
}

impl StopCause {
    /// HCS-API rule 53: what a request still pending when the system stops completes with
    /// (`request` is `None` for what is not a system request: the processes it loses).
    pub fn pending_result(&self, request: Option<Verb>, stop_on_reset: bool) -> HResult {
        match self {
            StopCause::Terminate | StopCause::LastHandleClosed => HResult::HCS_E_TERMINATED,
            StopCause::Guest(exit) => match request {
                Some(Verb::Start) => HResult::HCS_E_TERMINATED_DURING_START,
                Some(Verb::Shutdown) if is_graceful(exit, stop_on_reset) => HResult::S_OK,
                _ => HResult::HCS_E_UNEXPECTED_EXIT,
            },
        }
    }

    /// The message of a request cut short by this stop.
    pub fn cut_message(&self, id: &str) -> String {
        match self {
            StopCause::Terminate => format!("compute system '{id}' was terminated"),
            StopCause::LastHandleClosed => {
                format!("compute system '{id}' was terminated when its last handle closed")
            }
            StopCause::Guest(exit) => format!("compute system '{id}' exited unexpectedly: {exit}"),
        }
    }
}

/// Whether the guest ending itself this way is a graceful exit.
pub(crate) fn is_graceful(exit: &EngineExit, stop_on_reset: bool) -> bool {
    matches!(exit, EngineExit::PowerOff) || (matches!(exit, EngineExit::Reset) && stop_on_reset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Life as L;
    use Verb as V;
    use Verdict::*;

    /// The table of HCS-API §3.3, row by row: Created, Running, Paused, stopped.
    #[test]
    fn the_state_table_of_hcs_api_3_3() {
        let rows: [(Verb, [Verdict; 4]); 10] = [
            (
                V::Start,
                [Run(Some(L::Running)), InvalidState, InvalidState, NotFound],
            ),
            (
                V::Pause,
                [InvalidState, Run(Some(L::Paused)), InvalidState, NotFound],
            ),
            (
                V::Resume,
                [InvalidState, InvalidState, Run(Some(L::Running)), NotFound],
            ),
            (V::Save, [InvalidState, InvalidState, Run(None), NotFound]),
            (
                V::Shutdown,
                [InvalidState, Run(None), InvalidState, AlreadyStopped],
            ),
            (V::Terminate, [Stop, Stop, Stop, AlreadyStopped]),
            (V::Crash, [InvalidState, Run(None), InvalidState, NotFound]),
            (V::Modify, [Run(None), Run(None), InvalidState, NotFound]),
            (
                V::GetProperties,
                [Run(None), Run(None), Run(None), NotFound],
            ),
            (
                V::CreateProcess,
                [InvalidState, Run(None), InvalidState, NotFound],
            ),
        ];
        for (verb, cells) in rows {
            for (life, want) in [L::Created, L::Running, L::Paused, L::Stopped]
                .into_iter()
                .zip(cells)
            {
                assert_eq!(verdict(life, verb), want, "{verb:?} while {life:?}");
            }
            // Stopping answers as stopped; a failed create as never created; a system
            // being created queues everything, a terminate included (it runs after the
            // create, in order).
            assert_eq!(verdict(L::Stopping, verb), verdict(L::Stopped, verb));
            assert_eq!(verdict(L::Failed, verb), NotFound);
            assert_eq!(verdict(L::Creating, verb), Queue);
        }
    }

    /// Rule 53: the codes of requests cut short, per cause.
    #[test]
    fn rule_53_pending_results() {
        let all = [
            V::Start,
            V::Pause,
            V::Resume,
            V::Save,
            V::Shutdown,
            V::Crash,
            V::Modify,
            V::GetProperties,
            V::CreateProcess,
        ];
        for verb in all {
            for cause in [StopCause::Terminate, StopCause::LastHandleClosed] {
                assert_eq!(
                    cause.pending_result(Some(verb), false),
                    HResult::HCS_E_TERMINATED
                );
            }
            let crash = StopCause::Guest(EngineExit::TripleFault);
            let want = if verb == V::Start {
                HResult::HCS_E_TERMINATED_DURING_START
            } else {
                HResult::HCS_E_UNEXPECTED_EXIT
            };
            assert_eq!(crash.pending_result(Some(verb), false), want, "{verb:?}");
        }
        let off = StopCause::Guest(EngineExit::PowerOff);
        assert_eq!(off.pending_result(Some(V::Shutdown), false), HResult::S_OK);
        let reset = StopCause::Guest(EngineExit::Reset);
        assert_eq!(reset.pending_result(Some(V::Shutdown), true), HResult::S_OK);
        assert_eq!(
            reset.pending_result(Some(V::Shutdown), false),
            HResult::HCS_E_UNEXPECTED_EXIT
        );
        assert_eq!(
            off.pending_result(None, false),
            HResult::HCS_E_UNEXPECTED_EXIT
        );
    }
}
