//! Behaviour of `Vm` through its public API, on real VMs on /dev/kvm.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hcs_kvm::{Error, GuestImage, Vm, VmConfig, VmExitReason, VmState};

#[test]
fn a_started_vm_holds_exactly_its_vcpu_threads() {
    require_kvm();
    for vcpus in [1, 2, 4] {
        let h = idle(64, vcpus);
        assert_eq!(h.vm.vcpu_count(), vcpus);
        assert!(h.vm.vcpu_thread_ids().is_empty(), "no thread before start");
        assert_eq!(h.vm.state(), VmState::Created);
        h.vm.start().unwrap();
        assert_eq!(h.vm.state(), VmState::Running);
        let tids = h.vm.vcpu_thread_ids();
        assert_eq!(tids.len(), vcpus as usize);
        let mut names: Vec<String> = tids
            .iter()
            .map(|&tid| thread_name(tid).expect("vCPU thread exists"))
            .collect();
        names.sort();
        let mut expected: Vec<String> = (0..vcpus).map(|i| format!("vcpu{i}")).collect();
        expected.sort();
        assert_eq!(names, expected);
        h.vm.stop();
        assert_eq!(h.vm.state(), VmState::Stopped);
        assert!(h.vm.vcpu_thread_ids().is_empty());
        for tid in tids {
            eventually("vCPU thread gone", || thread_name(tid).is_none());
        }
        assert_eq!(h.calls(), 0, "stop does not call the exit handler");
    }
}

#[test]
fn an_idle_vm_uses_almost_no_cpu() {
    require_kvm();
    let h = idle(1024, 2);
    h.vm.start().unwrap();
    let tids = h.vm.vcpu_thread_ids();
    // Let the vCPUs reach HLT.
    std::thread::sleep(Duration::from_millis(100));
    let before: Duration = tids.iter().map(|&t| thread_cpu_time(t)).sum();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let used: Duration = tids.iter().map(|&t| thread_cpu_time(t)).sum::<Duration>() - before;
    let wall = started.elapsed();
    let share = used.as_secs_f64() / wall.as_secs_f64();
    eprintln!("idle VM: vCPU threads used {used:?} of CPU in {wall:?} ({share:.4} of a core)");
    assert!(
        share < 0.05,
        "an idle VM should block in HLT, but its vCPUs used {:.1}% of a core",
        share * 100.0
    );
    assert_eq!(h.vm.state(), VmState::Running);
    h.vm.stop();
}

#[test]
fn pause_freezes_the_guest_and_resume_continues_it() {
    require_kvm();
    let h = code(2, counter_code());
    h.vm.start().unwrap();
    eventually("both counters move", || {
        counter(&h.vm, 0) > 0 && counter(&h.vm, 1) > 0
    });
    h.vm.pause().unwrap();
    assert_eq!(h.vm.state(), VmState::Paused);
    assert_eq!(h.vm.vcpu_thread_ids().len(), 2, "paused vCPU threads stay");
    let frozen = (counter(&h.vm, 0), counter(&h.vm, 1));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!((counter(&h.vm, 0), counter(&h.vm, 1)), frozen);
    h.vm.pause().unwrap(); // pausing a paused VM is a no-op
    h.vm.resume().unwrap();
    assert_eq!(h.vm.state(), VmState::Running);
    eventually("counters move after resume", || {
        counter(&h.vm, 0) > frozen.0 && counter(&h.vm, 1) > frozen.1
    });
    h.vm.resume().unwrap(); // resuming a running VM is a no-op
    h.vm.stop();
    assert_eq!(h.calls(), 0);
}

#[test]
fn pause_and_resume_two_hundred_times() {
    require_kvm();
    let h = code(2, counter_code());
    h.vm.start().unwrap();
    for _ in 0..200 {
        h.vm.pause().unwrap();
        h.vm.resume().unwrap();
    }
    let last = counter(&h.vm, 0);
    eventually("the guest still runs", || counter(&h.vm, 0) > last);
    h.vm.stop();
}

