//! Lifecycle benchmark: the bare-ioctl floor against `Vm::create + start + stop` of the
//! idle 1024 MiB, 2-vCPU VM. Prints median and p99 of each and the ratios.
//!
//! `start` returns once the vCPU threads are about to enter `KVM_RUN`, so (b) does not wait
//! for guest code to run, while the floor runs every vCPU to its first HLT. Line (c) is the
//! same VM with a guest whose last vCPU writes the power-off port: create + start + the guest
//! provably running + stop.
//!
//! `cargo bench -p hcs-kvm` (iterations: `HCS_KVM_BENCH_ITERATIONS`, default 200).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use hcs_kvm::{floor, GuestImage, Vm, VmConfig, VmExitReason};

const MEMORY_MIB: u64 = 1024;
const VCPUS: u32 = 2;

fn main() {
    if let Err(e) = hcs_kvm::check_kvm() {
        eprintln!("lifecycle bench needs /dev/kvm: {e}");
        std::process::exit(1);
    }
    let iterations: usize = std::env::var("HCS_KVM_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(200);

    // Warm up both paths (page cache, malloc arenas, the signal handler).
    for _ in 0..10 {
        floor::bare_kvm_cycle(MEMORY_MIB, VCPUS).expect("bare cycle");
        vm_cycle();
        power_off_cycle();
    }

    // Interleave the two so that background load hits both alike.
    let mut bare = Vec::with_capacity(iterations);
    let mut ours = Vec::with_capacity(iterations);
    let mut booted = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        bare.push(floor::bare_kvm_cycle(MEMORY_MIB, VCPUS).expect("bare cycle"));
        ours.push(vm_cycle());
        booted.push(power_off_cycle());
    }

    let (bare_median, bare_p99) = stats(&mut bare);
    let (ours_median, ours_p99) = stats(&mut ours);
    let (booted_median, booted_p99) = stats(&mut booted);
    println!("lifecycle of a {MEMORY_MIB} MiB, {VCPUS}-vCPU idle VM, {iterations} iterations");
    println!(
        "  (a) bare-ioctl floor        median {:>9.3} ms   p99 {:>9.3} ms",
        ms(bare_median),
        ms(bare_p99)
    );
    println!(
        "  (b) Vm create+start+stop    median {:>9.3} ms   p99 {:>9.3} ms",
        ms(ours_median),
        ms(ours_p99)
    );
    println!(
        "  (c) ... + guest powers off  median {:>9.3} ms   p99 {:>9.3} ms",
        ms(booted_median),
        ms(booted_p99)
    );
    println!(
        "  ratio b/a                   median {:>9.2}      p99 {:>9.2}",
        ours_median.as_secs_f64() / bare_median.as_secs_f64(),
        ours_p99.as_secs_f64() / bare_p99.as_secs_f64()
    );
    println!(
        "  ratio c/a                   median {:>9.2}      p99 {:>9.2}",
        booted_median.as_secs_f64() / bare_median.as_secs_f64(),
        booted_p99.as_secs_f64() / bare_p99.as_secs_f64()
    );
}

/// `dec ebx; cmp eax, ebx; jne 1f; mov dx, 0x604; mov ax, 0x2000; out dx, ax;
/// 1: cli; hlt; jmp 1b`: the last vCPU (EAX = index, EBX = count) powers off, the others
/// halt.
const LAST_VCPU_POWERS_OFF: [u8; 19] = [
    0x4b, 0x39, 0xd8, 0x75, 0x0a, 0x66, 0xba, 0x04, 0x06, 0x66, 0xb8, 0x00, 0x20, 0x66, 0xef, 0xfa,
    0xf4, 0xeb, 0xfd,
];

/// One create + start + wait for the guest's power-off + stop.
fn power_off_cycle() -> Duration {
    let start = Instant::now();
    let config = VmConfig {
        memory_mib: MEMORY_MIB,
        vcpus: VCPUS,
        guest: GuestImage::ProtectedModeCode {
            code: LAST_VCPU_POWERS_OFF.to_vec(),
            load_address: 0x1000,
        },
    };
    let (tx, rx) = mpsc::channel();
    let vm = Vm::create(config, Box::new(move |reason| drop(tx.send(reason)))).expect("create");
    vm.start().expect("start");
    let reason = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("guest powers off");
    assert_eq!(reason, VmExitReason::PowerOff);
    vm.stop();
    let elapsed = start.elapsed();
    drop(vm);
    elapsed
}

/// One create + start + stop of the idle VM.
fn vm_cycle() -> Duration {
    let start = Instant::now();
    let config = VmConfig {
        memory_mib: MEMORY_MIB,
        vcpus: VCPUS,
        guest: GuestImage::IdleFirmware,
    };
    let vm = Vm::create(config, Box::new(|_| {})).expect("create");
    vm.start().expect("start");
    vm.stop();
    let elapsed = start.elapsed();
    drop(vm);
    elapsed
}

/// Median and p99 (nearest rank).
fn stats(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[((samples.len() * 99).div_ceil(100)).saturating_sub(1)];
    (median, p99)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
