//! `HcsModifyComputeSystem`: the `ModifySettingRequest` grammar of HCS-API §7.7 and what
//! the built-in VMM can change.
//!
//! Every resource path of §7.7 (and the ones hcsshim sends) is recognised, its allowed
//! request types enforced (`E_INVALIDARG` otherwise) and its `Settings` parsed as the type
//! the path names (`HCS_E_INVALID_JSON` otherwise). Then: removing something the VM does
//! not have is `ERROR_NOT_FOUND`; a change the VM cannot make is `ERROR_NOT_SUPPORTED`
//! naming the path; a memory "change" to the current size is accepted as a no-op.

use hcs_protocol::Failure;
use hcs_schema::{HResult, ModifyRequestType, ModifySettingRequest};
use serde::de::DeserializeOwned;

/// The resources a path can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    CpuGroup,
    IdledProcessors,
    CpuFrequencyPowerCap,
    ProcessorLimits,
    FlexibleIov,
    Gpu,
    MappedPipe,
    MemorySize,
    NetworkAdapter,
    Plan9Shares,
    ScsiAttachment,
    ComPort,
    SharedMemoryRegions,
    VirtualPMemDevice,
    VirtualPMemMapping,
    VirtualSmbShares,
    VirtualPci,
    HvSocketService,
}

/// Which request types a resource allows.
#[derive(Debug, Clone, Copy)]
enum Allowed {
    Any,
    UpdateOnly,
    AddOnly,
    AddOrRemove,
}

fn is_uint(segment: &str) -> bool {
    !segment.is_empty()
        && segment.bytes().all(|b| b.is_ascii_digit())
        && segment.parse::<u64>().is_ok()
}

fn is_name(segment: &str) -> bool {
    !segment.is_empty()
}

/// Matches a `ResourcePath` against the table of §7.7.
fn classify(path: &str) -> Option<(Resource, Allowed)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    use Allowed::*;
    use Resource::*;
    let found = match parts.as_slice() {
        ["VirtualMachine", "ComputeTopology", "Processor", "CpuGroup"] => (CpuGroup, Any),
        ["VirtualMachine", "ComputeTopology", "Processor", "IdledProcessors"] => {
            (IdledProcessors, UpdateOnly)
        }
        ["VirtualMachine", "ComputeTopology", "Processor", "CpuFrequencyPowerCap"] => {
            (CpuFrequencyPowerCap, Any)
        }
        ["VirtualMachine", "ComputeTopology", "Processor", "Limits"] => {
            (ProcessorLimits, UpdateOnly)
        }
        ["VirtualMachine", "Devices", "FlexibleIov", name] if is_name(name) => {
            (FlexibleIov, AddOnly)
        }
        ["VirtualMachine", "ComputeTopology", "Gpu"] => (Gpu, UpdateOnly),
        ["VirtualMachine", "Devices", "MappedPipes", name] if is_name(name) => {
            (MappedPipe, AddOrRemove)
        }
        ["VirtualMachine", "ComputeTopology", "Memory", "SizeInMB"] => (MemorySize, Any),
        ["VirtualMachine", "Devices", "NetworkAdapters", name] if is_name(name) => {
            (NetworkAdapter, Any)
        }
        ["VirtualMachine", "Devices", "Plan9", "Shares"] => (Plan9Shares, Any),
        ["VirtualMachine", "Devices", "Scsi", name, "Attachments", lun]
            if is_name(name) && is_uint(lun) =>
        {
            (ScsiAttachment, Any)
        }
        ["VirtualMachine", "Devices", "ComPorts", n]
            if is_uint(n) && n.parse::<u64>().ok()? <= 1 =>
        {
            (ComPort, Any)
        }
        ["VirtualMachine", "Devices", "SharedMemory", "Regions"] => (SharedMemoryRegions, Any),
        ["VirtualMachine", "Devices", "VirtualPMem", "Devices", n] if is_uint(n) => {
            (VirtualPMemDevice, AddOrRemove)
        }
        ["VirtualMachine", "Devices", "VirtualPMem", "Devices", n, "Mappings", offset]
            if is_uint(n) && is_uint(offset) =>
        {
            (VirtualPMemMapping, AddOrRemove)
        }
        ["VirtualMachine", "Devices", "VirtualSmb", "Shares"] => (VirtualSmbShares, Any),
        ["VirtualMachine", "Devices", "VirtualPci", name] if is_name(name) => {
            (VirtualPci, AddOrRemove)
        }
        ["VirtualMachine", "Devices", "HvSocket", "HvSocketConfig", "ServiceTable", guid]
            if is_name(guid) =>
        {
            (HvSocketService, Any)
        }
        _ => return None,
    };
    Some(found)
}

