//! Disks of Linux guests through documents: `Scsi` attachments and `VirtualPMem` devices
//! that are raw images become virtio block devices in the guest, read-only when the
//! document says so; what the host cannot attach is refused at create. One VM is booted,
//! with all three kinds of disk. Rule numbers are HCS-API.md's.

mod common;
mod linux;

use hcs::{ComputeSystem, HResult};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the host writes at offset 0 of the read-only images before the boot.
const SCSI_MARKER: &[u8] = b"hcs-disk-marker:scsi-read-only";
const PMEM_MARKER: &[u8] = b"hcs-disk-marker:virtual-pmem";
/// What the guest writes at offset 0 of the read-write image.
const GUEST_WRITE: &str = "written-by-the-guest";

/// The images' sizes, all different, so that the guest's disks are told apart by size.
const RW_MB: u64 = 16;
const RO_MB: u64 = 24;
const PMEM_MB: u64 = 32;

/// A directory of disk images, removed with everything in it when dropped.
struct Images {
    dir: PathBuf,
}

impl Images {
    fn new() -> Images {
        let dir = std::env::temp_dir().join(common::unique_id("hcs-linux-disks"));
        std::fs::create_dir_all(&dir).unwrap();
        Images { dir }
    }

    /// A raw image of `mb` MiB made by `qemu-img`, with `marker` at offset 0 if given.
    fn raw(&self, name: &str, mb: u64, marker: Option<&[u8]>) -> String {
        let path = self.dir.join(name);
        let status = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "raw"])
            .arg(&path)
            .arg(format!("{mb}M"))
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "qemu-img cannot be run ({e}): install qemu-utils (scripts/setup does); \
                     these tests attach real disk images and are never skipped"
                )
            });
        assert!(
            status.success(),
            "qemu-img create {}: {status}",
            path.display()
        );
        if let Some(marker) = marker {
            let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.write_all(marker).unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), mb << 20);
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a command in the guest to its end: (exit code, stdout, stderr).
fn run(system: &ComputeSystem, args: &[&str]) -> (i32, String, String) {
    let parameters = json!({
        "CommandArgs": args,
        "CreateStdOutPipe": true,
        "CreateStdErrPipe": true,
    });
    let mut process = system
        .create_process(&parameters.to_string())
        .unwrap_or_else(|e| panic!("create {args:?}: {e}"));
    let mut stdout = process.take_stdout().expect("stdout pipe");
    let mut stderr = process.take_stderr().expect("stderr pipe");
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        stderr.read_to_string(&mut err).unwrap();
        err
    });
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    let err = reader.join().unwrap();
    let code = process
        .wait_for_exit_code(Some(Duration::from_secs(60)))
        .expect("the process exits");
    (code, out, err)
}

/// A guest shell command that must succeed; its stdout.
fn sh(system: &ComputeSystem, script: &str) -> String {
    let (code, out, err) = run(system, &["sh", "-c", script]);
    assert_eq!(code, 0, "{script}: stdout {out:?}, stderr {err:?}");
    out
}

/// One guest block device as `/sys/block` shows it.
#[derive(Debug)]
struct BlockDevice {
    name: String,
    sectors: u64,
    read_only: bool,
}

fn block_devices(system: &ComputeSystem) -> Vec<BlockDevice> {
    let out = sh(
        system,
        "for d in /sys/block/vd*; do echo ${d##*/} $(cat $d/size) $(cat $d/ro); done",
    );
    out.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "{out:?}");
            BlockDevice {
                name: fields[0].to_owned(),
                sectors: fields[1].parse().unwrap(),
                read_only: match fields[2] {
                    "0" => false,
                    "1" => true,
                    other => panic!("ro is {other:?}: {out:?}"),
                },
            }
        })
        .collect()
}

/// The guest's device of `mb` MiB (512-byte sectors in /sys/block/vdX/size).
fn by_size(devices: &[BlockDevice], mb: u64) -> &BlockDevice {
    let matching: Vec<_> = devices.iter().filter(|d| d.sectors == mb * 2048).collect();
    assert_eq!(matching.len(), 1, "one {mb} MiB disk among {devices:?}");
    matching[0]
}

