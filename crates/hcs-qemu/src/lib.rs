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
//!   reap, kill backend, rm dir         events: SHUTDOWN/GUEST_PANICKED                │
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
//!   -machine microvm,accel=tcg,memory-backend=mem,acpi=on,isa-serial=off
//!   -cpu max -smp 2 -m 512M
//!   -object memory-backend-memfd,id=mem,size=512M,share=on
//!   -kernel VMLINUZ -initrd INITRD -append CMDLINE
//!   -chardev socket,id=qmp,fd=3 -mon chardev=qmp,mode=control
//!   -action reboot=shutdown,shutdown=poweroff,panic=shutdown
//!   -device pvpanic
//!   -chardev socket,id=com0,server=on,wait=off,path=COM1.sock -device isa-serial,chardev=com0,index=0
//!   -chardev null,id=com1 -device isa-serial,chardev=com1,index=1
//!   -drive if=none,id=disk0,format=raw,readonly=on,file.driver=file,file.filename=DISK
//!   -device virtio-blk-device,drive=disk0
//!   -chardev socket,id=vsock,path=RUNTIME/vhost-vsock.sock -device vhost-user-vsock-device,chardev=vsock
//! ```
//!
//! Why each part:
//!
//! - **`microvm`**: qboot instead of SeaBIOS, no PCI bus to scan, virtio-mmio devices. Under
//!   TCG on this project's machines it reaches the guest's /init in about 1.3 s against
//!   about 1.5 s for `q35`. Debian's kernel lacks `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`, so
//!   the devices are described in ACPI (`acpi=on`); microvm has 8 virtio-mmio slots, and a VM
//!   with more virtio devices gets `q35` (virtio-pci) instead ([`Machine::for_config`]).
//! - **`-nodefaults -no-user-config -display none`**: no default NIC, VGA, serial, parallel,
//!   floppy, CD-ROM or monitor, so no option ROMs and no devices the caller did not ask for.
//! - **`-S`**: [`Vm::create`] returns a paused VM; [`Vm::start`] is QMP `cont`.
//! - **`-cpu max`** under TCG (every feature TCG emulates), **`-cpu host`** under KVM.
//! - **`memory-backend-memfd,share=on`**: the vhost-user vsock backend must map guest RAM.
//!   Untouched guest pages cost the host nothing.
//! - **QMP on a socket pair** (fd 3 in QEMU): no socket path to race for or clean up, nobody
//!   else can reach the monitor, and QEMU ending shows as end-of-file at once.
//! - **`-action reboot=shutdown,panic=shutdown`**: a guest reset or panic ends QEMU after
//!   its `SHUTDOWN` (reason `guest-reset`/`guest-panic`) or `GUEST_PANICKED` event, like a
//!   power-off, so every way a VM ends is "events, then the process ends".
//! - **`pvpanic`** (ISA port 0x505, ACPI id `QEMU0001`) is how a guest reports a panic; the
//!   guest needs the `pvpanic` and `pvpanic-mmio` modules.
//! - **Serial ports** are `isa-serial` devices at fixed indexes (so COM2 can exist without
//!   COM1) on a listening Unix socket (`server=on,wait=off`: a client may attach, detach and
//!   reattach; output with no client attached is dropped) or on a `null` chardev.
//! - **Disks** are raw `virtio-blk`, `file.filename=` so that no path is read as a protocol
//!   (`nbd:`...), `readonly=on` where asked (the guest sees a read-only disk), QEMU's default
//!   writeback cache.
//! - **vsock** is `vhost-user-vsock` on the socket of a `vhost-device-vsock --guest-cid N
//!   --socket RUNTIME/vhost-vsock.sock --uds-path UDS` started first; this host has no
//!   /dev/vhost-vsock.
//!
//! # How a VM ends
//!
//! The monitor thread reads QMP until QEMU closes the socket, then reaps QEMU, stops the
//! vsock backend and (unless [`Vm::stop`] has begun) calls the [`ExitHandler`] once:
//! `GUEST_PANICKED` -> [`Exit::GuestPanic`]; `SHUTDOWN` from the guest -> [`Exit::PowerOff`]
//! or [`Exit::Reset`]; QEMU ending any other way -> [`Exit::Died`] with its exit status and
//! stderr tail (QEMU's stdout and stderr go to `qemu.log` in the runtime directory).
//!
//! # Programs
//!
//! QEMU is `$HCS_QEMU`, else `qemu-system-x86_64` on `PATH`; the vsock backend is
//! `$HCS_VHOST_DEVICE_VSOCK`, else `vhost-device-vsock` on `PATH`, else in `~/.cargo/bin`.
//! A missing one is [`Error::NotInstalled`], whose message says to run `scripts/setup`.
//!
//! # Guest modules (Debian's cloud kernel)
//!
//! Load in this order with `insmod`: `virtio_ring`, `virtio`, `virtio_mmio` (microvm; for
//! q35 `virtio_pci_modern_dev`, `virtio_pci_legacy_dev`, `virtio_pci`), then `virtio_blk`
//! for disks, `vsock`, `vmw_vsock_virtio_transport_common`, `vmw_vsock_virtio_transport`
//! for vsock, `pvpanic`, `pvpanic-mmio` for panic reports, `button` (and `evdev` to read it)
//! for the power button. The 8250 UART driver is built in.

mod accel;
mod cmdline;
mod config;
mod error;
mod process;
mod qmp;
mod vm;

pub use accel::{resolve_accel, ACCEL_ENV};
pub use config::{Accel, Disk, Machine, ResolvedAccel, SerialPort, VmConfig, Vsock};
pub use error::Error;
pub use vm::{Exit, ExitHandler, Vm, QEMU_ENV, VHOST_DEVICE_VSOCK_ENV};
