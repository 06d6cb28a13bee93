//! `hcsctl events ID [--follow] [--timeout S]`: the events of a system, one line each.
//!
//! ```text
//!  HcsOpenComputeSystem(id) ──> HcsSetComputeSystemCallback ──> EventStream
//!      next event ──> print it ──> without --follow: exit 0
//!      SystemExited ──> print it, exit 0        ServiceDisconnect ──> print it, exit 1
//!      SIGINT/SIGTERM ──> exit 0 (the system is left alone)
//!      --timeout ──> with --follow exit 0, else HCS_E_OPERATION_TIMEOUT (exit 1)
//! ```
//!
//! HCS keeps no event history: a new handle's callback sees only what happens from now on.

use crate::exec::Signals;
use crate::output::EventPrinter;
use crate::{CliError, EventsArgs};
use hcs::{ComputeSystem, EventType, HResult};
use std::time::{Duration, Instant};

/// How often the loop looks at signals and the deadline.
const TICK: Duration = Duration::from_millis(100);

/// Runs `hcsctl events`; returns the exit code.
pub(crate) fn events(args: &EventsArgs, json: bool) -> Result<u8, CliError> {
    let signals = Signals::watch()?;
    let system = ComputeSystem::open(&args.id)?;
    let stream = system.events()?;
    let printer = EventPrinter::new(&args.id, json);
    let deadline = args.timeout.map(|limit| Instant::now() + limit);
    loop {
        if signals.take().is_some() {
            return Ok(0);
        }
        let slice = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(TICK),
                _ if args.follow => return Ok(0),
                _ => return Err(hcs::Error::from_hresult(HResult::HCS_E_OPERATION_TIMEOUT).into()),
            },
            None => TICK,
        };
        let Some(event) = stream.recv_timeout(slice) else {
            continue;
        };
        printer.event(&event);
        match event.event_type {
            EventType::SystemExited => return Ok(0),
            EventType::ServiceDisconnect => {
                return Err(hcs::Error::from_hresult(HResult::HCS_E_SERVICE_DISCONNECT).into())
            }
            _ if !args.follow => return Ok(0),
            _ => {}
        }
    }
}
