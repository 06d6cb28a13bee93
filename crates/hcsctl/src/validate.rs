//! `hcsctl validate`: checks a `ComputeSystem` document exactly as the host does at create,
//! without creating anything.
//!
//! The host's create checks, in its order: strict parsing and validation against this
//! host's limits (`hcs_schema::parse_compute_system` with the built-in VMM's limits from
//! `hcs_kvm::check_kvm`), then "can this host run it" (`hcs_host::plan::plan_vm`,
//! `ERROR_NOT_SUPPORTED` for features no engine here has). Without a usable `/dev/kvm` the
//! document is checked without host limits, and a note says so.

use crate::output::{self, Problem};
use crate::{read_document, CliError, ValidateArgs};
use hcs_host::plan::check_document;
use hcs_host::{Failure, VmPlan};
use hcs_schema::Limits;

/// The limits the host would check against, and what to tell the user about them.
struct HostLimits {
    limits: Limits,
    /// Why there are no host limits (KVM missing or unusable), if so.
    unavailable: Option<String>,
}

fn host_limits() -> HostLimits {
    match hcs_kvm::check_kvm() {
        Ok(info) => HostLimits {
            limits: Limits::new(info.max_vcpus, info.max_memory_mib),
            unavailable: None,
        },
        Err(error) => HostLimits {
            limits: Limits::unbounded(),
            unavailable: Some(error.to_string()),
        },
    }
}

/// Runs `hcsctl validate`; returns the exit code (0 valid, 1 invalid).
pub(crate) fn validate(args: &ValidateArgs, json: bool) -> Result<u8, CliError> {
    let text = read_document(&args.document)?;
    let host = host_limits();
    let mut notes = Vec::new();
    if let Some(reason) = &host.unavailable {
        notes.push(format!(
            "the built-in VMM is not usable here ({reason}); checked without this host's vCPU \
             and memory limits, and creating this system here would fail with \
             HCS_E_HYPERV_NOT_INSTALLED"
        ));
    }
    let outcome = check(&text, &host.limits);

    if json {
        let problems = outcome.as_ref().err().map(Vec::as_slice).unwrap_or(&[]);
        output::line(&output::validation_json(problems, &notes));
    } else {
        for note in &notes {
            output::note(&format!("note: {note}"));
        }
        match &outcome {
            Ok(plan) => {
                let engine = if host.unavailable.is_some() {
                    "built-in KVM, not usable on this host"
                } else {
                    "built-in KVM"
                };
                output::line(&format!(
                    "ok: {} is a valid ComputeSystem document (VirtualMachine, {} vCPU{}, {} MB, \
                     engine: {engine})",
                    args.document.display(),
                    plan.vcpus,
                    if plan.vcpus == 1 { "" } else { "s" },
                    plan.memory_mb,
                ));
            }
            Err(problems) => {
                for problem in problems {
                    output::line(&problem.text());
                }
            }
        }
    }
    Ok(if outcome.is_ok() { 0 } else { 1 })
}

/// The host's checks of a create, in the host's order; every problem they find.
fn check(text: &str, limits: &Limits) -> Result<VmPlan, Vec<Problem>> {
    check_document(text, limits)
        .map(|(_, plan, _)| plan)
        .map_err(|failures| failures.iter().map(from_failure).collect())
}

/// A host failure: its path (or `$`) and its message without the path in front.
fn from_failure(failure: &Failure) -> Problem {
    let path = failure.path.clone().unwrap_or_else(|| "$".to_owned());
    let prefix = format!("{path}: ");
    Problem {
        message: failure
            .message
            .strip_prefix(&prefix)
            .unwrap_or(&failure.message)
            .to_owned(),
        path,
        hresult: failure.hresult,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_vm_plans() {
        let doc = r#"{"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},
            "ComputeTopology":{"Memory":{"SizeInMB":1024},"Processor":{"Count":2}}}}"#;
        let plan = check(doc, &Limits::new(8, 4096)).unwrap();
        assert_eq!((plan.vcpus, plan.memory_mb), (2, 1024));
        let problems = check(doc, &Limits::new(1, 4096)).unwrap_err();
        assert_eq!(
            problems[0].path,
            "$.VirtualMachine.ComputeTopology.Processor.Count"
        );
    }
}
