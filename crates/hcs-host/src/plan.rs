//! From an HCS `ComputeSystem` document to an engine [`VmPlan`].
//!
//! The document has already been parsed and validated by `hcs-schema`; this module decides
//! what this host can run. A well-formed request for something no engine here provides
//! fails with `HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)` and a message naming the JSON path
//! (HCS-API rule 48); fields without meaning on Linux are accepted and ignored (§7.1).

use crate::config::HostConfig;
use hcs_engine::{Disk, Firmware, SerialPort, VmPlan};
use hcs_protocol::Failure;
use hcs_schema::{ComputeSystem, HResult, MemoryBackingPageSize, VirtualMachine};
use std::path::{Path, PathBuf};

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

/// Checks that this host can run the document and returns the engine plan.
pub fn plan_vm(
    doc: &ComputeSystem,
    config: &HostConfig,
) -> Result<(VmPlan, SystemSettings), Failure> {
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
    let linux = matches!(firmware, Firmware::LinuxDirect { .. });
    check_vm_features(vm, linux)?;
    let (serial_ports, disks) = if linux {
        (plan_serial_ports(vm, config)?, plan_disks(vm)?)
    } else {
        (Vec::new(), Vec::new())
    };
    let vsock = linux
        && (vm.guest_connection.is_some()
            || vm.devices.as_ref().is_some_and(|d| d.hv_socket.is_some()));

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
            serial_ports,
            disks,
            vsock,
            runtime_dir: None,
            reboot_in_place: !settings.stop_on_reset,
        },
        settings,
    ))
}

/// Linux's x86 `COMMAND_LINE_SIZE`, including the terminating NUL.
pub const MAX_KERNEL_CMDLINE: usize = 2048;

