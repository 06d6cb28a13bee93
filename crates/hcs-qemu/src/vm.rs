//! One VM: its QEMU process, its vsock backend, its monitor thread, and how it ends.

use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::accel::resolve_with;
use crate::checks::{check_files, check_socket_paths, choose_machine, validate, wait_listening};
use crate::cmdline::{qemu_args, Plan};
use crate::config::{Machine, ResolvedAccel, VmConfig};
use crate::error::Error;
use crate::process::{find_program, Process};
use crate::qmp::{self, Command, Event, Incoming, QmpClient, QmpReader};
use crate::settings::QemuSettings;

/// The environment variable naming the QEMU binary (default: `qemu-system-x86_64` on PATH).
pub const QEMU_ENV: &str = "HCS_QEMU";
/// The environment variable naming the `vhost-device-vsock` binary (default: PATH, then
/// `~/.cargo/bin`).
pub const VHOST_DEVICE_VSOCK_ENV: &str = "HCS_VHOST_DEVICE_VSOCK";

/// The environment variable that forces the machine type: `microvm` or `q35` (for
/// comparisons and as a way around a microvm problem on some host).
pub const MACHINE_ENV: &str = "HCS_QEMU_MACHINE";

/// How long QEMU may take to offer QMP after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a QMP command may take to be answered.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `quit` may take before QEMU is killed.
const QUIT_GRACE: Duration = Duration::from_secs(2);
/// How many lines of QEMU's stderr an error or [`Exit::Died`] carries.
pub(crate) const TAIL_LINES: usize = 20;

/// How a VM ended by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The guest powered off (ACPI S5, `poweroff -f`).
    PowerOff,
    /// The guest reset itself (`reboot -f`, triple fault) under [`crate::OnReset::Exit`]:
    /// QEMU stops instead of rebooting.
    Reset,
    /// The guest panicked and said so through pvpanic.
    GuestPanic,
    /// QEMU ended without the guest or the owner asking (killed from outside, crashed).
    Died {
        /// How QEMU ended (exit status or signal) and the last lines of its stderr.
        detail: String,
    },
}

/// Called at most once per VM, from a thread of this crate, when the VM ends by itself;
/// never once [`Vm::stop`] has begun. It should hand work to another thread rather than
/// call back into the VM: a `stop()` from another thread waits for a running handler to
/// return. (A `stop()` or drop of the `Vm` from inside the handler is safe.)
pub type ExitHandler = Box<dyn Fn(Exit) + Send + Sync>;

/// Called from a thread of this crate each time the guest resets itself while the VM runs
/// with [`crate::OnReset::Reboot`] (the guest is already rebooting); never once
/// [`Vm::stop`] has begun. Like an [`ExitHandler`], it should hand work to another thread.
pub type ResetHandler = Box<dyn Fn() + Send + Sync>;

/// One VM: a `qemu-system-x86_64` process (and its vsock backend) driven over QMP.
///
/// Every method takes `&self` and may be called from any thread. Dropping a `Vm` stops it.
pub struct Vm {
    shared: Arc<Shared>,
    /// The monitor thread, joined by `stop()`.
    monitor: Mutex<Option<JoinHandle<()>>>,
    /// `stop()` has finished (serializes concurrent stops).
    stopped: Mutex<bool>,
    accel: ResolvedAccel,
    accel_reason: &'static str,
    machine: Machine,
    memory_mb: u64,
    vcpus: u32,
}

/// What the monitor thread and the owner share.
struct Shared {
    qmp: QmpClient,
    qemu: Process,
    backend: Option<Process>,
    /// Files and sockets to remove when the VM is stopped.
    cleanup: Cleanup,
    /// `stop()` has begun: commands fail and no exit will be reported.
    stopping: Mutex<bool>,
    /// QEMU has been reaped (set by the monitor thread).
    ended: Mutex<bool>,
    ended_cv: Condvar,
    /// The last CPU time read, kept for after QEMU is gone.
    cpu_time: AtomicU64,
    /// The monitor thread's id (so a stop() from the exit handler does not join itself).
    monitor_id: Mutex<Option<ThreadId>>,
    /// Told of each guest reset (with [`crate::OnReset::Reboot`]).
    on_reset: Mutex<Option<Arc<ResetHandler>>>,
}

