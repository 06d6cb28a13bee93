//! Every JSON document shown in HCS-API.md sections 2.3, 7 and 8 parses into its type and
//! survives a round trip (serialize, parse again, equal; same JSON value as the source).

use hcs_schema::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parses `json` as `T`, checks the round trip and returns the value.
fn sample<T>(json: &str) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let doc: T = match parse(json) {
        Ok(doc) => doc,
        Err(e) => panic!("sample does not parse: {e}\n{json}"),
    };
    let text = to_json(&doc);
    let again: T = match parse(&text) {
        Ok(doc) => doc,
        Err(e) => panic!("round trip does not parse: {e}\n{text}"),
    };
    assert_eq!(doc, again);
    let source: serde_json::Value = serde_json::from_str(json).expect("sample is JSON");
    let written: serde_json::Value = serde_json::from_str(&text).expect("output is JSON");
    assert_eq!(source, written, "serialized form differs from the sample");
    doc
}

fn valid(doc: &ComputeSystem) {
    if let Err(errors) = compute_system(doc, &Limits::new(64, 1 << 20)) {
        panic!("sample is not valid: {errors:?}");
    }
}

/// HCS-API §8.2 `c_EmptyVM`.
pub const EMPTY_VM: &str = r#"{
    "SchemaVersion": { "Major": 2, "Minor": 1 },
    "Owner": "Sample",
    "VirtualMachine": {
        "Chipset": { "Uefi": {} },
        "ComputeTopology": {
            "Memory": { "Backing": "Physical", "SizeInMB": 1024 },
            "Processor": { "Count": 2 }
        }
    },
    "ShouldTerminateOnLastHandleClosed": true
}"#;

#[test]
fn empty_vm_of_section_8_2() {
    let doc: ComputeSystem = sample(EMPTY_VM);
    valid(&doc);
    let vm = doc.virtual_machine.as_ref().expect("VirtualMachine");
    let chipset = vm.chipset.as_ref().expect("Chipset");
    assert_eq!(chipset.uefi, Some(Uefi::default()));
    assert!(chipset.linux_kernel_direct.is_none());
    let topology = vm.compute_topology.as_ref().expect("ComputeTopology");
    let memory: &VirtualMachineMemory = topology.memory.as_ref().expect("Memory");
    assert_eq!(memory.backing, Some(MemoryBacking::Physical));
    assert_eq!(memory.size_in_mb, Some(1024));
    let processor: &VirtualMachineProcessor = topology.processor.as_ref().expect("Processor");
    assert_eq!(processor.count, Some(2));
    assert_eq!(doc.should_terminate_on_last_handle_closed, Some(true));
    let version: &Version = doc.schema_version.as_ref().expect("SchemaVersion");
    assert_eq!((version.major, version.minor), (Some(2), Some(1)));
}

#[test]
fn quick_start_vm_of_section_8_1() {
    let doc: ComputeSystem = sample(
        r#"{
    "SchemaVersion": { "Major": 2, "Minor": 1 },
    "Owner": "Sample",
    "ShouldTerminateOnLastHandleClosed": true,
    "VirtualMachine": {
        "Chipset": {
            "Uefi": {
                "BootThis": { "DevicePath": "Primary disk", "DiskNumber": 0, "DeviceType": "ScsiDrive" }
            }
        },
        "ComputeTopology": {
            "Memory": { "Backing": "Virtual", "SizeInMB": 2048 },
            "Processor": { "Count": 2 }
        },
        "Devices": {
            "Scsi": {
                "Primary disk": {
                    "Attachments": {
                        "0": { "Type": "VirtualDisk", "Path": "c:\\HCS_Test\\utilityvm.vhdx" }
                    }
                }
            }
        }
    }
}"#,
    );
    valid(&doc);
    let vm = doc.virtual_machine.as_ref().expect("VirtualMachine");
    let boot = vm
        .chipset
        .as_ref()
        .and_then(|c| c.uefi.as_ref())
        .and_then(|u| u.boot_this.as_ref())
        .expect("BootThis");
    assert_eq!(boot.device_type, Some(UefiBootDevice::ScsiDrive));
    assert_eq!(boot.device_path.as_deref(), Some("Primary disk"));
    let scsi = vm
        .devices
        .as_ref()
        .and_then(|d| d.scsi.as_ref())
        .expect("Scsi");
    let attachment = &scsi["Primary disk"]
        .attachments
        .as_ref()
        .expect("Attachments")["0"];
    assert_eq!(attachment.r#type, Some(AttachmentType::VirtualDisk));
    assert_eq!(
        attachment.path.as_deref(),
        Some("c:\\HCS_Test\\utilityvm.vhdx")
    );
}

