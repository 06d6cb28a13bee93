//! Runs Linux guests in `qemu-system-x86_64`, one QEMU process per VM, driven over QMP.
//!
//! This crate owns a VM's QEMU process, its `vhost-device-vsock` backend (for vsock), the QMP
//! conversation with QEMU, and the detection of how the VM ended. It knows nothing of HCS:
//! no JSON documents, no HRESULTs, no compute-system states; `hcs-host` adapts [`Vm`] to its
//! `Engine` trait.
//!
//! ```text
//!  owner threads                     Vm ─────────────────────────────────────────────┐
//!  start/pause/resume/nmi/ ── QMP ──> QmpClient ── {"execute":..,"id":n} ──┐          │
//!  power_button  <── reply (channel) ─────────────────────────────┐        v          │
//!                                    thread "qemu-<pid>":         │  socketpair (fd 3  │
//!  stop(): quit, 2 s, SIGKILL,         QmpReader: replies ────────┘   in QEMU, -mon)  │
//!   reap, kill backend, rm dir         events: SHUTDOWN/GUEST_PANICKED/RESET          │
//!                                      EOF -> waitid(WNOWAIT) -> reap -> on_exit(Exit)│
//!                                   └─────────────────────────────────────────────────┘
//!   qemu-system-x86_64 -S ... ── vhost-user ──> vhost-device-vsock ── <uds_path>[_port]
//! ```
//!
//! # The QEMU command line
//!
//! For a VM with two serial ports, one read-only disk and vsock, under TCG:
//!
//! ```text
//! qemu-system-x86_64 -nodefaults -no-user-config -display none -S -msg timestamp=on
//!   -machine q35,accel=tcg,memory-backend=mem,sata=off,smbus=off,vmport=off
//!   -cpu max -smp 2 -m 512M
//!   -object memory-backend-memfd,id=mem,size=512M,share=on
//!   -kernel VMLINUZ -initrd INITRD -append CMDLINE
//!   -chardev socket,id=qmp,fd=3 -mon chardev=qmp,mode=control
//!   -action reboot=shutdown,shutdown=poweroff,panic=shutdown
//!   -device pvpanic
//!   -chardev socket,id=com0,server=on,wait=off,path=COM1.sock -device isa-serial,chardev=com0,index=0
//!   -chardev null,id=com1 -device isa-serial,chardev=com1,index=1
//!   -drive if=none,id=disk0,format=raw,readonly=on,file.driver=file,file.filename=DISK
//!   -device virtio-blk-pci,drive=disk0
//!   -chardev socket,id=vsock,path=RUNTIME/vhost-vsock.sock -device vhost-user-vsock-pci,chardev=vsock
//! ```
//!
//! Why each part:
//!
//! - **`q35`**, not `microvm`: microvm (qboot, no PCI, virtio-mmio) reaches the guest's
//!   /init about 10 % sooner under TCG here (1.7 s against 1.9 s on a loaded host), but it
//!   has neither HPET nor the ACPI PM timer, and with two VMs booting at once on a 2-core
//!   host Linux failed to calibrate its TSC against the PIT ("tsc: Unable to calibrate
//!   against PIT") and hung, every time. q35 boots reliably under the same load.
//!   `HCS_QEMU_MACHINE=microvm` still selects it ([`Machine`]); its virtio devices are then
//!   `virtio-*-device` described in ACPI (`acpi=on`), as Debian's kernel lacks
//!   `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`.
//! - **`-nodefaults -no-user-config -display none`, `sata=off,smbus=off,vmport=off`**: no
//!   default NIC, VGA, serial, parallel, floppy, CD-ROM, monitor, AHCI controller or SMBus, so
//!   no option ROMs and no devices the caller did not ask for.
//! - **`-S`**: [`Vm::create`] returns a paused VM; [`Vm::start`] is QMP `cont`.
//! - **`-cpu max`** under TCG (every feature TCG emulates), **`-cpu host`** under KVM.
//! - **`memory-backend-memfd,share=on`**: the vhost-user vsock backend must map guest RAM.
//!   Untouched guest pages cost the host nothing.
//! - **QMP on a socket pair** (fd 3 in QEMU): no socket path to race for or clean up, nobody
//!   else can reach the monitor, and QEMU ending shows as end-of-file at once.
//! - **`-action reboot=shutdown,panic=shutdown`**: a guest reset or panic ends QEMU after
//!   its `SHUTDOWN` (reason `guest-reset`/`guest-panic`) or `GUEST_PANICKED` event, like a
//!   power-off, so every way a VM ends is "events, then the process ends". With
//!   [`OnReset::Reboot`] it is `reboot=reset` instead: the guest reboots in place (the same
//!   kernel, initrd and command line, the same vsock backend), QEMU emits `RESET` (reason
//!   `guest-reset`) and the VM calls its [`ResetHandler`]; it does not end. One guest
//!   reboot is one to three `RESET`s (SeaBIOS resets the machine again). A vsock connection
//!   of the old boot must stay open on the host until the new boot has connected:
//!   `vhost-device-vsock` takes no new guest connection after the host closed one while the
//!   device was resetting.
//! - **`pvpanic`** (ISA port 0x505, ACPI id `QEMU0001`) is how a guest reports a panic; the
//!   guest needs the `pvpanic` and `pvpanic-mmio` modules.
//! - **Serial ports** are `isa-serial` devices at fixed indexes (so COM2 can exist without
//!   COM1) on a listening Unix socket (`server=on,wait=off`: a client may attach, detach and
//!   reattach; output with no client attached is dropped) or on a `null` chardev.
//! - **Disks** are raw `virtio-blk`, `file.filename=` so that no path is read as a protocol
//!   (`nbd:`...), `readonly=on` where asked (the guest sees a read-only disk), QEMU's default
//!   writeback cache; host block devices get the `host_device` driver.
//! - **vsock** is `vhost-user-vsock` on the socket of a `vhost-device-vsock --guest-cid N
//!   --socket RUNTIME/vhost-vsock.sock --uds-path UDS` started first (it removes that socket
//!   once QEMU has connected); this host has no /dev/vhost-vsock.
//! - QEMU and the backend are spawned with `PR_SET_PDEATHSIG(SIGKILL)` from a process-lifetime
//!   thread: if the owning process dies, so do they.
//!
//! # How a VM ends
//!
//! The monitor thread reads QMP until QEMU closes the socket, then reaps QEMU, stops the
//! vsock backend and (unless [`Vm::stop`] has begun) calls the [`ExitHandler`] once:
//! `GUEST_PANICKED` -> [`Exit::GuestPanic`]; `SHUTDOWN` from the guest -> [`Exit::PowerOff`]
//! or [`Exit::Reset`]; QEMU ending any other way -> [`Exit::Died`] with its exit status and
//! stderr tail (QEMU's stdout and stderr go to `qemu.log` in the runtime directory).
//! A guest reset under [`OnReset::Reboot`] is no end: the monitor thread calls the
//! [`ResetHandler`] (see [`Vm::on_guest_reset`]) for each `RESET` the guest caused.
//!
//! # Programs
//!
//! QEMU is `$HCS_QEMU`, else `qemu-system-x86_64` on `PATH`; the vsock backend is
//! `$HCS_VHOST_DEVICE_VSOCK`, else `vhost-device-vsock` on `PATH`, else in `~/.cargo/bin`.
//! A missing one is [`Error::NotInstalled`], whose message says to run `scripts/setup`.
//!
//! # Guest modules (Debian's cloud kernel)
//!
//! Load in this order with `insmod`: `virtio_ring`, `virtio`, `virtio_pci_modern_dev`,
//! `virtio_pci_legacy_dev`, `virtio_pci` (q35; `virtio_mmio` instead on microvm), then `virtio_blk`
//! for disks, `vsock`, `vmw_vsock_virtio_transport_common`, `vmw_vsock_virtio_transport`
//! for vsock, `pvpanic`, `pvpanic-mmio` for panic reports, `button` (and `evdev` to read it)
//! for the power button. The 8250 UART driver is built in.

mod accel;
mod checks;
mod cmdline;
mod config;
mod engine;
mod error;
mod process;
mod qmp;
mod settings;
mod vm;

pub use accel::{resolve_accel, ACCEL_ENV};
pub use config::{Accel, Disk, Machine, OnReset, ResolvedAccel, SerialPort, VmConfig, Vsock};
pub use engine::QemuEngine;
pub use error::Error;
pub use settings::QemuSettings;
pub use vm::{Exit, ExitHandler, ResetHandler, Vm, MACHINE_ENV, QEMU_ENV, VHOST_DEVICE_VSOCK_ENV};
