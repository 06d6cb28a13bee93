//! A scripted engine: VMs that exist only as records of the calls made on them, whose
//! guests end or reset when a test says so, and whose calls can be made to block (a gate)
//! or fail, so that every rule of the host's state machine can be driven deterministically
//! without a hypervisor.

use hcs_engine::{
    Engine, EngineError, EngineExit, EngineLimits, EngineVm, ExitHandler, ResetHandler, VmPlan,
};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An engine call a test can script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Create,
    Start,
    Pause,
    Resume,
    InjectNmi,
    PowerButton,
    Stop,
}

/// A scripted engine (see the module doc). Cheap to clone: clones share the script.
#[derive(Clone, Default)]
pub struct FakeEngine {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// The next call of each kind fails with this error.
    failures: Mutex<HashMap<Call, EngineError>>,
    /// The next call of each kind waits at this gate.
    gates: Mutex<HashMap<Call, Gate>>,
    vms: Mutex<Vec<Arc<FakeVm>>>,
    /// Whether the power button makes the guest power off (as a guest with ACPI does).
    button_powers_off: AtomicBool,
    /// Whether a started VM with vsock runs a fake guest agent (and runs it again after
    /// each reset), as a guest with `hcs-guest` does.
    agent: AtomicBool,
    limits: Mutex<Option<EngineLimits>>,
}

impl FakeEngine {
    /// An engine whose calls all succeed at once, whose limits are 64 vCPUs and 64 GiB,
    /// and whose power button powers the guest off.
    pub fn new() -> FakeEngine {
        let engine = FakeEngine::default();
        engine
            .shared
            .button_powers_off
            .store(true, Ordering::SeqCst);
        engine
    }

    /// Started VMs with vsock run a fake guest agent that connects to the host (see
    /// `fake_agent.rs`): Start with `GuestConnection` succeeds, a shutdown goes through it.
    pub fn with_agent(self) -> FakeEngine {
        self.shared.agent.store(true, Ordering::SeqCst);
        self
    }

    /// The next `call` fails with `error`.
    pub fn fail_next(&self, call: Call, error: EngineError) {
        self.shared.failures.lock().insert(call, error);
    }

    /// The next `call` blocks until the returned gate opens (or the VM is stopped, which
    /// makes it fail with `EngineError::Ended`, as a real engine's calls return promptly
    /// when stopped).
    pub fn block_next(&self, call: Call) -> Gate {
        let gate = Gate::default();
        self.shared.gates.lock().insert(call, gate.clone());
        gate
    }

    /// Limits to report (`None`: the engine cannot run here, `EngineError::Unavailable`).
    pub fn set_limits(&self, limits: Option<EngineLimits>) {
        *self.shared.limits.lock() = limits;
    }

    /// Every VM created so far, in order.
    pub fn vms(&self) -> Vec<Arc<FakeVm>> {
        self.shared.vms.lock().clone()
    }

    /// The last VM created.
    pub fn last_vm(&self) -> Arc<FakeVm> {
        self.vms().last().cloned().expect("no VM was created")
    }

    /// How many VMs exist and are not stopped.
    pub fn live_vms(&self) -> usize {
        self.vms().iter().filter(|vm| !vm.is_stopped()).count()
    }

    fn scripted(&self, call: Call, vm: Option<&FakeVm>) -> Result<(), EngineError> {
        let gate = self.shared.gates.lock().remove(&call);
        if let Some(gate) = gate {
            gate.wait(vm);
            if vm.is_some_and(FakeVm::is_stopped) {
                return Err(EngineError::Ended("the VM was stopped".into()));
            }
        }
        match self.shared.failures.lock().remove(&call) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl Engine for FakeEngine {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn accepts(&self, _plan: &VmPlan) -> Result<(), String> {
        Ok(())
    }

    fn limits(&self) -> Result<EngineLimits, EngineError> {
        let limits = *self.shared.limits.lock();
        Ok(limits.unwrap_or(EngineLimits {
            max_vcpus: 64,
            max_memory_mb: 64 << 10,
        }))
    }

    fn reboots_in_place(&self) -> bool {
        true
    }

    fn create(
        &self,
        plan: &VmPlan,
        on_exit: ExitHandler,
        on_reset: ResetHandler,
    ) -> Result<Arc<dyn EngineVm>, EngineError> {
        self.scripted(Call::Create, None)?;
        // As the real engines do: the VM's directory holds its sockets (vsock).
        if let Some(dir) = &plan.runtime_dir {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::Failed(e.to_string()))?;
        }
        let vm = Arc::new_cyclic(|me| FakeVm {
            me: me.clone(),
            boot: std::sync::atomic::AtomicU64::new(0),
            engine: self.clone(),
            plan: plan.clone(),
            on_exit: Mutex::new(Some(on_exit)),
            on_reset,
            calls: Mutex::new(vec![Call::Create]),
            stopped: AtomicBool::new(false),
        });
        self.shared.vms.lock().push(Arc::clone(&vm));
        Ok(vm)
    }
}

/// One VM of a [`FakeEngine`].
pub struct FakeVm {
    me: std::sync::Weak<FakeVm>,
    /// Counts the guest's boots (resets), so that an old boot's agent knows it is over.
    boot: std::sync::atomic::AtomicU64,
    engine: FakeEngine,
    /// What it was built from.
    pub plan: VmPlan,
    /// Taken by the first exit: an engine reports at most one.
    on_exit: Mutex<Option<ExitHandler>>,
    on_reset: ResetHandler,
    calls: Mutex<Vec<Call>>,
    stopped: AtomicBool,
}

impl FakeVm {
    /// The calls made on this VM, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    /// Whether `stop` was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The guest ends itself (`exit`), reported from a thread of the engine's own, as
    /// real engines do. Nothing happens for a stopped VM or after a first exit.
    pub fn guest_exits(self: &Arc<Self>, exit: EngineExit) {
        if self.is_stopped() {
            return;
        }
        if let Some(handler) = self.on_exit.lock().take() {
            std::thread::spawn(move || handler(exit))
                .join()
                .expect("exit handler");
        }
    }

