//! Part `linux`: Linux guests under QEMU with the `hcs-guest` agent, against bare peers.
//!
//! ```text
//!  figure                       ours                                  peer
//!  boot to agent-ready          create + start (returns on Hello)     QEMU + vhost-device-vsock
//!                                                                     by hand, same command line,
//!                                                                     until Hello is read
//!  process round trip           HcsCreateProcess /bin/true -> exit    -
//!  stdout throughput            head -c 64 MiB /dev/zero in guest     the same through a host pipe
//!  host memory per VM           PSS of QEMU + vhost-device-vsock      MemTotal / PSS
//! ```
//!
//! The bare peer's command lines are read from `/proc/<pid>/cmdline` of the VM our engine
//! started, minus what only the engine needs (`-S` and the QMP monitor on fd 3), with the
//! vhost-user socket moved to a directory of the peer's own. Needs the guest images that
//! `scripts/setup` builds (`.cache/guest/vmlinuz`, `.cache/guest/initramfs.img`).

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hcs::ComputeSystem;

use crate::cli::Options;
use crate::stats::{interleaved, table, Samples, Summary, Unit};
use crate::{BenchError, Result};

/// `/bin/true` round trips.
const ROUND_TRIPS: usize = 100;
/// Bytes of stdout streamed.
const STREAM_BYTES: u64 = 64 << 20;
/// The agent's control port (`hcs_guest_protocol::CONTROL_PORT`).
const CONTROL_PORT: u32 = 0x4000_0000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn image(var: &str, name: &str) -> Result<String> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/guest").join(name));
    if !path.is_file() {
        return Err(BenchError(format!(
            "{} is missing: run scripts/setup",
            path.display()
        )));
    }
    Ok(path
        .canonicalize()
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned())
}

/// The Linux VM document of the tests (crates/hcs/tests/linux/mod.rs).
fn document(memory_mb: u64) -> Result<String> {
    let kernel =
        serde_json::to_string(&image("HCS_GUEST_KERNEL", "vmlinuz")?).map_err(|e| e.to_string())?;
    let initrd = serde_json::to_string(&image("HCS_GUEST_INITRD", "initramfs.img")?)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        r#"{{
    "SchemaVersion": {{ "Major": 2, "Minor": 2 }},
    "Owner": "hcs-bench",
    "VirtualMachine": {{
        "Chipset": {{ "LinuxKernelDirect": {{ "KernelFilePath": {kernel}, "InitRdPath": {initrd},
                                              "KernelCmdLine": "console=ttyS0 quiet" }} }},
        "ComputeTopology": {{ "Memory": {{ "SizeInMB": {memory_mb} }}, "Processor": {{ "Count": 2 }} }},
        "Devices": {{ }},
        "GuestConnection": {{}},
        "StopOnReset": true
    }},
    "ShouldTerminateOnLastHandleClosed": true
}}"#
    ))
}

static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn next_id() -> String {
    let n = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("bench-{}-linux-{n}", std::process::id())
}

/// Creates and starts a Linux VM: (system, id, create + start time).
fn boot(memory_mb: u64) -> Result<(ComputeSystem, String, Duration)> {
    let id = next_id();
    let doc = document(memory_mb)?;
    let started = Instant::now();
    let system = ComputeSystem::create(&id, &doc)
        .wait()
        .map_err(|e| format!("create {id}: {e}"))?;
    system
        .start()
        .wait()
        .map_err(|e| format!("start {id}: {e}"))?;
    Ok((system, id, started.elapsed()))
}

