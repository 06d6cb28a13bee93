//! `hcsctl run`: creates a compute system from a document, starts it and prints its events
//! until it exits.
//!
//! ```text
//!  create ──> register the event callback ──> start ──> print "started"
//!                        │                                   │
//!                        v                                   v
//!        one channel: HCS events, SIGINT/SIGTERM, the terminate's result
//!                        │
//!   SystemExited ──> print it, exit 0 (GracefulExit, ForcedExit) or 1 (anything else)
//!   first signal ──> terminate the system (on a helper thread), keep printing events
//!   next signals ──> ignored, with a note on stderr
//! ```
//!
//! A signal during the boot (boot.rs) skips or abandons the start: the loop then takes it as
//! any other and terminates the system at once. The callback is registered before the
//! start so that no event is missed (HCS-API §4.2 rule 3). Everything the loop waits for arrives on one channel, so a signal never
//! interrupts a half-printed event and the exit is always printed before the tool ends.

use crate::boot::{boot, Boot};
use crate::output::{self, EventPrinter};
use crate::{read_document, CliError, RunArgs};
use crossbeam_channel::{Receiver, Sender};
use hcs::{event_options, ComputeSystem, Event, EventType, HResult};
use hcs_schema::{ComputeSystem as ComputeSystemDocument, NotificationType, Properties};
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the watch loop waits for.
enum Message {
    /// An event of the system's handle.
    Event(Event),
    /// SIGINT or SIGTERM arrived.
    Signal(i32),
    /// The terminate asked for by the first signal completed.
    Terminated(Result<(), hcs::Error>),
}

/// How long a best-effort clean-up or a properties query may take.
const SHORT_WAIT: Duration = Duration::from_secs(10);

/// Runs `hcsctl run`; returns the exit code.
pub(crate) fn run(args: &RunArgs, json: bool) -> Result<u8, CliError> {
    let text = crate::document::absolute(&read_document(&args.document)?);
    let id = match &args.id {
        Some(id) => id.clone(),
        None => default_id(&args.document),
    };
    let (sender, receiver) = crossbeam_channel::unbounded();
    // Before the create: a Ctrl-C from now on terminates what we made instead of killing us.
    let signalled = watch_signals(sender.clone())?;
    let printer = EventPrinter::new(&id, json);

    let register = |system: &ComputeSystem| {
        printer.lifecycle(
            "Created",
            &format!("created {id}"),
            json!({ "Document": args.document.display().to_string() }),
        );
        let events = sender.clone();
        let registered = hcs::api::set_compute_system_callback(
            system.handle(),
            event_options::NONE,
            0,
            Some(Arc::new(move |event: &Event, _| {
                let _ = events.send(Message::Event(event.clone()));
            })),
        );
        if registered.failed() {
            return Err(hcs::Error::from_hresult(registered).into());
        }
        Ok(())
    };
    let system = match boot(&id, &text, register, || signalled.load(Ordering::SeqCst))? {
        Boot::Running(system) => system,
        // The signal waits in the channel: the loop terminates the system and prints its exit.
        Boot::Interrupted(system) => return watch(&system, &printer, &receiver, &sender),
    };
    let (vcpus, memory_mb) = sizes(&system, &text);
    printer.lifecycle(
        "Started",
        &format!(
            "started {id} ({vcpus} vCPU{}, {memory_mb} MB)",
            if vcpus == 1 { "" } else { "s" }
        ),
        json!({ "ProcessorCount": vcpus, "MemorySizeInMB": memory_mb }),
    );
    if !json {
        output::note("running; press Ctrl-C to terminate");
    }
    watch(&system, &printer, &receiver, &sender)
}

/// Prints events until the system exits; the first signal terminates it.
fn watch(
    system: &ComputeSystem,
    printer: &EventPrinter,
    receiver: &Receiver<Message>,
    sender: &Sender<Message>,
) -> Result<u8, CliError> {
    let mut terminating = false;
    // The loop holds `sender`, so the channel never disconnects while it runs.
    for message in receiver {
        match message {
            Message::Event(event) => {
                printer.event(&event);
                match event.event_type {
                    EventType::SystemExited => return Ok(exit_code(&event)),
                    EventType::ServiceDisconnect => {
                        return Err(
                            hcs::Error::from_hresult(HResult::HCS_E_SERVICE_DISCONNECT).into()
                        )
                    }
                    _ => {}
                }
            }
            Message::Signal(signal) if terminating => output::note(&format!(
                "{} ignored: already terminating {}; waiting for it to exit",
                signal_name(signal),
                system.id()
            )),
            Message::Signal(signal) => {
                terminating = true;
                let name = signal_name(signal);
                printer.lifecycle(
                    "Terminating",
                    &format!("terminating {} ({name})", system.id()),
                    json!({ "Signal": name }),
                );
                let pending = system.terminate();
                let done = sender.clone();
                std::thread::Builder::new()
                    .name(String::from("hcsctl-terminate"))
                    .spawn(move || {
                        let _ = done.send(Message::Terminated(pending.wait()));
                    })
                    .map_err(|e| CliError::Setup(format!("cannot start a thread: {e}")))?;
            }
            // The system may have exited on its own meanwhile: its SystemExited is coming.
            Message::Terminated(Ok(())) => {}
            Message::Terminated(Err(error))
                if error.hresult == HResult::HCS_E_SYSTEM_ALREADY_STOPPED => {}
            Message::Terminated(Err(error)) => return Err(error.into()),
        }
    }
    Err(CliError::Setup(String::from("the event channel closed")))
}