    /// The guest resets itself and reboots in place (reported from an engine thread);
    /// with an agent, the new boot's agent connects again.
    pub fn guest_resets(self: &Arc<Self>) {
        self.boot.fetch_add(1, Ordering::SeqCst);
        let vm = Arc::clone(self);
        std::thread::spawn(move || (vm.on_reset)())
            .join()
            .expect("reset handler");
        self.run_agent();
    }

    /// Starts the fake agent of this boot on a thread of its own, if the engine runs agents
    /// and the VM has vsock.
    fn run_agent(&self) {
        let Some(uds) = self.plan.vsock_uds() else {
            return;
        };
        if !self.engine.shared.agent.load(Ordering::SeqCst) {
            return;
        }
        let me = self.me.clone();
        std::thread::spawn(move || {
            crate::fake_agent::serve(&uds, |action| {
                let Some(vm) = me.upgrade() else {
                    return;
                };
                match action {
                    crate::fake_agent::AgentAction::PowerOff => {
                        vm.guest_exits(EngineExit::PowerOff)
                    }
                    crate::fake_agent::AgentAction::Reset if vm.plan.reboot_in_place => {
                        vm.guest_resets()
                    }
                    crate::fake_agent::AgentAction::Reset => vm.guest_exits(EngineExit::Reset),
                }
            })
        });
    }

    fn record(&self, call: Call) -> Result<(), EngineError> {
        self.calls.lock().push(call);
        if self.is_stopped() {
            return Err(EngineError::Ended("the VM was stopped".into()));
        }
        self.engine.scripted(call, Some(self))
    }
}

impl EngineVm for FakeVm {
    fn start(&self) -> Result<(), EngineError> {
        self.record(Call::Start)?;
        self.run_agent();
        Ok(())
    }
    fn pause(&self) -> Result<(), EngineError> {
        self.record(Call::Pause)
    }
    fn resume(&self) -> Result<(), EngineError> {
        self.record(Call::Resume)
    }
    fn inject_nmi(&self) -> Result<(), EngineError> {
        self.record(Call::InjectNmi)
    }
    fn power_button(&self) -> Result<(), EngineError> {
        self.record(Call::PowerButton)?;
        if self.engine.shared.button_powers_off.load(Ordering::SeqCst) {
            // The guest powers off a moment later, from an engine thread.
            if let Some(handler) = self.on_exit.lock().take() {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    handler(EngineExit::PowerOff)
                });
            }
        }
        Ok(())
    }
    fn accelerator(&self) -> String {
        "fake".into()
    }
    fn stop(&self) {
        self.calls.lock().push(Call::Stop);
        // A call blocked at a gate sees this within one poll and returns `Ended`.
        self.stopped.store(true, Ordering::SeqCst);
    }
    fn vcpu_count(&self) -> u32 {
        self.plan.vcpus
    }
    fn memory_mb(&self) -> u64 {
        self.plan.memory_mb
    }
    fn cpu_time(&self) -> Duration {
        Duration::from_millis(3)
    }
}

/// Where a scripted call waits until a test opens it.
#[derive(Clone, Default)]
pub struct Gate {
    inner: Arc<(Mutex<GateState>, Condvar)>,
}

#[derive(Default)]
struct GateState {
    open: bool,
    /// A call is waiting at the gate.
    reached: bool,
}

impl Gate {
    /// Lets the waiting call (and any later one) through.
    pub fn open(&self) {
        self.inner.0.lock().open = true;
        self.inner.1.notify_all();
    }

    /// Waits until a call is at the gate, at most `timeout`; whether one is.
    pub fn wait_reached(&self, timeout: Duration) -> bool {
        let mut state = self.inner.0.lock();
        let deadline = std::time::Instant::now() + timeout;
        while !state.reached {
            if self.inner.1.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.reached
    }

    fn wait(&self, vm: Option<&FakeVm>) {
        let mut state = self.inner.0.lock();
        state.reached = true;
        self.inner.1.notify_all();
        while !state.open && !vm.is_some_and(FakeVm::is_stopped) {
            self.inner.1.wait_for(&mut state, Duration::from_millis(10));
        }
    }
}
