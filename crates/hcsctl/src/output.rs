//! Everything `hcsctl` prints: event lines (text or JSON), validation reports and errors.
//!
//! Text event lines read `<RFC3339 time>  <event>  <detail>`; JSON lines are one object each,
//! `{"time":…,"event":…,"system":…,"data":…}`, so `--json` output can be piped to `jq`.
//! Writes to a closed stdout are ignored rather than fatal: the tool still terminates what
//! it created.

use hcs::{Event, EventType, HResult};
use hcs_schema::{AttributionRecord, SystemExitStatus};
use serde_json::Value;
use std::io::Write;
use std::time::SystemTime;

/// The current time in RFC 3339, UTC, with milliseconds.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Writes one line to stdout and flushes it (so a pipe sees each event as it happens).
pub(crate) fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Writes one line to stderr.
pub(crate) fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Writes `error: <text>` to stderr.
pub(crate) fn error_line(text: &str) {
    note(&format!("error: {text}"));
}

/// `{"error":{"hresult":…,"name":…,"message":…}}`, members in that order; `hresult` is
/// JSON (the signed int32 of HCS documents, or null).
pub(crate) fn error_json(hresult: &Value, name: &str, message: &str) -> String {
    let inner = ordered_object(&[
        ("hresult", hresult.to_string()),
        ("name", Value::from(name).to_string()),
        ("message", Value::from(message).to_string()),
    ]);
    ordered_object(&[("error", inner)])
}

/// Prints the event lines of one compute system, as text or JSON.
#[derive(Debug)]
pub(crate) struct EventPrinter {
    json: bool,
    system: String,
}

impl EventPrinter {
    /// A printer for the system `system`.
    pub(crate) fn new(system: &str, json: bool) -> EventPrinter {
        EventPrinter {
            json,
            system: system.to_owned(),
        }
    }

    /// A line of the tool's own: `text` in text mode (`created <id>`), `{"event": name,
    /// "data": data}` in JSON mode.
    pub(crate) fn lifecycle(&self, name: &str, text: &str, data: Value) {
        if self.json {
            line(&json_record(name, &self.system, &data.to_string()));
        } else {
            line(&format!("{}  {text}", now()));
        }
    }

    /// A line for an HCS event.
    pub(crate) fn event(&self, event: &Event) {
        let name = event_name(event.event_type);
        if self.json {
            let data = event
                .event_data
                .as_deref()
                .map(json_data)
                .unwrap_or_else(|| String::from("null"));
            line(&json_record(name, &self.system, &data));
        } else {
            line(&format!("{}  {name}  {}", now(), event_detail(event)));
        }
    }
}

/// `{"time","event","system","data"}` in that order; `data` is JSON text.
fn json_record(name: &str, system: &str, data: &str) -> String {
    ordered_object(&[
        ("time", Value::from(now()).to_string()),
        ("event", Value::from(name).to_string()),
        ("system", Value::from(system).to_string()),
        ("data", data.to_owned()),
    ])
}

