//! `hcsctl validate`: asks the host that would run a `ComputeSystem` document how it judges
//! it, creating nothing (`hcs::api::validate_document`).
//!
//! The host runs its create checks in its own order: strict parsing and validation, then
//! "can this host run it" (`ERROR_NOT_SUPPORTED` for features no engine here has), then the
//! chosen engine's vCPU and memory limits. An engine that cannot run on this host is a
//! note, not a problem: the document may be fine elsewhere.

use crate::output::{self, Problem};
use crate::{read_document, CliError, ValidateArgs};
use hcs::{Validation, ValidationProblem};

/// Runs `hcsctl validate`; returns the exit code (0 valid, 1 invalid).
pub(crate) fn validate(args: &ValidateArgs, json: bool) -> Result<u8, CliError> {
    let text = read_document(&args.document)?;
    let validation = hcs::api::validate_document(&text)?;
    let problems: Vec<Problem> = validation.problems.iter().map(from_problem).collect();
    if json {
        output::line(&output::validation_json(&problems, &validation.notes));
    } else {
        for note in &validation.notes {
            output::note(&format!("note: {note}"));
        }
        if validation.is_valid() {
            output::line(&summary(&args.document.display().to_string(), &validation));
        } else {
            for problem in &problems {
                output::line(&problem.text());
            }
        }
    }
    Ok(if validation.is_valid() { 0 } else { 1 })
}

/// The line for a valid document.
fn summary(document: &str, validation: &Validation) -> String {
    let vcpus = validation.vcpus.unwrap_or(1);
    let engine = match validation.engine.as_deref() {
        Some("kvm") => "built-in KVM",
        Some("qemu") => "QEMU",
        Some(other) => other,
        None => "none",
    };
    let usable = if validation.notes.is_empty() {
        ""
    } else {
        ", not usable on this host"
    };
    format!(
        "ok: {document} is a valid ComputeSystem document (VirtualMachine, {vcpus} vCPU{}, {} \
         MB, engine: {engine}{usable})",
        if vcpus == 1 { "" } else { "s" },
        validation.memory_mb.unwrap_or(0),
    )
}

fn from_problem(problem: &ValidationProblem) -> Problem {
    Problem {
        path: problem.path.clone(),
        message: problem.message.clone(),
        hresult: problem.hresult,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_engine() {
        let validation = Validation {
            engine: Some("kvm".into()),
            vcpus: Some(2),
            memory_mb: Some(1024),
            ..Validation::default()
        };
        assert_eq!(
            summary("vm.json", &validation),
            "ok: vm.json is a valid ComputeSystem document (VirtualMachine, 2 vCPUs, 1024 MB, \
             engine: built-in KVM)"
        );
    }
}
