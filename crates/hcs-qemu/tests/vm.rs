//! Real VMs under QEMU (TCG): boot to a marker, every way a VM ends, pause/resume, stop,
//! bad files, disks, serial ports and vsock. Each test boots Debian's cloud kernel with its
//! own tiny initramfs (busybox and modules), one boots the project's guest image; none is
//! skipped: a missing kernel, module or program fails the test with what to install.
//!
//! Inputs: `HCS_GUEST_KERNEL` (else `.cache/guest/vmlinuz`), `HCS_GUEST_MODULES` (a
//! `lib/modules/<version>` tree, else `.cache/guest/modules`), `HCS_GUEST_INITRD` (else
//! `.cache/guest/initramfs.img`), `/bin/busybox`, QEMU and `vhost-device-vsock` as the crate
//! finds them. At most as many VMs run at once as the host has CPUs.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hcs_qemu::{Disk, Error, Exit, OnReset, ResolvedAccel, SerialPort, Vm, Vsock};

/// Generous for TCG on a loaded 2-core machine (a boot takes about 1.5 s alone).
const BOOT: Duration = Duration::from_secs(60);

fn assert_cleaned(vm_pid: u32, backend_pid: Option<u32>, runtime_dir: &Path) {
    assert!(!process_alive(vm_pid), "QEMU (pid {vm_pid}) still runs");
    if let Some(pid) = backend_pid {
        assert!(
            !process_alive(pid),
            "vhost-device-vsock (pid {pid}) still runs"
        );
    }
    assert!(
        !runtime_dir.exists(),
        "runtime dir {} left behind",
        runtime_dir.display()
    );
}