fn plan_firmware(vm: &VirtualMachine) -> Result<Firmware, Failure> {
    let chipset = vm.chipset.as_ref();
    if let Some(direct) = chipset.and_then(|c| c.linux_kernel_direct.as_ref()) {
        let base = "$.VirtualMachine.Chipset.LinuxKernelDirect";
        if chipset.and_then(|c| c.uefi.as_ref()).is_some() {
            return Err(Failure::at(
                HResult::HCS_E_INVALID_JSON,
                "$.VirtualMachine.Chipset",
                "Uefi and LinuxKernelDirect are exclusive: give one boot method",
            ));
        }
        let kernel = match direct.kernel_file_path.as_deref() {
            Some(path) if !path.is_empty() => {
                readable_file(path, &format!("{base}.KernelFilePath"))?
            }
            _ => {
                return Err(Failure::at(
                    HResult::HCS_E_INVALID_JSON,
                    &format!("{base}.KernelFilePath"),
                    "required property is missing: the host path of the kernel to boot",
                ))
            }
        };
        let initrd = match direct.init_rd_path.as_deref() {
            Some(path) if !path.is_empty() => {
                Some(readable_file(path, &format!("{base}.InitRdPath"))?)
            }
            _ => None,
        };
        let cmdline = direct.kernel_cmd_line.clone().unwrap_or_default();
        if cmdline.len() >= MAX_KERNEL_CMDLINE {
            return Err(Failure::at(
                HResult::HCS_E_INVALID_JSON,
                &format!("{base}.KernelCmdLine"),
                format!(
                    "the command line is {} bytes; Linux takes at most {}",
                    cmdline.len(),
                    MAX_KERNEL_CMDLINE - 1
                ),
            ));
        }
        if cmdline.contains('\0') {
            return Err(Failure::at(
                HResult::HCS_E_INVALID_JSON,
                &format!("{base}.KernelCmdLine"),
                "the command line contains a NUL character",
            ));
        }
        return Ok(Firmware::LinuxDirect {
            kernel,
            initrd,
            cmdline,
        });
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

/// A host file the engine will read: it must exist and be a readable regular file.
fn readable_file(path: &str, json_path: &str) -> Result<PathBuf, Failure> {
    let file = Path::new(path);
    let opened = std::fs::File::open(file).and_then(|f| {
        let meta = f.metadata()?;
        if meta.is_file() {
            Ok(())
        } else {
            Err(std::io::Error::other("it is not a regular file"))
        }
    });
    match opened {
        Ok(()) => Ok(file.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::at(
            HResult::ERROR_FILE_NOT_FOUND,
            json_path,
            format!("{path}: no such file (run scripts/setup to fetch the guest images)"),
        )),
        Err(e) => Err(Failure::at(
            HResult::E_ACCESSDENIED,
            json_path,
            format!("{path} cannot be read: {e}"),
        )),
    }
}

fn plan_serial_ports(vm: &VirtualMachine, config: &HostConfig) -> Result<Vec<SerialPort>, Failure> {
    let mut ports = Vec::new();
    let Some(com_ports) = vm.devices.as_ref().and_then(|d| d.com_ports.as_ref()) else {
        return Ok(ports);
    };
    for (key, port) in com_ports {
        let path = format!("$.VirtualMachine.Devices.ComPorts.{key}");
        let index: u32 = key.parse().map_err(|_| {
            Failure::at(
                HResult::HCS_E_INVALID_JSON,
                &path,
                "a ComPorts key is a port index (0 or 1)",
            )
        })?;
        if index > 1 {
            return Err(unsupported(
                &path,
                "a serial port other than 0 (COM1) or 1 (COM2)",
            ));
        }
        let socket =
            crate::paths::com_port_socket(config, port.named_pipe.as_deref().unwrap_or(""))
                .map_err(|reason| {
                    Failure::at(
                        HResult::HCS_E_INVALID_JSON,
                        &format!("{path}.NamedPipe"),
                        reason,
                    )
                })?;
        ports.push(SerialPort { index, socket });
    }
    ports.sort_by_key(|p| p.index);
    Ok(ports)
}

/// A disk image we can hand to the engine as raw bytes.
fn disk_image(path: &str, json_path: &str) -> Result<PathBuf, Failure> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".vhdx") || lower.ends_with(".vhd") {
        return Err(unsupported(
            json_path,
            "a VHD or VHDX image (use a raw image file or a host block device)",
        ));
    }
    let file = Path::new(path);
    match std::fs::metadata(file) {
        Ok(meta)
            if meta.is_file()
                || std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()) =>
        {
            Ok(file.to_path_buf())
        }
        Ok(_) => Err(Failure::at(
            HResult::E_ACCESSDENIED,
            json_path,
            format!("{path} is neither a file nor a block device"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::at(
            HResult::ERROR_FILE_NOT_FOUND,
            json_path,
            format!("{path}: no such file"),
        )),
        Err(e) => Err(Failure::at(
            HResult::E_ACCESSDENIED,
            json_path,
            format!("{path} cannot be read: {e}"),
        )),
    }
}

/// `Scsi` attachments (by controller, then LUN) and then `VirtualPMem` devices (by slot),
/// each one virtio block device.
fn plan_disks(vm: &VirtualMachine) -> Result<Vec<Disk>, Failure> {
    let mut disks = Vec::new();
    let Some(devices) = vm.devices.as_ref() else {
        return Ok(disks);
    };
    let base = "$.VirtualMachine.Devices";
    for (controller, scsi) in devices.scsi.iter().flatten() {
        let mut luns: Vec<(u32, &hcs_schema::Attachment, String)> = Vec::new();
        for (lun, attachment) in scsi.attachments.iter().flatten() {
            let path = format!("{base}.Scsi.{controller}.Attachments.{lun}");
            let number: u32 = lun.parse().map_err(|_| {
                Failure::at(
                    HResult::HCS_E_INVALID_JSON,
                    &path,
                    "an attachment key is a LUN number",
                )
            })?;
            luns.push((number, attachment, path));
        }
        luns.sort_by_key(|(n, _, _)| *n);
        for (_, attachment, path) in luns {
            let Some(file) = attachment.path.as_deref().filter(|p| !p.is_empty()) else {
                return Err(Failure::at(
                    HResult::HCS_E_INVALID_JSON,
                    &format!("{path}.Path"),
                    "required property is missing: the host path of the disk",
                ));
            };
            let iso = matches!(attachment.r#type, Some(hcs_schema::AttachmentType::Iso));
            disks.push(Disk {
                path: disk_image(file, &format!("{path}.Path"))?,
                read_only: iso || attachment.read_only.unwrap_or(false),
            });
        }
    }
    if let Some(pmem) = &devices.virtual_pmem {
        let mut slots: Vec<(u32, &hcs_schema::VirtualPMemDevice, String)> = Vec::new();
        for (slot, device) in pmem.devices.iter().flatten() {
            let path = format!("{base}.VirtualPMem.Devices.{slot}");
            let number: u32 = slot.parse().map_err(|_| {
                Failure::at(
                    HResult::HCS_E_INVALID_JSON,
                    &path,
                    "a device key is a slot number",
                )
            })?;
            slots.push((number, device, path));
        }
        slots.sort_by_key(|(n, _, _)| *n);
        for (_, device, path) in slots {
            if matches!(
                device.image_format,
                Some(hcs_schema::VirtualPMemImageFormat::Vhdx)
            ) {
                return Err(unsupported(&format!("{path}.ImageFormat"), "a VHDX image"));
            }
            if device.mappings.as_ref().is_some_and(|m| !m.is_empty()) {
                return Err(unsupported(
                    &format!("{path}.Mappings"),
                    "VirtualPMem mappings",
                ));
            }
            let Some(file) = device.host_path.as_deref().filter(|p| !p.is_empty()) else {
                return Err(Failure::at(
                    HResult::HCS_E_INVALID_JSON,
                    &format!("{path}.HostPath"),
                    "required property is missing: the host path of the image",
                ));
            };
            // A fixed VHD (`Vhd1`) is raw data followed by a 512-byte footer: readable as is.
            let image = Path::new(file);
            let checked = if file.to_ascii_lowercase().ends_with(".vhd") {
                readable_file(file, &format!("{path}.HostPath")).map(|_| image.to_path_buf())?
            } else {
                disk_image(file, &format!("{path}.HostPath"))?
            };
            disks.push(Disk {
                path: checked,
                read_only: device.read_only.unwrap_or(false),
            });
        }
    }
    Ok(disks)
}

fn check_vm_features(vm: &VirtualMachine, linux: bool) -> Result<(), Failure> {
    if vm.guest_connection.is_some() && !linux {
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
    if devices.com_ports.as_ref().is_some_and(|m| !m.is_empty()) && !linux {
        return Err(unsupported(
            &format!("{base}.ComPorts"),
            "a serial port on the built-in VMM (it comes with the QEMU engine)",
        ));
    }
    if devices.scsi.as_ref().is_some_and(|m| !m.is_empty()) && !linux {
        return Err(unsupported(
            &format!("{base}.Scsi"),
            "SCSI disks on the built-in VMM (they come with LinuxKernelDirect on QEMU)",
        ));
    }
    if devices.virtual_pmem.is_some() && !linux {
        return Err(unsupported(
            &format!("{base}.VirtualPMem"),
            "VirtualPMem disks on the built-in VMM (they come with LinuxKernelDirect on QEMU)",
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
    if devices.hv_socket.is_some() && !linux {
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
