//! Fuzz target `documents`: arbitrary bytes into every HCS document parser a client can reach
//! (crates/hcs-schema), as UTF-8 when the bytes are valid UTF-8 and always in their lossy form.
//!
//! Parsers driven, on every input:
//! * `parse_compute_system` with three host limits (`Limits::new(16, 65536)`, `Limits::new(1, 1)`,
//!   `Limits::unbounded()`), and `compute_system` on what `parse::<ComputeSystem>` accepts;
//! * `parse::<T>` for every input and output document of HCS-API §7 (queries, options,
//!   process, modify, service, exit, crash and error documents), `validate::process_parameters`
//!   and `validate::guids` where they apply;
//! * `parse_value::<T>` on the `Any` members a host reads further: `ModifySettingRequest.Settings`
//!   (every Settings type of HCS-API §7.7), `GuestModifySettingRequest.Settings`,
//!   `ModificationRequest.Settings` and their `OperationDetails`.
//!
//! Invariants (any violation panics, which libFuzzer reports as a crash):
//! * no panic inside the parsers;
//! * every `DocumentError` has `hresult == HCS_E_INVALID_JSON` (a code of `HResult::ALL`), a
//!   well-formed JSONPath (`$` then `.Name`, `[N]` or `["json string"]` segments) that starts with
//!   the path of the parsed value, and a message that starts with `"<path>: "` and says more;
//! * `parse_compute_system(json, l)` fails with exactly the error of `parse` when `parse` fails,
//!   and with exactly the errors of `compute_system` otherwise; the limits only add errors:
//!   every error under `unbounded()` is also one (same code and path) under the smaller limits;
//! * a document that parses serializes (`to_json`), re-parses to an equal value and serializes
//!   to the same text again; a configuration that validates still validates after that trip.
#![no_main]

use std::fmt::Debug;

use hcs_schema::validate::{self, Limits};
use hcs_schema::*;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        all_parsers(text);
    } else {
        let lossy = String::from_utf8_lossy(data);
        all_parsers(&lossy);
    }
});

fn all_parsers(json: &str) {
    compute_system(json);

    document::<SystemPropertyQuery>(json);
    document::<SystemQuery>(json);
    document::<ShutdownOptions>(json);
    document::<PauseOptions>(json);
    document::<SaveOptions>(json);
    document::<CrashOptions>(json);
    document::<SignalProcessOptions>(json);
    document::<ProcessModifyRequest>(json);
    document::<ServicePropertyQuery>(json);
    document::<CrashReport>(json);
    document::<SystemExitStatus>(json);
    document::<ResultError>(json);
    document::<ProcessStatus>(json);
    document::<Properties>(json);
    document::<Vec<Properties>>(json);
    document::<ComputeSystemProperties>(json);
    document::<ServiceProperties>(json);
    document::<ConsoleImageQuery>(json);
    document::<KvpQuery>(json);

    if let Some(p) = document::<ProcessParameters>(json) {
        if let Err(errors) = validate::process_parameters(&p) {
            check_errors(&errors, "$");
        }
    }
    if let Some(req) = document::<ModifySettingRequest>(json) {
        if let Some(settings) = &req.settings {
            modify_settings(settings, "$.Settings");
        }
        if let Some(guest) = &req.guest_request {
            let path = "$.GuestRequest";
            if let Some(guest) = member::<GuestModifySettingRequest>(guest, path) {
                if let Some(settings) = &guest.settings {
                    guest_settings(settings, "$.GuestRequest.Settings");
                }
            }
        }
    }
    if let Some(req) = document::<GuestModifySettingRequest>(json) {
        if let Some(settings) = &req.settings {
            guest_settings(settings, "$.Settings");
        }
    }
    if let Some(req) = document::<ModificationRequest>(json) {
        if let Some(settings) = &req.settings {
            service_settings(settings, "$.Settings");
        }
    }
}