/// 0 for a graceful or forced exit, 1 for an unexpected (or unreadable) one.
fn exit_code(event: &Event) -> u8 {
    let exit_type = event
        .event_data
        .as_deref()
        .and_then(|data| hcs_schema::parse::<hcs_schema::SystemExitStatus>(data).ok())
        .and_then(|status| status.exit_type);
    match exit_type {
        Some(NotificationType::GracefulExit | NotificationType::ForcedExit) => 0,
        _ => 1,
    }
}

/// Forwards SIGINT and SIGTERM to the loop, from a thread of signal-hook's; the flag tells
/// the boot that one came.
fn watch_signals(sender: Sender<Message>) -> Result<Arc<AtomicBool>, CliError> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| CliError::Setup(format!("cannot handle SIGINT/SIGTERM: {e}")))?;
    let signalled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&signalled);
    std::thread::Builder::new()
        .name(String::from("hcsctl-signals"))
        .spawn(move || {
            for signal in signals.forever() {
                flag.store(true, Ordering::SeqCst);
                if sender.send(Message::Signal(signal)).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| CliError::Setup(format!("cannot start a thread: {e}")))?;
    Ok(signalled)
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// The file stem and six random hex digits: `empty-vm-3fa2c1`.
pub(crate) fn default_id(document: &Path) -> String {
    let stem = document
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| String::from("system"));
    format!("{stem}-{:06x}", rand::random::<u32>() & 0x00ff_ffff)
}

/// vCPUs (from the document; the host's default is 1) and memory in MB (assigned memory
/// from the system's properties, else the document's `SizeInMB`).
fn sizes(system: &ComputeSystem, text: &str) -> (u32, u64) {
    let document = hcs_schema::parse::<ComputeSystemDocument>(text).ok();
    let topology = document
        .as_ref()
        .and_then(|d| d.virtual_machine.as_ref())
        .and_then(|vm| vm.compute_topology.as_ref());
    let vcpus = topology
        .and_then(|t| t.processor.as_ref())
        .and_then(|p| p.count)
        .unwrap_or(1);
    let configured_mb = topology
        .and_then(|t| t.memory.as_ref())
        .and_then(|m| m.size_in_mb)
        .unwrap_or(0);
    let assigned_mb = system
        .properties(Some(r#"{"PropertyTypes":["Memory"]}"#))
        .wait_timeout(SHORT_WAIT)
        .ok()
        .and_then(|doc| hcs_schema::parse::<Properties>(&doc).ok())
        .and_then(|p| p.memory)
        .and_then(|m| m.virtual_machine_memory)
        .and_then(|m| m.assigned_memory);
    (vcpus, assigned_mb.unwrap_or(configured_mb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ids() {
        let id = default_id(Path::new("examples/empty-vm.json"));
        assert!(id.starts_with("empty-vm-"), "{id}");
        assert_eq!(id.len(), "empty-vm-".len() + 6);
        assert!(default_id(Path::new("/")).starts_with("system-"));
    }

    #[test]
    fn exit_codes() {
        let event = |data: &str| Event {
            event_type: EventType::SystemExited,
            event_data: Some(data.to_owned()),
            operation: None,
        };
        assert_eq!(
            exit_code(&event(r#"{"Status":0,"ExitType":"ForcedExit"}"#)),
            0
        );
        assert_eq!(
            exit_code(&event(r#"{"Status":0,"ExitType":"GracefulExit"}"#)),
            0
        );
        let unexpected = r#"{"Status":-2143878906,"ExitType":"UnexpectedExit"}"#;
        assert_eq!(exit_code(&event(unexpected)), 1);
        assert_eq!(exit_code(&event("not json")), 1);
    }
}