impl Vm {
    /// Builds the VM, paused before its first instruction.
    ///
    /// Checks that the kernel, initrd and disks can be read (errors name the path), spawns
    /// `vhost-device-vsock` (if `config.vsock`) and QEMU with `-S`, and negotiates QMP. On any
    /// error nothing is left running and the files this call made are removed; when QEMU ends
    /// during start-up the error carries its stderr tail.
    pub fn create(config: VmConfig, on_exit: ExitHandler) -> Result<Vm, Error> {
        Vm::create_with(config, &QemuSettings::from_env(), on_exit)
    }

    /// [`Vm::create`] with the engine's settings given (read once by the caller) rather
    /// than read from the environment.
    pub fn create_with(
        config: VmConfig,
        settings: &QemuSettings,
        on_exit: ExitHandler,
    ) -> Result<Vm, Error> {
        validate(&config)?;
        let disk_is_block_device = check_files(&config)?;
        let qemu_bin = find_program(
            "QEMU",
            QEMU_ENV,
            settings.qemu.as_deref(),
            "qemu-system-x86_64",
            &[],
        )?;
        let backend_bin = match &config.vsock {
            Some(_) => Some(find_program(
                "vhost-device-vsock",
                VHOST_DEVICE_VSOCK_ENV,
                settings.vhost_device_vsock.as_deref(),
                "vhost-device-vsock",
                &settings.search_dirs,
            )?),
            None => None,
        };
        let (accel, accel_reason) = resolve_with(config.accel, settings.accel.as_deref());
        let machine = choose_machine(&config, settings.machine.as_deref())?;

        let runtime_dir = std::path::absolute(&config.runtime_dir)
            .map_err(|e| Error::io("runtime directory", e))?;
        let cleanup = Cleanup {
            dir_created: !runtime_dir.exists(),
            dir: runtime_dir.clone(),
            files: Vec::new(),
        };
        let vhost_socket = runtime_dir.join("vhost-vsock.sock");
        check_socket_paths(&config, &vhost_socket)?;
        std::fs::create_dir_all(&runtime_dir).map_err(|e| {
            Error::io(
                format!("cannot create runtime directory {}", runtime_dir.display()),
                e,
            )
        })?;
        // From here on, an early return must undo: the guard does.
        let mut guard = CreateGuard {
            cleanup: Some(cleanup),
            processes: Vec::new(),
        };
        if let Some(vsock) = &config.vsock {
            guard.files().push(vhost_socket.clone());
            guard.files().push(vsock.uds_path.clone());
        }
        for port in &config.serial_ports {
            if let Some(path) = &port.socket {
                guard.files().push(path.clone());
            }
        }

        // 1. The vsock backend, listening before QEMU connects to it.
        let backend = match (&config.vsock, &backend_bin) {
            (Some(vsock), Some(bin)) => {
                let log = runtime_dir.join("vhost-device-vsock.log");
                guard.files().push(log.clone());
                let args = vec![
                    "--guest-cid".into(),
                    vsock.guest_cid.to_string().into(),
                    "--socket".into(),
                    vhost_socket.clone().into_os_string(),
                    "--uds-path".into(),
                    vsock.uds_path.clone().into_os_string(),
                ];
                let process = Arc::new(Process::spawn(
                    "vhost-device-vsock",
                    bin,
                    &args,
                    &log,
                    None,
                )?);
                guard.processes.push(process.clone());
                wait_listening(&process, &vhost_socket)?;
                Some(process)
            }
            _ => None,
        };

        // 2. QEMU, paused, with QMP on a socket pair.
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| Error::io("cannot create the QMP socket pair", e))?;
        let theirs = OwnedFd::from(theirs);
        let args = qemu_args(
            &config,
            &Plan {
                machine,
                accel,
                vhost_vsock_socket: &vhost_socket,
                disk_is_block_device: &disk_is_block_device,
            },
        );
        let log = runtime_dir.join("qemu.log");
        guard.files().push(log.clone());
        tracing::debug!(
            qemu = %qemu_bin.display(),
            args = ?args,
            "starting QEMU"
        );
        let qemu = Arc::new(Process::spawn(
            "qemu",
            &qemu_bin,
            &args,
            &log,
            Some(&theirs),
        )?);
        drop(theirs);
        guard.processes.push(qemu.clone());
        let started = Instant::now();
        let (client, reader, version) = match qmp::handshake(ours, STARTUP_TIMEOUT) {
            Ok(parts) => parts,
            Err(e) => {
                qemu.kill();
                let status = qemu.wait();
                // End-of-file on QMP just means QEMU ended: its status says enough.
                let why = match e {
                    Error::Stopped => String::new(),
                    other => format!(" ({other})"),
                };
                let detail = format!(
                    "{status}{why}; its stderr ends with:\n{}",
                    qemu.log_tail(TAIL_LINES)
                );
                return Err(Error::StartFailed {
                    program: "QEMU",
                    detail,
                });
            }
        };
        tracing::info!(
            pid = qemu.pid(),
            %accel,
            accel_reason,
            machine = machine.as_str(),
            qemu_version = %version,
            ready_ms = started.elapsed().as_millis() as u64,
            "QEMU ready (paused)"
        );

