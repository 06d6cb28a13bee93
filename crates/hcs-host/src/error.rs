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
}

impl Failure {
    /// A failure with a code and a message.
    pub fn new(hresult: HResult, message: impl Into<String>) -> Failure {
        Failure {
            hresult,
            message: message.into(),
        }
    }

    /// The `ResultError` document for this failure in `phase` ("Construct", "Start", ...).
    pub fn document(&self, phase: &str) -> String {
        ResultError::from_failure(self.hresult, &self.message, phase).to_json()
    }
}

impl From<DocumentError> for Failure {
    fn from(error: DocumentError) -> Failure {
        Failure::new(error.hresult, error.message)
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
        Failure::new(hresult, message)
    }
}
