//! The host service functions (HCS-API §3.5): `HcsGetServiceProperties`,
//! `HcsModifyServiceSettings` and `HcsSubmitWerReport`, answered by whichever host the
//! client talks to.

use hcs_protocol::Failure;
use hcs_protocol::RequestBody;
use hcs_schema::HResult;
use hcs_schema::{
    BasicInformation, CrashReport, GetPropertyType, LogicalProcessor, ModificationRequest,
    ProcessorTopology, ServiceProperties, ServicePropertyQuery, Version,
};
use std::path::Path;

/// The newest schema version whose documents this host parses (rule 43: an entry A.X
/// means A.0 to A.X are accepted).
pub const SUPPORTED_SCHEMA: (u32, u32) = (2, 6);

/// The answer to a service request (`GetServiceProperties`, `ModifyServiceSettings`,
/// `SubmitWerReport`), the same from every host; `None` for a request of another kind.
pub fn answer(body: &RequestBody) -> Option<Result<Option<String>, Failure>> {
    Some(match body {
        RequestBody::GetServiceProperties { query } => properties(query.as_deref()).map(Some),
        RequestBody::ModifyServiceSettings { settings } => modify_settings(settings).map(|()| None),
        RequestBody::SubmitWerReport { report } => submit_wer_report(report).map(|()| None),
        _ => return None,
    })
}

/// `HcsGetServiceProperties`: one element per requested type, in request order (rule 43).
/// `Basic` and `ProcessorTopology` are answered; the other types need Windows features
/// and fail the call with `ERROR_NOT_SUPPORTED`. No query means `Basic`.
pub fn properties(query: Option<&str>) -> Result<String, Failure> {
    let types = match query {
        None => vec![GetPropertyType::Basic],
        Some(query) => {
            let query = hcs_schema::parse::<ServicePropertyQuery>(query)?;
            if query.property_queries.is_some() {
                return Err(Failure::new(
                    HResult::ERROR_NOT_SUPPORTED,
                    "$.PropertyQueries: per-type property queries are not supported",
                ));
            }
            query.property_types.unwrap_or_default()
        }
    };
    let mut properties = Vec::with_capacity(types.len());
    for (index, property_type) in types.into_iter().enumerate() {
        let value = match property_type {
            GetPropertyType::Basic => to_value(&BasicInformation {
                supported_schema_versions: Some(vec![Version {
                    major: Some(SUPPORTED_SCHEMA.0),
                    minor: Some(SUPPORTED_SCHEMA.1),
                }]),
            }),
            GetPropertyType::ProcessorTopology => to_value(&processor_topology()),
            other => {
                return Err(Failure::new(
                    HResult::ERROR_NOT_SUPPORTED,
                    format!(
                        "$.PropertyTypes[{index}]: '{}' is a Windows host feature this host \
                         does not have",
                        other.as_str()
                    ),
                ))
            }
        };
        properties.push(value);
    }
    Ok(hcs_schema::to_json(&ServiceProperties {
        properties: Some(properties),
        property_responses: None,
    }))
}

/// `HcsModifyServiceSettings`: the request is checked, then refused: CPU groups and
/// credential guard are Windows features this host does not have.
pub fn modify_settings(settings: &str) -> Result<(), Failure> {
    let request = hcs_schema::parse::<ModificationRequest>(settings)?;
    let what = request
        .property_type
        .map(|t| t.as_str())
        .unwrap_or("(no PropertyType)");
    Err(Failure::new(
        HResult::ERROR_NOT_SUPPORTED,
        format!("$.PropertyType: '{what}' settings are not supported by this host"),
    ))
}

/// `HcsSubmitWerReport`: there is no Windows Error Reporting here, so a valid
/// `CrashReport` is recorded in the host's log (HCS-API §3.5).
pub fn submit_wer_report(report: &str) -> Result<(), Failure> {
    let report = hcs_schema::parse::<CrashReport>(report)?;
    tracing::warn!(
        system = report.system_id.as_deref().unwrap_or("?"),
        status = report.status.unwrap_or(0),
        parameters = ?report.crash_parameters.unwrap_or_default(),
        "crash report submitted"
    );
    Ok(())
}