#[test]
fn boots_to_marker_and_powers_off() {
    let _slot = vm_slot();
    let dir = scratch("poweroff");
    let initrd = initramfs(
        &dir,
        &[],
        &format!(
            "echo {MARK} hello; read answer < /dev/ttyS0; echo \"{MARK} got $answer\"; poweroff -f"
        ),
    );
    let config = config(&dir, initrd);
    let runtime_dir = config.runtime_dir.clone();
    let (exits, handler) = Exits::new();
    let vm = Vm::create(config, handler).expect("create");
    assert_eq!(vm.accel(), ResolvedAccel::Tcg);
    assert_eq!((vm.memory_mb(), vm.vcpu_count()), (256, 1));
    assert!(runtime_dir.join("qemu.log").exists());
    let serial = Serial::connect(&dir.join("com1"));
    let started = Instant::now();
    vm.start().expect("start");
    serial.wait_for(&format!("{MARK} hello"), BOOT);
    eprintln!("boot to /init marker: {:?}", started.elapsed());
    let cpu = vm.cpu_time();
    serial.write(b"go\n"); // the serial port carries input too
    serial.wait_for(&format!("{MARK} got go"), BOOT);
    assert_eq!(exits.wait(BOOT, "guest ran poweroff -f"), Exit::PowerOff);
    assert!(cpu > Duration::ZERO, "QEMU used no CPU time?");
    assert!(vm.cpu_time() >= cpu, "CPU time went back after the exit");
    // After the guest ended, commands fail with Stopped rather than hang.
    assert!(matches!(vm.pause(), Err(Error::Stopped)));
    let pid = vm.pid();
    vm.stop();
    vm.stop(); // idempotent
    assert_cleaned(pid, None, &runtime_dir);
    assert_eq!(exits.count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn guest_reset_is_reported_not_rebooted() {
    let _slot = vm_slot();
    let dir = scratch("reset");
    let initrd = initramfs(&dir, &[], &format!("echo {MARK} up; reboot -f"));
    let (exits, handler) = Exits::new();
    let config = config(&dir, initrd);
    assert_eq!(config.on_reset, OnReset::Exit);
    let vm = Vm::create(config, handler).expect("create");
    vm.start().expect("start");
    assert_eq!(exits.wait(BOOT, "guest ran reboot -f"), Exit::Reset);
    vm.stop();
    assert_eq!(exits.count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn guest_reset_reboots_in_place_with_on_reset_reboot() {
    let _slot = vm_slot();
    let dir = scratch("reboot");
    // Every boot resets at once: two resets prove the first one rebooted the guest.
    let initrd = initramfs(&dir, &[], &format!("echo {MARK} up; reboot -f"));
    let (exits, handler) = Exits::new();
    let mut config = config(&dir, initrd);
    config.on_reset = OnReset::Reboot;
    let vm = Vm::create(config, handler).expect("create");
    let (tx, rx) = std::sync::mpsc::channel();
    vm.on_guest_reset(Box::new(move || {
        let _ = tx.send(());
    }));
    vm.start().expect("start");
    rx.recv_timeout(BOOT).expect("a reset, reported");
    assert_eq!(exits.count(), 0, "a reset in place is no exit");
    // The guest boots again from the same kernel: it resets again.
    rx.recv_timeout(BOOT)
        .expect("a second reset after the reboot");
    assert_eq!(exits.count(), 0);
    vm.stop();
    assert_eq!(exits.count(), 0, "no exit after stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn guest_panic_is_reported_through_pvpanic() {
    let _slot = vm_slot();
    let dir = scratch("panic");
    let initrd = initramfs(
        &dir,
        PVPANIC,
        &format!(
            "ls /sys/bus/platform/drivers/pvpanic-mmio | grep -q QEMU0001 && echo {MARK} pvpanic bound\n\
             echo c > /proc/sysrq-trigger"
        ),
    );
    let (exits, handler) = Exits::new();
    let vm = Vm::create(config(&dir, initrd), handler).expect("create");
    let serial = Serial::connect(&dir.join("com1"));
    vm.start().expect("start");
    let exit = exits.wait(BOOT, "guest triggered a panic with sysrq c");
    assert_eq!(exit, Exit::GuestPanic, "serial:\n{}", serial.text());
    assert!(serial.text().contains(&format!("{MARK} pvpanic bound")));
    vm.stop();
    assert_eq!(exits.count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pause_stops_the_guest_and_resume_continues_it() {
    let _slot = vm_slot();
    let dir = scratch("pause");
    let initrd = initramfs(
        &dir,
        &[],
        &format!("i=0; while true; do echo \"{MARK} tick $i\"; i=$((i+1)); sleep 0.05; done"),
    );
    let (exits, handler) = Exits::new();
    let vm = Vm::create(config(&dir, initrd), handler).expect("create");
    let serial = Serial::connect(&dir.join("com1"));
    vm.start().expect("start");
    serial.wait_for(&format!("{MARK} tick 3"), BOOT);
    let ticks = || serial.text().matches(&format!("{MARK} tick")).count();
    vm.pause().expect("pause");
    vm.pause().expect("pause twice is fine");
    std::thread::sleep(Duration::from_millis(300)); // lines already in flight
    let paused_at = ticks();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ticks(), paused_at, "the guest kept printing while paused");
    let cpu_paused = vm.cpu_time();
    vm.resume().expect("resume");
    serial.wait_for(&format!("{MARK} tick {}", paused_at + 3), BOOT);
    assert!(vm.cpu_time() >= cpu_paused);
    vm.inject_nmi().expect("inject-nmi on a running guest");
    vm.stop();
    assert_eq!(exits.count(), 0, "stop() must not report an exit");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn qemu_killed_from_outside_is_died_with_stderr_tail() {
    let _slot = vm_slot();
    let dir = scratch("killed");
    let initrd = initramfs(
        &dir,
        &[],
        &format!("echo {MARK} up; while true; do sleep 1; done"),
    );
    let config = config(&dir, initrd);
    let runtime_dir = config.runtime_dir.clone();
    let (exits, handler) = Exits::new();
    let vm = Vm::create(config, handler).expect("create");
    let serial = Serial::connect(&dir.join("com1"));
    vm.start().expect("start");
    serial.wait_for(&format!("{MARK} up"), BOOT);
    // A line in QEMU's stderr that the tail must carry: QEMU logs the signal it dies of
    // only for SIGTERM/SIGINT, so write one line ourselves before the kill.
    let log = runtime_dir.join("qemu.log");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"last words before the kill\n"))
        .expect("append to qemu.log");
    // SAFETY: kill(2) with a pid we own (QEMU, not yet reaped: the VM is running).
    let rc = unsafe { libc::kill(vm.pid() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0);
    let exit = exits.wait(Duration::from_secs(10), "QEMU was killed with SIGKILL");
    let Exit::Died { detail } = exit else {
        panic!("expected Died, got {exit:?}");
    };
    assert!(detail.contains("signal 9"), "{detail}");
    assert!(detail.contains("last words before the kill"), "{detail}");
    assert!(matches!(vm.resume(), Err(Error::Stopped)));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(exits.count(), 1);
    let pid = vm.pid();
    vm.stop();
    assert_cleaned(pid, None, &runtime_dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stop_during_boot_is_prompt_and_leaves_nothing() {
    let _slot = vm_slot();
    let dir = scratch("stopboot");
    let initrd = initramfs(&dir, &[], &format!("echo {MARK} up; poweroff -f"));
    let mut config = config(&dir, initrd);
    config.vsock = Some(Vsock {
        guest_cid: 7,
        uds_path: dir.join("vsock"),
    });
    let runtime_dir = config.runtime_dir.clone();
    let (exits, handler) = Exits::new();
    let vm = Arc::new(Vm::create(config, handler).expect("create"));
    let (pid, backend) = (vm.pid(), vm.backend_pid());
    assert!(process_alive(pid));
    assert!(backend.is_some_and(process_alive));
    vm.start().expect("start");
    std::thread::sleep(Duration::from_millis(300)); // the kernel is decompressing / booting
                                                    // Callers hammering the VM while it is stopped return promptly.
    let hammers: Vec<_> = (0..2)
        .map(|_| {
            let vm = vm.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                loop {
                    let r = vm.pause().and_then(|()| vm.resume());
                    if matches!(r, Err(Error::Stopped)) {
                        return start.elapsed();
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(20),
                        "never saw Stopped"
                    );
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    vm.stop();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    for h in hammers {
        h.join().expect("hammer thread");
    }
    assert_cleaned(pid, backend, &runtime_dir);
    assert!(!dir.join("vsock").exists(), "vsock uds_path left behind");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(exits.count(), 0, "stop() must not report an exit");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_kernel_and_unreadable_initrd_are_clear_errors() {
    let dir = scratch("badfiles");
    let initrd = initramfs(&dir, &[], "poweroff -f");
    // Missing kernel.
    let mut cfg = config(&dir, initrd.clone());
    cfg.kernel = dir.join("no-such-vmlinuz");
    let runtime_dir = cfg.runtime_dir.clone();
    let err = Vm::create(cfg, Exits::new().1).expect_err("missing kernel");
    let msg = err.to_string();
    assert!(matches!(err, Error::File { .. }), "{err:?}");
    assert!(
        msg.contains("kernel") && msg.contains("no-such-vmlinuz"),
        "{msg}"
    );
    assert!(!runtime_dir.exists());
    // An initrd that is not a readable file (a directory; as non-root also mode 000).
    let mut cfg = config(&dir, dir.clone());
    cfg.initrd = Some(dir.join("run-not"));
    std::fs::create_dir_all(dir.join("run-not")).unwrap();
    let err = Vm::create(cfg, Exits::new().1).expect_err("initrd is a directory");
    assert!(err.to_string().contains("initrd"), "{err}");
    assert!(err.to_string().contains("run-not"), "{err}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let locked = dir.join("locked.img");
        std::fs::write(&locked, b"x").unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let mut cfg = config(&dir, locked);
        cfg.runtime_dir = runtime_dir.clone();
        let err = Vm::create(cfg, Exits::new().1).expect_err("unreadable initrd");
        assert!(err.to_string().contains("ermission denied"), "{err}");
    }
    assert!(!runtime_dir.exists());
    // QEMU itself refusing the configuration: the error carries its stderr.
    let mut cfg = config(&dir, initrd);
    cfg.vcpus = 1000;
    let _slot = vm_slot();
    let err = Vm::create(cfg, Exits::new().1).expect_err("1000 vCPUs");
    assert!(matches!(err, Error::StartFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("CPUs"), "{err}");
    eprintln!("QEMU refusing 1000 vCPUs: {err}");
    assert!(
        !runtime_dir.exists(),
        "runtime dir left after a failed start"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn read_only_disk_is_read_only_in_the_guest() {
    let _slot = vm_slot();
    let dir = scratch("disks");
    let ro = dir.join("ro.img");
    let rw = dir.join("rw.img");
    for img in [&ro, &rw] {
        let f = std::fs::File::create(img).unwrap();
        f.set_len(16 << 20).unwrap(); // sparse
    }
    let modules: Vec<&str> = [VIRTIO, BLK].concat();
    let initrd = initramfs(
        &dir,
        &modules,
        &format!(
            "echo \"{MARK} ro=$(blockdev --getro /dev/vda) rw=$(blockdev --getro /dev/vdb)\"\n\
             if echo x | dd of=/dev/vda bs=512 count=1 conv=fsync 2>/tmp/err; then echo {MARK} vda-written; \
             else echo \"{MARK} vda-refused $(cat /tmp/err)\"; fi\n\
             echo hcs-disk-data | dd of=/dev/vdb bs=512 conv=sync,fsync 2>/dev/null && echo {MARK} vdb-written\n\
             poweroff -f"
        ),
    );
    let mut cfg = config(&dir, initrd);
    cfg.disks = vec![
        Disk {
            path: ro.clone(),
            read_only: true,
        },
        Disk {
            path: rw.clone(),
            read_only: false,
        },
    ];
    let (exits, handler) = Exits::new();
    let vm = Vm::create(cfg, handler).expect("create");
    let serial = Serial::connect(&dir.join("com1"));
    vm.start().expect("start");
    assert_eq!(exits.wait(BOOT, "guest wrote its disks"), Exit::PowerOff);
    let out = serial.text();
    assert!(out.contains(&format!("{MARK} ro=1 rw=0")), "{out}");
    assert!(out.contains(&format!("{MARK} vda-refused")), "{out}");
    assert!(out.contains(&format!("{MARK} vdb-written")), "{out}");
    let data = std::fs::read(&rw).unwrap();
    assert!(
        data.starts_with(b"hcs-disk-data\n"),
        "rw disk holds {:?}",
        &data[..16]
    );
    assert!(std::fs::read(&ro).unwrap().iter().all(|&b| b == 0));
    vm.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serial_port_takes_a_client_that_comes_and_goes() {
    let _slot = vm_slot();
    let dir = scratch("serial");
    let initrd = initramfs(
        &dir,
        &[],
        &format!(
            "echo {MARK} console-up\n\
             i=0; while true; do echo \"{MARK} com2 $i\" > /dev/ttyS1; i=$((i+1)); sleep 0.05; done"
        ),
    );
    let mut cfg = config(&dir, initrd);
    cfg.serial_ports.push(SerialPort {
        index: 1,
        socket: Some(dir.join("com2")),
    });
    cfg.serial_ports.push(SerialPort {
        index: 2,
        socket: None,
    });
    let (exits, handler) = Exits::new();
    let vm = Vm::create(cfg, handler).expect("create");
    let console = Serial::connect(&dir.join("com1"));
    vm.start().expect("start");
    console.wait_for(&format!("{MARK} console-up"), BOOT);
    // Attach, read, detach; the guest keeps running with nobody attached.
    let first = Serial::connect(&dir.join("com2"));
    first.wait_for(&format!("{MARK} com2"), BOOT);
    first.disconnect();
    std::thread::sleep(Duration::from_millis(500));
    let second = Serial::connect(&dir.join("com2"));
    let before = first.text().matches(MARK).count();
    second.wait_for(&format!("{MARK} com2"), BOOT);
    // The second client sees later lines than the first one did.
    let last_first: u32 = last_counter(&first.text());
    std::thread::sleep(Duration::from_millis(300));
    let first_second: u32 = first_counter(&second.text());
    assert!(
        first_second > last_first,
        "second client saw {first_second}, first saw up to {last_first} ({before} lines)"
    );
    assert_eq!(exits.count(), 0);
    vm.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

fn counters(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{MARK} com2 ")))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

fn last_counter(text: &str) -> u32 {
    *counters(text).last().expect("no counter lines")
}

fn first_counter(text: &str) -> u32 {
    *counters(text).first().expect("no counter lines")
}

#[test]
fn vsock_device_and_backend_are_there() {
    let _slot = vm_slot();
    let dir = scratch("vsock");
    let modules: Vec<&str> = [VIRTIO, VSOCK].concat();
    let initrd = initramfs(
        &dir,
        &modules,
        &format!(
            "ls /dev/vsock > /dev/null && echo {MARK} vsock-present\n\
             echo {MARK} cid=$(cat /sys/bus/virtio/devices/*/features > /dev/null; echo ok)\n\
             poweroff -f"
        ),
    );
    let mut cfg = config(&dir, initrd);
    let uds = dir.join("vsock");
    cfg.vsock = Some(Vsock {
        guest_cid: 42,
        uds_path: uds.clone(),
    });
    let runtime_dir = cfg.runtime_dir.clone();
    let (exits, handler) = Exits::new();
    let vm = Vm::create(cfg, handler).expect("create");
    let backend = vm.backend_pid().expect("a vsock VM has a backend");
    assert!(process_alive(backend));
    let serial = Serial::connect(&dir.join("com1"));
    vm.start().expect("start");
    assert_eq!(exits.wait(BOOT, "guest checked /dev/vsock"), Exit::PowerOff);
    assert!(
        serial.text().contains(&format!("{MARK} vsock-present")),
        "{}",
        serial.text()
    );
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = std::fs::symlink_metadata(&uds)
            .expect("backend made uds_path")
            .file_type();
        assert!(kind.is_socket());
    }
    let pid = vm.pid();
    vm.stop();
    assert_cleaned(pid, Some(backend), &runtime_dir);
    assert!(!uds.exists(), "uds_path left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The project's guest (512 MB) with a vsock device, and the host's non-blocking listener
/// for its agent's control port (vhost-device-vsock's `<uds_path>_<port>`).
fn project_guest_with_vsock(dir: &Path) -> (hcs_qemu::VmConfig, std::os::unix::net::UnixListener) {
    let mut cfg = config(dir, project_initrd());
    let uds = dir.join("vsock");
    cfg.vsock = Some(Vsock {
        guest_cid: 3,
        uds_path: uds.clone(),
    });
    cfg.memory_mb = 512;
    let port = hcs_guest_protocol::CONTROL_PORT;
    let listener =
        std::os::unix::net::UnixListener::bind(format!("{}_{port}", uds.display())).unwrap();
    listener.set_nonblocking(true).unwrap();
    (cfg, listener)
}

/// The project's guest image: its agent (/init) loads the vsock modules and connects to the
/// host (CID 2) on the control port, which vhost-device-vsock turns into a connection to
/// `<uds_path>_<port>`, where it says Hello first.
#[test]
fn project_guest_reaches_the_host_over_vsock() {
    let _slot = vm_slot();
    let dir = scratch("agent");
    let (cfg, listener) = project_guest_with_vsock(&dir);
    let (exits, handler) = Exits::new();
    let vm = Vm::create(cfg, handler).expect("create");
    let serial = Serial::connect(&dir.join("com1"));
    vm.start().expect("start");
    let deadline = Instant::now() + BOOT;
    let mut conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!(
                "the guest agent never connected to vsock port {} ({e}); console:\n{}",
                hcs_guest_protocol::CONTROL_PORT,
                serial.text()
            ),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(BOOT)).unwrap();
    let hello: hcs_guest_protocol::Hello =
        hcs_guest_protocol::read_frame(&mut conn).expect("the agent's Hello");
    assert!(hello.kernel.contains("cloud-amd64"), "{hello:?}");
    assert_eq!(exits.count(), 0);
    vm.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn power_button_reaches_the_guest() {
    let _slot = vm_slot();
    let dir = scratch("button");
    let initrd = initramfs(
        &dir,
        BUTTON,
        &format!(
            "ev=$(grep -A5 'Power Button' /proc/bus/input/devices | grep -o 'event[0-9]*' | head -n 1)\n\
             exec 3</dev/input/$ev\n\
             echo \"{MARK} waiting on $ev\"\n\
             dd bs=24 count=1 of=/dev/null <&3 2>/dev/null\n\
             echo {MARK} button; poweroff -f"
        ),
    );
    let (exits, handler) = Exits::new();
    let vm = Vm::create(config(&dir, initrd), handler).expect("create");
    let serial = Serial::connect(&dir.join("com1"));
    vm.start().expect("start");
    serial.wait_for(&format!("{MARK} waiting on event"), BOOT);
    vm.power_button().expect("power button");
    assert_eq!(
        exits.wait(BOOT, "guest waited for the power button"),
        Exit::PowerOff
    );
    assert!(serial.text().contains(&format!("{MARK} button")));
    vm.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The environment variable that turns [`owner_process_helper`] into the VM owner of
/// [`qemu_dies_with_its_owner`].
const OWNER_DIR_ENV: &str = "HCS_QEMU_TEST_OWNER_DIR";

/// Not a check of its own: run by [`qemu_dies_with_its_owner`] in a child process (with
/// `HCS_QEMU_TEST_OWNER_DIR` set), it creates a VM, prints the pids and waits to be killed.
/// Without the variable it has nothing to do.
#[test]
fn owner_process_helper() {
    let Some(dir) = std::env::var_os(OWNER_DIR_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let initrd = initramfs(&dir, &[], "poweroff -f");
    let mut cfg = config(&dir, initrd);
    cfg.vsock = Some(Vsock {
        guest_cid: 9,
        uds_path: dir.join("vsock"),
    });
    let vm = Vm::create(cfg, Exits::new().1).expect("create");
    println!(
        "{MARK}-OWNER qemu={} backend={}",
        vm.pid(),
        vm.backend_pid().unwrap_or(0)
    );
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn qemu_dies_with_its_owner() {
    use std::io::BufRead;
    let dir = scratch("owner");
    let mut owner = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "owner_process_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(OWNER_DIR_ENV, &dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the owner process");
    let stdout = owner.stdout.take().unwrap();
    let line = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains(&format!("{MARK}-OWNER")))
        .expect("the owner process printed no pids (did creating its VM fail?)");
    let pid = |key: &str| -> u32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    let (qemu, backend) = (pid("qemu="), pid("backend="));
    assert!(process_alive(qemu) && process_alive(backend));
    owner.kill().unwrap();
    owner.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while (process_alive(qemu) || process_alive(backend)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!process_alive(qemu), "QEMU {qemu} outlived its owner");
    assert!(
        !process_alive(backend),
        "vhost-device-vsock {backend} outlived its owner"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `OnReset::Reboot`, the project's guest that reboots comes back over the same vsock
/// backend: its agent connects again after the reset and says Hello.
#[test]
fn project_guest_reconnects_over_vsock_after_a_reboot_in_place() {
    use hcs_guest_protocol as proto;
    let _slot = vm_slot();
    let dir = scratch("agent-reboot");
    let (mut cfg, listener) = project_guest_with_vsock(&dir);
    cfg.vcpus = 2;
    cfg.on_reset = OnReset::Reboot;
    let (exits, handler) = Exits::new();
    let vm = Vm::create(cfg, handler).expect("create");
    let (tx, resets) = std::sync::mpsc::channel();
    vm.on_guest_reset(Box::new(move || {
        let _ = tx.send(());
    }));
    let serial = Serial::connect(&dir.join("com1"));
    vm.start().expect("start");
    let accept = |what: &str| {
        let deadline = Instant::now() + BOOT;
        let mut conn = loop {
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!(
                    "the guest agent never connected {what} ({e}); console:\n{}",
                    serial.text()
                ),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(BOOT)).unwrap();
        let hello: proto::Hello = proto::read_frame(&mut conn).expect("the agent's Hello");
        assert!(hello.kernel.contains("cloud-amd64"), "{hello:?}");
        conn
    };
    let mut conn = accept("at boot");
    proto::write_frame(&mut conn, &proto::HostMessage::Welcome { version: 1 }).unwrap();
    proto::write_frame(
        &mut conn,
        &proto::HostMessage::Request {
            id: 1,
            body: proto::Request::Shutdown {
                reboot: true,
                grace_ms: 0,
            },
        },
    )
    .unwrap();
    resets.recv_timeout(BOOT).expect("the guest resets");
    let mut again = accept("after the reboot");
    // Only now may the old boot's connection be closed: a close during the reset leaves
    // the backend unable to take the new boot's connections.
    let _ = conn.shutdown(std::net::Shutdown::Both);
    proto::write_frame(&mut again, &proto::HostMessage::Welcome { version: 1 }).unwrap();
    proto::write_frame(
        &mut again,
        &proto::HostMessage::Request {
            id: 1,
            body: proto::Request::ListProcesses,
        },
    )
    .unwrap();
    let answer: proto::GuestMessage = proto::read_frame(&mut again).expect("an answer");
    assert!(
        matches!(answer, proto::GuestMessage::Response(_)),
        "{answer:?}; console:\n{}",
        serial.text()
    );
    assert_eq!(exits.count(), 0);
    vm.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