#[test]
fn historical_sample_of_section_8_4_with_placeholders_filled() {
    let doc: ComputeSystem = sample(
        r#"{
  "Owner": "test",
  "SchemaVersion": { "Major": 2, "Minor": 3 },
  "VirtualMachine": {
    "Chipset": { "Uefi": { "BootThis": { "DeviceType": "ScsiDrive", "DevicePath": "Controller0", "DiskNumber": 0 } } },
    "ComputeTopology": { "Memory": { "SizeInMB": 2048, "AllowOvercommit": true }, "Processor": { "Count": 2 } },
    "Devices": {
      "Scsi": { "Controller0": { "Attachments": { "0": { "Type": "VirtualDisk", "Path": "C:\\vms\\disk.vhdx" } } } },
      "VideoMonitor": {}, "Keyboard": {}, "Mouse": {},
      "NetworkAdapters": { "Adapter0": { "EndpointId": "00000000-0000-0000-0000-000000000000" } }
    }
  },
  "ShouldTerminateOnLastHandleClosed": true
}"#,
    );
    valid(&doc);
    let devices = doc
        .virtual_machine
        .as_ref()
        .and_then(|vm| vm.devices.as_ref())
        .expect("Devices");
    assert_eq!(devices.keyboard, Some(Keyboard {}));
    assert_eq!(devices.mouse, Some(Mouse {}));
    assert_eq!(devices.video_monitor, Some(VideoMonitor::default()));
}

#[test]
fn container_template_of_section_8_4() {
    let doc: ComputeSystem = sample(
        r#"{ "Owner": "test", "SchemaVersion": { "Major": 2, "Minor": 1 },
             "Container": { "Storage": { "Layers": [ { "Id": "6f1c2a4e-0000-4000-8000-000000000001",
                                                        "Path": "C:\\layers\\base" } ],
                                         "Path": "C:\\scratch" } },
             "ShouldTerminateOnLastHandleClosed": true }"#,
    );
    valid(&doc);
}

/// HCS-API §7.2, our Linux direct-boot template.
pub const LINUX_VM: &str = r#"{ "SchemaVersion": {"Major":2,"Minor":2}, "Owner": "t",
  "VirtualMachine": {
    "Chipset": { "LinuxKernelDirect": { "KernelFilePath": "/boot/vmlinux", "InitRdPath": "/boot/initrd.img",
                                        "KernelCmdLine": "console=ttyS0 panic=-1" } },
    "ComputeTopology": { "Memory": {"SizeInMB": 512}, "Processor": {"Count": 1} },
    "Devices": { "ComPorts": { "0": { "NamedPipe": "\\\\.\\pipe\\vm-com1" } } },
    "StopOnReset": true },
  "ShouldTerminateOnLastHandleClosed": true }"#;

#[test]
fn linux_template_of_section_7_2() {
    let doc: ComputeSystem = sample(LINUX_VM);
    valid(&doc);
    let vm = doc.virtual_machine.as_ref().expect("VirtualMachine");
    let kernel: &LinuxKernelDirect = vm
        .chipset
        .as_ref()
        .and_then(|c| c.linux_kernel_direct.as_ref())
        .expect("LinuxKernelDirect");
    assert_eq!(kernel.kernel_file_path.as_deref(), Some("/boot/vmlinux"));
    assert_eq!(kernel.init_rd_path.as_deref(), Some("/boot/initrd.img"));
    assert_eq!(
        kernel.kernel_cmd_line.as_deref(),
        Some("console=ttyS0 panic=-1")
    );
    let ports = vm
        .devices
        .as_ref()
        .and_then(|d| d.com_ports.as_ref())
        .expect("ComPorts");
    assert_eq!(
        ports["0"].named_pipe.as_deref(),
        Some("\\\\.\\pipe\\vm-com1")
    );
    assert_eq!(vm.stop_on_reset, Some(true));
}

#[test]
fn restore_template_of_section_8_5() {
    let doc: ComputeSystem = sample(
        r#"{ "SchemaVersion": {"Major":2,"Minor":1},
             "VirtualMachine": { "Chipset": { "Uefi": {} },
               "ComputeTopology": { "Memory": {"SizeInMB": 256} },
               "RestoreState": { "SaveStateFilePath": "/var/lib/hcs/save.vmrs" } } }"#,
    );
    valid(&doc);
}

