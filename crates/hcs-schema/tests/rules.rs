//! HCS-API rules 17, 44, 46 and 47 and the §7.3 VirtualMachine checks: each failure is
//! `HCS_E_INVALID_JSON` with the exact JSONPath of the culprit.

use hcs_schema::*;

const LIMITS: Limits = Limits::new(8, 16384);

/// The empty VM of HCS-API §8.2 with `body` as its `VirtualMachine.ComputeTopology`.
fn vm_with_topology(topology: &str) -> String {
    format!(
        r#"{{ "SchemaVersion": {{ "Major": 2, "Minor": 1 }},
             "VirtualMachine": {{ "Chipset": {{ "Uefi": {{}} }}, "ComputeTopology": {topology} }} }}"#
    )
}

/// Parses a `ComputeSystem` expecting exactly one parse error; returns it.
fn parse_error(json: &str) -> DocumentError {
    match parse::<ComputeSystem>(json) {
        Ok(doc) => panic!("accepted: {doc:?}"),
        Err(e) => {
            assert_eq!(e.hresult, HResult::HCS_E_INVALID_JSON, "{e}");
            assert!(
                e.message.starts_with(&e.path),
                "message does not name the path: {e}"
            );
            e
        }
    }
}

/// Parses and validates, expecting failure; returns all errors (each checked).
fn invalid(json: &str, limits: &Limits) -> Vec<DocumentError> {
    match parse_compute_system(json, limits) {
        Ok(doc) => panic!("accepted: {doc:?}"),
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert_eq!(e.hresult, HResult::HCS_E_INVALID_JSON, "{e}");
                assert!(
                    e.message.starts_with(&e.path),
                    "message does not name the path: {e}"
                );
            }
            errors
        }
    }
}

