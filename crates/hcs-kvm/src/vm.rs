//! The VM: its configuration, its states, and the owner-side operations (create, start,
//! pause, resume, NMI, stop).
//!
//! Two locks, each with one job:
//!
//! - `ops` serializes the owner's operations and holds the owner's resources (the VM fd,
//!   vCPU fds not yet started, the vCPU threads' join handles). It is held for the whole of
//!   an operation, including `pause` waiting for the vCPUs to park and `stop` joining them.
//!   vCPU threads never take it.
//! - `Control::state` is shared with the vCPU threads: what the owner asked for (`Phase`),
//!   how the guest ended, and how many vCPUs are parked or gone. It is held briefly and
//!   never across a callback. Kicks are sent under it, which is what keeps them safe: the
//!   kickers exist only while their threads are alive and unjoined (`stop` drops them in the
//!   same critical section that marks the VM stopped, before it joins).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;

use kvm_ioctls::{VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use crate::error::Error;
use crate::firmware::{self, GuestImage};
use crate::sys::Kicker;
use crate::{kvm, memory, sys, vcpu};

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Guest RAM in MiB (at least 1; at most [`crate::KvmInfo::max_memory_mib`]).
    pub memory_mib: u64,
    /// Number of vCPUs (at least 1; at most [`crate::KvmInfo::max_vcpus`]).
    pub vcpus: u32,
    /// What the vCPUs run.
    pub guest: GuestImage,
}

/// How a guest ended itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExitReason {
    /// The guest wrote the ACPI shutdown port ([`crate::io::SHUTDOWN_PORT`]) or KVM reported
    /// a shutdown system event.
    PowerOff,
    /// The guest asked for a reset (i8042 `0xFE`, reset control `0xCF9`, or a KVM reset
    /// system event). The VMM does not reboot the guest: the VM ends.
    Reset,
    /// A vCPU triple-faulted (`KVM_EXIT_SHUTDOWN`).
    TripleFault,
    /// KVM could not run the guest: an internal error, a failed VM entry, an exit the VMM
    /// does not handle. The text says which.
    InternalError(String),
}

impl fmt::Display for VmExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmExitReason::PowerOff => f.write_str("powered off"),
            VmExitReason::Reset => f.write_str("reset"),
            VmExitReason::TripleFault => f.write_str("triple fault"),
            VmExitReason::InternalError(detail) => write!(f, "internal error: {detail}"),
        }
    }
}

/// Where a VM is in its life.
///
/// ```text
///  Created ──start──> Running <──pause/resume──> Paused
///     │                  │  guest ends itself       │
///     │                  v                          │
///     │              Exited(reason)                 │
///     └────────── stop (from any state) ──> Stopped <┘
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    /// Built, no vCPU thread yet.
    Created,
    /// The vCPUs run the guest.
    Running,
    /// Every vCPU is parked outside `KVM_RUN`; guest state is kept in KVM.
    Paused,
    /// The guest ended itself; the vCPU threads are gone, the fds and memory remain until
    /// [`Vm::stop`].
    Exited(VmExitReason),
    /// Stopped: every thread, fd and mapping of the VM is gone.
    Stopped,
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmState::Created => f.write_str("created"),
            VmState::Running => f.write_str("running"),
            VmState::Paused => f.write_str("paused"),
            VmState::Exited(reason) => write!(f, "exited ({reason})"),
            VmState::Stopped => f.write_str("stopped"),
        }
    }
}

/// Called once when the guest ends itself; see [`Vm::create`].
pub type ExitHandler = Box<dyn Fn(VmExitReason) + Send + Sync>;

/// What the owner asked the vCPUs to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not started.
    Created,
    /// `start` is spawning the threads; they wait for it to finish.
    Starting,
    Running,
    Paused,
    /// Set once, by `stop`; every vCPU thread ends.
    Stopped,
}

/// The state shared by the owner and the vCPU threads (under `Control::state`).
#[derive(Debug)]
pub(crate) struct ControlState {
    pub(crate) phase: Phase,
    /// How the guest ended, set once by the first vCPU that saw it.
    pub(crate) exit: Option<VmExitReason>,
    /// One per live, unjoined vCPU thread (by index); empty before start and after stop.
    pub(crate) kickers: Vec<Kicker>,
    /// Kernel thread ids of the vCPU threads, while they run their loop.
    pub(crate) tids: Vec<Option<libc::pid_t>>,
    /// vCPU threads that have registered (are about to enter `KVM_RUN`).
    pub(crate) ready: u32,
    /// vCPU threads parked because of a pause.
    pub(crate) parked: u32,
    /// vCPU threads that have left their loop.
    pub(crate) ended: u32,
}