/// A checked request.
#[derive(Debug)]
pub(crate) struct Checked {
    resource: Option<Resource>,
    request_type: ModifyRequestType,
    path: String,
    settings: Option<serde_json::Value>,
    guest_request: bool,
}

fn settings_as<T: DeserializeOwned>(value: &serde_json::Value, path: &str) -> Result<(), Failure> {
    let text = value.to_string();
    hcs_schema::parse::<T>(&text).map(|_| ()).map_err(|error| {
        let inner = error.path.trim_start_matches('$');
        Failure::new(
            HResult::HCS_E_INVALID_JSON,
            format!(
                "$.Settings{inner}: not valid for resource path '{path}': {}",
                error.message
            ),
        )
    })
}

/// Parses and checks a `ModifySettingRequest` (HCS-API §7.7, rule 31).
pub(crate) fn parse(document: &str) -> Result<Checked, Failure> {
    let request: ModifySettingRequest = hcs_schema::parse(document)?;
    let guest_request = request.guest_request.is_some();
    let Some(path) = request.resource_path.clone() else {
        if guest_request {
            return Ok(Checked {
                resource: None,
                request_type: request.request_type.unwrap_or(ModifyRequestType::Update),
                path: String::new(),
                settings: None,
                guest_request,
            });
        }
        return Err(Failure::new(
            HResult::E_INVALIDARG,
            "$.ResourcePath: a ResourcePath or a GuestRequest is required",
        ));
    };
    let Some((resource, allowed)) = classify(&path) else {
        return Err(Failure::new(
            HResult::E_INVALIDARG,
            format!("$.ResourcePath: unknown resource path '{path}'"),
        ));
    };
    let request_type = request.request_type.unwrap_or(ModifyRequestType::Update);
    let permitted = match allowed {
        Allowed::Any => true,
        Allowed::UpdateOnly => request_type == ModifyRequestType::Update,
        Allowed::AddOnly => matches!(
            request_type,
            ModifyRequestType::Add | ModifyRequestType::PreAdd
        ),
        Allowed::AddOrRemove => matches!(
            request_type,
            ModifyRequestType::Add | ModifyRequestType::PreAdd | ModifyRequestType::Remove
        ),
    };
    if !permitted {
        return Err(Failure::new(
            HResult::E_INVALIDARG,
            format!("$.RequestType: {request_type:?} is not allowed for '{path}'"),
        ));
    }
    // Remove ignores Settings (rule 31); otherwise they must be of the path's type.
    if request_type != ModifyRequestType::Remove {
        let settings = request.settings.clone().unwrap_or(serde_json::Value::Null);
        use hcs_schema as s;
        match resource {
            Resource::CpuGroup => settings_as::<s::CpuGroup>(&settings, &path)?,
            Resource::IdledProcessors => settings_as::<s::IdleProcessorsRequest>(&settings, &path)?,
            Resource::CpuFrequencyPowerCap => settings_as::<u32>(&settings, &path)?,
            Resource::ProcessorLimits => settings_as::<s::ProcessorLimits>(&settings, &path)?,
            Resource::FlexibleIov => settings_as::<s::FlexibleIoDevice>(&settings, &path)?,
            Resource::Gpu => settings_as::<s::GpuConfiguration>(&settings, &path)?,
            Resource::MappedPipe => {}
            Resource::MemorySize => settings_as::<u64>(&settings, &path)?,
            Resource::NetworkAdapter => settings_as::<s::NetworkAdapter>(&settings, &path)?,
            Resource::Plan9Shares => settings_as::<s::Plan9Share>(&settings, &path)?,
            Resource::ScsiAttachment => settings_as::<s::Attachment>(&settings, &path)?,
            Resource::ComPort => settings_as::<s::ComPort>(&settings, &path)?,
            Resource::SharedMemoryRegions => {
                settings_as::<s::SharedMemoryRegion>(&settings, &path)?
            }
            Resource::VirtualPMemDevice => settings_as::<s::VirtualPMemDevice>(&settings, &path)?,
            Resource::VirtualPMemMapping => settings_as::<s::VirtualPMemMapping>(&settings, &path)?,
            Resource::VirtualSmbShares => settings_as::<s::VirtualSmbShare>(&settings, &path)?,
            Resource::VirtualPci => settings_as::<s::VirtualPciDevice>(&settings, &path)?,
            Resource::HvSocketService => settings_as::<s::HvSocketServiceConfig>(&settings, &path)?,
        }
    }
    Ok(Checked {
        resource: Some(resource),
        request_type,
        path,
        settings: request.settings,
        guest_request,
    })
}