/// A write to a read-only disk fails in the guest and changes nothing.
fn assert_write_refused(system: &ComputeSystem, device: &BlockDevice) {
    let (code, out, err) = run(
        system,
        &[
            "sh",
            "-c",
            &format!(
                "printf overwritten | dd of=/dev/{} bs=512 conv=notrunc,sync,fsync",
                device.name
            ),
        ],
    );
    assert_ne!(
        code, 0,
        "a write to read-only {device:?} succeeded: {out:?} {err:?}"
    );
    // dd names the device it could not write (EPERM from the kernel, today).
    assert!(err.contains(&format!("/dev/{}", device.name)), "{err:?}");
}

#[test]
fn scsi_and_virtual_pmem_raw_images_are_virtio_disks_read_only_as_asked() {
    let images = Images::new();
    let rw = images.raw("rw.img", RW_MB, None);
    let ro = images.raw("ro.img", RO_MB, Some(SCSI_MARKER));
    let pmem = images.raw("pmem.img", PMEM_MB, Some(PMEM_MARKER));
    let devices = json!({
        "Scsi": {"0": {"Attachments": {
            "0": {"Type": "VirtualDisk", "Path": rw, "ReadOnly": false},
            "1": {"Type": "VirtualDisk", "Path": ro, "ReadOnly": true},
        }}},
        "VirtualPMem": {"Devices": {"0": {"HostPath": pmem, "ReadOnly": true}}},
    });
    let devices = devices.to_string();
    // The inside of the Devices object.
    let document = linux::linux_vm_with(512, "", &devices[1..devices.len() - 1]);
    let id = common::unique_id("linux-disks");
    let system = ComputeSystem::create(&id, &document)
        .wait()
        .expect("create a VM with three disks");
    system.start().wait().expect("boot to agent-ready");

    let found = block_devices(&system);
    assert_eq!(found.len(), 3, "{found:?}");
    let rw_disk = by_size(&found, RW_MB);
    let ro_disk = by_size(&found, RO_MB);
    let pmem_disk = by_size(&found, PMEM_MB);
    assert!(!rw_disk.read_only, "{rw_disk:?}");
    assert!(ro_disk.read_only, "{ro_disk:?}");
    assert!(pmem_disk.read_only, "{pmem_disk:?}");

    // What the host wrote is what the guest reads.
    for (device, marker) in [(ro_disk, SCSI_MARKER), (pmem_disk, PMEM_MARKER)] {
        let read = sh(
            &system,
            &format!("head -c {} /dev/{}", marker.len(), device.name),
        );
        assert_eq!(read.as_bytes(), marker, "{device:?}");
    }

    assert_write_refused(&system, ro_disk);
    assert_write_refused(&system, pmem_disk);
    // Still the marker, as read past the guest's page cache.
    for (device, marker) in [(ro_disk, SCSI_MARKER), (pmem_disk, PMEM_MARKER)] {
        let read = sh(
            &system,
            &format!(
                "dd if=/dev/{} bs=512 count=1 iflag=direct 2>/dev/null | head -c {}",
                device.name,
                marker.len()
            ),
        );
        assert_eq!(read.as_bytes(), marker, "{device:?}");
    }

    // The read-write disk takes a write, flushed to the device.
    sh(
        &system,
        &format!(
            "printf {GUEST_WRITE} | dd of=/dev/{} bs=512 conv=notrunc,sync,fsync",
            rw_disk.name
        ),
    );
    let read = sh(
        &system,
        &format!(
            "dd if=/dev/{} bs=512 count=1 iflag=direct 2>/dev/null | head -c {}",
            rw_disk.name,
            GUEST_WRITE.len()
        ),
    );
    assert_eq!(read, GUEST_WRITE);

    system.terminate().wait().expect("terminate");
    let status: Value = serde_json::from_str(
        &system
            .wait_for_exit(Some(Duration::from_secs(60)))
            .expect("the system exits"),
    )
    .unwrap();
    assert_eq!(status["ExitType"], "ForcedExit", "{status}");
    drop(system);
    assert!(linux::qemu_pids(&id).is_empty(), "QEMU outlived {id}");

    // The host sees the guest's write in the image; the read-only images are unchanged.
    let head = |path: &str, n: usize| {
        let mut bytes = vec![0u8; n];
        std::fs::File::open(path)
            .unwrap()
            .read_exact(&mut bytes)
            .unwrap();
        bytes
    };
    assert_eq!(head(&rw, 512)[..GUEST_WRITE.len()], *GUEST_WRITE.as_bytes());
    assert!(head(&rw, 512)[GUEST_WRITE.len()..].iter().all(|b| *b == 0));
    assert_eq!(head(&ro, SCSI_MARKER.len()), SCSI_MARKER);
    assert_eq!(head(&pmem, PMEM_MARKER.len()), PMEM_MARKER);
    for (path, mb) in [(&rw, RW_MB), (&ro, RO_MB), (&pmem, PMEM_MB)] {
        assert_eq!(std::fs::metadata(path).unwrap().len(), mb << 20, "{path}");
    }
}

