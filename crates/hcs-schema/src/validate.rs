//! Validation of parsed documents: what makes a document valid (HCS-API rules 17, 47, §7.3),
//! not what an engine supports (the host decides that, rule 48).

use crate::document::{path_member, DocumentError};
use crate::{parse, ComputeSystem, Devices, ProcessParameters, SchemaObject, VirtualMachine};

/// Host limits a configuration is checked against. There is deliberately no `Default`: the
/// caller knows its host (e.g. online CPUs and memory) and must say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted `Processor.Count`.
    pub max_vcpus: u32,
    /// Largest accepted `Memory.SizeInMB`.
    pub max_memory_mb: u64,
}

impl Limits {
    /// Limits of `max_vcpus` vCPUs and `max_memory_mb` MB of guest memory.
    pub const fn new(max_vcpus: u32, max_memory_mb: u64) -> Self {
        Limits {
            max_vcpus,
            max_memory_mb,
        }
    }

    /// No host limit beyond the types' ranges (for tests and tools that only check syntax).
    pub const fn unbounded() -> Self {
        Limits {
            max_vcpus: u32::MAX,
            max_memory_mb: u64::MAX,
        }
    }
}

/// The schema's Guid pattern: `^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$`.
pub fn is_guid(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Appends an error if the Guid-typed `value` at `path` is not a Guid.
pub(crate) fn check_guid(value: &str, path: &str, errors: &mut Vec<DocumentError>) {
    if !is_guid(value) {
        errors.push(DocumentError::invalid_json(
            path,
            format!(
                "expected a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got {}",
                quoted(value)
            ),
        ));
    }
}

/// Appends an error if the key of a `Map<Guid, _>` (whose entry is at `path`) is not a Guid.
pub(crate) fn check_guid_key(key: &str, path: &str, errors: &mut Vec<DocumentError>) {
    if !is_guid(key) {
        errors.push(DocumentError::invalid_json(
            path,
            format!(
                "map key {} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                quoted(key)
            ),
        ));
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Checks every `Guid`-typed value of any schema object (at any depth) against the Guid
/// pattern; `path` is the JSONPath of `document` (`"$"` for a whole document).
pub fn guids<T: SchemaObject>(document: &T, path: &str) -> Result<(), Vec<DocumentError>> {
    let mut errors = Vec::new();
    document.check_guids(path, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Validates a `ComputeSystem` configuration (input of `HcsCreateComputeSystem`) and returns
/// every error found, not only the first:
///
/// * `SchemaVersion` present with `Major` 2 and a `Minor` (any value) (rule 47);
/// * exactly one of `VirtualMachine`, `Container`, `HostedSystem` (rule 17);
/// * for a `VirtualMachine` (HCS-API §7.3): `Chipset` with exactly one of `Uefi` and
///   `LinuxKernelDirect`; `ComputeTopology.Memory.SizeInMB` in 1..=`max_memory_mb`;
///   `ComputeTopology.Processor.Count` (absent = 1) in 1..=`max_vcpus`; `ComPorts` keys
///   `"0"` or `"1"`; integer keys in `Scsi` attachments, `VirtioSerial.Ports` and
///   `VirtualPMem` maps;
/// * every present `Guid`-typed value matches the Guid pattern.
///
/// All errors are `HCS_E_INVALID_JSON` with the JSONPath of the culprit.
pub fn compute_system(doc: &ComputeSystem, limits: &Limits) -> Result<(), Vec<DocumentError>> {
    let mut errors = Vec::new();

    match &doc.schema_version {
        None => errors.push(DocumentError::invalid_json(
            "$.SchemaVersion",
            "required property is missing; expected {\"Major\": 2, \"Minor\": <n>}",
        )),
        Some(version) => {
            match version.major {
                None => errors.push(DocumentError::invalid_json(
                    "$.SchemaVersion.Major",
                    "required property is missing; expected 2",
                )),
                Some(2) => {}
                Some(major) => errors.push(DocumentError::invalid_json(
                    "$.SchemaVersion.Major",
                    format!("unsupported schema major version {major}; expected 2"),
                )),
            }
            if version.minor.is_none() {
                errors.push(DocumentError::invalid_json(
                    "$.SchemaVersion.Minor",
                    "required property is missing; expected the schema minor version (e.g. 1)",
                ));
            }
        }
    }

    let present: Vec<&str> = [
        ("VirtualMachine", doc.virtual_machine.is_some()),
        ("Container", doc.container.is_some()),
        ("HostedSystem", doc.hosted_system.is_some()),
    ]
    .iter()
    .filter(|(_, p)| *p)
    .map(|(n, _)| *n)
    .collect();
    match present.len() {
        1 => {}
        0 => errors.push(DocumentError::invalid_json(
            "$",
            "exactly one of VirtualMachine, Container or HostedSystem is required; found none",
        )),
        _ => errors.push(DocumentError::invalid_json(
            "$",
            format!(
                "exactly one of VirtualMachine, Container or HostedSystem is allowed; found {}",
                present.join(" and ")
            ),
        )),
    }

    if let Some(vm) = &doc.virtual_machine {
        virtual_machine(vm, "$.VirtualMachine", limits, &mut errors);
    }

    doc.check_guids("$", &mut errors);

    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn virtual_machine(
    vm: &VirtualMachine,
    path: &str,
    limits: &Limits,
    errors: &mut Vec<DocumentError>,
) {
    let chipset_path = path_member(path, "Chipset");
    match &vm.chipset {
        None => errors.push(DocumentError::invalid_json(
            &chipset_path,
            "required property is missing; expected a Chipset with Uefi or LinuxKernelDirect",
        )),
        Some(chipset) => match (
            chipset.uefi.is_some(),
            chipset.linux_kernel_direct.is_some(),
        ) {
            (true, false) | (false, true) => {}
            (false, false) => errors.push(DocumentError::invalid_json(
                &chipset_path,
                "exactly one boot method, Uefi or LinuxKernelDirect, is required; found neither",
            )),
            (true, true) => errors.push(DocumentError::invalid_json(
                &chipset_path,
                "exactly one boot method, Uefi or LinuxKernelDirect, is allowed; found both",
            )),
        },
    }

    let topology_path = path_member(path, "ComputeTopology");
    match &vm.compute_topology {
        None => errors.push(DocumentError::invalid_json(
            &topology_path,
            "required property is missing; expected {\"Memory\": {\"SizeInMB\": <n>}, ...}",
        )),
        Some(topology) => {
            let memory_path = path_member(&topology_path, "Memory");
            match &topology.memory {
                None => errors.push(DocumentError::invalid_json(
                    &memory_path,
                    "required property is missing; expected {\"SizeInMB\": <n>}",
                )),
                Some(memory) => {
                    let size_path = path_member(&memory_path, "SizeInMB");
                    match memory.size_in_mb {
                        None => errors.push(DocumentError::invalid_json(
                            &size_path,
                            "required property is missing; expected the guest memory size in MB",
                        )),
                        Some(size) if size == 0 || size > limits.max_memory_mb => {
                            errors.push(DocumentError::invalid_json(
                                &size_path,
                                format!(
                                    "must be between 1 and {} MB, got {size}",
                                    limits.max_memory_mb
                                ),
                            ))
                        }
                        Some(_) => {}
                    }
                }
            }
            let count = topology
                .processor
                .as_ref()
                .and_then(|p| p.count)
                .unwrap_or(1);
            if count == 0 || count > limits.max_vcpus {
                errors.push(DocumentError::invalid_json(
                    path_member(&path_member(&topology_path, "Processor"), "Count"),
                    format!("must be between 1 and {}, got {count}", limits.max_vcpus),
                ));
            }
        }
    }

    if let Some(devices) = &vm.devices {
        self::devices(devices, &path_member(path, "Devices"), errors);
    }
}

fn devices(devices: &Devices, path: &str, errors: &mut Vec<DocumentError>) {
    if let Some(ports) = &devices.com_ports {
        let ports_path = path_member(path, "ComPorts");
        for key in ports.keys() {
            if !matches!(key.as_str(), "0" | "1") {
                errors.push(DocumentError::invalid_json(
                    path_member(&ports_path, key),
                    format!("COM port key must be \"0\" or \"1\", got {}", quoted(key)),
                ));
            }
        }
    }
    if let Some(controllers) = &devices.scsi {
        let scsi_path = path_member(path, "Scsi");
        for (name, controller) in controllers {
            if let Some(attachments) = &controller.attachments {
                let base = path_member(&path_member(&scsi_path, name), "Attachments");
                integer_keys(attachments.keys(), &base, u32::MAX.into(), "LUN", errors);
            }
        }
    }
    if let Some(ports) = devices
        .virtio_serial
        .as_ref()
        .and_then(|v| v.ports.as_ref())
    {
        let base = path_member(&path_member(path, "VirtioSerial"), "Ports");
        integer_keys(ports.keys(), &base, u32::MAX.into(), "port number", errors);
    }
    if let Some(pmem) = &devices.virtual_pmem {
        let pmem_path = path_member(path, "VirtualPMem");
        if let Some(list) = &pmem.devices {
            let base = path_member(&pmem_path, "Devices");
            integer_keys(list.keys(), &base, u8::MAX.into(), "device number", errors);
            for (key, device) in list {
                if let Some(mappings) = &device.mappings {
                    let mpath = path_member(&path_member(&base, key), "Mappings");
                    integer_keys(mappings.keys(), &mpath, u64::MAX, "offset", errors);
                }
            }
        }
    }
}

/// Map keys that must be unsigned integers up to `max`, written in decimal.
fn integer_keys<'a>(
    keys: impl Iterator<Item = &'a String>,
    path: &str,
    max: u64,
    what: &str,
    errors: &mut Vec<DocumentError>,
) {
    for key in keys {
        let ok = !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_digit())
            && key.parse::<u64>().is_ok_and(|n| n <= max);
        if !ok {
            errors.push(DocumentError::invalid_json(
                path_member(path, key),
                format!(
                    "map key must be a {what}, an unsigned integer between 0 and {max}, got {}",
                    quoted(key)
                ),
            ));
        }
    }
}

/// Validates `ProcessParameters` (input of `HcsCreateProcess`): `ConsoleSize`, when present,
/// is `[height, width]`, exactly two numbers.
///
/// ```
/// use hcs_schema::{parse, validate, ProcessParameters};
/// let p: ProcessParameters = parse(r#"{"CommandArgs":["/bin/sh"],"ConsoleSize":[25]}"#).unwrap();
/// let errors = validate::process_parameters(&p).unwrap_err();
/// assert_eq!(errors[0].path, "$.ConsoleSize");
/// ```
pub fn process_parameters(doc: &ProcessParameters) -> Result<(), Vec<DocumentError>> {
    let mut errors = Vec::new();
    if let Some(size) = &doc.console_size {
        if size.len() != 2 {
            errors.push(DocumentError::invalid_json(
                "$.ConsoleSize",
                format!(
                    "expected [height, width], two numbers; got {} numbers",
                    size.len()
                ),
            ));
        }
    }
    doc.check_guids("$", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Parses and validates a `ComputeSystem` configuration: [`parse`] then [`compute_system`].
/// A parse error is returned alone (nothing further can be checked).
///
/// ```
/// use hcs_schema::{validate, HResult, Limits};
/// let json = r#"{ "SchemaVersion": {"Major": 2, "Minor": 1},
///                 "VirtualMachine": { "Chipset": { "Uefi": {} },
///                   "ComputeTopology": { "Memory": { "SizeInMB": 0 } } } }"#;
/// let errors = validate::parse_compute_system(json, &Limits::new(8, 4096)).unwrap_err();
/// assert_eq!(errors[0].hresult, HResult::HCS_E_INVALID_JSON);
/// assert_eq!(errors[0].path, "$.VirtualMachine.ComputeTopology.Memory.SizeInMB");
/// ```
pub fn parse_compute_system(
    json: &str,
    limits: &Limits,
) -> Result<ComputeSystem, Vec<DocumentError>> {
    let doc: ComputeSystem = parse(json).map_err(|e| vec![e])?;
    compute_system(&doc, limits)?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_pattern() {
        assert!(is_guid("6f1c2a4e-0000-4000-8000-000000000001"));
        assert!(is_guid("00000000-0000-0000-0000-000000000000"));
        assert!(is_guid("ABCDEFab-cdef-ABCD-efAB-0123456789aF"));
        assert!(!is_guid("{6f1c2a4e-0000-4000-8000-000000000001}"));
        assert!(!is_guid("6f1c2a4e00004000800000000000000001"));
        assert!(!is_guid("6f1c2a4e-0000-4000-8000-00000000000g"));
        assert!(!is_guid("GUID"));
        assert!(!is_guid(""));
    }
}