impl ControlState {
    /// The state as the API shows it.
    fn vm_state(&self) -> VmState {
        match (self.phase, &self.exit) {
            (Phase::Stopped, _) => VmState::Stopped,
            (_, Some(reason)) => VmState::Exited(reason.clone()),
            (Phase::Created | Phase::Starting, None) => VmState::Created,
            (Phase::Running, None) => VmState::Running,
            (Phase::Paused, None) => VmState::Paused,
        }
    }

    /// Kicks every vCPU but `except`.
    pub(crate) fn kick_all(&self, except: Option<usize>) {
        for (index, kicker) in self.kickers.iter().enumerate() {
            if Some(index) != except {
                kicker.kick();
            }
        }
    }
}

/// The part of a VM that its vCPU threads share.
pub(crate) struct Control {
    pub(crate) state: Mutex<ControlState>,
    /// Signalled on every change of `state`.
    pub(crate) changed: Condvar,
    /// Per vCPU: an NMI to inject at the next opportunity.
    pub(crate) nmi_requested: Vec<AtomicBool>,
    pub(crate) on_exit: ExitHandler,
    pub(crate) vcpu_count: u32,
}

impl Control {
    pub(crate) fn lock(&self) -> MutexGuard<'_, ControlState> {
        // Nothing panics while holding this lock; if something did, the state is still
        // consistent enough to stop the VM.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn wait<'a>(
        &self,
        guard: MutexGuard<'a, ControlState>,
    ) -> MutexGuard<'a, ControlState> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The owner's resources, under `Vm::ops`.
struct Ops {
    vm_fd: Option<VmFd>,
    /// vCPU fds between create and start.
    vcpus: Vec<VcpuFd>,
    /// vCPU threads between start and stop; each hands its fd back when joined.
    threads: Vec<JoinHandle<VcpuFd>>,
}

/// Everything `stop` releases, in the order it must go.
struct Teardown {
    threads: Vec<JoinHandle<VcpuFd>>,
    vcpus: Vec<VcpuFd>,
    vm_fd: Option<VmFd>,
    memory: Option<GuestMemoryMmap>,
}

impl Teardown {
    /// Joins the vCPU threads, then closes the vCPU fds, the VM fd, and unmaps memory.
    fn run(mut self) {
        for handle in self.threads.drain(..) {
            match handle.join() {
                Ok(fd) => self.vcpus.push(fd),
                Err(_) => tracing::error!("a vCPU thread panicked outside its loop"),
            }
        }
        drop(self.vcpus);
        drop(self.vm_fd);
        drop(self.memory);
    }
}

/// One virtual machine on KVM. `Send + Sync`: every method takes `&self` and may be called
/// from any thread; operations are serialized.
///
/// ```no_run
/// use hcs_kvm::{GuestImage, Vm, VmConfig};
///
/// let config = VmConfig { memory_mib: 1024, vcpus: 2, guest: GuestImage::IdleFirmware };
/// let vm = Vm::create(config, Box::new(|reason| println!("guest ended: {reason}")))?;
/// vm.start()?;
/// vm.pause()?;
/// vm.resume()?;
/// vm.stop();
/// # Ok::<(), hcs_kvm::Error>(())
/// ```
pub struct Vm {
    control: Arc<Control>,
    ops: Mutex<Ops>,
    /// Guest RAM; `None` once stopped.
    memory: RwLock<Option<GuestMemoryMmap>>,
    memory_size: u64,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("vcpus", &self.control.vcpu_count)
            .field("memory_size", &self.memory_size)
            .field("state", &self.state())
            .finish()
    }
}

