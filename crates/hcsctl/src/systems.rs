//! The verbs that make one HCS call on a system named by id: `list`, `create`, `start`,
//! `pause`, `resume`, `shutdown`, `terminate`, `save`, `wait`, `properties`, `modify`.
//!
//! ```text
//!  list        HcsEnumerateComputeSystems(SystemQuery {Owners, Ids})
//!  create      HcsCreateComputeSystem (ShouldTerminateOnLastHandleClosed forced false)
//!  start …     HcsOpenComputeSystem(id) ──> HcsStart/Pause/Resume/ShutDown/Terminate…
//!  save        HcsOpenComputeSystem(id) ──> HcsSaveComputeSystem(SaveOptions ToFile)
//!  wait        HcsOpenComputeSystem(id) ──> HcsWaitForComputeSystemExit
//!  properties  HcsOpenComputeSystem(id) ──> HcsGetComputeSystemProperties(query)
//!  modify      HcsOpenComputeSystem(id) ──> HcsModifyComputeSystem(ModifySettingRequest)
//! ```
//!
//! Text output is one short line (or a table, or the document); `--json` output is one JSON
//! document: the host's own where there is one (the enumeration array, `Properties`,
//! `SystemExitStatus`), else `{"system":…,…}`.

use crate::output;
use crate::{
    read_document, CliError, CreateArgs, ListArgs, ModifyArgs, PropertiesArgs, SaveArgs,
    TimeoutArgs,
};
use hcs::api::HostKind;
use hcs::ComputeSystem;
use hcs_schema::{NotificationType, SystemExitStatus};
use serde_json::{json, Value};
use std::io::Read;
use std::time::Duration;

/// `hcsctl list`.
pub(crate) fn list(args: &ListArgs, json: bool) -> Result<u8, CliError> {
    let query = system_query(&args.owner, &args.id);
    let listed = hcs::enumerate(query.as_deref()).wait()?;
    let systems: Vec<Value> = match serde_json::from_str::<Value>(&listed) {
        Ok(Value::Array(systems)) => systems,
        Ok(Value::Null) | Err(_) if listed.trim().is_empty() => Vec::new(),
        _ => {
            return Err(CliError::Setup(format!(
                "the host's enumeration is not a JSON array: {listed}"
            )))
        }
    };
    if json {
        output::line(&Value::Array(systems).to_string());
    } else {
        for row in table(&systems) {
            output::line(&row);
        }
    }
    Ok(0)
}

/// The `SystemQuery` for the filters, or none when there are none.
fn system_query(owners: &[String], ids: &[String]) -> Option<String> {
    let mut query = serde_json::Map::new();
    if !owners.is_empty() {
        query.insert("Owners".into(), json!(owners));
    }
    if !ids.is_empty() {
        query.insert("Ids".into(), json!(ids));
    }
    (!query.is_empty()).then(|| Value::Object(query).to_string())
}

/// The table of `list`: a header and one row per system, sorted by id, columns padded.
fn table(systems: &[Value]) -> Vec<String> {
    let field = |system: &Value, name: &str| -> String {
        match &system[name] {
            Value::String(text) if !text.is_empty() => text.clone(),
            Value::Null => String::from("-"),
            Value::String(_) => String::from("-"),
            other => other.to_string(),
        }
    };
    let mut rows: Vec<[String; 5]> = systems
        .iter()
        .map(|s| {
            [
                field(s, "Id"),
                field(s, "Owner"),
                field(s, "State"),
                field(s, "SystemType"),
                field(s, "RuntimeOsType"),
            ]
        })
        .collect();
    rows.sort();
    rows.insert(
        0,
        ["ID", "OWNER", "STATE", "TYPE", "RUNTIME"].map(String::from),
    );
    let mut widths = [0usize; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

/// `hcsctl create`: prints the new system's id.
pub(crate) fn create(args: &CreateArgs, json: bool) -> Result<u8, CliError> {
    let text = read_document(&args.document)?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| crate::run::default_id(&args.document));
    let (document, overridden) = crate::document::for_create(&text);
    if overridden {
        output::note(
            "note: ShouldTerminateOnLastHandleClosed is set to false: hcsctl closes its handle \
             when it ends, and the system is to outlive it",
        );
    }
    let kind = hcs::api::host_kind();
    if kind == HostKind::Embedded {
        output::note(&format!(
            "warning: the host is the embedded one (no hcsd answers at {}, or \
             HCS_HOST=embedded): {id} lives in this hcsctl process and ends with it",
            hcs::api::service_socket_path().display()
        ));
    }
    let system = ComputeSystem::create(&id, &document).wait()?;
    if json {
        let host = match kind {
            HostKind::Service => "service",
            HostKind::Embedded => "embedded",
        };
        output::line(&json!({ "system": system.id(), "host": host }).to_string());
    } else {
        output::line(system.id());
    }
    Ok(0)
}

/// The one-call lifecycle verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// HcsStartComputeSystem.
    Start,
    /// HcsPauseComputeSystem.
    Pause,
    /// HcsResumeComputeSystem.
    Resume,
    /// HcsShutDownComputeSystem.
    Shutdown,
    /// HcsTerminateComputeSystem.
    Terminate,
}

impl Action {
    /// The verb, as typed.
    fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Shutdown => "shutdown",
            Action::Terminate => "terminate",
        }
    }

    /// What the text line says was done.
    fn done(self) -> &'static str {
        match self {
            Action::Start => "started",
            Action::Pause => "paused",
            Action::Resume => "resumed",
            Action::Shutdown => "shut down",
            Action::Terminate => "terminated",
        }
    }
}