#[test]
fn shutdown_port_powers_off_once() {
    require_kvm();
    // Both vCPUs write the port; the handler still runs once.
    let h = code(2, shutdown_code());
    h.vm.start().unwrap();
    assert_eq!(h.wait_exit(), VmExitReason::PowerOff);
    eventually("vCPU threads end", || h.vm.vcpu_thread_ids().is_empty());
    assert_eq!(h.vm.state(), VmState::Exited(VmExitReason::PowerOff));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.calls(), 1);
    assert!(matches!(h.vm.pause(), Err(Error::InvalidState { .. })));
    assert!(matches!(h.vm.resume(), Err(Error::InvalidState { .. })));
    h.vm.stop();
    assert_eq!(h.vm.state(), VmState::Stopped);
    assert_eq!(h.calls(), 1);
}

#[test]
fn reset_ports_reset() {
    require_kvm();
    for code_bytes in [i8042_reset_code(), cf9_reset_code()] {
        let h = code(1, code_bytes);
        h.vm.start().unwrap();
        assert_eq!(h.wait_exit(), VmExitReason::Reset);
        h.vm.stop();
        assert_eq!(h.calls(), 1);
    }
}

#[test]
fn ud2_with_an_empty_idt_triple_faults() {
    require_kvm();
    let h = code(1, ud2_code());
    h.vm.start().unwrap();
    assert_eq!(h.wait_exit(), VmExitReason::TripleFault);
    h.vm.stop();
}

#[test]
fn one_faulting_vcpu_ends_the_whole_vm() {
    require_kvm();
    // vCPU 0 counts forever, vCPU 1 ... also counts; fault comes from an NMI on vCPU 0.
    let h = code(2, counter_code());
    h.vm.start().unwrap();
    eventually("counters move", || counter(&h.vm, 1) > 0);
    h.vm.inject_nmi().unwrap();
    assert_eq!(h.wait_exit(), VmExitReason::TripleFault);
    eventually("every vCPU thread ends", || {
        h.vm.vcpu_thread_ids().is_empty()
    });
    let c1 = counter(&h.vm, 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(counter(&h.vm, 1), c1, "the other vCPU no longer runs");
    h.vm.stop();
    assert_eq!(h.calls(), 1);
}

#[test]
fn absent_ports_read_all_ones() {
    require_kvm();
    let h = code(1, read_absent_port_code());
    h.vm.start().unwrap();
    assert_eq!(h.wait_exit(), VmExitReason::PowerOff);
    h.vm.stop();
}

#[test]
fn mmio_reads_all_ones_and_ignores_writes() {
    require_kvm();
    let h = code(1, mmio_code());
    h.vm.start().unwrap();
    assert_eq!(h.wait_exit(), VmExitReason::PowerOff);
    h.vm.stop();
}

#[test]
fn nmi_triple_faults_the_idle_firmware() {
    require_kvm();
    for vcpus in [1, 2] {
        let h = idle(64, vcpus);
        h.vm.start().unwrap();
        h.vm.inject_nmi().unwrap();
        assert_eq!(h.wait_exit(), VmExitReason::TripleFault);
        eventually("vCPU threads end", || h.vm.vcpu_thread_ids().is_empty());
        assert_eq!(h.vm.state(), VmState::Exited(VmExitReason::TripleFault));
        assert!(matches!(h.vm.inject_nmi(), Err(Error::InvalidState { .. })));
        h.vm.stop();
        assert_eq!(h.calls(), 1);
    }
}

#[test]
fn nmi_while_paused_lands_on_resume_and_before_start_on_start() {
    require_kvm();
    let h = idle(64, 1);
    h.vm.start().unwrap();
    h.vm.pause().unwrap();
    h.vm.inject_nmi().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.vm.state(), VmState::Paused);
    h.vm.resume().unwrap();
    assert_eq!(h.wait_exit(), VmExitReason::TripleFault);
    h.vm.stop();

    let h = idle(64, 2);
    h.vm.inject_nmi().unwrap();
    h.vm.start().unwrap();
    assert_eq!(h.wait_exit(), VmExitReason::TripleFault);
    h.vm.stop();
}