/// [`boot`], tried up to three times (a loaded machine can exceed the agent's 60 s).
fn boot_retry(memory_mb: u64) -> Result<(ComputeSystem, String, Duration)> {
    let mut last = None;
    for _ in 0..3 {
        match boot(memory_mb) {
            Ok(booted) => return Ok(booted),
            Err(e) => {
                println!("boot failed, retrying: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| "no boot".into()))
}

fn stop(system: ComputeSystem) {
    let _ = system.terminate().wait();
    drop(system);
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// QEMU's and the backend's pids and argv of the VM `id`.
struct Processes {
    qemu: (u32, Vec<String>),
    backend: (u32, Vec<String>),
}

fn processes(id: &str) -> Result<Processes> {
    let qemu = hcs_test_support::pids_with_cmdline(&["qemu-system", id])
        .into_iter()
        .next()
        .ok_or_else(|| BenchError(format!("no QEMU process for {id}")))?;
    let qemu_args = cmdline(qemu);
    let socket = qemu_args
        .iter()
        .find_map(|a| a.strip_prefix("socket,id=vsock,path="))
        .ok_or("no vhost-user-vsock chardev in QEMU's command line")?
        .replace(",,", ",");
    let backend = hcs_test_support::pids_with_cmdline(&["vhost-device-vsock", &socket])
        .into_iter()
        .next()
        .ok_or("no vhost-device-vsock process")?;
    Ok(Processes {
        qemu: (qemu, qemu_args),
        backend: (backend, cmdline(backend)),
    })
}

/// `Pss:` of `/proc/<pid>/smaps_rollup`, KiB.
fn pss_kib(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| format!("/proc/{pid}/smaps_rollup: {e}"))?;
    kib_field(&text, "Pss:").ok_or_else(|| BenchError(format!("no Pss for {pid}")))
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The bare peer: QEMU's and the backend's argv with our paths in a directory of its own.
struct Bare {
    qemu: Vec<String>,
    backend: Vec<String>,
    dir: PathBuf,
    uds: PathBuf,
}

impl Bare {
    fn from(p: &Processes) -> Result<Bare> {
        let dir = std::env::temp_dir().join(format!("hcs-bench-bare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("vhost.sock");
        let uds = dir.join("vsock.sock");
        let mut qemu = Vec::new();
        let mut args = p.qemu.1.iter().peekable();
        while let Some(a) = args.next() {
            match a.as_str() {
                "-S" => {}
                "-mon" => {
                    args.next();
                }
                "-chardev" if args.peek().is_some_and(|v| v.starts_with("socket,id=qmp,")) => {
                    args.next();
                }
                _ if a.starts_with("socket,id=vsock,path=") => qemu.push(format!(
                    "socket,id=vsock,path={}",
                    socket.display().to_string().replace(',', ",,")
                )),
                _ => qemu.push(a.clone()),
            }
        }
        let mut backend = Vec::new();
        let mut args = p.backend.1.iter();
        while let Some(a) = args.next() {
            backend.push(a.clone());
            match a.as_str() {
                "--socket" => {
                    args.next();
                    backend.push(socket.display().to_string());
                }
                "--uds-path" => {
                    args.next();
                    backend.push(uds.display().to_string());
                }
                _ => {}
            }
        }
        Ok(Bare {
            qemu,
            backend,
            dir,
            uds,
        })
    }

    fn spawn(argv: &[String]) -> Result<Child> {
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BenchError(format!("{}: {e}", argv[0])))
    }

    /// One boot: backend, listener, QEMU, until the Hello frame is read.
    fn sample(&self) -> Result<Duration> {
        let socket = self.dir.join("vhost.sock");
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(&self.uds);
        let mut port = self.uds.as_os_str().to_owned();
        port.push(format!("_{CONTROL_PORT}"));
        let port = PathBuf::from(port);
        let _ = std::fs::remove_file(&port);
        let started = Instant::now();
        let listener = UnixListener::bind(&port).map_err(|e| format!("bind: {e}"))?;
        let mut backend = Bare::spawn(&self.backend)?;
        let outcome = (|| {
            wait_for(&socket, &mut backend)?;
            let mut qemu = Bare::spawn(&self.qemu)?;
            let outcome = read_hello(&listener, &mut qemu);
            let elapsed = started.elapsed();
            let _ = qemu.kill();
            let _ = qemu.wait();
            outcome.map(|()| elapsed)
        })();
        let _ = backend.kill();
        let _ = backend.wait();
        let _ = std::fs::remove_file(&port);
        outcome
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the backend's socket exists (it binds then listens at once).
fn wait_for(socket: &Path, backend: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if Instant::now() > deadline || backend.try_wait().ok().flatten().is_some() {
            return Err("vhost-device-vsock did not listen".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // Bound is not yet listening: give it the same sliver our engine's poll gives.
    std::thread::sleep(Duration::from_millis(1));
    Ok(())
}

fn read_hello(listener: &UnixListener, qemu: &mut Child) -> Result<()> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline || qemu.try_wait().ok().flatten().is_some() {
                    return Err("no guest connection".into());
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            Err(e) => return Err(BenchError(format!("accept: {e}"))),
        }
    };
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .map_err(|e| format!("hello length: {e}"))?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("hello: {e}"))?;
    serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| format!("hello: {e}"))?;
    Ok(())
}

/// Runs `args` to its end, reading its stdout: (bytes, exit code).
fn run_process(system: &ComputeSystem, args: &[&str], stdout: bool) -> Result<(Vec<u8>, i32)> {
    let params = serde_json::json!({ "CommandArgs": args, "CreateStdOutPipe": stdout });
    let mut process = system
        .create_process(&params.to_string())
        .map_err(|e| format!("create {args:?}: {e}"))?;
    let mut out = Vec::new();
    if stdout {
        let mut pipe = process.take_stdout().ok_or("no stdout pipe")?;
        pipe.read_to_end(&mut out)
            .map_err(|e| format!("stdout: {e}"))?;
    }
    let code = process
        .wait_for_exit_code(Some(Duration::from_secs(120)))
        .map_err(|e| format!("wait {args:?}: {e}"))?;
    Ok((out, code))
}

/// Reads a stream to its end: bytes.
fn drain(mut input: impl Read) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BenchError(format!("read: {e}"))),
        }
    }
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn guest_stream(system: &ComputeSystem) -> Result<Duration> {
    let command = format!("head -c {STREAM_BYTES} /dev/zero");
    let params = serde_json::json!({
        "CommandArgs": ["/bin/sh", "-c", command],
        "CreateStdOutPipe": true,
    });
    let started = Instant::now();
    let mut process = system
        .create_process(&params.to_string())
        .map_err(|e| format!("create: {e}"))?;
    let pipe = process.take_stdout().ok_or("no stdout pipe")?;
    let bytes = drain(pipe)?;
    let elapsed = started.elapsed();
    process
        .wait_for_exit_code(Some(Duration::from_secs(120)))
        .map_err(|e| format!("wait: {e}"))?;
    if bytes != STREAM_BYTES {
        return Err(BenchError(format!("guest stdout: {bytes} bytes")));
    }
    Ok(elapsed)
}

fn host_stream() -> Result<Duration> {
    let started = Instant::now();
    let mut child = Command::new("sh")
        .args(["-c", &format!("head -c {STREAM_BYTES} /dev/zero | cat")])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sh: {e}"))?;
    let bytes = drain(child.stdout.take().ok_or("no stdout")?)?;
    let elapsed = started.elapsed();
    let _ = child.wait();
    if bytes != STREAM_BYTES {
        return Err(BenchError(format!("host pipe: {bytes} bytes")));
    }
    Ok(elapsed)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Memory of one idle booted VM.
struct Memory {
    qemu_pss: u64,
    backend_pss: u64,
    guest_used: u64,
    /// Resident pages of QEMU's guest-RAM memfd: what the guest ever touched, KiB.
    guest_touched: u64,
}

/// `Rss:` of QEMU's guest-RAM memfd mapping, KiB.
fn memfd_rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut in_memfd = false;
    let mut total = 0;
    for line in text.lines() {
        if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            in_memfd = line.contains("/memfd:memory-backend-memfd");
        } else if in_memfd {
            if let Some(v) = line.strip_prefix("Rss:") {
                total += v
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

fn memory(system: &ComputeSystem, id: &str) -> Result<Memory> {
    std::thread::sleep(Duration::from_secs(2));
    let p = processes(id)?;
    let (meminfo, _) = run_process(system, &["/bin/cat", "/proc/meminfo"], true)?;
    let meminfo = String::from_utf8_lossy(&meminfo);
    let total = kib_field(&meminfo, "MemTotal:").unwrap_or(0);
    let free = kib_field(&meminfo, "MemFree:").unwrap_or(0);
    Ok(Memory {
        qemu_pss: pss_kib(p.qemu.0)?,
        backend_pss: pss_kib(p.backend.0)?,
        guest_used: total.saturating_sub(free),
        guest_touched: memfd_rss_kib(p.qemu.0),
    })
}

/// Runs the part and prints its figures.
pub fn run(options: &Options) -> Result<()> {
    let boot_rounds = options.boot_rounds;
    println!("== linux: Linux guests under QEMU (boot, processes, stdout, memory) ==");
    let host_total = kib_field(
        &std::fs::read_to_string("/proc/meminfo").map_err(|e| e.to_string())?,
        "MemTotal:",
    )
    .unwrap_or(0);

    // The VM of parts 2-4; its command lines also make the bare peer.
    let (system, id, first_boot) = boot_retry(512)?;
    let procs = processes(&id)?;
    let bare = Bare::from(&procs)?;
    println!("bare QEMU:    {}", bare.qemu.join(" "));
    println!("bare backend: {}", bare.backend.join(" "));
    let mem512 = memory(&system, &id)?;

    // 2. /bin/true round trips.
    let mut trips = Samples::with_capacity(ROUND_TRIPS);
    run_process(&system, &["/bin/true"], false)?;
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        let (_, code) = run_process(&system, &["/bin/true"], false)?;
        trips.push(started.elapsed());
        if code != 0 {
            return Err(BenchError(format!("/bin/true exited {code}")));
        }
    }
    let trips = trips.summary().ok_or("no round trips")?;

    // 3. Stdout throughput (best of 3 each, interleaved).
    let mut guest_best = Duration::MAX;
    let mut host_best = Duration::MAX;
    for _ in 0..3 {
        guest_best = guest_best.min(guest_stream(&system)?);
        host_best = host_best.min(host_stream()?);
    }
    stop(system);

    // 4b. A 128 MB guest, if it boots.
    let mem128 = match boot_retry(128) {
        Ok((system, id, _)) => {
            let m = memory(&system, &id);
            stop(system);
            m.ok()
        }
        Err(e) => {
            println!("128 MB guest: {e}");
            None
        }
    };

    print_rest(&Rest {
        first_boot,
        trips,
        guest_best,
        host_best,
        mem512,
        mem128,
        host_total,
    });

    // 1. Boot to agent-ready, interleaved.
    // A failed boot (the agent's 60 s timeout on a loaded machine) is reported and left out.
    let mut failures = [0usize; 2];
    let mut kept = [Samples::default(), Samples::default()];
    interleaved(2, 0, boot_rounds, |line| {
        let outcome = match line {
            0 => boot(512).map(|(system, _, elapsed)| {
                stop(system);
                elapsed
            }),
            _ => bare.sample(),
        };
        match outcome {
            Ok(elapsed) => kept[line].push(elapsed),
            Err(e) => {
                println!("boot failed ({}): {e}", ["ours", "bare"][line]);
                failures[line] += 1;
            }
        }
        Ok(Duration::ZERO)
    })?;
    println!(
        "failed boots left out: ours {}, bare {}",
        failures[0], failures[1]
    );
    let ours = kept[0].summary().ok_or("no boot of ours succeeded")?;
    let peer = kept[1].summary().ok_or("no bare boot succeeded")?;

    print_boot(options, ours, peer);
    Ok(())
}

struct Rest {
    first_boot: Duration,
    trips: Summary,
    guest_best: Duration,
    host_best: Duration,
    mem512: Memory,
    mem128: Option<Memory>,
    host_total: u64,
}

fn print_boot(options: &Options, ours: Summary, peer: Summary) {
    let boot_rounds = options.boot_rounds;
    println!("\n1. boot to agent-ready (512 MB, 2 vCPUs, TCG), {boot_rounds} rounds interleaved");
    print!(
        "{}",
        table(
            Unit::Millis,
            &[
                ("ours: create + start", Some(ours)),
                ("bare QEMU + vhost-device-vsock", Some(peer)),
            ],
        )
    );
    let ratio = ours.median.as_secs_f64() / peer.median.as_secs_f64();
    println!(
        "  ours/bare p50 {ratio:.3}x (goal < 1.05: {})",
        if ratio < 1.05 { "met" } else { "MISSED" },
    );
    println!(
        "  reproduce: {}",
        options.reproduce(crate::cli::Part::Linux)
    );
}

fn print_rest(r: &Rest) {
    println!(
        "first boot (create + start) {:.0} ms",
        r.first_boot.as_secs_f64() * 1e3
    );
    println!("\n2. process round trip: create /bin/true -> exit code, {ROUND_TRIPS} times");
    print!("{}", table(Unit::Millis, &[("/bin/true", Some(r.trips))]));
    let guest = mb_per_s(STREAM_BYTES, r.guest_best);
    let host = mb_per_s(STREAM_BYTES, r.host_best);
    println!("\n3. stdout of one process, 64 MiB (best of 3)");
    println!(
        "  guest `head -c 64Mi /dev/zero` via stdout handle {guest:>8.1} MB/s ({:.0} ms)",
        r.guest_best.as_secs_f64() * 1e3
    );
    println!(
        "  host  `head -c 64Mi /dev/zero | cat` pipe      {host:>8.1} MB/s ({:.0} ms)",
        r.host_best.as_secs_f64() * 1e3
    );
    println!("  guest/host {:.3}x", guest / host);
    println!(
        "\n4. host memory per idle VM (PSS), host MemTotal {:.0} MiB",
        mib(r.host_total)
    );
    for (size, m) in [(512, Some(&r.mem512)), (128, r.mem128.as_ref())] {
        let Some(m) = m else { continue };
        let total = m.qemu_pss + m.backend_pss;
        println!(
            "  {size:>3} MB: QEMU {:.1} MiB + vhost-device-vsock {:.1} MiB = {:.1} MiB; guest \
             used (MemTotal-MemFree) {:.1} MiB, touched (memfd RSS) {:.1} MiB; ~{} idle VMs fit",
            mib(m.qemu_pss),
            mib(m.backend_pss),
            mib(total),
            mib(m.guest_used),
            mib(m.guest_touched),
            r.host_total / total.max(1)
        );
    }
}
