//! The answer to [`crate::RequestBody::ValidateDocument`]: how the host that would run a
//! `ComputeSystem` document judges it, without creating anything.

use hcs_schema::HResult;
use serde::{Deserialize, Serialize};

/// A document judged by a host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Validation {
    /// Every problem the create's checks find, in the host's order; empty when valid.
    pub problems: Vec<ValidationProblem>,
    /// The engine that would run it ("kvm", "qemu"), when the document is valid.
    pub engine: Option<String>,
    /// Its vCPUs, when valid.
    pub vcpus: Option<u32>,
    /// Its memory in MiB, when valid.
    pub memory_mb: Option<u64>,
    /// What the person should know besides (an engine not usable on this host, ...).
    pub notes: Vec<String>,
}

impl Validation {
    /// Whether the host would create it.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One problem of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationProblem {
    /// The JSON path of the member at fault (`$` for the whole document).
    pub path: String,
    /// What is wrong, without the path in front.
    pub message: String,
    /// The HRESULT a create would fail with.
    pub hresult: HResult,
}
