//! Load on one `hcsd`: 32 client processes, each doing 200 mixed operations on its own
//! empty VMs through the `hcs` crate (`HCS_HOST=service`), with every completion style
//! (blocking wait, the operation's completion callback, and the system event callback
//! with `EnableOperationCallbacks`). Every operation completes exactly once and within a
//! bound, and at the end the service holds nothing: no worker, no extra descriptor, no
//! system.
//!
//! Each test runs its own `hcsd` (socket and state directory in a scratch directory), so
//! the leak checks see only their own service. The second test isolates the one fault the
//! load found: a create lost to another client's enumeration.

mod common;

use common::{enumerate, require_kvm, scratch, Hcsd};
use hcs::api;
use hcs::{event_options, Event, EventType, HResult, HcsOperation, HcsSystem, GENERIC_ALL};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;
const OPERATIONS: usize = 200;
/// Threads per client process, each with at most one VM alive at a time; the client's
/// operations are split between them, so requests of both are in flight on one connection.
const THREADS: usize = 2;
const _: () = assert!(
    OPERATIONS % THREADS == 0,
    "the threads share the operations evenly"
);
/// Operations per VM before it is replaced: create, open, start, the mixed ones,
/// terminate, two closes.
const MIXED_PER_VM: usize = 10;
const FIXED_PER_VM: usize = 6;
/// A wait, callback or event that takes longer than this is a stuck operation.
const BOUND: Duration = Duration::from_secs(60);
/// Every client process together must be done within this.
const ALL_CLIENTS_BOUND: Duration = Duration::from_secs(180);
/// Tells the helper which client it is; without it the helper does nothing.
const CLIENT_ENV: &str = "HCSD_LOAD_CLIENT";