impl Vm {
    /// Builds a VM: opens `/dev/kvm`, creates the VM with an in-kernel local APIC (so a
    /// halted vCPU blocks in the kernel; see [`crate::check_kvm`] for which irqchip), maps guest memory (unreserved and untouched but for the
    /// page the guest code is copied to), creates the vCPUs in protected mode at the guest's
    /// entry point. No thread is started yet.
    ///
    /// `on_exit` is called at most once, on a vCPU thread, when the guest ends itself; it is
    /// never called because of [`Vm::stop`]. By then the other vCPUs have been kicked, and
    /// [`Vm::state`] says `Exited(reason)`. Keep it short and hand the news to another
    /// thread: it must not call [`Vm::stop`] or drop the `Vm` (`stop` joins the vCPU
    /// threads, including the one running `on_exit`), nor `start`, `pause`, `resume` or
    /// `inject_nmi` (they may wait for that same thread). The read-only methods (`state`,
    /// `vcpu_thread_ids`, `read_guest_u64`, ...) are fine. (Should `stop` be called from it
    /// anyway, it hands the teardown to a helper thread rather than deadlock, and returns
    /// before the teardown is done.)
    pub fn create(config: VmConfig, on_exit: ExitHandler) -> Result<Vm, Error> {
        let VmConfig {
            memory_mib,
            vcpus,
            guest,
        } = config;
        if vcpus == 0 {
            return Err(Error::InvalidConfig("a VM needs at least one vCPU".into()));
        }
        if memory_mib == 0 {
            return Err(Error::InvalidConfig("memory size is 0 MiB".into()));
        }
        let kvm = kvm::open()?;
        let caps = kvm::capabilities(&kvm)?;
        if vcpus > caps.max_vcpus {
            return Err(Error::InvalidConfig(format!(
                "{vcpus} vCPUs asked, this host's KVM allows at most {}",
                caps.max_vcpus
            )));
        }
        sys::install_kick_handler()?;

        // Memory first, so that on any failure below the VM fd is closed before the
        // mapping goes.
        let guest_memory = memory::create(memory_mib)?;
        let memory_size = memory_mib << 20;
        let vm_fd = kvm.create_vm().map_err(Error::kvm("KVM_CREATE_VM"))?;
        kvm::create_irqchip(&vm_fd, caps)?;
        memory::register(&vm_fd, &guest_memory)?;
        let entry = firmware::load(&guest, &guest_memory, memory_size)?;

        let mut vcpu_fds = Vec::with_capacity(vcpus as usize);
        for index in 0..vcpus {
            let fd = vm_fd
                .create_vcpu(u64::from(index))
                .map_err(Error::kvm("KVM_CREATE_VCPU"))?;
            firmware::setup_vcpu(&fd, index, vcpus, entry, memory_size)?;
            vcpu_fds.push(fd);
        }
        drop(kvm);
        tracing::debug!(vcpus, memory_mib, entry, "VM created");

        let control = Control {
            state: Mutex::new(ControlState {
                phase: Phase::Created,
                exit: None,
                kickers: Vec::new(),
                tids: vec![None; vcpus as usize],
                ready: 0,
                parked: 0,
                ended: 0,
            }),
            changed: Condvar::new(),
            nmi_requested: (0..vcpus).map(|_| AtomicBool::new(false)).collect(),
            on_exit,
            vcpu_count: vcpus,
        };
        Ok(Vm {
            control: Arc::new(control),
            ops: Mutex::new(Ops {
                vm_fd: Some(vm_fd),
                vcpus: vcpu_fds,
                threads: Vec::new(),
            }),
            memory: RwLock::new(Some(guest_memory)),
            memory_size,
        })
    }

    fn lock_ops(&self) -> MutexGuard<'_, Ops> {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns one thread per vCPU (`vcpu0`, `vcpu1`, ...) and returns once every one of them
    /// is about to enter `KVM_RUN`.
    pub fn start(&self) -> Result<(), Error> {
        let mut ops = self.lock_ops();
        {
            let mut st = self.control.lock();
            if st.phase != Phase::Created {
                return Err(Error::InvalidState {
                    op: "start",
                    state: st.vm_state(),
                });
            }
            st.phase = Phase::Starting;
        }

        let mut kickers = Vec::with_capacity(ops.vcpus.len());
        let vcpus = std::mem::take(&mut ops.vcpus);
        for (index, fd) in vcpus.into_iter().enumerate() {
            match vcpu::spawn(index as u32, fd, Arc::clone(&self.control)) {
                Ok((handle, kicker)) => {
                    ops.threads.push(handle);
                    kickers.push(kicker);
                }
                Err(source) => {
                    // The threads spawned so far wait for `Starting` to end: let them see
                    // `Stopped` instead, and tear everything down.
                    self.control.lock().kickers = kickers;
                    self.teardown(&mut ops);
                    return Err(Error::Host {
                        op: "spawning a vCPU thread",
                        source,
                    });
                }
            }
        }

        let mut st = self.control.lock();
        st.kickers = kickers;
        st.phase = Phase::Running;
        self.control.changed.notify_all();
        while st.ready < self.control.vcpu_count {
            st = self.control.wait(st);
        }
        tracing::debug!(vcpus = self.control.vcpu_count, "VM started");
        Ok(())
    }

    /// Kicks every vCPU out of `KVM_RUN` and parks it; returns once all are parked. Guest
    /// state stays in KVM. Pausing a paused VM does nothing.
    pub fn pause(&self) -> Result<(), Error> {
        let _ops = self.lock_ops();
        let mut st = self.control.lock();
        match (st.phase, &st.exit) {
            (Phase::Paused, None) => return Ok(()),
            (Phase::Running, None) => {}
            _ => {
                return Err(Error::InvalidState {
                    op: "pause",
                    state: st.vm_state(),
                })
            }
        }
        st.phase = Phase::Paused;
        st.kick_all(None);
        while st.parked + st.ended < self.control.vcpu_count {
            st = self.control.wait(st);
        }
        match st.exit {
            // The guest ended itself while we were pausing it.
            Some(_) => Err(Error::InvalidState {
                op: "pause",
                state: st.vm_state(),
            }),
            None => {
                tracing::debug!("VM paused");
                Ok(())
            }
        }
    }

