//! Helpers shared by the integration tests: KVM presence, tiny guests, host-side probes.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hcs_kvm::{GuestImage, Vm, VmConfig, VmExitReason};

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(30);

/// Where test guests load their code.
pub const CODE_ADDRESS: u64 = 0x1000;
/// Where the counter guest keeps vCPU i's counter: `COUNTERS + 8 * i`.
pub const COUNTERS: u64 = 0x2000;

/// These tests boot real VMs: without a usable /dev/kvm they fail, saying why.
pub fn require_kvm() {
    if let Err(e) = hcs_kvm::check_kvm() {
        panic!("these tests boot real VMs and need a usable /dev/kvm: {e}");
    }
}

/// `lea edi, [eax*8 + COUNTERS]; 1: add dword [edi], 1; adc dword [edi+4], 0; jmp 1b`:
/// each vCPU increments its own u64 counter forever.
pub fn counter_code() -> Vec<u8> {
    let mut code = vec![0x8d, 0x3c, 0xc5];
    code.extend_from_slice(&(COUNTERS as u32).to_le_bytes());
    code.extend_from_slice(&[0x83, 0x07, 0x01, 0x83, 0x57, 0x04, 0x00, 0xeb, 0xf7]);
    code
}

/// `mov dx, 0x604; mov ax, 0x2000; out dx, ax; 1: hlt; jmp 1b`.
pub fn shutdown_code() -> Vec<u8> {
    vec![
        0x66, 0xba, 0x04, 0x06, 0x66, 0xb8, 0x00, 0x20, 0x66, 0xef, 0xf4, 0xeb, 0xfd,
    ]
}

/// `mov al, 0xfe; out 0x64, al; 1: hlt; jmp 1b`.
pub fn i8042_reset_code() -> Vec<u8> {
    vec![0xb0, 0xfe, 0xe6, 0x64, 0xf4, 0xeb, 0xfd]
}

/// `mov dx, 0xcf9; mov al, 0x06; out dx, al; 1: hlt; jmp 1b`.
pub fn cf9_reset_code() -> Vec<u8> {
    vec![0x66, 0xba, 0xf9, 0x0c, 0xb0, 0x06, 0xee, 0xf4, 0xeb, 0xfd]
}

/// `ud2`: #UD with an empty IDT, so a triple fault.
pub fn ud2_code() -> Vec<u8> {
    vec![0x0f, 0x0b]
}

/// `in al, 0x71; cmp al, 0xff; jne fail; <shutdown>; fail: ud2`: powers off only if an
/// absent port reads as all ones.
pub fn read_absent_port_code() -> Vec<u8> {
    let shutdown = shutdown_code();
    let mut code = vec![0xe4, 0x71, 0x3c, 0xff, 0x75, shutdown.len() as u8];
    code.extend_from_slice(&shutdown);
    code.extend_from_slice(&ud2_code());
    code
}

/// A VM and what its exit handler saw.
pub struct Harness {
    pub vm: Vm,
    pub exits: Mutex<Receiver<VmExitReason>>,
    pub exit_calls: Arc<AtomicUsize>,
}

impl Harness {
    /// Waits for the (first) exit reason.
    pub fn wait_exit(&self) -> VmExitReason {
        self.exits
            .lock()
            .unwrap()
            .recv_timeout(SOON)
            .expect("the guest did not end itself in time")
    }

    pub fn calls(&self) -> usize {
        self.exit_calls.load(Ordering::SeqCst)
    }
}

pub fn create(memory_mib: u64, vcpus: u32, guest: GuestImage) -> Harness {
    let (tx, exits) = mpsc::channel();
    let exit_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&exit_calls);
    let on_exit = Box::new(move |reason: VmExitReason| {
        calls.fetch_add(1, Ordering::SeqCst);
        let _ = tx.send(reason);
    });
    let config = VmConfig {
        memory_mib,
        vcpus,
        guest,
    };
    let vm = Vm::create(config, on_exit).expect("Vm::create");
    Harness {
        vm,
        exits: Mutex::new(exits),
        exit_calls,
    }
}

pub fn idle(memory_mib: u64, vcpus: u32) -> Harness {
    create(memory_mib, vcpus, GuestImage::IdleFirmware)
}

pub fn code(vcpus: u32, code: Vec<u8>) -> Harness {
    create(
        16,
        vcpus,
        GuestImage::ProtectedModeCode {
            code,
            load_address: CODE_ADDRESS,
        },
    )
}

/// Polls `f` until it is true or `SOON` passes.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + SOON;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads vCPU `index`'s counter of the counter guest.
pub fn counter(vm: &Vm, index: u32) -> u64 {
    vm.read_guest_u64(COUNTERS + 8 * u64::from(index))
        .expect("read counter")
}

/// CPU time a thread of this process has used (scheduler statistics in ns where the kernel
/// has them, else utime + stime in clock ticks).
pub fn thread_cpu_time(tid: libc::pid_t) -> Duration {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")) {
        if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok()) {
            return Duration::from_nanos(ns);
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .expect("read /proc/self/task/<tid>/stat");
    // Fields after the ")" that closes the command name: state is field 3; utime and stime
    // are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// The name of a thread of this process.
pub fn thread_name(tid: libc::pid_t) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// `mov dword [0xC0000000], 0x12345678; mov eax, [0xC0000000]; cmp eax, -1; jne fail;
/// <shutdown>; fail: ud2`: powers off only if an MMIO write is ignored and an MMIO read
/// (in the hole below 4 GiB) returns all ones.
pub fn mmio_code() -> Vec<u8> {
    let shutdown = shutdown_code();
    let mut code = vec![0xc7, 0x05, 0x00, 0x00, 0x00, 0xc0, 0x78, 0x56, 0x34, 0x12];
    code.extend_from_slice(&[0xa1, 0x00, 0x00, 0x00, 0xc0]);
    code.extend_from_slice(&[0x83, 0xf8, 0xff, 0x75, shutdown.len() as u8]);
    code.extend_from_slice(&shutdown);
    code.extend_from_slice(&ud2_code());
    code
}