#[test]
fn property_query_c_vm_query() {
    let q: SystemPropertyQuery = sample(r#"{ "PropertyTypes": [ "Memory" ] }"#);
    assert_eq!(q.property_types, Some(vec![SystemPropertyType::Memory]));
}

#[test]
fn modify_setting_c_modify_setting_and_hot_add() {
    let m: ModifySettingRequest = sample(
        r#"{ "ResourcePath": "VirtualMachine/ComputeTopology/Memory/SizeInMB", "RequestType": "Update", "Settings": 4096 }"#,
    );
    assert_eq!(m.request_type, Some(ModifyRequestType::Update));
    assert_eq!(m.settings, Some(serde_json::json!(4096)));
    let m: ModifySettingRequest = sample(
        r#"{"ResourcePath":"VirtualMachine/Devices/Scsi/Primary disk/Attachments/1","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"/var/lib/vm/data.img"}}"#,
    );
    let settings = m.settings.expect("Settings");
    let attachment: Attachment = parse_value(&settings, "$.Settings").expect("an Attachment");
    assert_eq!(attachment.path.as_deref(), Some("/var/lib/vm/data.img"));
    let m: ModifySettingRequest =
        sample(r#"{"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"PreAdd"}"#);
    assert_eq!(m.request_type, Some(ModifyRequestType::PreAdd));
}

#[test]
fn pause_save_shutdown_and_crash_options() {
    let p: PauseOptions =
        sample(r#"{ "SuspensionLevel": "Suspend", "HostedNotification": { "Reason": "Save" } }"#);
    assert_eq!(p.suspension_level, Some(PauseSuspensionLevel::Suspend));
    assert_eq!(
        p.hosted_notification,
        Some(PauseNotification {
            reason: Some(PauseReason::Save)
        })
    );
    let s: SaveOptions =
        sample(r#"{ "SaveType": "ToFile", "SaveStateFilePath": "c:\\HCS_Test\\save.vmrs" }"#);
    assert_eq!(s.save_type, Some(SaveType::ToFile));
    let s: ShutdownOptions = sample(
        r#"{"Mechanism":"GuestConnection","Type":"Shutdown","Force":false,"Reason":"maintenance"}"#,
    );
    assert_eq!(s.r#type, Some(ShutdownType::Shutdown));
    let c: CrashOptions = sample(r#"{"Type":"CrashGuest"}"#);
    assert_eq!(c.r#type, Some(CrashType::CrashGuest));
}

#[test]
fn system_query_and_properties() {
    let q: SystemQuery = sample(r#"{"Owners":["Sample"],"Types":["VirtualMachine"]}"#);
    assert_eq!(q.types, Some(vec![SystemType::VirtualMachine]));
    let p: Properties = sample(
        r#"{"Id":"Sample","SystemType":"VirtualMachine","RuntimeOsType":"Linux","Owner":"Sample","State":"Running","Stopped":false}"#,
    );
    assert_eq!(p.state, Some(State::Running));
    assert_eq!(p.runtime_os_type, Some(OsType::Linux));
    let list: Vec<Properties> =
        sample(r#"[{"Id":"a","SystemType":"VirtualMachine"},{"Id":"b","SystemType":"Container"}]"#);
    assert_eq!(list.len(), 2);
}

#[test]
fn service_documents() {
    let q: ServicePropertyQuery = sample(r#"{"PropertyTypes":["Basic"]}"#);
    assert_eq!(q.property_types, Some(vec![GetPropertyType::Basic]));
    let r: ServiceProperties =
        sample(r#"{"Properties":[{"SupportedSchemaVersions":[{"Major":2,"Minor":6}]}]}"#);
    let first = &r.properties.expect("Properties")[0];
    let basic: BasicInformation = parse_value(first, "$.Properties[0]").expect("BasicInformation");
    assert_eq!(basic.supported_schema_versions.map(|v| v.len()), Some(1));
    let m: ModificationRequest = sample(
        r#"{ "PropertyType": "CpuGroup",
             "Settings": { "Operation": "CreateGroup",
                           "OperationDetails": { "GroupId": "GUID", "LogicalProcessorCount": 2, "LogicalProcessors": [0, 1] } } }"#,
    );
    let settings = m.settings.expect("Settings");
    let request: HostProcessorModificationRequest =
        parse_value(&settings, "$.Settings").expect("HostProcessorModificationRequest");
    let details = request.operation_details.expect("OperationDetails");
    let group: CreateGroupOperation =
        parse_value(&details, "$.Settings.OperationDetails").expect("CreateGroupOperation");
    // The sample's placeholder is not a Guid: it parses, and validation names it.
    let errors =
        validate::guids(&group, "$.Settings.OperationDetails").expect_err("GUID placeholder");
    assert_eq!(errors[0].path, "$.Settings.OperationDetails.GroupId");
}

#[test]
fn process_documents() {
    let p: ProcessParameters = sample(
        r#"{"CommandLine":"cmd /c echo hi","WorkingDirectory":"C:\\","CreateStdOutPipe":true,"CreateStdErrPipe":true}"#,
    );
    assert_eq!(p.create_std_out_pipe, Some(true));
    let p: ProcessParameters = sample(
        r#"{"CommandArgs":["/bin/echo","hi"],"Environment":{"PATH":"/bin"},"ConsoleSize":[25,80],"EmulateConsole":true}"#,
    );
    assert_eq!(p.console_size, Some(vec![25, 80]));
    let m: ProcessModifyRequest =
        sample(r#"{"Operation":"CloseHandle","CloseHandle":{"Handle":"StdIn"}}"#);
    assert_eq!(
        m.close_handle.and_then(|c| c.handle),
        Some(StdHandle::StdIn)
    );
    let s: SignalProcessOptions = sample(r#"{"Signal":"CtrlC"}"#);
    assert_eq!(s.signal, Some(SignalValue::Named(ProcessSignal::CtrlC)));
    let s: SignalProcessOptions = sample(r#"{"Signal":9}"#);
    assert_eq!(s.signal, Some(SignalValue::Number(9)));
    let st: ProcessStatus =
        sample(r#"{"ProcessId":1234,"Exited":true,"ExitCode":0,"LastWaitResult":0}"#);
    assert_eq!(st.process_id, Some(1234));
}

#[test]
fn result_error_sample_of_section_2_3() {
    let e: ResultError = sample(
        r#"{
  "Error": -2143878899,
  "ErrorMessage": "text",
  "ErrorEvents": [
    { "Message": "...", "StackTrace": "...", "Provider": "6f1c2a4e-0000-4000-8000-000000000001", "EventId": 12345,
      "Flags": 0, "Source": "...", "Data": [ { "Type": "String", "Value": "..." } ] }
  ],
  "Attribution": [ { "OperationFailure": { "Detail": "Start" } } ]
}"#,
    );
    assert_eq!(e.hresult(), HResult::HCS_E_INVALID_JSON);
    assert!(validate::guids(&e, "$").is_ok());
    let detail = e
        .attribution
        .as_ref()
        .and_then(|a| a[0].operation_failure.as_ref())
        .and_then(|o| o.detail);
    assert_eq!(detail, Some(OperationFailureDetail::Start));
}

#[test]
fn system_exit_status_and_crash_report() {
    let s: SystemExitStatus = sample(r#"{"Status":0,"ExitType":"GracefulExit"}"#);
    assert_eq!(s.exit_type, Some(NotificationType::GracefulExit));
    assert_eq!(s.hresult(), HResult::S_OK);
    let c: CrashReport = sample(
        r#"{"SystemId":"Sample","ActivityId":"6f1c2a4e-0000-4000-8000-000000000001","CrashParameters":[0,0,0,0,0],"CrashLog":"Kernel panic - not syncing: ..."}"#,
    );
    assert_eq!(c.crash_parameters, Some(vec![0; 5]));
    assert!(validate::guids(&c, "$").is_ok());
}

#[test]
fn rule_44_empty_device_objects_serialize_as_empty_objects() {
    assert_eq!(to_json(&Keyboard {}), "{}");
    assert_eq!(to_json(&Uefi::default()), "{}");
    assert_eq!(to_json(&ComputeSystem::default()), "{}");
    let doc = SystemExitStatus::new(
        HResult::HCS_E_UNEXPECTED_EXIT,
        NotificationType::UnexpectedExit,
        SystemExitDetail::UnexpectedExit,
        ExitInitiator::Internal,
    );
    assert_eq!(
        doc.to_json(),
        r#"{"Status":-2143878906,"ExitType":"UnexpectedExit","Attribution":[{"SystemExit":{"Detail":"UnexpectedExit","Initiator":"Internal"}}]}"#
    );
    let again: SystemExitStatus = sample(&doc.to_json());
    assert_eq!(again, doc);
}

#[test]
fn generated_catalogue_is_complete() {
    assert_eq!(SCHEMA_ENUM_COUNT, 64);
    assert_eq!(SCHEMA_OBJECT_COUNT, 189);
    assert_eq!(
        <VirtualMachineMemory as SchemaObject>::SCHEMA_NAME,
        "VirtualMachine_Memory"
    );
    assert!(<VirtualMachineMemory as SchemaObject>::FIELDS.contains(&"Backing"));
    assert_eq!(CacheMode::from_name(""), Some(CacheMode::Empty));
    assert_eq!(OsType::from_name(""), Some(OsType::Empty));
    assert_eq!(
        ObjectDirectoryShadow::from_name("true"),
        Some(ObjectDirectoryShadow::True)
    );
    assert_eq!(
        SystemPropertyType::from_name("GuestMemory"),
        Some(SystemPropertyType::GuestMemory)
    );
    assert_eq!(
        GetPropertyType::from_name("ProcessorCapabilities"),
        Some(GetPropertyType::ProcessorCapabilities)
    );
    for v in ProcessorFeature::ALL {
        assert_eq!(ProcessorFeature::from_name(v.as_str()), Some(*v));
    }
    assert_eq!(ModifyRequestType::ALL.len(), 4);
}
