//! What a VM is made of: [`VmConfig`] and its parts, as the caller describes them.

pub use hcs_engine::{Disk, SerialPort};
use std::path::PathBuf;

/// Everything [`crate::Vm::create`] needs to build one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Guest RAM in MiB.
    pub memory_mb: u64,
    /// Number of virtual processors.
    pub vcpus: u32,
    /// The Linux kernel to boot directly (`bzImage`/`vmlinuz`).
    pub kernel: PathBuf,
    /// The initramfs, if any.
    pub initrd: Option<PathBuf>,
    /// The kernel command line, passed as is. It should name `console=ttyS0` for boot
    /// messages and `panic=-1` so a panic without pvpanic still ends the VM (as a reset).
    pub cmdline: String,
    /// Serial ports by guest index (0 = ttyS0/COM1, 1 = ttyS1/COM2, up to 3).
    pub serial_ports: Vec<SerialPort>,
    /// virtio-blk disks, in order: the guest sees them as `/dev/vda`, `/dev/vdb`, ...
    pub disks: Vec<Disk>,
    /// virtio-vsock through `vhost-device-vsock`, if wanted.
    pub vsock: Option<Vsock>,
    /// Which accelerator to run the guest on.
    pub accel: Accel,
    /// What a guest reset does: end the VM ([`OnReset::Exit`]) or reboot it in place.
    pub on_reset: OnReset,
    /// Private directory for this VM's sockets and logs (`qemu.log`,
    /// `vhost-device-vsock.log`, `vhost-vsock.sock`). Created if missing (with its parents)
    /// and removed by [`crate::Vm::stop`] (a directory that existed before with other files
    /// in it keeps those). Keep it short: socket paths inside it must fit in 107 bytes.
    pub runtime_dir: PathBuf,
}

/// virtio-vsock served by the rust-vmm `vhost-device-vsock` backend (vhost-user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vsock {
    /// The guest's context id (3 or more).
    pub guest_cid: u32,
    /// The host side. A guest connecting to host CID 2 port P reaches the Unix socket
    /// `<uds_path>_<P>` (which a host program listens on); a host program connects to
    /// `uds_path` itself and writes `CONNECT <port>\n` to reach a guest listener. The backend
    /// creates `uds_path`; [`crate::Vm::stop`] removes it.
    pub uds_path: PathBuf,
}

/// What happens when the guest resets itself (`reboot -f`, a triple fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnReset {
    /// QEMU ends (`-action reboot=shutdown`) and the VM reports [`crate::Exit::Reset`].
    #[default]
    Exit,
    /// The guest reboots in place (`-action reboot=reset`): the VM keeps running and
    /// calls the handler given to [`crate::Vm::on_guest_reset`] after each reset.
    Reboot,
}

/// The accelerator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// KVM where this host's KVM can run a Linux guest, else TCG (see [`crate::resolve_accel`]).
    #[default]
    Auto,
    /// KVM (`-accel kvm`, `-cpu host`); QEMU fails to start where /dev/kvm is unusable.
    Kvm,
    /// TCG, QEMU's software emulation: slow but works everywhere.
    Tcg,
}

/// The accelerator a VM actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedAccel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl ResolvedAccel {
    /// The name QEMU uses, also fit for logs and properties: `"kvm"` or `"tcg"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolvedAccel::Kvm => "kvm",
            ResolvedAccel::Tcg => "tcg",
        }
    }
}

impl std::fmt::Display for ResolvedAccel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The QEMU machine type a VM is built on; chosen by [`Machine::for_config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// `q35`: SeaBIOS, PCIe, virtio-pci devices, HPET and the ACPI PM timer. The default.
    Q35,
    /// `microvm`: qboot firmware, no PCI, virtio-mmio devices described in ACPI, at most
    /// [`Machine::MICROVM_VIRTIO_SLOTS`] virtio devices. About 10 % faster to /init than q35
    /// under TCG on an idle host, but it has no HPET or PM timer: on a busy host Linux fails
    /// to calibrate its TSC against the PIT and hangs early in boot. Only on request
    /// (`HCS_QEMU_MACHINE=microvm`).
    Microvm,
}

impl Machine {
    /// How many virtio-mmio transports QEMU's microvm has.
    pub const MICROVM_VIRTIO_SLOTS: usize = 8;

    /// The machine for a VM: [`Machine::Q35`] (see [`Machine::Microvm`] for why not microvm).
    pub fn for_config(_config: &VmConfig) -> Machine {
        Machine::Q35
    }

    /// Whether the VM's devices fit this machine.
    pub fn fits(self, config: &VmConfig) -> bool {
        let virtio = config.disks.len() + usize::from(config.vsock.is_some());
        self == Machine::Q35 || virtio <= Self::MICROVM_VIRTIO_SLOTS
    }

    /// QEMU's name for the machine type.
    pub fn as_str(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
        }
    }

    /// The virtio transport's device-name suffix: `-device` for virtio-mmio, `-pci` for PCI.
    pub(crate) fn virtio_suffix(self) -> &'static str {
        match self {
            Machine::Microvm => "device",
            Machine::Q35 => "pci",
        }
    }
}
