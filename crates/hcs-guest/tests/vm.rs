//! The agent in a real guest: Debian's cloud kernel and our initramfs (scripts/setup builds
//! both) boot under QEMU (TCG) with a vhost-user vsock device served by
//! vhost-device-vsock; the fake host of `common` talks to the agent through it. Two VMs:
//! one for boot to Hello, echo, 100 MB of stdout, shutdown powers the VM off; one without
//! a host connection (no vsock device at all), powered off by the ACPI power button.
//!
//! Nothing here is skipped: a missing kernel, initramfs, QEMU or vhost-device-vsock fails
//! the test with a message saying to run `scripts/setup`.

mod common;

use common::{command, hash_all, read_all, FakeHost, Fnv};
use hcs_guest_protocol::{Request, ResponseBody, CONTROL_PORT, SUPPORTED_VERSIONS};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Generous for TCG on a loaded 2-core machine; a normal boot takes a few seconds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The images and tools, or a failure that says how to get them.
struct Tools {
    kernel: PathBuf,
    initramfs: PathBuf,
    qemu: PathBuf,
    vhost_vsock: PathBuf,
}

fn tools() -> Tools {
    let guest = repo_root().join(".cache/guest");
    let home_bin = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo/bin/vhost-device-vsock"))
        .filter(|p| p.is_file());
    let tools = Tools {
        kernel: guest.join("vmlinuz"),
        initramfs: guest.join("initramfs.img"),
        qemu: find_on_path("qemu-system-x86_64").unwrap_or_default(),
        vhost_vsock: home_bin
            .or_else(|| find_on_path("vhost-device-vsock"))
            .unwrap_or_default(),
    };
    let mut missing = Vec::new();
    for (what, path) in [
        ("guest kernel", &tools.kernel),
        ("guest initramfs", &tools.initramfs),
        ("qemu-system-x86_64", &tools.qemu),
        ("vhost-device-vsock", &tools.vhost_vsock),
    ] {
        if !path.is_file() {
            missing.push(format!("{what} ({})", path.display()));
        }
    }
    assert!(
        missing.is_empty(),
        "missing: {}; run scripts/setup first (it builds the guest kernel and initramfs \
         and installs vhost-device-vsock)",
        missing.join(", ")
    );
    warn_if_stale(&tools.initramfs);
    tools
}

/// The VM runs the agent of the initramfs, built by scripts/setup: say so when the sources
/// are newer (the test still runs, against the older agent).
fn warn_if_stale(initramfs: &Path) {
    let built = std::fs::metadata(initramfs)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let newer = std::fs::read_dir(src)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
        });
    if newer {
        eprintln!(
            "note: crates/hcs-guest/src is newer than {}: run scripts/setup to put the \
             current agent in the image",
            initramfs.display()
        );
    }
}

/// QEMU and vhost-device-vsock, killed on drop (a failed test leaves nothing running).
struct Vm {
    qemu: Child,
    backend: Option<Child>,
    dir: PathBuf,
}