/// 32 client processes x 200 mixed operations against one hcsd: every completion arrives
/// exactly once, none is stuck, every process exits cleanly, and afterwards no worker,
/// descriptor or compute system is left in the service.
#[test]
fn thirty_two_client_processes_complete_every_operation_exactly_once_and_leak_nothing() {
    require_kvm();
    let dir = scratch("load");
    let hcsd = Hcsd::start(&dir);
    let watcher = hcsd.client();
    std::thread::sleep(Duration::from_millis(100));
    let fds_before = hcsd.fd_count();
    let started = Instant::now();

    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut pids = Vec::new();
    for index in 0..CLIENTS {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "load_client_process_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CLIENT_ENV, index.to_string())
            .env("HCS_HOST", "service")
            .env("HCS_SOCKET", &hcsd.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a client process");
        pids.push(child.id());
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let _ = done.send((index, child.wait_with_output()));
        });
    }
    drop(done_tx);

    let mut failed = Vec::new();
    let mut summaries = Vec::new();
    let deadline = started + ALL_CLIENTS_BOUND;
    for _ in 0..CLIENTS {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((index, output)) = done_rx.recv_timeout(left) else {
            for pid in &pids {
                // SAFETY: plain kill(2) on a client process this test started (an exited
                // one is a zombie until its waiting thread reaps it, so the pid is ours).
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
            panic!(
                "client processes still running after {ALL_CLIENTS_BOUND:?} (killed); \
                 finished so far:\n{}\nfailures:\n{}",
                summaries.join("\n"),
                failed.join("\n")
            );
        };
        let output = output.expect("wait for a client process");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary = stdout
            .lines()
            .find_map(|l| l.find("load client ").map(|at| &l[at..]))
            .unwrap_or("(no summary)")
            .to_owned();
        if !output.status.success() || !summary.ends_with("failures 0") {
            failed.push(format!(
                "client {index} exited with {}: {summary}\n{stdout}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        summaries.push(summary);
    }
    let clients_took = started.elapsed();
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} client processes failed:\n{}\nhcsd log (tail):\n{}",
        failed.len(),
        failed.join("\n"),
        tail(&hcsd.log(), 40)
    );
    println!("{CLIENTS} clients x {OPERATIONS} operations done in {clients_took:.1?}");

    wait_until("every worker process exits", || {
        hcsd.worker_pids().is_empty()
    });
    wait_until("hcsd's descriptors return to their count", || {
        hcsd.fd_count() <= fds_before
    });
    assert_eq!(
        enumerate(&watcher, None),
        Vec::<String>::new(),
        "no system is left"
    );
    println!("no leak; the whole test took {:.1?}", started.elapsed());
}

/// A create is not lost to another client's enumeration: `hcsd` registers a new worker
/// before it forwards the create to it, so an enumeration (or `LiveCounts`) can reach the
/// worker first; the worker must not take itself for idle then. One client creates and
/// closes VMs while three others enumerate and ask for live counts without pause; every create succeeds.
#[test]
fn a_create_succeeds_while_another_client_enumerates() {
    require_kvm();
    let dir = scratch("create-vs-enumerate");
    let hcsd = Hcsd::start(&dir);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let enumerators: Vec<_> = (0..3)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let client = hcsd.client();
            std::thread::spawn(move || {
                let mut rounds = 0;
                while !stop.load(Ordering::SeqCst) {
                    enumerate(&client, None);
                    client.ok(hcs_protocol::RequestBody::Diagnostic(
                        hcs_protocol::Diagnostic::LiveCounts,
                    ));
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    let creator = hcsd.client();
    let mut failed = Vec::new();
    const CREATES: u64 = 60;
    for handle in 1..=CREATES {
        let id = format!("race-{handle}");
        let reply = creator.call(common::create(handle, &id, common::empty_vm("race", true)));
        if reply.result.failed() {
            failed.push(format!("{id}: {} {:?}", reply.result, reply.document));
        }
        creator.ok(common::close(handle));
    }
    stop.store(true, Ordering::SeqCst);
    let rounds: usize = enumerators.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        failed.is_empty(),
        "{} of {CREATES} creates failed while other clients enumerated ({rounds} rounds):\n{}",
        failed.len(),
        failed.join("\n")
    );
    wait_until("every worker process exits", || {
        hcsd.worker_pids().is_empty()
    });
}

/// Not a check of its own: one client process of
/// [`thirty_two_client_processes_complete_every_operation_exactly_once_and_leak_nothing`].
/// Without its variable it does nothing.
#[test]
fn load_client_process_helper() {
    let Some(index) = std::env::var(CLIENT_ENV).ok() else {
        return;
    };
    let index: usize = index.parse().expect("client index");
    assert_eq!(api::host_kind(), hcs::api::HostKind::Service);
    let ledger = Arc::new(Ledger::new(OPERATIONS + 8));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            let budget = OPERATIONS / THREADS;
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((index * THREADS + t) as u64 + 1));
                client_thread(index, t, budget, &ledger, &mut rng)
            })
        })
        .collect();
    let mut exits = Vec::new();
    for thread in threads {
        match thread.join() {
            Ok(counts) => exits.extend(counts),
            Err(_) => ledger.fail("a client thread panicked".into()),
        }
    }
    // Late or duplicate deliveries would show up now.
    std::thread::sleep(Duration::from_millis(200));
    let issued = ledger.issued();
    for token in 0..issued {
        let count = ledger.counts[token].load(Ordering::SeqCst);
        if count != 1 {
            let name = ledger.name(token);
            ledger.fail(format!("{name}: completed {count} times"));
        }
    }
    for (id, count) in exits {
        let count = count.load(Ordering::SeqCst);
        if count != 1 {
            ledger.fail(format!("{id}: SystemExited delivered {count} times"));
        }
    }
    let live = api::live_counts();
    if live.operations != 0 || live.system_handles != 0 || live.process_handles != 0 {
        ledger.fail(format!("handles left open in the client: {live:?}"));
    }
    let failures = ledger.failures.lock().unwrap().clone();
    println!(
        "load client {index}: ops {issued}, failures {}",
        failures.len()
    );
    assert!(
        issued == OPERATIONS && failures.is_empty(),
        "client {index}: {issued} operations, failures:\n{}",
        failures.join("\n")
    );
}

/// Per-operation completion counters, indexed by the token carried in the context.
struct Ledger {
    counts: Vec<AtomicU32>,
    slots: Mutex<Vec<Slot>>,
    next: AtomicUsize,
    done: (Mutex<()>, Condvar),
    failures: Mutex<Vec<String>>,
}

#[derive(Default, Clone)]
struct Slot {
    name: String,
    /// For an enumeration: the id it must list.
    lists: Option<String>,
    result: Option<(HResult, Option<String>)>,
}

impl Ledger {
    fn new(capacity: usize) -> Ledger {
        Ledger {
            counts: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
            slots: Mutex::new(vec![Slot::default(); capacity]),
            next: AtomicUsize::new(0),
            done: (Mutex::new(()), Condvar::new()),
            failures: Mutex::new(Vec::new()),
        }
    }

