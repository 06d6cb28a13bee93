//! What a host answers about a compute system whose host process is gone, and how the
//! answers of many single-system hosts make one (the service's workers).
//!
//! In the service each system lives in a worker process. When the worker has exited after
//! its system stopped, or died, `hcsd`'s router answers for it, in these words: the same
//! rules (HCS-API rule 27: a stopped system is not found; rule 53: what was pending when
//! it died ended unexpectedly) as the embedded host's sessions.

use hcs_protocol::{Failure, ProcessRequest};
use hcs_schema::HResult;

/// How a system's host went away.
#[derive(Debug, Clone, Copy)]
pub enum Gone<'a> {
    /// It exited after the system stopped.
    Stopped,
    /// The process `pid` died (`how`, when known: "was killed by SIGKILL", ...).
    Died { pid: u32, how: Option<&'a str> },
}

/// The answer to a request of `phase` on system `id` whose host is gone.
pub fn answer(phase: &str, id: &str, gone: Gone<'_>) -> Result<Option<String>, Failure> {
    if matches!(phase, "Close" | "CloseProcess" | "ReleaseHold") {
        // Releasing what is already gone succeeds.
        return Ok(None);
    }
    Err(match gone {
        Gone::Stopped => {
            let result = match phase {
                "Shutdown" | "Terminate" => HResult::HCS_E_SYSTEM_ALREADY_STOPPED,
                _ => HResult::HCS_E_SYSTEM_NOT_FOUND,
            };
            Failure::new(result, format!("compute system '{id}' has stopped"))
        }
        Gone::Died { pid, how } => Failure::new(
            HResult::HCS_E_UNEXPECTED_EXIT,
            format!(
                "the worker process {pid} of compute system '{id}' {}; the compute system is \
                 gone",
                how.unwrap_or("ended unexpectedly")
            ),
        ),
    })
}

/// The answer to an open of a process of a system whose host is gone.
pub fn open_process() -> Failure {
    Failure::new(
        HResult::HCS_E_SYSTEM_NOT_FOUND,
        "this handle's compute system does not exist any more",
    )
}

/// The answer to a request on process `pid` (if known) of a system whose host is gone.
pub fn process_request(
    request: &ProcessRequest,
    pid: Option<u32>,
) -> Result<Option<String>, Failure> {
    match (request, pid) {
        (ProcessRequest::GetInfo, Some(pid)) => {
            Ok(Some(serde_json::json!({ "ProcessId": pid }).to_string()))
        }
        (ProcessRequest::GetProperties(_), Some(pid)) => Ok(Some(
            crate::processes::lost_status_document(pid, HResult::HCS_E_UNEXPECTED_EXIT),
        )),
        _ => Err(Failure::new(
            HResult::HCS_E_PROCESS_ALREADY_STOPPED,
            "the process's compute system is gone",
        )),
    }
}

/// Checks an enumeration's `SystemQuery` before any host is asked.
pub fn check_query(query: Option<&str>) -> Result<(), Failure> {
    if let Some(query) = query {
        hcs_schema::parse::<hcs_schema::SystemQuery>(query)?;
    }
    Ok(())
}

/// One enumeration from the answers of several hosts (each a JSON array of `Properties`;
/// unreadable ones are left out), ordered by id.
pub fn merge_enumerations(answers: &[String]) -> Result<Option<String>, Failure> {
    let mut items: Vec<serde_json::Value> = answers
        .iter()
        .filter_map(|a| match serde_json::from_str(a) {
            Ok(serde_json::Value::Array(found)) => Some(found),
            _ => None,
        })
        .flatten()
        .collect();
    items.sort_by(|a, b| a["Id"].as_str().cmp(&b["Id"].as_str()));
    serde_json::to_string(&items)
        .map(Some)
        .map_err(|e| Failure::new(HResult::E_UNEXPECTED, e.to_string()))
}

/// The sum of several hosts' live counts (`{"Systems":N,"Vms":N}` each).
pub fn sum_live_counts(answers: &[String]) -> String {
    let (mut systems, mut vms) = (0u64, 0u64);
    for counts in answers
        .iter()
        .filter_map(|a| serde_json::from_str::<serde_json::Value>(a).ok())
    {
        systems += counts["Systems"].as_u64().unwrap_or(0);
        vms += counts["Vms"].as_u64().unwrap_or(0);
    }
    serde_json::json!({ "Systems": systems, "Vms": vms }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_for_a_gone_system() {
        assert_eq!(answer("Close", "vm", Gone::Stopped), Ok(None));
        let code = |phase, gone| answer(phase, "vm", gone).unwrap_err().hresult;
        assert_eq!(
            code("Terminate", Gone::Stopped),
            HResult::HCS_E_SYSTEM_ALREADY_STOPPED
        );
        assert_eq!(
            code("Start", Gone::Stopped),
            HResult::HCS_E_SYSTEM_NOT_FOUND
        );
        let died = Gone::Died { pid: 7, how: None };
        assert_eq!(code("Start", died), HResult::HCS_E_UNEXPECTED_EXIT);
        assert_eq!(answer("ReleaseHold", "vm", died), Ok(None));
    }

    #[test]
    fn enumerations_merge_in_id_order() {
        let merged = merge_enumerations(&[
            r#"[{"Id":"b"}]"#.into(),
            "not json".into(),
            r#"[{"Id":"a"},{"Id":"c"}]"#.into(),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(merged, r#"[{"Id":"a"},{"Id":"b"},{"Id":"c"}]"#);
        assert_eq!(
            sum_live_counts(&[r#"{"Systems":1,"Vms":1}"#.into(), "{}".into()]),
            r#"{"Systems":1,"Vms":1}"#
        );
        assert!(check_query(Some("{nope")).is_err());
    }
}
