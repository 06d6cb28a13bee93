//! Builders of the documents that report outcomes: the error document `ResultError`
//! (HCS-API §2.3) and the exit document `SystemExitStatus` (§7.10, rule 52).

use crate::document::to_json;
use crate::{
    AttributionRecord, DocumentError, ErrorEvent, ExitInitiator, HResult, NotificationType,
    OperationFailure, OperationFailureDetail, ResultError, SystemExit, SystemExitDetail,
    SystemExitStatus,
};

/// Maps the name of a phase to its `OperationFailureDetail`: the exact schema spelling
/// (`"Start"`, `"Modify"`, …) or one of the aliases `"Create"` (= `Construct`) and
/// `"CreateProcess"` (= `ExecuteProcess`).
pub fn operation_failure_detail(phase: &str) -> Option<OperationFailureDetail> {
    OperationFailureDetail::from_name(phase).or(match phase {
        "Create" => Some(OperationFailureDetail::Construct),
        "CreateProcess" => Some(OperationFailureDetail::ExecuteProcess),
        _ => None,
    })
}

impl ResultError {
    /// The error document of a failure in `phase` (HCS-API §2.3): `Error` = `hresult`,
    /// `ErrorMessage` = `message`, one `ErrorEvents` entry {Message, Source: phase} and, when
    /// the phase names an `OperationFailureDetail` (see [`operation_failure_detail`]), an
    /// `OperationFailure` attribution.
    ///
    /// ```
    /// use hcs_schema::{HResult, ResultError};
    /// let doc = ResultError::from_failure(HResult::E_FAIL, "KVM_CREATE_VM failed", "Start");
    /// assert_eq!(
    ///     doc.to_json(),
    ///     r#"{"Error":-2147467259,"ErrorMessage":"KVM_CREATE_VM failed","ErrorEvents":[{"Message":"KVM_CREATE_VM failed","Source":"Start"}],"Attribution":[{"OperationFailure":{"Detail":"Start"}}]}"#
    /// );
    /// ```
    pub fn from_failure(hresult: HResult, message: impl Into<String>, phase: &str) -> Self {
        let message = message.into();
        let attribution = operation_failure_detail(phase).map(|detail| {
            vec![AttributionRecord {
                operation_failure: Some(OperationFailure {
                    detail: Some(detail),
                }),
                ..AttributionRecord::default()
            }]
        });
        ResultError {
            error: Some(hresult.0),
            error_message: Some(message.clone()),
            error_events: Some(vec![ErrorEvent {
                message: Some(message),
                source: Some(phase.to_string()),
                ..ErrorEvent::default()
            }]),
            attribution,
        }
    }

    /// The HRESULT carried in `Error` (`E_FAIL` when absent).
    pub fn hresult(&self) -> HResult {
        self.error.map(HResult).unwrap_or(HResult::E_FAIL)
    }

    /// The document as compact JSON.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl From<&DocumentError> for ResultError {
    /// A document error as an error document: its HRESULT and message (which names the
    /// JSON path), one `ErrorEvents` entry with `Source` `"DocumentValidation"`, and no
    /// attribution. To name the phase of the call instead, use
    /// `ResultError::from_failure(err.hresult, err.message.clone(), phase)`.
    fn from(err: &DocumentError) -> Self {
        ResultError {
            error: Some(err.hresult.0),
            error_message: Some(err.message.clone()),
            error_events: Some(vec![ErrorEvent {
                message: Some(err.message.clone()),
                source: Some(String::from("DocumentValidation")),
                ..ErrorEvent::default()
            }]),
            attribution: None,
        }
    }
}

impl SystemExitStatus {
    /// An exit document: `Status` = `status`, `ExitType`, and one `SystemExit` attribution
    /// {Detail, Initiator} (HCS-API rule 52).
    ///
    /// ```
    /// use hcs_schema::{ExitInitiator, HResult, NotificationType, SystemExitDetail, SystemExitStatus};
    /// let exit = SystemExitStatus::new(HResult::S_OK, NotificationType::ForcedExit,
    ///     SystemExitDetail::Terminate, ExitInitiator::Client);
    /// assert_eq!(exit.to_json(), r#"{"Status":0,"ExitType":"ForcedExit","Attribution":[{"SystemExit":{"Detail":"Terminate","Initiator":"Client"}}]}"#);
    /// ```
    pub fn new(
        status: HResult,
        exit_type: NotificationType,
        detail: SystemExitDetail,
        initiator: ExitInitiator,
    ) -> Self {
        SystemExitStatus {
            status: Some(status.0),
            exit_type: Some(exit_type),
            attribution: Some(vec![AttributionRecord {
                system_exit: Some(SystemExit {
                    detail: Some(detail),
                    initiator: Some(initiator),
                }),
                ..AttributionRecord::default()
            }]),
        }
    }

    /// The HRESULT carried in `Status` (`S_OK` when absent).
    pub fn hresult(&self) -> HResult {
        self.status.map(HResult).unwrap_or(HResult::S_OK)
    }

    /// The document as compact JSON.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}