#[test]
fn stop_in_every_state_and_twice() {
    require_kvm();
    // Created, never started.
    let h = idle(64, 2);
    h.vm.stop();
    assert_eq!(h.vm.state(), VmState::Stopped);
    h.vm.stop();
    assert!(matches!(h.vm.start(), Err(Error::InvalidState { .. })));
    assert!(matches!(
        h.vm.read_guest_u64(0),
        Err(Error::InvalidState { .. })
    ));

    // Paused.
    let h = idle(64, 2);
    h.vm.start().unwrap();
    h.vm.pause().unwrap();
    h.vm.stop();
    h.vm.stop();
    assert_eq!(h.vm.state(), VmState::Stopped);
    assert!(matches!(h.vm.resume(), Err(Error::InvalidState { .. })));
    assert!(matches!(h.vm.pause(), Err(Error::InvalidState { .. })));
    assert!(h.vm.vcpu_thread_ids().is_empty());
    assert_eq!(h.calls(), 0);

    // Running a busy guest.
    let h = code(2, counter_code());
    h.vm.start().unwrap();
    assert!(matches!(h.vm.start(), Err(Error::InvalidState { .. })));
    h.vm.stop();
    assert_eq!(h.calls(), 0);
}

#[test]
fn stop_concurrent_with_pause_and_resume() {
    require_kvm();
    for round in 0..10 {
        let h = Arc::new(code(2, counter_code()));
        h.vm.start().unwrap();
        let toggler = {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                let mut done = 0;
                loop {
                    if h.vm.pause().is_err() || h.vm.resume().is_err() {
                        break done;
                    }
                    done += 1;
                }
            })
        };
        std::thread::sleep(Duration::from_millis(1 + round * 3));
        h.vm.stop();
        toggler.join().expect("toggler thread");
        assert_eq!(h.vm.state(), VmState::Stopped);
        assert!(h.vm.vcpu_thread_ids().is_empty());
        assert_eq!(h.calls(), 0);
    }
}

#[test]
fn stop_concurrent_with_start() {
    require_kvm();
    for _ in 0..10 {
        let h = Arc::new(idle(64, 2));
        let starter = {
            let h = Arc::clone(&h);
            std::thread::spawn(move || h.vm.start())
        };
        h.vm.stop();
        // Either start ran first (and stop then stopped it) or it found the VM stopped.
        let _ = starter.join().expect("starter thread");
        assert_eq!(h.vm.state(), VmState::Stopped);
        assert!(h.vm.vcpu_thread_ids().is_empty());
    }
}

#[test]
fn bad_configurations_are_errors() {
    require_kvm();
    let bad = |memory_mib, vcpus, guest| {
        Vm::create(
            VmConfig {
                memory_mib,
                vcpus,
                guest,
            },
            Box::new(|_| {}),
        )
        .expect_err("configuration should be refused")
    };
    assert!(matches!(
        bad(64, 0, GuestImage::IdleFirmware),
        Error::InvalidConfig(_)
    ));
    assert!(matches!(
        bad(0, 1, GuestImage::IdleFirmware),
        Error::InvalidConfig(_)
    ));
    assert!(matches!(
        bad(64, u32::MAX, GuestImage::IdleFirmware),
        Error::InvalidConfig(_)
    ));
    assert!(matches!(
        bad(u64::MAX >> 20, 1, GuestImage::IdleFirmware),
        Error::InvalidConfig(_)
    ));
    let outside = GuestImage::ProtectedModeCode {
        code: ud2_code(),
        load_address: 64 << 20,
    };
    assert!(matches!(bad(64, 1, outside), Error::InvalidConfig(_)));
    let empty = GuestImage::ProtectedModeCode {
        code: Vec::new(),
        load_address: CODE_ADDRESS,
    };
    assert!(matches!(bad(64, 1, empty), Error::InvalidConfig(_)));
}

