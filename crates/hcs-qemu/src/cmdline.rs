//! The QEMU command line for a [`VmConfig`] (pure: no I/O, unit-tested).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use crate::config::{Machine, OnReset, ResolvedAccel, VmConfig};

/// The file descriptor QEMU finds its end of the QMP socket pair on.
pub(crate) const QMP_FD: i32 = 3;

/// What the command line needs besides the config: choices made by [`crate::Vm::create`].
pub(crate) struct Plan<'a> {
    pub machine: Machine,
    pub accel: ResolvedAccel,
    /// The vhost-user socket the vsock backend listens on (when `config.vsock` is set).
    pub vhost_vsock_socket: &'a Path,
    /// Per disk: whether it is a host block device (`host_device` driver) or a file.
    pub disk_is_block_device: &'a [bool],
}

/// QEMU's arguments (without the program name).
pub(crate) fn qemu_args(config: &VmConfig, plan: &Plan<'_>) -> Vec<OsString> {
    let mut args = Args::default();
    let mem = format!("{}M", config.memory_mb);
    args.flags(&["-nodefaults", "-no-user-config", "-display", "none", "-S"]);
    args.flags(&["-msg", "timestamp=on"]);
    let machine_opts = match plan.machine {
        // ACPI describes the virtio-mmio devices (Debian's kernel lacks
        // CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES); isa-serial=off: we add the UARTs ourselves.
        Machine::Microvm => ",acpi=on,isa-serial=off",
        // No AHCI controller, SMBus or VMware port: nothing the caller did not ask for.
        Machine::Q35 => ",sata=off,smbus=off,vmport=off",
    };
    args.pair(
        "-machine",
        format!(
            "{},accel={},memory-backend=mem{machine_opts}",
            plan.machine.as_str(),
            plan.accel.as_str()
        ),
    );
    args.pair(
        "-cpu",
        match plan.accel {
            ResolvedAccel::Kvm => "host",
            ResolvedAccel::Tcg => "max",
        },
    );
    args.pair("-smp", config.vcpus.to_string());
    args.pair("-m", &mem);
    // memfd + share=on: a vhost-user backend (vsock) must map guest RAM. Untouched pages
    // cost nothing either way.
    args.pair(
        "-object",
        format!("memory-backend-memfd,id=mem,size={mem},share=on"),
    );
    args.pair("-kernel", config.kernel.as_os_str());
    if let Some(initrd) = &config.initrd {
        args.pair("-initrd", initrd.as_os_str());
    }
    args.pair("-append", &config.cmdline);
    // QMP on a socket pair we made: fd 3 in QEMU. Nobody else can reach the monitor.
    args.pair("-chardev", format!("socket,id=qmp,fd={QMP_FD}"));
    args.pair("-mon", "chardev=qmp,mode=control");
    // A panic (and, unless the guest reboots in place, a reset) ends QEMU after the
    // SHUTDOWN / GUEST_PANICKED event instead of pausing or rebooting, so every guest exit
    // is one event then the process ending. A reset in place is a RESET event.
    let reboot = match config.on_reset {
        OnReset::Exit => "shutdown",
        OnReset::Reboot => "reset",
    };
    args.pair(
        "-action",
        format!("reboot={reboot},shutdown=poweroff,panic=shutdown"),
    );
    // pvpanic (ISA port 0x505, ACPI id QEMU0001): the guest's pvpanic-mmio driver reports
    // panics through it.
    args.pair("-device", "pvpanic");
    for port in &config.serial_ports {
        let id = format!("com{}", port.index);
        match &port.socket {
            Some(path) => args.pair(
                "-chardev",
                cat(&[
                    format!("socket,id={id},server=on,wait=off,path=").as_ref(),
                    &escape(path.as_os_str()),
                ]),
            ),
            None => args.pair("-chardev", format!("null,id={id}")),
        }
        args.pair(
            "-device",
            format!("isa-serial,chardev={id},index={}", port.index),
        );
    }
    let virtio = plan.machine.virtio_suffix();
    for (n, disk) in config.disks.iter().enumerate() {
        let driver = if plan.disk_is_block_device.get(n).copied().unwrap_or(false) {
            "host_device"
        } else {
            "file"
        };
        let readonly = if disk.read_only { "on" } else { "off" };
        // file.filename= (not file=) so that a ':' in a path is never read as a protocol.
        args.pair(
            "-drive",
            cat(&[
                format!(
                    "if=none,id=disk{n},format=raw,readonly={readonly},file.driver={driver},\
                     file.filename="
                )
                .as_ref(),
                &escape(disk.path.as_os_str()),
            ]),
        );
        args.pair("-device", format!("virtio-blk-{virtio},drive=disk{n}"));
    }
    if config.vsock.is_some() {
        args.pair(
            "-chardev",
            cat(&[
                OsStr::new("socket,id=vsock,path="),
                &escape(plan.vhost_vsock_socket.as_os_str()),
            ]),
        );
        args.pair(
            "-device",
            format!("vhost-user-vsock-{virtio},chardev=vsock"),
        );
    }
    args.0
}

