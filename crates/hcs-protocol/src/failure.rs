//! Failures of host requests: one HRESULT and a message a person can act on.
//!
//! Every failure the host sends back is a [`Failure`]; it becomes the reply's HRESULT and
//! a `ResultError` document whose first error event names the phase (HCS-API §2.3).

use hcs_schema::{DocumentError, HResult, ResultError};

/// One failed request: the HRESULT and what to tell the person.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The HRESULT of the reply.
    pub hresult: HResult,
    /// The `ErrorMessage` of the `ResultError`.
    pub message: String,
    /// The JSON path of the document member at fault, when a document is (the message
    /// starts with it too).
    pub path: Option<String>,
}

impl Failure {
    /// A failure with a code and a message.
    pub fn new(hresult: HResult, message: impl Into<String>) -> Failure {
        Failure {
            hresult,
            message: message.into(),
            path: None,
        }
    }

    /// A failure about the document member at `path`: the message reads `PATH: what`.
    pub fn at(hresult: HResult, path: &str, what: impl std::fmt::Display) -> Failure {
        Failure {
            hresult,
            message: format!("{path}: {what}"),
            path: Some(path.to_owned()),
        }
    }

    /// The `ResultError` document for this failure in `phase` ("Construct", "Start", ...).
    pub fn document(&self, phase: &str) -> String {
        ResultError::from_failure(self.hresult, &self.message, phase).to_json()
    }
}

impl From<DocumentError> for Failure {
    fn from(error: DocumentError) -> Failure {
        Failure {
            hresult: error.hresult,
            message: error.message,
            path: Some(error.path),
        }
    }
}

impl From<Vec<DocumentError>> for Failure {
    fn from(errors: Vec<DocumentError>) -> Failure {
        let hresult = errors
            .first()
            .map(|e| e.hresult)
            .unwrap_or(HResult::HCS_E_INVALID_JSON);
        let message = errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Failure {
            hresult,
            message,
            path: errors.first().map(|e| e.path.clone()),
        }
    }
}
