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
use hcs_host::plan::plan_vm;
use hcs_host::{Failure, VmPlan};
use hcs_schema::{DocumentError, Limits};

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
pub(crate) fn validate(args: &ValidateArgs) -> Result<u8, CliError> {
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

    if args.json {
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
    let document = hcs_schema::parse_compute_system(text, limits)
        .map_err(|errors| errors.iter().map(from_document_error).collect::<Vec<_>>())?;
    let (plan, _settings) = plan_vm(&document).map_err(|failure| vec![from_failure(&failure)])?;
    Ok(plan)
}

fn from_document_error(error: &DocumentError) -> Problem {
    let prefix = format!("{}: ", error.path);
    Problem {
        path: error.path.clone(),
        hresult: error.hresult,
        message: error
            .message
            .strip_prefix(&prefix)
            .unwrap_or(&error.message)
            .to_owned(),
    }
}

/// A host failure carries its path only at the start of its message
/// (`$.VirtualMachine.Chipset.LinuxKernelDirect: booting … is not supported …`).
fn from_failure(failure: &Failure) -> Problem {
    let (path, rest) = split_path(&failure.message);
    Problem {
        path: path.to_owned(),
        hresult: failure.hresult,
        message: rest.to_owned(),
    }
}

/// Splits `"$.A.B: what"` or `"$.A.B is required"` into the JSONPath and the rest; a
/// message without a leading path belongs to `$`.
fn split_path(message: &str) -> (&str, &str) {
    if !message.starts_with('$') {
        return ("$", message);
    }
    let mut in_brackets = false;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in message.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' if in_brackets => in_string = true,
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            ':' | ' ' if !in_brackets => {
                let rest = message[i..].trim_start_matches(':').trim_start();
                return (&message[..i], rest);
            }
            _ => {}
        }
    }
    (message, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_host_messages() {
        assert_eq!(
            split_path("$.VirtualMachine.Chipset.LinuxKernelDirect: booting is not supported"),
            (
                "$.VirtualMachine.Chipset.LinuxKernelDirect",
                "booting is not supported"
            )
        );
        assert_eq!(
            split_path("$.VirtualMachine.ComputeTopology.Memory.SizeInMB is required"),
            (
                "$.VirtualMachine.ComputeTopology.Memory.SizeInMB",
                "is required"
            )
        );
        assert_eq!(
            split_path("$.Devices.Scsi[\"Primary disk\"]: SCSI"),
            ("$.Devices.Scsi[\"Primary disk\"]", "SCSI")
        );
        assert_eq!(split_path("$: one of"), ("$", "one of"));
        assert_eq!(split_path("no path"), ("$", "no path"));
    }

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