    /// Lets the parked vCPUs run again. Resuming a running VM does nothing.
    pub fn resume(&self) -> Result<(), Error> {
        let _ops = self.lock_ops();
        let mut st = self.control.lock();
        match (st.phase, &st.exit) {
            (Phase::Running, None) => Ok(()),
            (Phase::Paused, None) => {
                st.phase = Phase::Running;
                self.control.changed.notify_all();
                tracing::debug!("VM resumed");
                Ok(())
            }
            _ => Err(Error::InvalidState {
                op: "resume",
                state: st.vm_state(),
            }),
        }
    }

    /// Queues an NMI on vCPU 0 (`KVM_NMI`, issued by the vCPU's own thread, since KVM
    /// serializes vCPU ioctls with `KVM_RUN`). With the idle firmware (no IDT) this
    /// triple-faults the guest, and `on_exit(TripleFault)` follows. On a paused VM the NMI
    /// is delivered on resume.
    pub fn inject_nmi(&self) -> Result<(), Error> {
        let ops = self.lock_ops();
        let st = self.control.lock();
        match (st.phase, &st.exit) {
            (Phase::Created, None) => {
                drop(st);
                ops.vcpus[0].nmi().map_err(Error::kvm("KVM_NMI"))
            }
            (Phase::Running | Phase::Paused, None) => {
                self.control.nmi_requested[0].store(true, Ordering::SeqCst);
                st.kickers[0].kick();
                self.control.changed.notify_all();
                Ok(())
            }
            _ => Err(Error::InvalidState {
                op: "inject an NMI into",
                state: st.vm_state(),
            }),
        }
    }

    /// Stops the VM: kicks and joins every vCPU thread, closes the vCPU and VM fds, unmaps
    /// guest memory. Idempotent; safe to call from any thread, concurrently with the other
    /// operations, and after the guest ended itself. When it returns, no thread, fd or
    /// mapping of this VM remains. Does not call the exit handler.
    pub fn stop(&self) {
        let mut ops = self.lock_ops();
        self.teardown(&mut ops);
    }

    /// Marks the VM stopped, kicks the vCPUs, and releases everything (see `stop`).
    fn teardown(&self, ops: &mut Ops) {
        {
            let mut st = self.control.lock();
            if st.phase != Phase::Stopped {
                tracing::debug!(state = %st.vm_state(), "stopping VM");
                st.phase = Phase::Stopped;
                st.kick_all(None);
                // From here on nobody may kick: the threads are about to be joined.
                st.kickers.clear();
                self.control.changed.notify_all();
            }
        }
        let teardown = Teardown {
            threads: std::mem::take(&mut ops.threads),
            vcpus: std::mem::take(&mut ops.vcpus),
            vm_fd: ops.vm_fd.take(),
            memory: self
                .memory
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        };
        if vcpu::is_vcpu_thread_of(&self.control) {
            tracing::error!(
                "Vm::stop called on one of the VM's own vCPU threads (from the exit handler?); \
                 finishing the teardown on a helper thread"
            );
            let reaper = std::thread::Builder::new()
                .name("vm-teardown".into())
                .spawn(move || teardown.run());
            if let Err(e) = reaper {
                tracing::error!(error = %e, "cannot spawn the teardown thread; leaking the VM");
            }
        } else {
            teardown.run();
        }
    }

    /// The VM's state.
    pub fn state(&self) -> VmState {
        self.control.lock().vm_state()
    }

    /// The number of vCPUs.
    pub fn vcpu_count(&self) -> u32 {
        self.control.vcpu_count
    }

    /// Kernel thread ids of the vCPU threads that are running their loop (running or
    /// parked); empty before start and after the guest ended or the VM stopped.
    pub fn vcpu_thread_ids(&self) -> Vec<libc::pid_t> {
        self.control.lock().tids.iter().flatten().copied().collect()
    }

    /// Guest RAM in bytes.
    pub fn memory_size(&self) -> u64 {
        self.memory_size
    }

    /// Reads the little-endian u64 at guest physical address `gpa` (for tests: watch a
    /// counter the guest keeps).
    pub fn read_guest_u64(&self, gpa: u64) -> Result<u64, Error> {
        let memory = self.memory.read().unwrap_or_else(PoisonError::into_inner);
        match memory.as_ref() {
            Some(memory) => memory::read_u64(memory, gpa),
            None => Err(Error::InvalidState {
                op: "read the memory of",
                state: VmState::Stopped,
            }),
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
    }
}
