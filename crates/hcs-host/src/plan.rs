//! From an HCS `ComputeSystem` document to an engine [`VmPlan`].
//!
//! The document has already been parsed and validated by `hcs-schema`; this module decides
//! what this host can run. A well-formed request for something no engine here provides
//! fails with `HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)` and a message naming the JSON path
//! (HCS-API rule 48); fields without meaning on Linux are accepted and ignored (§7.1).

use crate::engine::{Firmware, VmPlan};
use crate::error::Failure;
use hcs_schema::{ComputeSystem, HResult, MemoryBackingPageSize, VirtualMachine};

/// What the host keeps of a document besides the engine plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemSettings {
    /// `Owner`, or "" when absent.
    pub owner: String,
    /// `ShouldTerminateOnLastHandleClosed`.
    pub terminate_on_last_handle_closed: bool,
    /// `VirtualMachine.StopOnReset`.
    pub stop_on_reset: bool,
    /// `VirtualMachine.GuestConnection` present.
    pub guest_connection: bool,
}

fn unsupported(path: &str, what: &str) -> Failure {
    Failure::at(
        HResult::ERROR_NOT_SUPPORTED,
        path,
        format!("{what} is not supported by this host yet"),
    )
}

/// Checks a `ComputeSystem` document exactly as `HcsCreateComputeSystem` does, in its
/// order (HCS-API §3): JSON syntax, schema and ranges against `limits` (every error), then
/// what this host can run (the first unsupported feature). Nothing is created; `hcsctl
/// validate` and the host's create share it.
pub fn check_document(
    configuration: &str,
    limits: &hcs_schema::Limits,
) -> Result<(ComputeSystem, VmPlan, SystemSettings), Vec<Failure>> {
    let document = hcs_schema::parse_compute_system(configuration, limits)
        .map_err(|errors| errors.into_iter().map(Failure::from).collect::<Vec<_>>())?;
    let (plan, settings) = plan_vm(&document).map_err(|failure| vec![failure])?;
    Ok((document, plan, settings))
}

/// Checks that this host can run the document and returns the engine plan.
pub fn plan_vm(doc: &ComputeSystem) -> Result<(VmPlan, SystemSettings), Failure> {
    if doc.container.is_some() {
        return Err(unsupported(
            "$.Container",
            "a Windows container (only virtual machines run here)",
        ));
    }
    if doc.hosted_system.is_some() {
        return Err(unsupported("$.HostedSystem", "a hosted system"));
    }
    if doc
        .hosting_system_id
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(unsupported("$.HostingSystemId", "a hosting system"));
    }
    let Some(vm) = doc.virtual_machine.as_ref() else {
        // Validation guarantees exactly one of the three; keep a readable answer anyway.
        return Err(Failure::at(
            HResult::HCS_E_INVALID_JSON,
            "$",
            "one of VirtualMachine, Container or HostedSystem is required",
        ));
    };
    let firmware = plan_firmware(vm)?;
    check_vm_features(vm)?;

    let topology = vm.compute_topology.as_ref();
    let memory_mb = topology
        .and_then(|t| t.memory.as_ref())
        .and_then(|m| m.size_in_mb)
        .ok_or_else(|| {
            Failure::at(
                HResult::HCS_E_INVALID_JSON,
                "$.VirtualMachine.ComputeTopology.Memory.SizeInMB",
                "required property is missing",
            )
        })?;
    if let Some(MemoryBackingPageSize::Large) = topology
        .and_then(|t| t.memory.as_ref())
        .and_then(|m| m.backing_page_size)
    {
        return Err(unsupported(
            "$.VirtualMachine.ComputeTopology.Memory.BackingPageSize",
            "\"Large\" (2 MiB) backing pages",
        ));
    }
    let vcpus = topology
        .and_then(|t| t.processor.as_ref())
        .and_then(|p| p.count)
        .unwrap_or(1);

    let settings = SystemSettings {
        owner: doc.owner.clone().unwrap_or_default(),
        terminate_on_last_handle_closed: doc
            .should_terminate_on_last_handle_closed
            .unwrap_or(false),
        stop_on_reset: vm.stop_on_reset.unwrap_or(false),
        guest_connection: vm.guest_connection.is_some(),
    };
    Ok((
        VmPlan {
            memory_mb,
            vcpus,
            firmware,
        },
        settings,
    ))
}