/// An argument list being built.
#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flags(&mut self, flags: &[&str]) {
        self.0.extend(flags.iter().map(OsString::from));
    }

    fn pair(&mut self, flag: &str, value: impl AsRef<OsStr>) {
        self.0.push(flag.into());
        self.0.push(value.as_ref().to_owned());
    }
}

/// QEMU option values separate keys with ',': a literal comma is written twice.
fn escape(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// Concatenates pieces of an option value.
fn cat(parts: &[&OsStr]) -> OsString {
    let mut out = OsString::new();
    for part in parts {
        out.push(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Accel, Disk, SerialPort, Vsock};

    fn config() -> VmConfig {
        VmConfig {
            memory_mb: 256,
            vcpus: 2,
            kernel: "/k/vmlinuz".into(),
            initrd: Some("/k/initrd".into()),
            cmdline: "console=ttyS0 panic=-1".into(),
            serial_ports: vec![
                SerialPort {
                    index: 0,
                    socket: Some("/run/a,b/com1".into()),
                },
                SerialPort {
                    index: 1,
                    socket: None,
                },
            ],
            disks: vec![Disk {
                path: "/img/root:1.img".into(),
                read_only: true,
            }],
            vsock: Some(Vsock {
                guest_cid: 3,
                uds_path: "/run/v".into(),
            }),
            accel: Accel::Tcg,
            on_reset: OnReset::Exit,
            runtime_dir: "/run/vm".into(),
        }
    }

    fn joined(machine: Machine) -> String {
        let config = config();
        let plan = Plan {
            machine,
            accel: ResolvedAccel::Tcg,
            vhost_vsock_socket: &PathBuf::from("/run/vm/vhost-vsock.sock"),
            disk_is_block_device: &[false],
        };
        let args = qemu_args(&config, &plan);
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn microvm_line() {
        let line = joined(Machine::Microvm);
        assert!(
            line.contains("-machine microvm,accel=tcg,memory-backend=mem,acpi=on,isa-serial=off")
        );
        assert!(line.contains("-object memory-backend-memfd,id=mem,size=256M,share=on"));
        assert!(line.contains("-chardev socket,id=com0,server=on,wait=off,path=/run/a,,b/com1"));
        assert!(line.contains("-device isa-serial,chardev=com0,index=0"));
        assert!(line.contains("-chardev null,id=com1 -device isa-serial,chardev=com1,index=1"));
        assert!(line.contains("readonly=on,file.driver=file,file.filename=/img/root:1.img"));
        assert!(line.contains("-device virtio-blk-device,drive=disk0"));
        assert!(line.contains("-device vhost-user-vsock-device,chardev=vsock"));
        assert!(line.contains("-append console=ttyS0 panic=-1"));
        assert!(line.contains(" -S "));
        assert!(line.contains("-action reboot=shutdown,shutdown=poweroff,panic=shutdown"));
    }

    #[test]
    fn reboot_in_place_resets() {
        let mut config = config();
        config.on_reset = OnReset::Reboot;
        let plan = Plan {
            machine: Machine::Q35,
            accel: ResolvedAccel::Tcg,
            vhost_vsock_socket: &PathBuf::from("/run/vm/vhost-vsock.sock"),
            disk_is_block_device: &[false],
        };
        let line = qemu_args(&config, &plan)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(line.contains("-action reboot=reset,shutdown=poweroff,panic=shutdown"));
    }

    #[test]
    fn q35_uses_pci() {
        let line = joined(Machine::Q35);
        assert!(line
            .contains("-machine q35,accel=tcg,memory-backend=mem,sata=off,smbus=off,vmport=off "));
        assert!(line.contains("virtio-blk-pci"));
        assert!(line.contains("vhost-user-vsock-pci"));
    }

    #[test]
    fn microvm_fits_eight_virtio_devices() {
        let mut config = config();
        assert_eq!(Machine::for_config(&config), Machine::Q35);
        assert!(Machine::Microvm.fits(&config));
        config.disks = vec![config.disks[0].clone(); 8];
        assert!(!Machine::Microvm.fits(&config));
        assert!(Machine::Q35.fits(&config));
    }
}