/// `HcsCreateComputeSystem`'s configuration under three host limits.
fn compute_system(json: &str) {
    let parsed = document::<ComputeSystem>(json);
    let limits = [
        Limits::new(16, 65536),
        Limits::new(1, 1),
        Limits::unbounded(),
    ];
    let results: Vec<Result<ComputeSystem, Vec<DocumentError>>> = limits
        .iter()
        .map(|l| validate::parse_compute_system(json, l))
        .collect();
    for (limit, result) in limits.iter().zip(&results) {
        match (&parsed, result) {
            (None, Ok(_)) => panic!("parse_compute_system accepts what parse refuses ({limit:?})"),
            (None, Err(errors)) => {
                let alone = hcs_schema::parse::<ComputeSystem>(json).unwrap_err();
                assert_eq!(
                    errors,
                    &vec![alone],
                    "parse_compute_system must return parse's error alone"
                );
            }
            (Some(doc), Ok(valid)) => {
                assert_eq!(doc, valid);
                let again = validate::compute_system(doc, limit);
                assert!(again.is_ok(), "validation is not deterministic: {again:?}");
                let trip: ComputeSystem = hcs_schema::parse(&to_json(valid))
                    .unwrap_or_else(|e| panic!("a valid configuration does not re-parse: {e:?}"));
                if let Err(e) = validate::compute_system(&trip, limit) {
                    panic!("a valid configuration is invalid after a JSON round trip: {e:?}");
                }
            }
            (Some(doc), Err(errors)) => {
                assert!(!errors.is_empty(), "an Err without errors");
                check_errors(errors, "$");
                assert_eq!(
                    validate::compute_system(doc, limit).as_ref().err(),
                    Some(errors),
                    "parse_compute_system differs from parse + compute_system"
                );
            }
        }
    }
    // Larger limits can only remove errors.
    if let Err(unbounded) = &results[2] {
        for (limit, result) in limits[..2].iter().zip(&results[..2]) {
            match result {
                Ok(_) => panic!("valid under {limit:?} but not unbounded: {unbounded:?}"),
                Err(bounded) => {
                    // Messages of range errors name the limit; compare code and path.
                    for e in unbounded {
                        assert!(
                            bounded
                                .iter()
                                .any(|b| b.hresult == e.hresult && b.path == e.path),
                            "{e:?} unbounded but not under {limit:?}"
                        );
                    }
                }
            }
        }
    }
    if let Ok(valid) = &results[0] {
        assert!(
            results[2].is_ok(),
            "valid under Limits::new(16, 65536) but not unbounded"
        );
        if let Err(errors) = validate::guids(valid, "$") {
            panic!("a valid configuration has bad Guids: {errors:?}");
        }
    }
}

/// `parse::<T>` with the invariants of the module comment; the value when it parses.
fn document<T>(json: &str) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    match hcs_schema::parse::<T>(json) {
        Ok(value) => {
            round_trip(&value);
            Some(value)
        }
        Err(e) => {
            check_error(&e, "$");
            None
        }
    }
}

/// `parse_value::<T>` of an `Any` member at `path`, with the same invariants.
fn member<T>(value: &serde_json::Value, path: &str) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    match parse_value::<T>(value, path) {
        Ok(parsed) => {
            round_trip(&parsed);
            Some(parsed)
        }
        Err(e) => {
            check_error(&e, path);
            None
        }
    }
}

fn round_trip<T>(value: &T)
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let json = to_json(value);
    let again: T = hcs_schema::parse(&json).unwrap_or_else(|e| {
        panic!("to_json output does not re-parse: {e:?}\n  json: {json}\n  value: {value:?}")
    });
    assert_eq!(&again, value, "round trip changed the value; json: {json}");
    assert_eq!(to_json(&again), json, "serialization is not stable");
}

/// The Settings types of HCS-API §7.7, and `ProcessorLimits` (ours: `…/Processor/Limits`).
fn modify_settings(settings: &serde_json::Value, path: &str) {
    member::<CpuGroup>(settings, path);
    member::<IdleProcessorsRequest>(settings, path);
    member::<u32>(settings, path);
    member::<u64>(settings, path);
    member::<FlexibleIoDevice>(settings, path);
    member::<GpuConfiguration>(settings, path);
    member::<NetworkAdapter>(settings, path);
    member::<Plan9Share>(settings, path);
    member::<Attachment>(settings, path);
    member::<ComPort>(settings, path);
    member::<SharedMemoryRegion>(settings, path);
    member::<VirtualPMemDevice>(settings, path);
    member::<VirtualPMemMapping>(settings, path);
    member::<VirtualSmbShare>(settings, path);
    member::<VirtualPciDevice>(settings, path);
    member::<ProcessorLimits>(settings, path);
    member::<HvSocketServiceConfig>(settings, path);
}