#[test]
fn memory_above_the_hole_is_mapped() {
    require_kvm();
    // 4 GiB of RAM: 3 GiB low, 1 GiB above 4 GiB; nothing of it is touched.
    let h = idle(4096, 1);
    assert_eq!(h.vm.memory_size(), 4 << 30);
    assert_eq!(h.vm.read_guest_u64((4 << 30) + 8).unwrap(), 0);
    assert!(h.vm.read_guest_u64(0xC000_0000).is_err(), "MMIO hole");
    assert!(h.vm.read_guest_u64(5 << 30).is_err(), "past the end");
    h.vm.start().unwrap();
    h.vm.stop();
}

#[test]
fn sixteen_vms_at_once() {
    require_kvm();
    let vms: Vec<Harness> = (0..16).map(|_| idle(256, 2)).collect();
    for h in &vms {
        h.vm.start().unwrap();
    }
    for h in &vms {
        assert_eq!(h.vm.state(), VmState::Running);
        assert_eq!(h.vm.vcpu_thread_ids().len(), 2);
    }
    for h in &vms {
        h.vm.pause().unwrap();
    }
    for h in &vms {
        h.vm.resume().unwrap();
    }
    for h in &vms {
        h.vm.stop();
        assert_eq!(h.calls(), 0);
    }
}

#[test]
fn the_exit_handler_may_hand_off_to_a_stopper() {
    require_kvm();
    // The documented pattern: the handler sends the news, another thread stops the VM.
    let h = Arc::new(code(2, shutdown_code()));
    h.vm.start().unwrap();
    let stopper = {
        let h = Arc::clone(&h);
        std::thread::spawn(move || {
            let reason = h.wait_exit();
            h.vm.stop();
            reason
        })
    };
    assert_eq!(stopper.join().unwrap(), VmExitReason::PowerOff);
    assert_eq!(h.vm.state(), VmState::Stopped);
}

#[test]
fn stop_from_the_exit_handler_does_not_deadlock() {
    require_kvm();
    let slot: Arc<std::sync::OnceLock<Arc<Vm>>> = Arc::new(std::sync::OnceLock::new());
    let (tx, rx) = std::sync::mpsc::channel();
    let on_exit = {
        let slot = Arc::clone(&slot);
        Box::new(move |reason: VmExitReason| {
            if let Some(vm) = slot.get() {
                vm.stop(); // against the documentation: must not hang
            }
            let _ = tx.send(reason);
        })
    };
    let vm = Vm::create(
        VmConfig {
            memory_mib: 16,
            vcpus: 2,
            guest: GuestImage::ProtectedModeCode {
                code: shutdown_code(),
                load_address: CODE_ADDRESS,
            },
        },
        on_exit,
    )
    .unwrap();
    let vm = Arc::new(vm);
    slot.set(Arc::clone(&vm)).unwrap();
    vm.start().unwrap();
    assert_eq!(rx.recv_timeout(SOON).unwrap(), VmExitReason::PowerOff);
    assert_eq!(vm.state(), VmState::Stopped);
    vm.stop();
}

#[test]
fn check_kvm_reports_limits() {
    require_kvm();
    let info = hcs_kvm::check_kvm().unwrap();
    assert_eq!(info.api_version, 12);
    assert!(info.max_vcpus >= 1);
    assert!(info.max_memory_mib >= 4096);
}

#[test]
fn the_floor_runs() {
    require_kvm();
    let t = hcs_kvm::floor::bare_kvm_cycle(1024, 2).unwrap();
    assert!(t > Duration::ZERO);
}