impl Vm {
    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Waits until the guest console shows `text`.
    fn wait_console(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.console().contains(text) {
            if let Some(status) = self.qemu.try_wait().expect("try_wait") {
                panic!("QEMU exited ({status}) before the console showed {text:?}");
            }
            assert!(
                Instant::now() < deadline,
                "the console did not show {text:?} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for QEMU to exit.
    fn wait_exit(&mut self, timeout: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.qemu.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{what} within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connects to QMP and leaves its greeting and capabilities negotiation behind.
    fn qmp(&self) -> Qmp {
        let stream = UnixStream::connect(self.dir.join("qmp.sock")).expect("connect to QMP");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
            events: Vec::new(),
        };
        assert!(qmp.read().get("QMP").is_some(), "no QMP greeting");
        qmp.execute("qmp_capabilities");
        qmp
    }
}

/// A QMP connection: commands, and the events that came with their answers.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: Vec<Value>,
}

impl Qmp {
    fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read from QMP");
        assert!(n > 0, "QMP closed");
        serde_json::from_str(&line).expect("QMP sends JSON")
    }

    /// Runs a command; its `return` (an `error` fails the test).
    fn execute(&mut self, command: &str) -> Value {
        let mut text = json!({ "execute": command }).to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .expect("write to QMP");
        loop {
            let reply = self.read();
            if reply.get("event").is_some() {
                self.events.push(reply);
                continue;
            }
            assert!(reply.get("error").is_none(), "{command}: {reply}");
            return reply["return"].clone();
        }
    }

    /// The next event called `name` (others are kept), or `None` when QMP closes first.
    fn event(&mut self, name: &str) -> Option<Value> {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return Some(self.events.remove(i));
        }
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return None;
            }
            let value: Value = serde_json::from_str(&line).expect("QMP sends JSON");
            if value["event"] == name {
                return Some(value);
            }
            self.events.push(value);
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        if let Some(backend) = self.backend.as_mut() {
            let _ = backend.kill();
            let _ = backend.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- guest console ---\n{}", self.console());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Boots the image, with QMP on `dir/qmp.sock`; with `vsock`, a vhost-user vsock device
/// served by vhost-device-vsock (the agent's connection to the host), else no vsock device.
fn boot(tools: &Tools, dir: &Path, vsock: bool) -> Vm {
    let mut qemu = Command::new(&tools.qemu);
    let backend = vsock.then(|| start_backend(tools, dir, &mut qemu));
    qemu.args([
        "-machine",
        "q35,accel=tcg",
        "-cpu",
        "max",
        "-m",
        "512",
        "-smp",
        "2",
    ])
    .args(["-object", "memory-backend-memfd,id=mem,size=512M,share=on"])
    .args(["-machine", "memory-backend=mem"])
    .args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-serial")
    .arg(format!("file:{}", dir.join("console.log").display()))
    .arg("-qmp")
    .arg(format!(
        "unix:{},server=on,wait=off",
        dir.join("qmp.sock").display()
    ))
    .arg("-kernel")
    .arg(&tools.kernel)
    .arg("-initrd")
    .arg(&tools.initramfs)
    .arg("-append")
    .arg(format!(
        "console=ttyS0 panic=-1 quiet {}",
        // Extra kernel arguments when debugging (e.g. `loglevel=7` for the boot log).
        std::env::var("HCS_GUEST_TEST_APPEND").unwrap_or_default()
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let qemu = qemu.spawn().expect("start qemu-system-x86_64");
    let mut vm = Vm {
        qemu,
        backend,
        dir: dir.to_path_buf(),
    };
    // QEMU makes the QMP socket before it starts the guest.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("qmp.sock").exists() {
        if let Some(status) = vm.qemu.try_wait().expect("try_wait") {
            panic!("QEMU exited at once ({status})");
        }
        assert!(Instant::now() < deadline, "QEMU made no QMP socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    vm
}

/// Starts vhost-device-vsock for CID 3 and gives `qemu` its device.
fn start_backend(tools: &Tools, dir: &Path, qemu: &mut Command) -> Child {
    let vhost_socket = dir.join("vhost.sock");
    let uds = dir.join("vsock.sock");
    let backend = Command::new(&tools.vhost_vsock)
        .arg("--guest-cid")
        .arg("3")
        .arg("--socket")
        .arg(&vhost_socket)
        .arg("--uds-path")
        .arg(&uds)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vhost-device-vsock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !vhost_socket.exists() {
        assert!(
            Instant::now() < deadline,
            "vhost-device-vsock made no socket"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    qemu.arg("-chardev")
        .arg(format!("socket,id=vsock,path={}", vhost_socket.display()))
        .args(["-device", "vhost-user-vsock-pci,chardev=vsock"]);
    backend
}

#[test]
fn a_real_guest_boots_runs_processes_and_powers_off() {
    let tools = tools();
    let dir = common::scratch("vm");
    let uds = dir.join("vsock.sock");
    let mut control = uds.clone().into_os_string();
    control.push(format!("_{CONTROL_PORT}"));
    // Listen before the guest can try.
    let host = FakeHost::listen(Path::new(&control), &uds);
    let start = Instant::now();
    let mut vm = boot(&tools, &dir, true);

    let hello = host.accept_and_welcome(BOOT_TIMEOUT);
    let boot_time = start.elapsed();
    assert_eq!(hello.versions, SUPPORTED_VERSIONS);
    assert!(hello.kernel.contains("cloud-amd64"), "{}", hello.kernel);
    eprintln!("boot to Hello: {boot_time:?} ({})", hello.kernel);

    // echo hello, through busybox, over a vsock stream.
    let p = host
        .create(command(&["echo", "hello"]), false, true, false)
        .expect("created");
    assert_eq!(read_all(p.stdout.expect("stdout")), b"hello\n");
    assert_eq!(host.exit_code(p.pid), 0);

    // A PID 1 sanity look: mounts, hostname, modules loaded.
    let p = host
        .create(
            command(&["sh", "-c", "hostname; grep -c vsock /proc/modules; cat /proc/sys/kernel/unknown_nmi_panic; test -c /dev/null && echo dev"]),
            false,
            true,
            false,
        )
        .expect("created");
    let out = String::from_utf8(read_all(p.stdout.expect("stdout"))).expect("utf-8");
    assert_eq!(host.exit_code(p.pid), 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"hcs-guest"), "{out}");
    assert!(
        lines
            .get(1)
            .is_some_and(|n| n.parse::<u32>().unwrap_or(0) >= 3),
        "{out}"
    );
    assert_eq!(&lines[2..], ["1", "dev"], "{out}");

    // 100 MB of stdout, every byte in order. The guest repeats a 1 MiB block with cat
    // (big writes: busybox's `yes` writes one short line per system call, which under TCG
    // is slower than the relay being measured).
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz\n";
    let block: Vec<u8> = line.iter().copied().cycle().take(1 << 20).collect();
    let mut want = Fnv::default();
    for _ in 0..100 {
        want.update(&block);
    }
    let script = "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 1048576 > /tmp/block; \
                  i=0; while [ $i -lt 100 ]; do cat /tmp/block; i=$((i+1)); done";
    let p = host
        .create(command(&["sh", "-c", script]), false, true, false)
        .expect("created");
    let t = Instant::now();
    let got = hash_all(p.stdout.expect("stdout"));
    let took = t.elapsed();
    assert_eq!(got, (100 << 20, want.value()));
    assert_eq!(host.exit_code(p.pid), 0);
    eprintln!(
        "100 MiB of stdout in {took:?} ({:.1} MiB/s)",
        100.0 / took.as_secs_f64()
    );
    assert_eq!(host.exits().values().map(Vec::len).max(), Some(1));
    assert!(host.early_exits().is_empty());

    // The host drops the control connection: PID 1 connects again and says Hello again;
    // a process started before goes on and is still the agent's to signal.
    let p = host
        .create(command(&["sleep", "1000"]), false, false, false)
        .expect("created");
    host.close();
    assert!(host.wait_closed(Duration::from_secs(10)));
    let t = Instant::now();
    let hello = host.accept_and_welcome(Duration::from_secs(30));
    assert_eq!(hello.versions, SUPPORTED_VERSIONS);
    eprintln!("reconnected after {:?}", t.elapsed());
    assert_eq!(
        host.request(Request::Signal {
            pid: p.pid,
            signal: 15
        }),
        ResponseBody::Ok
    );
    assert_eq!(host.exit_code(p.pid), 143);

    // Shutdown ends a running process, answers, and powers the VM off.
    let p = host
        .create(command(&["sleep", "1000"]), false, false, false)
        .expect("created");
    let t = Instant::now();
    let id = host.send(Request::Shutdown {
        reboot: false,
        grace_ms: 2000,
    });
    assert_eq!(host.response(id), ResponseBody::Ok);
    assert_eq!(host.exit_code(p.pid), 143);
    host.close();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = vm.qemu.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the VM did not power off");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "qemu exited with {status}");
    eprintln!("shutdown to QEMU exit: {:?}", t.elapsed());
    assert!(!vm.console().contains("Kernel panic"), "{}", vm.console());
    if std::env::var_os("HCS_GUEST_TEST_CONSOLE").is_some() {
        eprintln!("--- guest console ---\n{}", vm.console());
    }
}

/// A guest without a host connection (no vsock device: the agent keeps trying to connect)
/// powers off when its ACPI power button is pressed: the agent watches the button's input
/// device and does what a host's `Shutdown` does. This is how a host shuts down a compute
/// system that has no GuestConnection.
#[test]
fn the_power_button_powers_off_a_guest_without_a_host() {
    let tools = tools();
    let dir = common::scratch("button");
    let start = Instant::now();
    let mut vm = boot(&tools, &dir, false);
    let mut qmp = vm.qmp();

    // A press before the agent watches the button would be lost, as on hardware.
    // (The agent also watches the keyboard's power key; wait for the ACPI button.)
    vm.wait_console("(Power Button)", BOOT_TIMEOUT);
    eprintln!("boot to the button being watched: {:?}", start.elapsed());
    assert!(
        !vm.console().contains("hcs-guest: connected"),
        "{}",
        vm.console()
    );

    let t = Instant::now();
    qmp.execute("system_powerdown");
    let shutdown = qmp
        .event("SHUTDOWN")
        .unwrap_or_else(|| panic!("QMP closed with no SHUTDOWN event\n{}", vm.console()));
    // The guest powered itself off (not QEMU or a signal).
    assert_eq!(shutdown["data"]["guest"], true, "{shutdown}");
    assert_eq!(shutdown["data"]["reason"], "guest-shutdown", "{shutdown}");
    let status = vm.wait_exit(
        Duration::from_secs(60),
        "QEMU did not exit after the SHUTDOWN",
    );
    assert!(status.success(), "qemu exited with {status}");
    let took = t.elapsed();
    eprintln!("power button to QEMU exit: {took:?}");
    assert!(took < Duration::from_secs(60), "{took:?}");

    let console = vm.console();
    assert!(
        console.contains("hcs-guest: power button pressed"),
        "{console}"
    );
    assert!(
        console.contains("hcs-guest: shutting down (the power button"),
        "{console}"
    );
    assert!(!console.contains("Kernel panic"), "{console}");
    if std::env::var_os("HCS_GUEST_TEST_CONSOLE").is_some() {
        eprintln!("--- guest console ---\n{console}");
    }
}