/// `hcsctl start|pause|resume|shutdown|terminate ID`.
pub(crate) fn lifecycle(
    id: &str,
    action: Action,
    timeout: Option<Duration>,
    json: bool,
) -> Result<u8, CliError> {
    let system = ComputeSystem::open(id)?;
    let pending = match action {
        Action::Start => system.start(),
        Action::Pause => system.pause(None),
        Action::Resume => system.resume(),
        Action::Shutdown => system.shutdown(None),
        Action::Terminate => system.terminate(),
    };
    match timeout {
        Some(limit) => pending.wait_timeout(limit)?,
        None => pending.wait()?,
    }
    if json {
        output::line(&json!({ "system": id, "action": action.verb() }).to_string());
    } else {
        output::line(&format!("{} {id}", action.done()));
    }
    Ok(0)
}

/// `hcsctl save ID FILE`: `SaveOptions` ToFile with the file's absolute path.
pub(crate) fn save(args: &SaveArgs, json: bool) -> Result<u8, CliError> {
    let file = std::path::absolute(&args.file)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.file.display())))?;
    let options = json!({
        "SaveType": "ToFile",
        "SaveStateFilePath": file.display().to_string(),
    });
    let system = ComputeSystem::open(&args.id)?;
    system.save(Some(&options.to_string())).wait()?;
    if json {
        output::line(&json!({ "system": args.id, "action": "save", "file": file }).to_string());
    } else {
        output::line(&format!("saved {}", args.id));
    }
    Ok(0)
}

/// `hcsctl wait ID`: 0 after a graceful or forced exit, 1 after any other.
pub(crate) fn wait(args: &TimeoutArgs, json: bool) -> Result<u8, CliError> {
    let system = ComputeSystem::open(&args.id)?;
    let status = system.wait_for_exit(args.timeout)?;
    let parsed = hcs_schema::parse::<SystemExitStatus>(&status).ok();
    if json {
        output::line(&compact(&status));
    } else {
        match &parsed {
            Some(exit) => output::line(&output::exit_detail(exit)),
            None => output::line(status.trim()),
        }
    }
    let clean = parsed.and_then(|exit| exit.exit_type).is_some_and(|t| {
        matches!(
            t,
            NotificationType::GracefulExit | NotificationType::ForcedExit
        )
    });
    Ok(if clean { 0 } else { 1 })
}

/// `hcsctl properties ID [--query …]`.
pub(crate) fn properties(args: &PropertiesArgs, json: bool) -> Result<u8, CliError> {
    let query = args.query.as_deref().map(property_query);
    let system = ComputeSystem::open(&args.id)?;
    let document = system.properties(query.as_deref()).wait()?;
    if json {
        output::line(&compact(&document));
    } else {
        match serde_json::from_str::<Value>(&document) {
            Ok(value) => output::line(
                &serde_json::to_string_pretty(&value).unwrap_or_else(|_| document.clone()),
            ),
            Err(_) => output::line(document.trim()),
        }
    }
    Ok(0)
}

/// A `--query` value: JSON as it is, else property types separated by commas.
fn property_query(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        return trimmed.to_owned();
    }
    let types: Vec<&str> = trimmed
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    json!({ "PropertyTypes": types }).to_string()
}

/// `hcsctl modify ID SETTINGS.json|-`.
pub(crate) fn modify(args: &ModifyArgs, json: bool) -> Result<u8, CliError> {
    let request = if args.settings.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| CliError::Read {
                path: "<stdin>".into(),
                source,
            })?;
        text
    } else {
        read_document(&args.settings)?
    };
    let system = ComputeSystem::open(&args.id)?;
    system.modify(&request).wait()?;
    if json {
        output::line(&json!({ "system": args.id, "action": "modify" }).to_string());
    } else {
        output::line(&format!("modified {}", args.id));
    }
    Ok(0)
}

/// A host document on one line (its member order kept when it already is on one line).
fn compact(document: &str) -> String {
    match serde_json::from_str::<Value>(document) {
        Ok(_) if !document.contains(['\n', '\r']) => document.trim().to_owned(),
        Ok(value) => value.to_string(),
        Err(_) => Value::from(document).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(system_query(&[], &[]), None);
        let query: Value =
            serde_json::from_str(&system_query(&["o".into()], &["a".into(), "b".into()]).unwrap())
                .unwrap();
        assert_eq!(query, json!({"Owners":["o"],"Ids":["a","b"]}));
        assert_eq!(
            property_query("Memory, Statistics"),
            r#"{"PropertyTypes":["Memory","Statistics"]}"#
        );
        assert_eq!(
            property_query(r#" {"PropertyTypes":[]} "#),
            r#"{"PropertyTypes":[]}"#
        );
    }

    #[test]
    fn tables() {
        let systems = vec![
            json!({"Id":"b","Owner":"o","State":"Running","SystemType":"VirtualMachine",
                   "RuntimeOsType":"Linux"}),
            json!({"Id":"a","SystemType":"VirtualMachine","State":"Paused"}),
        ];
        let rows = table(&systems);
        assert_eq!(rows[0], "ID  OWNER  STATE    TYPE            RUNTIME");
        assert_eq!(rows[1], "a   -      Paused   VirtualMachine  -");
        assert_eq!(rows[2], "b   o      Running  VirtualMachine  Linux");
        assert_eq!(table(&[]), vec!["ID  OWNER  STATE  TYPE  RUNTIME"]);
    }
}