    fn token(&self, name: String, lists: Option<String>) -> usize {
        let token = self.next.fetch_add(1, Ordering::SeqCst);
        assert!(token < self.counts.len(), "ledger too small");
        let mut slots = self.slots.lock().unwrap();
        slots[token].name = name;
        slots[token].lists = lists;
        token
    }

    fn issued(&self) -> usize {
        self.next.load(Ordering::SeqCst)
    }

    fn name(&self, token: usize) -> String {
        self.slots.lock().unwrap()[token].name.clone()
    }

    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    /// Records one completion of `token` and checks its outcome.
    fn complete(&self, token: usize, result: HResult, document: Option<String>) {
        if token >= self.counts.len() {
            self.fail(format!("a completion with an unknown context {token}"));
            return;
        }
        // Counted under the slots' lock, so that whoever sees the count sees the result.
        let (before, slot) = {
            let mut slots = self.slots.lock().unwrap();
            let before = self.counts[token].fetch_add(1, Ordering::SeqCst);
            if before == 0 {
                slots[token].result = Some((result, document.clone()));
            }
            (before, slots[token].clone())
        };
        if before != 0 {
            self.fail(format!("{}: completed more than once", slot.name));
        } else if result != HResult::S_OK {
            self.fail(format!("{}: {result:?} {document:?}", slot.name));
        } else if let Some(id) = &slot.lists {
            let ids: Vec<String> = document
                .as_deref()
                .and_then(|d| serde_json::from_str::<Vec<serde_json::Value>>(d).ok())
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s["Id"].as_str().map(str::to_owned))
                .collect();
            if !ids.contains(id) {
                self.fail(format!("{}: {id} not listed in {ids:?}", slot.name));
            }
        }
        let _guard = self.done.0.lock().unwrap();
        self.done.1.notify_all();
    }

    /// Waits until `token` has completed; a stuck operation is a failure named after it.
    fn await_token(&self, token: usize) -> bool {
        let deadline = Instant::now() + BOUND;
        let mut guard = self.done.0.lock().unwrap();
        while self.counts[token].load(Ordering::SeqCst) == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(guard);
                let name = self.name(token);
                self.fail(format!("stuck: {name} did not complete within {BOUND:?}"));
                return false;
            }
            guard = self.done.1.wait_timeout(guard, left).unwrap().0;
        }
        true
    }
}

/// How a client learns that an operation finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `HcsWaitForOperationResult` with a bound.
    Wait,
    /// The operation's own completion callback.
    Callback,
    /// The evented handle's event callback (`HcsEventOperationCallback`).
    Event,
}

/// One VM of a client thread: a plain handle and a second one with an event callback that
/// takes operation completions.
struct Vm {
    id: String,
    owner: String,
    plain: HcsSystem,
    evented: Option<HcsSystem>,
    exited: Arc<AtomicU32>,
}

/// A client thread: VMs one after another, `budget` operations in all; returns each VM's
/// SystemExited counter.
fn client_thread(
    client: usize,
    thread: usize,
    budget: usize,
    ledger: &Arc<Ledger>,
    rng: &mut Rng,
) -> Vec<(String, Arc<AtomicU32>)> {
    let mut exits = Vec::new();
    let mut done = 0;
    let mut vm_index = 0;
    while done < budget {
        let left = budget - done;
        // The last VM takes what remains, so that the count comes out exact.
        let mixed = if left >= 2 * (FIXED_PER_VM + MIXED_PER_VM) - MIXED_PER_VM / 2 {
            MIXED_PER_VM
        } else {
            left - FIXED_PER_VM
        };
        let id = format!("load-{client}-{thread}-{vm_index}");
        let owner = format!("load-{client}-{thread}");
        let exited = Arc::new(AtomicU32::new(0));
        // A cycle cut short by a failure issues fewer: the summary says so.
        if vm_cycle(ledger, rng, id.clone(), owner, Arc::clone(&exited), mixed) {
            exits.push((id, exited));
        }
        done += FIXED_PER_VM + mixed;
        vm_index += 1;
    }
    exits
}

