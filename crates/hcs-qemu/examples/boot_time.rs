//! Measures how long a Linux guest takes from `Vm::start` to its /init printing a marker on
//! the serial port, and to the power-off exit, under hcs-qemu.
//!
//! ```text
//! HCS_GUEST_KERNEL=... HCS_GUEST_INITRD=... cargo run --release -p hcs-qemu --example boot_time -- [runs] [parallel]
//! HCS_QEMU_MACHINE=q35 ...   # compare with q35
//! ```
//!
//! The initramfs must print `HCS-BOOT` on ttyS0 from /init and then power off (busybox:
//! `echo HCS-BOOT > /dev/ttyS0; poweroff -f`).

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hcs_qemu::{Accel, SerialPort, Vm, VmConfig};

fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("set {var}"))
}

fn one(n: usize) -> (Duration, Duration, Duration) {
    let dir = std::env::temp_dir().join(format!("hq-bt-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = VmConfig {
        memory_mb: 512,
        vcpus: std::env::var("VCPUS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
        kernel: env_path("HCS_GUEST_KERNEL"),
        initrd: Some(env_path("HCS_GUEST_INITRD")),
        cmdline: "console=ttyS0 quiet panic=-1".into(),
        serial_ports: vec![SerialPort {
            index: 0,
            socket: Some(dir.join("com1")),
        }],
        disks: Vec::new(),
        vsock: None,
        accel: Accel::Auto,
        on_reset: hcs_qemu::OnReset::Exit,
        runtime_dir: dir.join("run"),
    };
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    let vm = Vm::create(config, Box::new(move |exit| drop(tx.send(exit)))).expect("create");
    let created = t0.elapsed();
    let serial = UnixStream::connect(dir.join("com1")).expect("serial");
    let t1 = Instant::now();
    vm.start().expect("start");
    let mut marker = None;
    for line in BufReader::new(serial).lines() {
        let line = line.unwrap_or_default();
        if line.contains("HCS-BOOT") {
            marker = Some(t1.elapsed());
            break;
        }
    }
    let marker = marker.expect("no HCS-BOOT marker on the serial port");
    let exit = rx.recv_timeout(Duration::from_secs(120)).expect("no exit");
    let ended = t1.elapsed();
    eprintln!("vm {n}: {exit:?}");
    vm.stop();
    let _ = std::fs::remove_dir_all(&dir);
    (created, marker, ended)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let parallel: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let (accel, why) = hcs_qemu::resolve_accel(Accel::Auto);
    println!("accel {accel} ({why}); {runs} runs, {parallel} at a time");
    let mut n = 0;
    while n < runs {
        let batch: Vec<_> = (n..(n + parallel).min(runs))
            .map(|i| std::thread::spawn(move || one(i)))
            .collect();
        for h in batch {
            let (created, marker, ended) = h.join().unwrap();
            println!(
                "create {:>6.1} ms   start->/init marker {:>7.1} ms   start->exit {:>7.1} ms",
                created.as_secs_f64() * 1e3,
                marker.as_secs_f64() * 1e3,
                ended.as_secs_f64() * 1e3
            );
        }
        n += parallel;
    }
}