/// Creates `document` under a new id and returns the error; checks rule 48's "nothing
/// left behind": the id is free and no QEMU runs for it.
fn refused(document: &str) -> hcs::Error {
    let id = common::unique_id("linux-disk-refused");
    let error = ComputeSystem::create(&id, document)
        .wait()
        .expect_err("the create fails");
    assert_eq!(
        ComputeSystem::open(&id).unwrap_err().hresult,
        HResult::HCS_E_SYSTEM_NOT_FOUND
    );
    assert!(linux::qemu_pids(&id).is_empty(), "a QEMU runs for {id}");
    error
}

fn message(error: &hcs::Error) -> String {
    let document: Value = serde_json::from_str(error.document.as_deref().unwrap_or("{}")).unwrap();
    document["ErrorMessage"].as_str().unwrap_or("").to_owned()
}

fn with_devices(devices: Value) -> String {
    let devices = devices.to_string();
    linux::linux_vm_with(512, "", &devices[1..devices.len() - 1])
}

#[test]
fn rule_48_missing_and_vhdx_disk_images_are_refused_at_create() {
    let images = Images::new();
    let missing = images.dir.join("missing.img");
    let missing = missing.to_str().unwrap();
    assert!(!Path::new(missing).exists());

    let scsi = refused(&with_devices(json!({"Scsi": {"0": {"Attachments": {
        "0": {"Type": "VirtualDisk", "Path": missing},
    }}}})));
    assert_eq!(scsi.hresult, HResult::ERROR_FILE_NOT_FOUND, "{scsi:?}");
    let text = message(&scsi);
    assert!(text.contains(missing), "{text}");
    assert!(text.contains("Scsi.0.Attachments.0.Path"), "{text}");

    let pmem = refused(&with_devices(json!({"VirtualPMem": {"Devices": {
        "0": {"HostPath": missing, "ReadOnly": true},
    }}})));
    assert_eq!(pmem.hresult, HResult::ERROR_FILE_NOT_FOUND, "{pmem:?}");
    let text = message(&pmem);
    assert!(text.contains(missing), "{text}");
    assert!(text.contains("VirtualPMem.Devices.0.HostPath"), "{text}");

    // A VHDX, by name or by ImageFormat, is not attached (the Scsi case is in
    // linux_lifecycle.rs); an existing file, so that only the format is at fault.
    let raw = images.raw("image.img", 1, None);
    let vhdx = images.raw("image.vhdx", 1, None);
    let by_name = refused(&with_devices(json!({"VirtualPMem": {"Devices": {
        "0": {"HostPath": vhdx, "ReadOnly": true},
    }}})));
    assert_eq!(by_name.hresult, HResult::ERROR_NOT_SUPPORTED, "{by_name:?}");
    assert!(
        message(&by_name).contains("VirtualPMem.Devices.0.HostPath"),
        "{}",
        message(&by_name)
    );
    let by_format = refused(&with_devices(json!({"VirtualPMem": {"Devices": {
        "0": {"HostPath": raw, "ReadOnly": true, "ImageFormat": "Vhdx"},
    }}})));
    assert_eq!(
        by_format.hresult,
        HResult::ERROR_NOT_SUPPORTED,
        "{by_format:?}"
    );
    assert!(
        message(&by_format).contains("VirtualPMem.Devices.0.ImageFormat"),
        "{}",
        message(&by_format)
    );
}
