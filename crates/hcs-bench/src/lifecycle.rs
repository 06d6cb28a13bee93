//! Part 1, the empty-VM lifecycle: create + start + terminate of `examples/empty-vm.json`
//! (1024 MB, 2 vCPUs) through the flat HCS API, beside, in the same run and interleaved:
//!
//! - the floor, [`hcs_kvm::floor::bare_kvm_cycle`]: raw ioctls, no threads, no irqchip;
//!   each vCPU runs to its first HLT on the calling thread;
//! - the engine alone, [`hcs_kvm::Vm`] create + start + stop (what `hcs-host` adds on top
//!   is the difference to ours);
//! - the QEMU microvm peer ([`crate::qemu`]), fewer samples since each costs ~30 ms+.
//!
//! The order of the three in-process cycles rotates every iteration, and the QEMU samples
//! are spread evenly over the run, so background load hits every line alike.

use std::time::{Duration, Instant};

use hcs_kvm::{floor, GuestImage, Vm, VmConfig};

use crate::cli::{Options, Part};
use crate::qemu::{QemuPeer, QemuSamples};
use crate::stats::{ratio_line, table, Goal, Samples, Unit};
use crate::system::{flat_cycle, unique_id, EMPTY_VM_JSON};
use crate::Result;

const MEMORY_MB: u64 = 1024;
const VCPUS: u32 = 2;

/// The samples of one lifecycle run.
#[derive(Debug, Default)]
pub struct LifecycleResults {
    /// Ours: the flat HCS API on the embedded host and the built-in VMM.
    pub ours: Samples,
    /// `hcs_kvm::Vm` create + start + stop.
    pub engine: Samples,
    /// The bare-ioctl floor.
    pub floor: Samples,
    /// The QEMU peer, if it could run.
    pub qemu: Option<QemuSamples>,
    /// Why the QEMU peer did not run, if it did not.
    pub qemu_note: Option<String>,
    /// The QEMU command line and version, if it ran.
    pub qemu_command: Option<(String, String)>,
}

/// Runs part 1 and prints its table and ratios.
pub fn run(options: &Options) -> Result<LifecycleResults> {
    hcs_kvm::check_kvm().map_err(|e| format!("the lifecycle part needs /dev/kvm: {e}"))?;
    println!(
        "## 1. Empty VM lifecycle ({MEMORY_MB} MB, {VCPUS} vCPUs): create + start + terminate"
    );
    println!("reproduce: {}", options.reproduce(Part::Lifecycle));

    let mut results = LifecycleResults::default();
    let mut peer = None;
    if options.qemu_iterations > 0 {
        match QemuPeer::probe("kvm") {
            Ok(p) => {
                results.qemu_command = Some((p.command_line(), p.version()));
                results.qemu = Some(QemuSamples::default());
                peer = Some(p);
            }
            Err(e) => results.qemu_note = Some(format!("QEMU peer skipped: {e}")),
        }
    }

    // Warm up every path: page cache, allocator arenas, the client's threads, the kick
    // signal handler.
    for i in 0..options.warmup {
        floor::bare_kvm_cycle(MEMORY_MB, VCPUS).map_err(|e| format!("floor: {e}"))?;
        engine_cycle()?;
        flat_cycle(&unique_id("lc-warm", 0, i), EMPTY_VM_JSON)?;
    }

    let n = options.iterations;
    let q = options.qemu_iterations;
    results.ours = Samples::with_capacity(n);
    results.engine = Samples::with_capacity(n);
    results.floor = Samples::with_capacity(n);
    for i in 0..n {
        for step in 0..3 {
            match (i + step) % 3 {
                0 => results.floor.push(
                    floor::bare_kvm_cycle(MEMORY_MB, VCPUS).map_err(|e| format!("floor: {e}"))?,
                ),
                1 => results.engine.push(engine_cycle()?),
                _ => results
                    .ours
                    .push(flat_cycle(&unique_id("lc", 0, i), EMPTY_VM_JSON)?),
            }
        }
        // q samples spread evenly over n iterations.
        if let (Some(p), Some(samples)) = (peer.as_mut(), results.qemu.as_mut()) {
            if (i * q) / n != ((i + 1) * q) / n {
                samples.push(p.sample()?);
            }
        }
    }
    print(&results);
    Ok(results)
}

/// `hcs_kvm::Vm` create + start + stop of the idle 1024 MiB, 2-vCPU VM (what
/// `benches/lifecycle.rs` of hcs-kvm times), including the drop.
fn engine_cycle() -> Result<Duration> {
    let start = Instant::now();
    let config = VmConfig {
        memory_mib: MEMORY_MB,
        vcpus: VCPUS,
        guest: GuestImage::IdleFirmware,
    };
    let vm = Vm::create(config, Box::new(|_| {})).map_err(|e| format!("Vm::create: {e}"))?;
    vm.start().map_err(|e| format!("Vm::start: {e}"))?;
    vm.stop();
    drop(vm);
    Ok(start.elapsed())
}

fn print(results: &LifecycleResults) {
    let ours = results.ours.summary();
    let engine = results.engine.summary();
    let floor = results.floor.summary();
    let qemu = results.qemu.as_ref();
    let rows = [
        ("ours: hcs::api create+start+terminate", ours),
        ("engine: hcs_kvm::Vm create+start+stop", engine),
        ("floor: bare KVM ioctls", floor),
        (
            "peer: QEMU microvm launch..exit",
            qemu.and_then(|q| q.total.summary()),
        ),
        (
            "  QEMU launch -> QMP up",
            qemu.and_then(|q| q.launch_to_qmp.summary()),
        ),
        (
            "  QEMU QMP -> running",
            qemu.and_then(|q| q.qmp_to_running.summary()),
        ),
        (
            "  QEMU quit -> exited",
            qemu.and_then(|q| q.quit_to_exit.summary()),
        ),
    ];
    println!();
    print!("{}", table(Unit::Millis, &rows));
    if let Some((command, version)) = &results.qemu_command {
        println!("QEMU peer: {version}: {command}");
    }
    if let Some(note) = &results.qemu_note {
        println!("{note}");
    }
    println!();
    println!("ratios (goal judged on the median):");
    if let (Some(ours), Some(floor)) = (ours, floor) {
        println!(
            "{}",
            ratio_line("ours / floor", &ours, &floor, Goal::AtMost(1.5))
        );
    }
    if let (Some(qemu), Some(ours)) = (qemu.and_then(|q| q.total.summary()), ours) {
        println!(
            "{}",
            ratio_line("QEMU / ours", &qemu, &ours, Goal::AtLeast(20.0))
        );
    }
    if let (Some(engine), Some(floor)) = (engine, floor) {
        println!(
            "{}",
            ratio_line("engine / floor", &engine, &floor, Goal::None)
        );
    }
    if let (Some(ours), Some(engine)) = (ours, engine) {
        println!(
            "{}",
            ratio_line("ours / engine (HCS layers)", &ours, &engine, Goal::None)
        );
    }
    println!();
}