/// `GuestModifySettingRequest.Settings` by `ResourceType`.
fn guest_settings(settings: &serde_json::Value, path: &str) {
    member::<MappedDirectory>(settings, path);
    member::<MappedPipe>(settings, path);
    member::<MappedVirtualDisk>(settings, path);
    member::<CombinedLayers>(settings, path);
    member::<NetworkNamespace>(settings, path);
    member::<CimMount>(settings, path);
    member::<u64>(settings, path);
}

/// `ModificationRequest.Settings` (HcsModifyServiceSettings) and their `OperationDetails`.
fn service_settings(settings: &serde_json::Value, path: &str) {
    let details_path = format!("{path}.OperationDetails");
    if let Some(req) = member::<HostProcessorModificationRequest>(settings, path) {
        if let Some(details) = &req.operation_details {
            member::<CreateGroupOperation>(details, &details_path);
            member::<DeleteGroupOperation>(details, &details_path);
            member::<SetPropertyOperation>(details, &details_path);
        }
    }
    if let Some(req) = member::<ContainerCredentialGuardOperationRequest>(settings, path) {
        if let Some(details) = &req.operation_details {
            member::<ContainerCredentialGuardAddInstanceRequest>(details, &details_path);
            member::<ContainerCredentialGuardRemoveInstanceRequest>(details, &details_path);
        }
    }
}

fn check_errors(errors: &[DocumentError], base: &str) {
    for e in errors {
        check_error(e, base);
    }
}

/// HCS-API rule 46: `HCS_E_INVALID_JSON`, and a message that names the JSON path.
fn check_error(e: &DocumentError, base: &str) {
    assert!(
        HResult::ALL.contains(&e.hresult),
        "undocumented HRESULT {:?} in {e:?}",
        e.hresult
    );
    assert_eq!(e.hresult, HResult::HCS_E_INVALID_JSON, "{e:?}");
    assert!(
        e.path.starts_with(base),
        "path {:?} is not under {base:?}: {e:?}",
        e.path
    );
    assert!(
        is_json_path(&e.path),
        "ill-formed JSONPath {:?}: {e:?}",
        e.path
    );
    let prefix = format!("{}: ", e.path);
    assert!(
        e.message.starts_with(&prefix) && e.message.len() > prefix.len(),
        "message does not start with its path and say more: {e:?}"
    );
    assert_eq!(e.to_string(), e.message);
}

/// `$` followed by `.Identifier`, `[digits]` or `["JSON string"]` segments, as
/// `hcs_schema::path_member` / `path_index` build them.
fn is_json_path(path: &str) -> bool {
    let Some(mut rest) = path.strip_prefix('$') else {
        return false;
    };
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(r.len());
            let ident = &r[..end];
            if !ident.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                return false;
            }
            rest = &r[end..];
        } else if rest.starts_with("[\"") {
            // A JSON string: find its end with serde_json, then `]`.
            let quoted = &rest[1..];
            let mut stream = serde_json::Deserializer::from_str(quoted).into_iter::<String>();
            match stream.next() {
                Some(Ok(key)) => {
                    let used = stream.byte_offset();
                    // Must be the canonical quoting path_member produces.
                    if serde_json::to_string(&key).ok().as_deref() != Some(&quoted[..used]) {
                        return false;
                    }
                    match quoted[used..].strip_prefix(']') {
                        Some(r2) => rest = r2,
                        None => return false,
                    }
                }
                _ => return false,
            }
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            if end == 0 || !r[end..].starts_with(']') {
                return false;
            }
            rest = &r[end + 1..];
        } else {
            return false;
        }
    }
    true
}
