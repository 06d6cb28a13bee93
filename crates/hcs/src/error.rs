//! The error of the idiomatic API: an HRESULT and, when the host gave one, its
//! `ResultError` document.

use hcs_schema::HResult;
use std::fmt;

/// A failed HCS call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Error {
    /// The HRESULT.
    pub hresult: HResult,
    /// The result document, usually a `ResultError`.
    pub document: Option<String>,
}

impl Error {
    /// An error without a document.
    pub fn from_hresult(hresult: HResult) -> Error {
        Error {
            hresult,
            document: None,
        }
    }

    /// The `ErrorMessage` of the `ResultError` document, if there is one.
    pub fn message(&self) -> Option<String> {
        let document = self.document.as_deref()?;
        let value: serde_json::Value = serde_json::from_str(document).ok()?;
        value
            .get("ErrorMessage")
            .and_then(|m| m.as_str())
            .map(str::to_owned)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(message) => write!(f, "{}: {message}", self.hresult),
            None => write!(f, "{}", self.hresult),
        }
    }
}

/// Turns an HRESULT and document into a `Result`.
pub(crate) fn check(hresult: HResult, document: Option<String>) -> Result<Option<String>, Error> {
    if hresult.succeeded() {
        Ok(document)
    } else {
        Err(Error { hresult, document })
    }
}