/// A JSON object with its members in the given order (serde_json's maps sort their keys);
/// each value is JSON text.
fn ordered_object(members: &[(&str, String)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("{}:{value}", Value::from(*name)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// Event data as one line of JSON: the host's own text when it is compact JSON (its member
/// order kept), else re-serialized, else a JSON string.
fn json_data(data: &str) -> String {
    match serde_json::from_str::<Value>(data) {
        Ok(_) if !data.contains(['\n', '\r']) => data.trim().to_owned(),
        Ok(value) => value.to_string(),
        Err(_) => Value::from(data).to_string(),
    }
}

/// The HCS name of an event type, without the `HcsEvent` prefix (`SystemExited`).
pub(crate) fn event_name(event_type: EventType) -> &'static str {
    match event_type {
        EventType::Invalid => "Invalid",
        EventType::SystemExited => "SystemExited",
        EventType::SystemCrashInitiated => "SystemCrashInitiated",
        EventType::SystemCrashReport => "SystemCrashReport",
        EventType::SystemRdpEnhancedModeStateChanged => "SystemRdpEnhancedModeStateChanged",
        EventType::SystemSiloJobCreated => "SystemSiloJobCreated",
        EventType::SystemGuestConnectionClosed => "SystemGuestConnectionClosed",
        EventType::ProcessExited => "ProcessExited",
        EventType::OperationCallback => "OperationCallback",
        EventType::ServiceDisconnect => "ServiceDisconnect",
        EventType::GroupVmLifecycle => "GroupVmLifecycle",
        EventType::GroupLiveMigration => "GroupLiveMigration",
        EventType::GroupOperationInfo => "GroupOperationInfo",
    }
}

/// The compact text detail of an event: the exit of `SystemExited`, else its data in one
/// line (or `-` when it has none).
fn event_detail(event: &Event) -> String {
    let Some(data) = event.event_data.as_deref() else {
        return String::from("-");
    };
    if event.event_type == EventType::SystemExited {
        if let Ok(status) = hcs_schema::parse::<SystemExitStatus>(data) {
            return exit_detail(&status);
        }
    }
    match serde_json::from_str::<Value>(data) {
        Ok(value) => value.to_string(),
        Err(_) => data.trim().to_owned(),
    }
}

/// `ForcedExit status=0x00000000 (Terminate by Client)`; a failed status also gets its name.
pub(crate) fn exit_detail(status: &SystemExitStatus) -> String {
    let exit_type = status
        .exit_type
        .map(|t| t.to_string())
        .unwrap_or_else(|| String::from("Unknown"));
    let hresult = status.hresult();
    let mut text = format!("{exit_type} status={:#010x}", hresult.as_u32());
    if hresult.failed() {
        text.push_str(&format!(" {}", hresult.name().unwrap_or("unknown HRESULT")));
    }
    let attributions: Vec<String> = status
        .attribution
        .iter()
        .flatten()
        .filter_map(attribution_detail)
        .collect();
    if !attributions.is_empty() {
        text.push_str(&format!(" ({})", attributions.join("; ")));
    }
    text
}

fn attribution_detail(record: &AttributionRecord) -> Option<String> {
    if let Some(exit) = &record.system_exit {
        let detail = exit.detail.map(|d| d.to_string());
        let initiator = exit.initiator.map(|i| i.to_string());
        return Some(match (detail, initiator) {
            (Some(d), Some(i)) => format!("{d} by {i}"),
            (Some(d), None) => d,
            (None, Some(i)) => format!("by {i}"),
            (None, None) => String::from("SystemExit"),
        });
    }
    if let Some(fault) = &record.triple_fault {
        return Some(match fault.error_type {
            Some(error_type) => format!("TripleFault type={error_type:#x}"),
            None => String::from("TripleFault"),
        });
    }
    if record.guest_crash.is_some() {
        return Some(String::from("GuestCrash"));
    }
    if record.inject_non_maskable_interrupt.is_some() {
        return Some(String::from("InjectNonMaskableInterrupt"));
    }
    if let Some(worker) = &record.worker_exit {
        return Some(format!("WorkerExit code={}", worker.exit_code.unwrap_or(0)));
    }
    if let Some(failure) = &record.operation_failure {
        return Some(match failure.detail {
            Some(detail) => format!("OperationFailure {detail}"),
            None => String::from("OperationFailure"),
        });
    }
    record
        .virtual_device_failure
        .as_ref()
        .map(|_| String::from("VirtualDeviceFailure"))
}

/// One problem `hcsctl validate` found: the JSON path, the HRESULT the host would return and
/// what is wrong (without the path).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    /// JSONPath of the culprit (`$` for the whole document).
    pub path: String,
    /// The HRESULT of the failing create.
    pub hresult: HResult,
    /// What is wrong, as the host words it.
    pub message: String,
}

impl Problem {
    /// The text line: `error: <path>: <message> [<NAME> (0x…)]`.
    pub(crate) fn text(&self) -> String {
        format!("error: {}: {} [{}]", self.path, self.message, self.hresult)
    }

    /// The JSON object: `{"path","hresult","hresultName","message"}` (`hresult` as the
    /// signed int32 HCS documents use).
    pub(crate) fn json(&self) -> String {
        ordered_object(&[
            ("path", Value::from(self.path.as_str()).to_string()),
            ("hresult", self.hresult.0.to_string()),
            (
                "hresultName",
                Value::from(self.hresult.name().unwrap_or("unknown HRESULT")).to_string(),
            ),
            ("message", Value::from(self.message.as_str()).to_string()),
        ])
    }
}

/// The `--json` report of `hcsctl validate`: `{"valid","errors","notes"}`.
pub(crate) fn validation_json(problems: &[Problem], notes: &[String]) -> String {
    let errors: Vec<String> = problems.iter().map(Problem::json).collect();
    ordered_object(&[
        ("valid", problems.is_empty().to_string()),
        ("errors", format!("[{}]", errors.join(","))),
        ("notes", Value::from(notes.to_vec()).to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcs_schema::{ExitInitiator, NotificationType, SystemExitDetail};

    #[test]
    fn exit_details() {
        let forced = SystemExitStatus::new(
            HResult::S_OK,
            NotificationType::ForcedExit,
            SystemExitDetail::Terminate,
            ExitInitiator::Client,
        );
        assert_eq!(
            exit_detail(&forced),
            "ForcedExit status=0x00000000 (Terminate by Client)"
        );
        let unexpected = SystemExitStatus {
            status: Some(HResult::HCS_E_UNEXPECTED_EXIT.0),
            exit_type: Some(NotificationType::UnexpectedExit),
            attribution: None,
        };
        assert_eq!(
            exit_detail(&unexpected),
            "UnexpectedExit status=0x80370106 HCS_E_UNEXPECTED_EXIT"
        );
    }

    #[test]
    fn problem_lines() {
        let problem = Problem {
            path: String::from("$.VirtualMachine.ComputeTopology.Processor.Count"),
            hresult: HResult::HCS_E_INVALID_JSON,
            message: String::from("must be between 1 and 8, got 0"),
        };
        assert_eq!(
            problem.text(),
            "error: $.VirtualMachine.ComputeTopology.Processor.Count: must be between 1 and 8, \
             got 0 [HCS_E_INVALID_JSON (0x8037010D)]"
        );
        let record: Value = serde_json::from_str(&json_record("E", "s\"1", "{\"b\":1}")).unwrap();
        assert_eq!(record["system"], "s\"1");
        assert_eq!(json_data("{\"B\":1,\"A\":2}"), "{\"B\":1,\"A\":2}");
        assert_eq!(json_data("{\n \"A\": 2\n}"), "{\"A\":2}");
        assert_eq!(json_data("oops"), "\"oops\"");
        let report: Value = serde_json::from_str(&validation_json(&[problem], &[])).unwrap();
        assert_eq!(report["valid"], false);
        assert_eq!(report["errors"][0]["hresult"], -2143878899);
        assert_eq!(report["errors"][0]["hresultName"], "HCS_E_INVALID_JSON");
    }
}