        // Success: the guard lets go and the VM owns everything.
        guard.processes.clear();
        let Some(cleanup) = guard.cleanup.take() else {
            unreachable!("the guard is disarmed only here");
        };
        drop(guard);
        let shared = Arc::new(Shared {
            qmp: client,
            qemu: Arc::into_inner(qemu)
                .ok_or_else(|| Error::Protocol("QEMU process shared".into()))?,
            backend: backend.and_then(Arc::into_inner),
            cleanup,
            stopping: Mutex::new(false),
            ended: Mutex::new(false),
            ended_cv: Condvar::new(),
            cpu_time: AtomicU64::new(0),
            monitor_id: Mutex::new(None),
            on_reset: Mutex::new(None),
        });
        let monitor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("qemu-{}", shared.qemu.pid()))
                .spawn(move || monitor(&shared, reader, on_exit))
        };
        let monitor = match monitor {
            Ok(handle) => handle,
            Err(e) => {
                // No monitor: end QEMU here. Nobody else holds `shared`'s processes.
                shared.qemu.kill();
                shared.qemu.wait();
                if let Some(b) = &shared.backend {
                    b.kill();
                    b.wait();
                }
                shared.cleanup.run();
                return Err(Error::io("cannot start the QEMU monitor thread", e));
            }
        };
        *shared.monitor_id.lock() = Some(monitor.thread().id());
        Ok(Vm {
            shared,
            monitor: Mutex::new(Some(monitor)),
            stopped: Mutex::new(false),
            accel,
            accel_reason,
            machine,
            memory_mb: config.memory_mb,
            vcpus: config.vcpus,
        })
    }

    /// Sets the handler told of each guest reset under [`crate::OnReset::Reboot`] (set it
    /// before [`Vm::start`]: a reset before it is not reported). Replaces any earlier one.
    pub fn on_guest_reset(&self, handler: ResetHandler) {
        *self.shared.on_reset.lock() = Some(Arc::new(handler));
    }

    /// Runs the guest from its first instruction (QMP `cont`).
    pub fn start(&self) -> Result<(), Error> {
        self.execute(Command::Cont)
    }

    /// Pauses the vCPUs; guest state is kept (QMP `stop`).
    pub fn pause(&self) -> Result<(), Error> {
        self.execute(Command::Stop)
    }

    /// Resumes paused vCPUs (QMP `cont`).
    pub fn resume(&self) -> Result<(), Error> {
        self.execute(Command::Cont)
    }

    /// Injects an NMI into the vCPUs (QMP `inject-nmi`): Linux panics on it with
    /// `kernel.unknown_nmi_panic=1` / `nmi_watchdog`-style settings, else logs it.
    pub fn inject_nmi(&self) -> Result<(), Error> {
        self.execute(Command::InjectNmi)
    }

    /// Presses the ACPI power button (QMP `system_powerdown`). The guest decides what to do:
    /// Linux's `button` driver turns it into a KEY_POWER input event for user space.
    pub fn power_button(&self) -> Result<(), Error> {
        self.execute(Command::SystemPowerdown)
    }

    /// Ends the VM and frees everything it holds: QMP `quit`, SIGKILL if QEMU has not ended
    /// after a short grace, reaps it, stops the vsock backend and removes the runtime
    /// directory (and the vsock `uds_path` and serial sockets). Idempotent; calls running
    /// concurrently return promptly with [`Error::Stopped`]; no [`Exit`] is reported after it
    /// has begun.
    pub fn stop(&self) {
        let mut stopped = self.stopped.lock();
        if *stopped {
            return;
        }
        *self.shared.stopping.lock() = true;
        let shared = &self.shared;
        if !shared.wait_ended(Duration::ZERO) {
            let _ = shared.qmp.send_only(Command::Quit);
            if !shared.wait_ended(QUIT_GRACE) {
                tracing::warn!(pid = shared.qemu.pid(), "QEMU ignored quit; killing it");
                shared.qemu.kill();
                // Unblocks the monitor thread even if QEMU lingers (uninterruptible I/O).
                shared.qmp.shutdown();
                shared.wait_ended(Duration::from_secs(10));
            }
        }
        let on_monitor = *shared.monitor_id.lock() == Some(std::thread::current().id());
        if !on_monitor && *shared.ended.lock() {
            if let Some(handle) = self.monitor.lock().take() {
                let _ = handle.join();
            }
        }
        if let Some(backend) = &shared.backend {
            backend.kill();
            backend.wait();
        }
        shared.cleanup.run();
        tracing::debug!(pid = shared.qemu.pid(), "VM stopped");
        *stopped = true;
    }

    /// The accelerator the VM runs on.
    pub fn accel(&self) -> ResolvedAccel {
        self.accel
    }

    /// Why that accelerator was chosen (for logs and properties).
    pub fn accel_reason(&self) -> &'static str {
        self.accel_reason
    }

    /// The QEMU machine type the VM is built on.
    pub fn machine(&self) -> Machine {
        self.machine
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.shared.qemu.pid()
    }

    /// The `vhost-device-vsock` backend's process id, when the VM has vsock.
    pub fn backend_pid(&self) -> Option<u32> {
        self.shared.backend.as_ref().map(Process::pid)
    }

    /// Host CPU time QEMU has used (all its threads, user + system). After QEMU has ended,
    /// the last value read.
    pub fn cpu_time(&self) -> std::time::Duration {
        let units = match self.shared.qemu.cpu_time_100ns() {
            Some(t) => {
                self.shared.cpu_time.fetch_max(t, Ordering::Relaxed);
                self.shared.cpu_time.load(Ordering::Relaxed)
            }
            None => self.shared.cpu_time.load(Ordering::Relaxed),
        };
        std::time::Duration::from_nanos(units.saturating_mul(100))
    }

    /// Guest RAM in MiB.
    pub fn memory_mb(&self) -> u64 {
        self.memory_mb
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> u32 {
        self.vcpus
    }

    /// Sends a command unless the VM is stopping.
    fn execute(&self, command: Command) -> Result<(), Error> {
        if *self.shared.stopping.lock() {
            return Err(Error::Stopped);
        }
        self.shared.qmp.execute(command, COMMAND_TIMEOUT)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("pid", &self.pid())
            .field("accel", &self.accel)
            .field("machine", &self.machine)
            .field("memory_mb", &self.memory_mb)
            .field("vcpus", &self.vcpus)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Waits up to `timeout` for QEMU to be reaped; whether it has been.
    fn wait_ended(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut ended = self.ended.lock();
        while !*ended {
            if self.ended_cv.wait_until(&mut ended, deadline).timed_out() {
                break;
            }
        }
        *ended
    }
}

/// The monitor thread: reads QMP until QEMU closes it, reaps QEMU, reports the exit.
fn monitor(shared: &Shared, mut reader: QmpReader, on_exit: ExitHandler) {
    let mut guest_exit: Option<Exit> = None;
    let mut host_reason: Option<String> = None;
    loop {
        match reader.next() {
            Ok(Some(Incoming::Reply { id, reply })) => shared.qmp.deliver(id, reply),
            Ok(Some(Incoming::Event(event))) => {
                tracing::debug!(pid = shared.qemu.pid(), ?event, "QMP event");
                match event {
                    Event::GuestPanicked => guest_exit = Some(Exit::GuestPanic),
                    Event::Shutdown {
                        guest: true,
                        reason,
                    } => {
                        guest_exit.get_or_insert(match reason.as_str() {
                            "guest-reset" => Exit::Reset,
                            "guest-panic" => Exit::GuestPanic,
                            _ => Exit::PowerOff,
                        });
                    }
                    Event::Shutdown {
                        guest: false,
                        reason,
                    } => host_reason = Some(reason),
                    // Only with reboot=reset: the guest reboots in place.
                    Event::Reset { guest: true, .. } => {
                        let handler = shared.on_reset.lock().clone();
                        let stopping = *shared.stopping.lock();
                        if let (Some(handler), false) = (handler, stopping) {
                            tracing::info!(pid = shared.qemu.pid(), "guest reset; rebooting");
                            handler();
                        }
                    }
                    Event::Reset { guest: false, .. } | Event::Other(_) => {}
                }
            }
            Ok(None) => break,
            Err(Error::Protocol(e)) => tracing::warn!(error = %e, "bad QMP message ignored"),
            Err(e) => {
                tracing::warn!(error = %e, "QMP socket failed");
                break;
            }
        }
    }
    shared.qmp.close();
    let status = shared.qemu.wait();
    // QEMU is gone; its vsock backend has nothing left to serve.
    if let Some(backend) = &shared.backend {
        backend.kill();
        backend.wait();
    }
    {
        *shared.ended.lock() = true;
        shared.ended_cv.notify_all();
    }
    // Claim the report unless stop() has begun; stop() cannot begin in between.
    let report = {
        let stopping = shared.stopping.lock();
        !*stopping
    };
    if !report {
        return;
    }
    let exit = guest_exit.unwrap_or_else(|| {
        let why = match host_reason {
            Some(reason) => format!(" after a {reason} shutdown"),
            None => String::new(),
        };
        Exit::Died {
            detail: format!(
                "QEMU {status}{why}; its stderr ends with:\n{}",
                shared.qemu.log_tail(TAIL_LINES)
            ),
        }
    });
    tracing::info!(pid = shared.qemu.pid(), ?exit, "VM ended by itself");
    on_exit(exit);
}

/// Files to remove when the VM goes away.
struct Cleanup {
    dir: PathBuf,
    /// The runtime directory did not exist before `create`: remove it whole.
    dir_created: bool,
    /// Files and sockets outside (or inside) the directory.
    files: Vec<PathBuf>,
}

impl Cleanup {
    fn run(&self) {
        for file in &self.files {
            // Outside the runtime directory only sockets are ours to remove.
            let ours = file.starts_with(&self.dir)
                || std::fs::symlink_metadata(file)
                    .map(|m| m.file_type().is_socket())
                    .unwrap_or(false);
            if ours {
                let _ = std::fs::remove_file(file);
            }
        }
        if self.dir_created || !self.dir_has_foreign_files() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Whether the runtime directory holds files this crate did not make (then it is left).
    fn dir_has_foreign_files(&self) -> bool {
        std::fs::read_dir(&self.dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false)
    }
}

/// Undoes a half-made `create` when dropped before it is disarmed.
struct CreateGuard {
    cleanup: Option<Cleanup>,
    processes: Vec<Arc<Process>>,
}

impl CreateGuard {
    fn files(&mut self) -> &mut Vec<PathBuf> {
        match &mut self.cleanup {
            Some(c) => &mut c.files,
            None => unreachable!("files are registered before the guard is disarmed"),
        }
    }
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        for process in self.processes.iter().rev() {
            process.kill();
            process.wait();
        }
        if let Some(cleanup) = &self.cleanup {
            cleanup.run();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_is_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Vm>();
        send_sync::<Error>();
    }
}
