//! The `OperationInfo` document of `HcsGetOperationProperties` (HCS-API §2.4).

use crate::operation::OperationInfo;
use crate::types::OperationType;
use hcs_schema::{OperationFailureInfo, OperationInfo as InfoDocument};
use std::time::SystemTime;

/// The schema's name for an `HCS_OPERATION_TYPE`, where the 2.6 `OperationType` enum
/// has one.
fn schema_type(op_type: OperationType) -> Option<hcs_schema::OperationType> {
    use hcs_schema::OperationType as S;
    Some(match op_type {
        OperationType::None => S::None,
        OperationType::Create => S::Construct,
        OperationType::Start => S::Start,
        OperationType::Pause => S::Pause,
        OperationType::Resume => S::Resume,
        OperationType::Shutdown => S::Shutdown,
        OperationType::Terminate => S::Terminate,
        OperationType::Save => S::Save,
        OperationType::GetProperties => S::GetProperties,
        OperationType::Modify => S::Modify,
        OperationType::Crash => S::Crash,
        _ => return None,
    })
}

/// RFC 3339 in UTC with milliseconds, as the schema's `DateTime`.
fn timestamp(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The document for one operation.
pub(crate) fn document(info: &OperationInfo) -> String {
    hcs_schema::to_json(&InfoDocument {
        operation: schema_type(info.op_type),
        start_timestamp: info.started_at.map(timestamp),
        end_timestamp: info.ended_at.map(timestamp),
        failure_info: info
            .result
            .filter(|r| r.failed())
            .map(|r| OperationFailureInfo { result: Some(r.0) }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(timestamp(at), "2026-11-18T11:06:40.123Z");
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn a_failed_operation_carries_its_result() {
        let doc = document(&OperationInfo {
            op_type: OperationType::Create,
            started_at: Some(SystemTime::UNIX_EPOCH),
            ended_at: Some(SystemTime::UNIX_EPOCH),
            result: Some(hcs_schema::HResult::HCS_E_INVALID_JSON),
        });
        assert!(doc.contains(r#""Operation":"Construct""#), "{doc}");
        assert!(
            doc.contains(r#""FailureInfo":{"Result":-2143878899}"#),
            "{doc}"
        );
    }
}