/// Applies a checked request to an empty VM of `memory_mb`.
pub(crate) fn apply(request: &Checked, memory_mb: u64) -> Result<(), Failure> {
    if request.guest_request {
        return Err(Failure::new(
            HResult::HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
            "$.GuestRequest: this compute system has no guest connection to forward it to",
        ));
    }
    let Some(resource) = request.resource else {
        return Ok(());
    };
    let path = &request.path;
    if request.request_type == ModifyRequestType::Remove {
        // The built-in VMM's VM has none of these: there is nothing to remove.
        return Err(Failure::new(
            HResult::ERROR_NOT_FOUND,
            format!("'{path}': this compute system has no such item to remove"),
        ));
    }
    match resource {
        Resource::MemorySize => {
            let wanted = request
                .settings
                .as_ref()
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if wanted == memory_mb {
                Ok(())
            } else {
                Err(Failure::new(
                    HResult::ERROR_NOT_SUPPORTED,
                    format!(
                        "'{path}': resizing memory from {memory_mb} MB to {wanted} MB needs a \
                         guest with a memory balloon, which the empty VM does not have"
                    ),
                ))
            }
        }
        _ => Err(Failure::new(
            HResult::ERROR_NOT_SUPPORTED,
            format!("'{path}': this change is not supported by the built-in VMM yet"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(doc: &str) -> HResult {
        match parse(doc).and_then(|c| apply(&c, 1024)) {
            Ok(()) => HResult::S_OK,
            Err(f) => f.hresult,
        }
    }

    #[test]
    fn rule_31_quick_start_memory_update_of_same_size_is_accepted() {
        let doc = r#"{"ResourcePath":"VirtualMachine/ComputeTopology/Memory/SizeInMB","RequestType":"Update","Settings":1024}"#;
        assert_eq!(code(doc), HResult::S_OK);
    }

    #[test]
    fn rule_31_memory_resize_is_not_supported() {
        let doc = r#"{"ResourcePath":"VirtualMachine/ComputeTopology/Memory/SizeInMB","RequestType":"Update","Settings":4096}"#;
        assert_eq!(code(doc), HResult::ERROR_NOT_SUPPORTED);
    }

    #[test]
    fn rule_31_unknown_path_is_invalid_argument() {
        let doc = r#"{"ResourcePath":"VirtualMachine/Devices/Floppy/0","RequestType":"Add"}"#;
        assert_eq!(code(doc), HResult::E_INVALIDARG);
    }

    #[test]
    fn rule_31_disallowed_request_type_is_invalid_argument() {
        let doc = r#"{"ResourcePath":"VirtualMachine/ComputeTopology/Gpu","RequestType":"Add","Settings":{}}"#;
        assert_eq!(code(doc), HResult::E_INVALIDARG);
        let doc = r#"{"ResourcePath":"VirtualMachine/Devices/ComPorts/2","RequestType":"Add","Settings":{}}"#;
        assert_eq!(code(doc), HResult::E_INVALIDARG);
    }

    #[test]
    fn rule_31_settings_of_the_wrong_type_are_invalid_json() {
        let doc = r#"{"ResourcePath":"VirtualMachine/Devices/Scsi/Primary disk/Attachments/0","RequestType":"Add","Settings":{"Type":"Floppy"}}"#;
        assert_eq!(code(doc), HResult::HCS_E_INVALID_JSON);
        let doc = r#"{"ResourcePath":"VirtualMachine/ComputeTopology/Memory/SizeInMB","RequestType":"Update","Settings":"big"}"#;
        assert_eq!(code(doc), HResult::HCS_E_INVALID_JSON);
    }

    #[test]
    fn rule_31_remove_ignores_settings_and_reports_absent_items() {
        let doc = r#"{"ResourcePath":"VirtualMachine/Devices/Scsi/Primary disk/Attachments/1","RequestType":"Remove","Settings":{"Bogus":1}}"#;
        assert_eq!(code(doc), HResult::ERROR_NOT_FOUND);
    }

    #[test]
    fn hot_add_of_a_disk_is_not_supported_yet() {
        let doc = r#"{"ResourcePath":"VirtualMachine/Devices/Scsi/Primary disk/Attachments/1","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"/var/lib/vm/data.img"}}"#;
        assert_eq!(code(doc), HResult::ERROR_NOT_SUPPORTED);
    }

    #[test]
    fn guest_requests_need_a_guest_connection() {
        let doc = r#"{"GuestRequest":{"ResourceType":"Memory"}}"#;
        assert_eq!(
            code(doc),
            HResult::HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION
        );
    }
}