fn paths(errors: &[DocumentError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

// ------------------------------------------------------------------- rule 46: parsing

#[test]
fn rule_46_malformed_json_is_invalid_json() {
    let e = parse_error(r#"{ "SchemaVersion": { "Major": 2, } }"#);
    assert!(e.message.contains("malformed JSON"), "{e}");
    assert!(e.message.contains("line 1"), "{e}");
    let e = parse_error(r#"{ "Owner": "x""#);
    assert!(e.message.contains("malformed JSON"), "{e}");
    assert_eq!(e.path, "$");
}

#[test]
fn rule_46_empty_document_is_invalid_json() {
    for empty in ["", "   ", "\n\t"] {
        let e = parse_error(empty);
        assert_eq!(e.path, "$");
        assert!(e.message.contains("empty document"), "{e}");
    }
}

#[test]
fn rule_46_trailing_characters_are_invalid_json() {
    let e = parse_error(r#"{ "Owner": "x" } {}"#);
    assert_eq!(e.path, "$");
    assert!(e.message.contains("trailing characters"), "{e}");
    // Trailing whitespace is fine.
    assert!(parse::<ComputeSystem>("{}\n ").is_ok());
}

#[test]
fn rule_46_wrong_type_names_its_path() {
    let e = parse_error(&vm_with_topology(r#"{ "Processor": { "Count": "2" } }"#));
    assert_eq!(e.path, "$.VirtualMachine.ComputeTopology.Processor.Count");
    assert_eq!(
        e.message,
        "$.VirtualMachine.ComputeTopology.Processor.Count: expected an unsigned integer between 0 and 4294967295, got \"2\""
    );
    let e = parse_error(r#"{ "ShouldTerminateOnLastHandleClosed": 1 }"#);
    assert_eq!(e.path, "$.ShouldTerminateOnLastHandleClosed");
    assert!(e.message.contains("expected a boolean"), "{e}");
    let e = parse_error(r#"{ "VirtualMachine": [] }"#);
    assert_eq!(e.path, "$.VirtualMachine");
    assert!(
        e.message
            .contains("expected an object (VirtualMachine), got an array"),
        "{e}"
    );
    let e = parse_error(r#"[]"#);
    assert_eq!(e.path, "$");
}

#[test]
fn rule_46_memory_size_of_wrong_type_reads_well() {
    let e = parse_error(&vm_with_topology(r#"{ "Memory": { "SizeInMB": "big" } }"#));
    assert_eq!(
        e.message,
        "$.VirtualMachine.ComputeTopology.Memory.SizeInMB: expected an unsigned integer between 0 and 18446744073709551615, got \"big\""
    );
}

#[test]
fn rule_46_object_from_an_array_is_refused() {
    // serde's derive would take [2, 1] as Major 2, Minor 1.
    let e = parse_error(r#"{ "SchemaVersion": [2, 1] }"#);
    assert_eq!(e.path, "$.SchemaVersion");
    assert!(e.message.contains("expected an object (Version)"), "{e}");
}

#[test]
fn rule_46_unknown_property_names_its_path() {
    let e = parse_error(&vm_with_topology(r#"{ "Processor": { "Countt": 2 } }"#));
    assert_eq!(e.path, "$.VirtualMachine.ComputeTopology.Processor.Countt");
    assert!(
        e.message.starts_with(
            "$.VirtualMachine.ComputeTopology.Processor.Countt: unknown property \"Countt\"; expected one of Count, Limit, "
        ),
        "{e}"
    );
    let e = parse_error(r#"{ "FilterType": 1 }"#);
    assert_eq!(e.path, "$.FilterType");
}

#[test]
fn rule_46_unknown_property_in_maps_and_arrays_names_its_path() {
    let e = parse_error(
        r#"{ "VirtualMachine": { "Devices": { "Scsi": { "Primary disk": { "Attachments": {
               "0": { "Type": "VirtualDisk", "Pathh": "/d.img" } } } } } } }"#,
    );
    assert_eq!(
        e.path,
        "$.VirtualMachine.Devices.Scsi[\"Primary disk\"].Attachments[\"0\"].Pathh"
    );
    let e = parse_error(
        r#"{ "Container": { "Storage": { "Layers": [ { "Path": "a" }, { "Idd": "x" } ] } } }"#,
    );
    assert_eq!(e.path, "$.Container.Storage.Layers[1].Idd");
}

#[test]
fn rule_46_field_less_object_accepts_only_empty_object() {
    let e =
        parse_error(r#"{ "VirtualMachine": { "Devices": { "Keyboard": { "Layout": "us" } } } }"#);
    assert_eq!(e.path, "$.VirtualMachine.Devices.Keyboard.Layout");
    assert!(e.message.contains("no properties"), "{e}");
    let e = parse_error(r#"{ "VirtualMachine": { "Devices": { "Keyboard": [] } } }"#);
    assert_eq!(e.path, "$.VirtualMachine.Devices.Keyboard");
    let e = parse_error(r#"{ "VirtualMachine": { "Devices": { "Keyboard": true } } }"#);
    assert_eq!(e.path, "$.VirtualMachine.Devices.Keyboard");
}

#[test]
fn rule_46_unknown_enum_value_names_its_path() {
    let e = parse_error(&vm_with_topology(
        r#"{ "Memory": { "Backing": "Physcal", "SizeInMB": 1 } }"#,
    ));
    assert_eq!(e.path, "$.VirtualMachine.ComputeTopology.Memory.Backing");
    assert!(
        e.message
            .contains("unknown MemoryBacking value \"Physcal\""),
        "{e}"
    );
    assert!(
        e.message.contains("\"Physical\", \"Virtual\", \"Hybrid\""),
        "{e}"
    );
    let e = parse_error(
        r#"{ "VirtualMachine": { "Chipset": { "Uefi": { "BootThis": { "DeviceType": "scsidrive" } } } } }"#,
    );
    assert_eq!(e.path, "$.VirtualMachine.Chipset.Uefi.BootThis.DeviceType");
    // Enums are strings, never numbers or objects.
    let e = parse_error(r#"{ "VirtualMachine": { "Chipset": { "Uefi": { "Console": 1 } } } }"#);
    assert_eq!(e.path, "$.VirtualMachine.Chipset.Uefi.Console");
    let e = parse_error(
        r#"{ "VirtualMachine": { "Chipset": { "Uefi": { "Console": { "Default": null } } } } }"#,
    );
    assert_eq!(e.path, "$.VirtualMachine.Chipset.Uefi.Console");
}

#[test]
fn rule_46_out_of_range_numbers_name_their_path() {
    let e = parse_error(&vm_with_topology(r#"{ "Processor": { "Count": -1 } }"#));
    assert_eq!(e.path, "$.VirtualMachine.ComputeTopology.Processor.Count");
    assert_eq!(
        e.message,
        "$.VirtualMachine.ComputeTopology.Processor.Count: expected an unsigned integer between 0 and 4294967295, got -1"
    );
    let e = parse_error(&vm_with_topology(
        r#"{ "Processor": { "Count": 4294967296 } }"#,
    ));
    assert_eq!(e.path, "$.VirtualMachine.ComputeTopology.Processor.Count");
    assert!(e.message.contains("got 4294967296"), "{e}");
    let e = parse_error(&vm_with_topology(
        r#"{ "Memory": { "SizeInMB": 18446744073709551616 } }"#,
    ));
    assert_eq!(e.path, "$.VirtualMachine.ComputeTopology.Memory.SizeInMB");
    let e = parse_error(&vm_with_topology(r#"{ "Processor": { "Count": 1.5 } }"#));
    assert_eq!(e.path, "$.VirtualMachine.ComputeTopology.Processor.Count");
    let e = parse_error(
        r#"{ "VirtualMachine": { "Chipset": { "Uefi": { "BootThis": { "DiskNumber": 65536 } } } } }"#,
    );
    assert_eq!(e.path, "$.VirtualMachine.Chipset.Uefi.BootThis.DiskNumber");
    let e = parse(r#"{"Signal": 2147483648}"#)
        .map(|_: SignalProcessOptions| ())
        .unwrap_err();
    assert_eq!(e.path, "$.Signal");
    let e = parse(r#"{"Signal": "SIGKILL"}"#)
        .map(|_: SignalProcessOptions| ())
        .unwrap_err();
    assert_eq!(e.path, "$.Signal");
    let e = parse(r#"{"Error": 2147483648}"#)
        .map(|_: ResultError| ())
        .unwrap_err();
    assert_eq!(e.path, "$.Error");
}

#[test]
fn rule_46_names_are_case_sensitive() {
    let e = parse_error(&vm_with_topology(r#"{ "Memory": { "sizeinmb": 1024 } }"#));
    assert_eq!(e.path, "$.VirtualMachine.ComputeTopology.Memory.sizeinmb");
    let e = parse_error(r#"{ "schemaVersion": { "Major": 2, "Minor": 1 } }"#);
    assert_eq!(e.path, "$.schemaVersion");
}

#[test]
fn rule_46_section_3_extensions_are_known() {
    let doc = parse::<ComputeSystem>(
        r#"{ "SchemaVersion": { "Major": 2, "Minor": 1 },
             "VirtualMachine": {
               "Chipset": { "Uefi": {}, "FirmwareFile": { "Parameters": "x" } },
               "ComputeTopology": { "Memory": { "SizeInMB": 64, "Backing": "Hybrid", "SlitType": "x" },
                                    "Processor": { "Count": 1, "NumaProcessorsSettings": {} }, "Numa": {} },
               "Devices": { "Plan9": { "Shares": [ { "Name": "s", "Flags": 13 } ] },
                            "VirtioSerial": { "Ports": { "0": { "Name": "p", "ConsoleSupport": true } } },
                            "HvSocket": { "HvSocketConfig": { "ServiceTable": {
                               "6f1c2a4e-0000-4000-8000-000000000001": { "Disabled": true } } } } },
               "GuestState": { "GuestStateFileType": "Default" },
               "DebugOptions": {}, "SecuritySettings": {}, "ResourcePartitionId": "x", "MigrationOptions": {} } }"#,
    )
    .expect("extensions parse");
    assert!(compute_system(&doc, &LIMITS).is_ok());
    let share = &doc
        .virtual_machine
        .as_ref()
        .and_then(|vm| vm.devices.as_ref())
        .and_then(|d| d.plan9.as_ref())
        .and_then(|p| p.shares.as_ref())
        .expect("shares")[0];
    assert_eq!(share.flags, Some(13));
    let e = parse_error(r#"{ "Container": { "IsolationType": "process", "Isolation": 1 } }"#);
    assert_eq!(e.path, "$.Container.Isolation");
}

#[test]
fn rule_7_1_null_is_treated_as_absent() {
    let doc = parse::<ComputeSystem>(
        r#"{ "SchemaVersion": { "Major": 2, "Minor": 1 }, "Owner": null, "Container": null,
             "VirtualMachine": { "Chipset": { "Uefi": {}, "LinuxKernelDirect": null },
               "ComputeTopology": { "Memory": { "SizeInMB": 64, "Backing": null }, "Processor": null },
               "Devices": null } }"#,
    )
    .expect("nulls parse");
    assert!(doc.owner.is_none());
    assert!(doc.container.is_none());
    let vm = doc.virtual_machine.as_ref().expect("VirtualMachine");
    assert!(vm.devices.is_none());
    assert!(compute_system(&doc, &LIMITS).is_ok());
    assert!(!to_json(&doc).contains("null"));
}

// ------------------------------------------------------------------- rule 47: SchemaVersion

#[test]
fn rule_47_missing_schema_version_is_invalid_json() {
    let errors = invalid(
        r#"{ "VirtualMachine": { "Chipset": { "Uefi": {} }, "ComputeTopology": { "Memory": { "SizeInMB": 64 } } } }"#,
        &LIMITS,
    );
    assert_eq!(paths(&errors), ["$.SchemaVersion"]);
}

#[test]
fn rule_47_major_3_is_invalid_json() {
    let errors = invalid(
        r#"{ "SchemaVersion": { "Major": 3, "Minor": 0 },
             "VirtualMachine": { "Chipset": { "Uefi": {} }, "ComputeTopology": { "Memory": { "SizeInMB": 64 } } } }"#,
        &LIMITS,
    );
    assert_eq!(paths(&errors), ["$.SchemaVersion.Major"]);
    assert!(errors[0].message.contains("expected 2"), "{}", errors[0]);
}

#[test]
fn rule_47_missing_major_or_minor_is_invalid_json() {
    let errors = invalid(
        r#"{ "SchemaVersion": {}, "VirtualMachine": { "Chipset": { "Uefi": {} },
             "ComputeTopology": { "Memory": { "SizeInMB": 64 } } } }"#,
        &LIMITS,
    );
    assert_eq!(
        paths(&errors),
        ["$.SchemaVersion.Major", "$.SchemaVersion.Minor"]
    );
}

#[test]
fn rule_47_any_minor_is_accepted() {
    for minor in [0, 1, 6, 99] {
        let json = format!(
            r#"{{ "SchemaVersion": {{ "Major": 2, "Minor": {minor} }},
                 "VirtualMachine": {{ "Chipset": {{ "LinuxKernelDirect": {{}} }},
                 "ComputeTopology": {{ "Memory": {{ "SizeInMB": 64 }} }} }} }}"#
        );
        assert!(
            parse_compute_system(&json, &LIMITS).is_ok(),
            "minor {minor}"
        );
    }
}

// ------------------------------------------------------------------- rule 17: one system kind

#[test]
fn rule_17_two_of_vm_container_hosted_system_is_invalid_json() {
    let errors = invalid(
        r#"{ "SchemaVersion": { "Major": 2, "Minor": 1 }, "Container": {},
             "VirtualMachine": { "Chipset": { "Uefi": {} }, "ComputeTopology": { "Memory": { "SizeInMB": 64 } } } }"#,
        &LIMITS,
    );
    assert_eq!(paths(&errors), ["$"]);
    assert!(
        errors[0].message.contains("VirtualMachine and Container"),
        "{}",
        errors[0]
    );
    let errors = invalid(
        r#"{ "SchemaVersion": { "Major": 2, "Minor": 1 }, "Container": {}, "HostedSystem": {} }"#,
        &LIMITS,
    );
    assert_eq!(paths(&errors), ["$"]);
}

#[test]
fn rule_17_none_of_vm_container_hosted_system_is_invalid_json() {
    let errors = invalid(
        r#"{ "SchemaVersion": { "Major": 2, "Minor": 1 }, "Owner": "x" }"#,
        &LIMITS,
    );
    assert_eq!(paths(&errors), ["$"]);
    let m = &errors[0].message;
    assert!(
        m.contains("VirtualMachine") && m.contains("Container") && m.contains("HostedSystem"),
        "{m}"
    );
}

// ------------------------------------------------------------------- §7.3 VirtualMachine

#[test]
fn section_7_3_neither_uefi_nor_linux_kernel_direct_is_invalid_json() {
    let errors = invalid(
        r#"{ "SchemaVersion": { "Major": 2, "Minor": 1 },
             "VirtualMachine": { "Chipset": { "UseUtc": true }, "ComputeTopology": { "Memory": { "SizeInMB": 64 } } } }"#,
        &LIMITS,
    );
    assert_eq!(paths(&errors), ["$.VirtualMachine.Chipset"]);
    assert!(errors[0].message.contains("neither"), "{}", errors[0]);
    let errors = invalid(
        r#"{ "SchemaVersion": { "Major": 2, "Minor": 1 },
             "VirtualMachine": { "ComputeTopology": { "Memory": { "SizeInMB": 64 } } } }"#,
        &LIMITS,
    );
    assert_eq!(paths(&errors), ["$.VirtualMachine.Chipset"]);
}

#[test]
fn section_7_3_both_uefi_and_linux_kernel_direct_is_invalid_json() {
    let errors = invalid(
        r#"{ "SchemaVersion": { "Major": 2, "Minor": 1 },
             "VirtualMachine": { "Chipset": { "Uefi": {}, "LinuxKernelDirect": { "KernelFilePath": "/k" } },
                                 "ComputeTopology": { "Memory": { "SizeInMB": 64 } } } }"#,
        &LIMITS,
    );
    assert_eq!(paths(&errors), ["$.VirtualMachine.Chipset"]);
    assert!(errors[0].message.contains("both"), "{}", errors[0]);
}

#[test]
fn section_7_3_missing_topology_or_memory_is_invalid_json() {
    let errors = invalid(
        r#"{ "SchemaVersion": { "Major": 2, "Minor": 1 }, "VirtualMachine": { "Chipset": { "Uefi": {} } } }"#,
        &LIMITS,
    );
    assert_eq!(paths(&errors), ["$.VirtualMachine.ComputeTopology"]);
    let errors = invalid(
        &vm_with_topology(r#"{ "Processor": { "Count": 1 } }"#),
        &LIMITS,
    );
    assert_eq!(paths(&errors), ["$.VirtualMachine.ComputeTopology.Memory"]);
    let errors = invalid(
        &vm_with_topology(r#"{ "Memory": { "Backing": "Virtual" } }"#),
        &LIMITS,
    );
    assert_eq!(
        paths(&errors),
        ["$.VirtualMachine.ComputeTopology.Memory.SizeInMB"]
    );
}

#[test]
fn section_7_3_size_in_mb_0_is_invalid_json() {
    let errors = invalid(
        &vm_with_topology(r#"{ "Memory": { "SizeInMB": 0 } }"#),
        &LIMITS,
    );
    assert_eq!(
        paths(&errors),
        ["$.VirtualMachine.ComputeTopology.Memory.SizeInMB"]
    );
    assert_eq!(
        errors[0].message,
        "$.VirtualMachine.ComputeTopology.Memory.SizeInMB: must be between 1 and 16384 MB, got 0"
    );
}

#[test]
fn section_7_3_size_in_mb_above_limit_is_invalid_json() {
    let errors = invalid(
        &vm_with_topology(r#"{ "Memory": { "SizeInMB": 16385 } }"#),
        &LIMITS,
    );
    assert_eq!(
        paths(&errors),
        ["$.VirtualMachine.ComputeTopology.Memory.SizeInMB"]
    );
    assert!(parse_compute_system(
        &vm_with_topology(r#"{ "Memory": { "SizeInMB": 16384 } }"#),
        &LIMITS
    )
    .is_ok());
}

#[test]
fn section_7_3_count_0_is_invalid_json() {
    let errors = invalid(
        &vm_with_topology(r#"{ "Memory": { "SizeInMB": 64 }, "Processor": { "Count": 0 } }"#),
        &LIMITS,
    );
    assert_eq!(
        paths(&errors),
        ["$.VirtualMachine.ComputeTopology.Processor.Count"]
    );
    assert_eq!(
        errors[0].message,
        "$.VirtualMachine.ComputeTopology.Processor.Count: must be between 1 and 8, got 0"
    );
}

#[test]
fn section_7_3_count_above_limit_is_invalid_json() {
    let errors = invalid(
        &vm_with_topology(r#"{ "Memory": { "SizeInMB": 64 }, "Processor": { "Count": 9 } }"#),
        &LIMITS,
    );
    assert_eq!(
        paths(&errors),
        ["$.VirtualMachine.ComputeTopology.Processor.Count"]
    );
    let ok = vm_with_topology(r#"{ "Memory": { "SizeInMB": 64 }, "Processor": { "Count": 8 } }"#);
    assert!(parse_compute_system(&ok, &LIMITS).is_ok());
    // Absent Count means 1.
    let ok = vm_with_topology(r#"{ "Memory": { "SizeInMB": 64 }, "Processor": {} }"#);
    assert!(parse_compute_system(&ok, &LIMITS).is_ok());
    let errors = invalid(&ok, &Limits::new(0, 64));
    assert_eq!(
        paths(&errors),
        ["$.VirtualMachine.ComputeTopology.Processor.Count"]
    );
}

#[test]
fn section_7_3_com_port_keys_are_0_or_1() {
    let json = |key: &str| {
        format!(
            r#"{{ "SchemaVersion": {{ "Major": 2, "Minor": 1 }},
                 "VirtualMachine": {{ "Chipset": {{ "Uefi": {{}} }}, "ComputeTopology": {{ "Memory": {{ "SizeInMB": 64 }} }},
                 "Devices": {{ "ComPorts": {{ "{key}": {{ "NamedPipe": "" }} }} }} }} }}"#
        )
    };
    assert!(parse_compute_system(&json("0"), &LIMITS).is_ok());
    assert!(parse_compute_system(&json("1"), &LIMITS).is_ok());
    for bad in ["2", "COM1", "-1", ""] {
        let errors = invalid(&json(bad), &LIMITS);
        assert_eq!(errors.len(), 1, "{bad}");
        assert!(
            errors[0]
                .path
                .starts_with("$.VirtualMachine.Devices.ComPorts"),
            "{}",
            errors[0]
        );
    }
    let errors = invalid(&json("2"), &LIMITS);
    assert_eq!(paths(&errors), ["$.VirtualMachine.Devices.ComPorts[\"2\"]"]);
}

#[test]
fn section_7_3_scsi_attachment_keys_are_integers() {
    let errors = invalid(
        r#"{ "SchemaVersion": { "Major": 2, "Minor": 1 },
             "VirtualMachine": { "Chipset": { "Uefi": {} }, "ComputeTopology": { "Memory": { "SizeInMB": 64 } },
               "Devices": { "Scsi": { "Primary disk": { "Attachments": {
                   "0": { "Path": "/a" }, "lun1": { "Path": "/b" }, "4294967296": { "Path": "/c" } } } } } } }"#,
        &LIMITS,
    );
    assert_eq!(
        paths(&errors),
        [
            "$.VirtualMachine.Devices.Scsi[\"Primary disk\"].Attachments[\"4294967296\"]",
            "$.VirtualMachine.Devices.Scsi[\"Primary disk\"].Attachments.lun1",
        ]
    );
}

#[test]
fn section_7_3_guid_fields_match_the_guid_pattern() {
    let errors = invalid(
        r#"{ "SchemaVersion": { "Major": 2, "Minor": 1 },
             "VirtualMachine": { "Chipset": { "Uefi": { "SecureBootTemplateId": "1234" } },
               "ComputeTopology": { "Memory": { "SizeInMB": 64 } },
               "Devices": { "NetworkAdapters": { "Adapter0": { "EndpointId": "<HCN endpoint GUID>" } },
                            "HvSocket": { "HvSocketConfig": { "ServiceTable": { "not-a-guid": {} } } } } } }"#,
        &LIMITS,
    );
    assert_eq!(
        paths(&errors),
        [
            "$.VirtualMachine.Chipset.Uefi.SecureBootTemplateId",
            "$.VirtualMachine.Devices.NetworkAdapters.Adapter0.EndpointId",
            "$.VirtualMachine.Devices.HvSocket.HvSocketConfig.ServiceTable[\"not-a-guid\"]",
        ]
    );
    assert!(
        errors[0].message.contains("expected a GUID"),
        "{}",
        errors[0]
    );
}

#[test]
fn validate_returns_every_error_at_once() {
    let errors = invalid(
        r#"{ "SchemaVersion": { "Major": 3 }, "Container": {},
             "VirtualMachine": { "Chipset": {},
               "ComputeTopology": { "Memory": { "SizeInMB": 0 }, "Processor": { "Count": 0 } },
               "Devices": { "ComPorts": { "7": {} } } } }"#,
        &LIMITS,
    );
    assert_eq!(
        paths(&errors),
        [
            "$.SchemaVersion.Major",
            "$.SchemaVersion.Minor",
            "$",
            "$.VirtualMachine.Chipset",
            "$.VirtualMachine.ComputeTopology.Memory.SizeInMB",
            "$.VirtualMachine.ComputeTopology.Processor.Count",
            "$.VirtualMachine.Devices.ComPorts[\"7\"]",
        ]
    );
}

// ------------------------------------------------------------------- error documents

#[test]
fn section_2_3_document_error_becomes_a_result_error() {
    let e = parse_error(&vm_with_topology(r#"{ "Processor": { "Countt": 2 } }"#));
    let doc = ResultError::from(&e);
    assert_eq!(doc.error, Some(-2143878899));
    assert_eq!(doc.error_message.as_deref(), Some(e.message.as_str()));
    let json = doc.to_json();
    assert!(json.starts_with(r#"{"Error":-2143878899,"ErrorMessage":"$.VirtualMachine.ComputeTopology.Processor.Countt: unknown property"#), "{json}");
    let back: ResultError = parse(&json).expect("ResultError parses");
    assert_eq!(back, doc);
}

#[test]
fn section_2_3_failure_names_its_phase() {
    let doc = ResultError::from_failure(
        HResult::ERROR_NOT_SUPPORTED,
        "$.VirtualMachine.Devices.VirtualSmb: not supported",
        "Construct",
    );
    let events = doc.error_events.as_ref().expect("ErrorEvents");
    assert_eq!(events[0].source.as_deref(), Some("Construct"));
    let detail = doc
        .attribution
        .as_ref()
        .and_then(|a| a[0].operation_failure.as_ref())
        .and_then(|o| o.detail);
    assert_eq!(detail, Some(OperationFailureDetail::Construct));
    assert_eq!(doc.hresult(), HResult::ERROR_NOT_SUPPORTED);
    let doc = ResultError::from_failure(HResult::E_FAIL, "boom", "Create");
    let detail = doc
        .attribution
        .as_ref()
        .and_then(|a| a[0].operation_failure.as_ref())
        .and_then(|o| o.detail);
    assert_eq!(detail, Some(OperationFailureDetail::Construct));
    let doc = ResultError::from_failure(HResult::E_FAIL, "boom", "Booting");
    assert!(doc.attribution.is_none());
}