fn to_value<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The host's online logical processors, from sysfs.
fn processor_topology() -> ProcessorTopology {
    let mut processors = Vec::new();
    let cpus = std::fs::read_dir("/sys/devices/system/cpu")
        .into_iter()
        .flatten();
    for entry in cpus.flatten() {
        let name = entry.file_name();
        let Some(index) = name
            .to_str()
            .and_then(|n| n.strip_prefix("cpu"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        if read_number(&dir.join("online")) == Some(0) {
            continue;
        }
        processors.push(LogicalProcessor {
            lp_index: Some(index),
            node_number: Some(numa_node(&dir).unwrap_or(0)),
            package_id: read_number(&dir.join("topology/physical_package_id")),
            core_id: read_number(&dir.join("topology/core_id")),
            ..Default::default()
        });
    }
    processors.sort_by_key(|p| p.lp_index);
    ProcessorTopology {
        logical_processor_count: Some(processors.len() as u32),
        logical_processors: Some(processors),
    }
}

fn read_number(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn numa_node(cpu_dir: &Path) -> Option<u8> {
    std::fs::read_dir(cpu_dir)
        .ok()?
        .flatten()
        .find_map(|entry| {
            entry
                .file_name()
                .to_str()?
                .strip_prefix("node")?
                .parse()
                .ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str) -> serde_json::Value {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn rule_43_basic_lists_the_supported_schema_versions() {
        let doc = value(&properties(Some(r#"{"PropertyTypes":["Basic"]}"#)).unwrap());
        assert_eq!(
            doc["Properties"][0]["SupportedSchemaVersions"][0],
            value(r#"{"Major":2,"Minor":6}"#)
        );
    }

    #[test]
    fn rule_43_one_element_per_type_in_request_order() {
        let doc =
            value(&properties(Some(r#"{"PropertyTypes":["ProcessorTopology","Basic"]}"#)).unwrap());
        let list = doc["Properties"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0]["LogicalProcessorCount"].as_u64().unwrap() >= 1);
        assert!(list[1]["SupportedSchemaVersions"].is_array());
    }

    #[test]
    fn windows_only_types_are_not_supported_and_unknown_ones_invalid_json() {
        let err = properties(Some(r#"{"PropertyTypes":["Basic","CpuGroup"]}"#)).unwrap_err();
        assert_eq!(err.hresult, HResult::ERROR_NOT_SUPPORTED);
        assert!(err.message.contains("PropertyTypes[1]"), "{}", err.message);
        // The ServiceSample's "Memory" is not a GetPropertyType (HCS-API §9 item 2).
        let err = properties(Some(r#"{"PropertyTypes":["Memory"]}"#)).unwrap_err();
        assert_eq!(err.hresult, HResult::HCS_E_INVALID_JSON);
    }

    #[test]
    fn modify_settings_is_checked_then_not_supported() {
        let sample = r#"{"PropertyType":"CpuGroup","Settings":{"Operation":"CreateGroup",
            "OperationDetails":{"GroupId":"GUID","LogicalProcessorCount":2,"LogicalProcessors":[0,1]}}}"#;
        assert_eq!(
            modify_settings(sample).unwrap_err().hresult,
            HResult::ERROR_NOT_SUPPORTED
        );
        assert_eq!(
            modify_settings("{").unwrap_err().hresult,
            HResult::HCS_E_INVALID_JSON
        );
    }

    #[test]
    fn wer_reports_are_validated_and_accepted() {
        submit_wer_report(r#"{"SystemId":"vm","CrashParameters":[1,2,3,4,5]}"#).unwrap();
        assert_eq!(
            submit_wer_report(r#"{"Nope":1}"#).unwrap_err().hresult,
            HResult::HCS_E_INVALID_JSON
        );
    }
}