/// The document of `examples/empty-vm.json`, at 64 MB and 1 vCPU.
fn document(owner: &str) -> String {
    let text = std::fs::read_to_string(common::repo().join("examples/empty-vm.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["Owner"] = owner.into();
    doc["VirtualMachine"]["ComputeTopology"]["Memory"]["SizeInMB"] = 64.into();
    doc["VirtualMachine"]["ComputeTopology"]["Processor"]["Count"] = 1.into();
    doc["ShouldTerminateOnLastHandleClosed"] = true.into();
    doc.to_string()
}

/// Create, open, start, `mixed` operations, terminate, close both handles. Returns
/// whether the VM got its evented handle (then exactly one SystemExited is due on it).
fn vm_cycle(
    ledger: &Arc<Ledger>,
    rng: &mut Rng,
    id: String,
    owner: String,
    exited: Arc<AtomicU32>,
    mixed: usize,
) -> bool {
    // Create: wait or callback (no handle exists yet to take an event).
    let style = if rng.below(2) == 0 {
        Style::Wait
    } else {
        Style::Callback
    };
    let token = ledger.token(format!("create {id} ({style:?})"), None);
    let op = operation(ledger, token, style);
    let plain = match api::create_compute_system(&id, &document(&owner), op, None) {
        Ok(plain) => plain,
        Err(hresult) => {
            ledger.fail(format!("create {id}: refused with {hresult:?}"));
            api::close_operation(op);
            return false;
        }
    };
    let mut vm = Vm {
        id,
        owner,
        plain,
        evented: None,
        exited,
    };
    if !finish(ledger, token, op, style) {
        return close_vm(ledger, vm, false);
    }

    // Open a second handle and take operation completions on its event callback.
    let token = ledger.token(format!("open {}", vm.id), None);
    match api::open_compute_system(&vm.id, GENERIC_ALL) {
        Ok(evented) => {
            let l = Arc::clone(ledger);
            let exits = Arc::clone(&vm.exited);
            let registered = api::set_compute_system_callback(
                evented,
                event_options::ENABLE_OPERATION_CALLBACKS,
                0,
                Some(Arc::new(move |event: &Event, _| {
                    on_event(&l, &exits, event)
                })),
            );
            vm.evented = Some(evented);
            ledger.complete(token, registered, None);
        }
        Err(hresult) => {
            ledger.complete(token, hresult, None);
            return close_vm(ledger, vm, false);
        }
    }

    if !system_call(ledger, rng, &vm, "start", api::start_compute_system) {
        return close_vm(ledger, vm, false);
    }
    let mut paused = false;
    let mut outstanding = Vec::new();
    for _ in 0..mixed {
        match rng.below(8) {
            0..=1 => {
                let ok = if paused {
                    system_call(ledger, rng, &vm, "resume", api::resume_compute_system)
                } else {
                    system_call(ledger, rng, &vm, "pause", |s, o, _| {
                        api::pause_compute_system(s, o, None)
                    })
                };
                if !ok {
                    return close_vm(ledger, vm, false);
                }
                paused = !paused;
            }
            2..=3 => {
                // Enumerate (no handle: wait or callback), left in flight.
                let style = if rng.below(2) == 0 {
                    Style::Wait
                } else {
                    Style::Callback
                };
                let query = format!(r#"{{"Owners":["{}"]}}"#, vm.owner);
                let token = ledger.token(
                    format!("enumerate {} ({style:?})", vm.owner),
                    Some(vm.id.clone()),
                );
                let op = operation(ledger, token, style);
                let issued = api::enumerate_compute_systems(Some(&query), op);
                if issued != HResult::S_OK {
                    ledger.fail(format!("enumerate: refused with {issued:?}"));
                    api::close_operation(op);
                } else if style == Style::Wait {
                    finish(ledger, token, op, style);
                } else {
                    outstanding.push(token);
                }
            }
            _ => {
                // Get properties, left in flight unless waited for.
                if let Some((token, true)) =
                    system_request(ledger, rng, &vm, "properties", |s, o| {
                        api::get_compute_system_properties(s, o, None)
                    })
                {
                    outstanding.push(token);
                }
            }
        }
    }
    for token in outstanding {
        ledger.await_token(token);
    }
    system_call(ledger, rng, &vm, "terminate", api::terminate_compute_system);
    close_vm(ledger, vm, true)
}

/// Waits for the VM's SystemExited (after a terminate) and closes both handles, each a
/// counted operation. Returns whether the VM had its evented handle.
fn close_vm(ledger: &Arc<Ledger>, vm: Vm, terminated: bool) -> bool {
    let deadline = Instant::now() + BOUND;
    let evented = vm.evented.is_some();
    if let Some(evented) = vm.evented {
        while terminated && vm.exited.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if terminated && vm.exited.load(Ordering::SeqCst) == 0 {
            ledger.fail(format!("{}: no SystemExited within {BOUND:?}", vm.id));
        }
        let token = ledger.token(format!("close {} (evented)", vm.id), None);
        api::close_compute_system(evented);
        ledger.complete(token, HResult::S_OK, None);
    }
    let token = ledger.token(format!("close {}", vm.id), None);
    api::close_compute_system(vm.plain);
    ledger.complete(token, HResult::S_OK, None);
    evented && terminated
}

/// The evented handle's callback: operation completions and SystemExited.
fn on_event(ledger: &Ledger, exited: &AtomicU32, event: &Event) {
    match event.event_type {
        EventType::OperationCallback => match event.operation {
            Some(op) => {
                let token = api::get_operation_context(op);
                let (result, document) = api::get_operation_result(op);
                if result == HResult::HCS_E_OPERATION_PENDING {
                    ledger.fail(format!(
                        "{}: event callback while still pending",
                        ledger.name(token)
                    ));
                }
                ledger.complete(token, result, document);
                api::close_operation(op);
            }
            None => ledger.fail("an OperationCallback event without its operation".into()),
        },
        EventType::SystemExited => {
            exited.fetch_add(1, Ordering::SeqCst);
        }
        other => ledger.fail(format!("unexpected event {other:?}")),
    }
}

/// A fresh operation for `token`, with a completion callback for that style.
fn operation(ledger: &Arc<Ledger>, token: usize, style: Style) -> HcsOperation {
    match style {
        Style::Callback => {
            let l = Arc::clone(ledger);
            api::create_operation(
                token,
                Some(Arc::new(move |op, context| {
                    let (result, document) = api::get_operation_result(op);
                    l.complete(context, result, document);
                    api::close_operation(op);
                })),
            )
        }
        Style::Wait | Style::Event => api::create_operation(token, None),
    }
}

/// Waits for an issued operation, whatever its style; false if it failed or got stuck.
fn finish(ledger: &Ledger, token: usize, op: HcsOperation, style: Style) -> bool {
    if style == Style::Wait {
        let (result, document) = api::wait_for_operation_result(op, BOUND.as_millis() as u32);
        if result == HResult::HCS_E_OPERATION_TIMEOUT {
            let name = ledger.name(token);
            ledger.fail(format!("stuck: {name}: the wait timed out after {BOUND:?}"));
            api::close_operation(op);
            return false;
        }
        ledger.complete(token, result, document);
        api::close_operation(op);
    } else if !ledger.await_token(token) {
        return false;
    }
    matches!(
        ledger.slots.lock().unwrap()[token].result,
        Some((HResult::S_OK, _))
    )
}

/// Issues a call on the VM in a random style: the plain handle for a wait or a callback,
/// the evented handle for an event. Returns its token (`None` if refused) and whether it
/// is still to be awaited (a wait has already returned).
fn system_request(
    ledger: &Arc<Ledger>,
    rng: &mut Rng,
    vm: &Vm,
    what: &str,
    call: impl FnOnce(HcsSystem, HcsOperation) -> HResult,
) -> Option<(usize, bool)> {
    let (style, handle) = match (rng.below(3), vm.evented) {
        (0, _) => (Style::Wait, vm.plain),
        (1, _) => (Style::Callback, vm.plain),
        (_, Some(evented)) => (Style::Event, evented),
        (_, None) => (Style::Wait, vm.plain),
    };
    let token = ledger.token(format!("{what} {} ({style:?})", vm.id), None);
    let op = operation(ledger, token, style);
    let issued = call(handle, op);
    if issued != HResult::S_OK {
        ledger.fail(format!("{what} {}: refused with {issued:?}", vm.id));
        api::close_operation(op);
        return None;
    }
    if style == Style::Wait {
        finish(ledger, token, op, style);
        Some((token, false))
    } else {
        Some((token, true))
    }
}

/// A call that takes `options` (start, pause, resume, terminate), awaited; true if it
/// succeeded.
fn system_call(
    ledger: &Arc<Ledger>,
    rng: &mut Rng,
    vm: &Vm,
    what: &str,
    call: impl FnOnce(HcsSystem, HcsOperation, Option<&str>) -> HResult,
) -> bool {
    let Some((token, pending)) = system_request(ledger, rng, vm, what, |s, o| call(s, o, None))
    else {
        return false;
    };
    if pending && !ledger.await_token(token) {
        return false;
    }
    matches!(
        ledger.slots.lock().unwrap()[token].result,
        Some((HResult::S_OK, _))
    )
}

/// xorshift64: a reproducible mix per client thread without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