fn plan_firmware(vm: &VirtualMachine) -> Result<Firmware, Failure> {
    let chipset = vm.chipset.as_ref();
    if chipset
        .and_then(|c| c.linux_kernel_direct.as_ref())
        .is_some()
    {
        return Err(unsupported(
            "$.VirtualMachine.Chipset.LinuxKernelDirect",
            "booting a Linux kernel directly (it comes with the QEMU engine)",
        ));
    }
    match chipset.and_then(|c| c.uefi.as_ref()) {
        Some(uefi) if uefi.boot_this.is_some() => Err(unsupported(
            "$.VirtualMachine.Chipset.Uefi.BootThis",
            "booting from a device through UEFI (the built-in firmware has nothing to boot)",
        )),
        Some(_) => Ok(Firmware::Idle),
        None => Err(Failure::at(
            HResult::HCS_E_INVALID_JSON,
            "$.VirtualMachine.Chipset",
            "one of Uefi or LinuxKernelDirect is required",
        )),
    }
}

fn check_vm_features(vm: &VirtualMachine) -> Result<(), Failure> {
    if vm.guest_connection.is_some() {
        return Err(unsupported(
            "$.VirtualMachine.GuestConnection",
            "a guest connection (the empty VM has no guest agent; it comes with Linux guests)",
        ));
    }
    if let Some(restore) = &vm.restore_state {
        let file = restore.save_state_file_path.as_deref().unwrap_or("");
        let template = restore.template_system_id.as_deref().unwrap_or("");
        if !file.is_empty() || !template.is_empty() {
            return Err(unsupported(
                "$.VirtualMachine.RestoreState",
                "restoring saved state",
            ));
        }
    }
    if let Some(state) = &vm.guest_state {
        let persistent = [
            state.guest_state_file_path.as_deref(),
            state.runtime_state_file_path.as_deref(),
        ]
        .into_iter()
        .flatten()
        .any(|p| !p.is_empty());
        if persistent {
            return Err(unsupported(
                "$.VirtualMachine.GuestState",
                "persistent guest state files",
            ));
        }
    }
    let Some(devices) = vm.devices.as_ref() else {
        return Ok(());
    };
    let base = "$.VirtualMachine.Devices";
    if devices.com_ports.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(unsupported(
            &format!("{base}.ComPorts"),
            "a serial port on the built-in VMM (it comes with the QEMU engine)",
        ));
    }
    if devices.scsi.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(unsupported(&format!("{base}.Scsi"), "SCSI disks"));
    }
    if devices.virtual_pmem.is_some() {
        return Err(unsupported(
            &format!("{base}.VirtualPMem"),
            "VirtualPMem disks",
        ));
    }
    if devices
        .network_adapters
        .as_ref()
        .is_some_and(|m| !m.is_empty())
    {
        return Err(unsupported(
            &format!("{base}.NetworkAdapters"),
            "network adapters",
        ));
    }
    if devices.hv_socket.is_some() {
        return Err(unsupported(&format!("{base}.HvSocket"), "HvSocket (vsock)"));
    }
    if devices.virtio_serial.is_some() {
        return Err(unsupported(
            &format!("{base}.VirtioSerial"),
            "virtio serial",
        ));
    }
    if devices.guest_crash_reporting.is_some() {
        return Err(unsupported(
            &format!("{base}.GuestCrashReporting"),
            "Windows guest crash dumps",
        ));
    }
    if devices.virtual_smb.is_some() {
        return Err(unsupported(
            &format!("{base}.VirtualSmb"),
            "VirtualSmb shares",
        ));
    }
    if devices.flexible_iov.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(unsupported(
            &format!("{base}.FlexibleIov"),
            "FlexibleIov devices",
        ));
    }
    if devices.shared_memory.is_some() {
        return Err(unsupported(
            &format!("{base}.SharedMemory"),
            "shared memory regions",
        ));
    }
    if devices.virtual_pci.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(unsupported(
            &format!("{base}.VirtualPci"),
            "PCI device assignment",
        ));
    }
    if devices
        .plan9
        .as_ref()
        .and_then(|p| p.shares.as_ref())
        .is_some_and(|s| !s.is_empty())
    {
        return Err(unsupported(&format!("{base}.Plan9.Shares"), "Plan9 shares"));
    }
    Ok(())
}
