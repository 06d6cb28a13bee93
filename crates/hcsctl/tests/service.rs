//! End to end through the service: a real `hcsd` on a temporary socket and state directory,
//! driven by separate `hcsctl` invocations, as an operator does.
//!
//! Each test starts its own hcsd (`hcsd --socket S --state-dir D`, with `HCS_RUNTIME_DIR`
//! under the test's directory) and kills it at the end, after terminating what it created
//! (workers outlive hcsd by design). hcsd is the binary next to hcsctl in the target
//! directory; it is built when missing. The VM tests need `/dev/kvm` (and the Linux one
//! the guest images of `scripts/setup` and QEMU): without them they fail, never skip.

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const HCSCTL: &str = env!("CARGO_BIN_EXE_hcsctl");

/// Generous: the machine is shared and has two cores.
const TIMEOUT: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_kvm() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: these tests boot VMs through hcsd and need KVM (load kvm_intel, \
         kvm_amd or kvm_pvm); they fail rather than skip"
    );
}

/// The hcsd binary next to hcsctl, built if it is not there yet.
fn hcsd_binary() -> PathBuf {
    let dir = Path::new(HCSCTL).parent().expect("hcsctl's directory");
    let hcsd = dir.join("hcsd");
    if !hcsd.exists() {
        // <target>/<profile>/hcsctl: build hcsd into the same target directory and profile.
        let target = dir.parent().expect("the target directory");
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "-p", "hcsd"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(repo_root());
        if dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "cargo build -p hcsd failed");
    }
    assert!(
        hcsd.exists(),
        "no hcsd at {}: build it with `cargo build -p hcsd`",
        hcsd.display()
    );
    hcsd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(args: &[&str], output: &Output) -> String {
    format!(
        "hcsctl {args:?}: exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// One hcsd of one test, killed on drop after the systems the test created are terminated.
struct Service {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    created: Vec<String>,
}

impl Service {
    fn start(name: &str) -> Service {
        let hcsd = hcsd_binary();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("svc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        let socket = dir.join("hcsd.sock");
        let log = std::fs::File::create(dir.join("hcsd.log")).expect("log file");
        let child = Command::new(&hcsd)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("HCS_RUNTIME_DIR", dir.join("run"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("hcsd starts");
        let mut service = Service {
            child,
            dir,
            socket,
            created: Vec::new(),
        };
        let deadline = Instant::now() + TIMEOUT;
        while UnixStream::connect(&service.socket).is_err() {
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("hcsd ended at start ({status}): {}", service.log());
            }
            assert!(
                Instant::now() < deadline,
                "hcsd did not answer on {} in {TIMEOUT:?}: {}",
                service.socket.display(),
                service.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        service
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hcsd.log")).unwrap_or_default()
    }

    /// `hcsctl` with this service as its host, run from the repository's root.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(HCSCTL);
        command
            .args(args)
            .env("HCS_HOST", "service")
            .env("HCS_SOCKET", &self.socket)
            .env("HCS_RUNTIME_DIR", self.dir.join("run"))
            .current_dir(repo_root());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("hcsctl runs")
    }

    /// Runs hcsctl and expects `code`; returns stdout.
    fn expect(&self, code: i32, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{}\nhcsd: {}",
            describe(args, &output),
            self.log()
        );
        text(&output.stdout)
    }

    /// `hcsctl create --id ID DOC`, remembered for the clean-up.
    fn create(&mut self, id: &str, document: &str) {
        self.created.push(id.to_owned());
        let output = self.run(&["create", "--id", id, document]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}\nhcsd: {}",
            describe(&["create"], &output),
            self.log()
        );
        assert_eq!(text(&output.stdout).trim(), id);
        let err = text(&output.stderr);
        assert!(!err.contains("embedded"), "no embedded-host warning: {err}");
    }

    /// The systems `list --json` shows.
    fn list(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["list", "--json"];
        args.extend_from_slice(extra);
        let out = self.expect(0, &args);
        match serde_json::from_str(out.trim()) {
            Ok(Value::Array(systems)) => systems,
            other => panic!("list --json is not an array: {other:?}: {out}"),
        }
    }

    fn state(&self, id: &str) -> Value {
        let out = self.expect(0, &["properties", "--json", id]);
        let properties: Value = serde_json::from_str(out.trim()).expect("properties JSON");
        properties["State"].clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.created) {
            let _ = self.run(&["terminate", &id]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a child's stdout to the end within the timeout; returns (exit code, stdout).
fn finish(mut child: Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                let _ = stdout.read_to_string(&mut out);
            }
            return (status.code(), out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hcsctl did not end in {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn empty_vm_lifecycle_through_the_service() {
    require_kvm();
    let mut service = Service::start("lifecycle");
    let id = format!("hcsctl-e2e-{}", std::process::id());
    let id = id.as_str();

    // Created by one hcsctl, alive for the next ones.
    service.create(id, "examples/empty-vm.json");
    let listed = service.list(&[]);
    let entry = listed
        .iter()
        .find(|s| s["Id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {listed:?}"));
    assert_eq!(entry["State"], "Created");
    assert_eq!(entry["Owner"], "Sample");
    let table = service.expect(0, &["list"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(id) && l.contains("Created")),
        "{table}"
    );
    assert_eq!(service.list(&["--owner", "Sample", "--id", id]).len(), 1);
    assert!(service.list(&["--owner", "nobody"]).is_empty());

    let again = service.run(&["create", "--id", id, "examples/empty-vm.json"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("HCS_E_SYSTEM_ALREADY_EXISTS (0x8037010F)"));

    assert_eq!(
        service.expect(0, &["start", id]).trim(),
        format!("started {id}")
    );
    assert_eq!(service.state(id), "Running");
    let twice = service.run(&["start", id]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(text(&twice.stderr).contains("HCS_E_INVALID_STATE"));
    // Saving needs a paused system (HCS-API rule 25).
    let save = service.run(&["save", id, "state.vmrs"]);
    assert_eq!(save.status.code(), Some(1));
    assert!(text(&save.stderr).contains("HCS_E_INVALID_STATE"));

    assert_eq!(
        service.expect(0, &["pause", id]).trim(),
        format!("paused {id}")
    );
    assert_eq!(service.state(id), "Paused");
    let listed = service.list(&["--id", id]);
    assert_eq!(listed[0]["State"], "Paused");
    assert_eq!(
        service.expect(0, &["resume", id]).trim(),
        format!("resumed {id}")
    );
    assert_eq!(service.state(id), "Running");

    let memory = service.expect(0, &["properties", "--json", "--query", "Memory", id]);
    let memory: Value = serde_json::from_str(memory.trim()).expect("properties JSON");
    assert_eq!(memory["Id"], id);
    assert_eq!(
        memory["Memory"]["VirtualMachineMemory"]["AssignedMemory"],
        1024
    );
    let pretty = service.expect(0, &["properties", id]);
    assert!(pretty.contains("\"State\": \"Running\""), "{pretty}");

    // Watchers of the exit, in their own hcsctl processes.
    let events = service
        .command(&["events", "--follow", "--json", id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("hcsctl events starts");
    let wait = service
        .command(&["wait", "--json", "--timeout", "60", id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("hcsctl wait starts");
    // They register with no readiness signal of their own: give them time to.
    std::thread::sleep(Duration::from_secs(2));

    assert_eq!(
        service.expect(0, &["terminate", id]).trim(),
        format!("terminated {id}")
    );
    let (code, out) = finish(events);
    assert_eq!(code, Some(0), "events: {out}");
    let last: Value = serde_json::from_str(out.lines().last().unwrap_or("")).expect("JSON line");
    assert_eq!(last["event"], "SystemExited", "{out}");
    assert_eq!(last["system"], id);
    assert_eq!(last["data"]["ExitType"], "ForcedExit", "{out}");
    let (code, out) = finish(wait);
    assert_eq!(code, Some(0), "wait: {out}");
    let status: Value = serde_json::from_str(out.trim()).expect("SystemExitStatus");
    assert_eq!(status["ExitType"], "ForcedExit", "{out}");

    let deadline = Instant::now() + TIMEOUT;
    while service.list(&[]).iter().any(|s| s["Id"] == id) {
        assert!(
            Instant::now() < deadline,
            "{id} still listed after terminate"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone = service.run(&["--json", "terminate", id]);
    assert_eq!(gone.status.code(), Some(1));
    let error: Value = serde_json::from_str(text(&gone.stdout).trim()).expect("JSON error");
    assert!(
        error["error"]["name"]
            .as_str()
            .is_some_and(|n| n == "HCS_E_SYSTEM_NOT_FOUND" || n == "HCS_E_SYSTEM_ALREADY_STOPPED"),
        "{error}"
    );
    service.created.clear();
}

#[test]
fn exec_in_a_linux_guest_through_the_service() {
    require_kvm();
    let root = repo_root();
    for file in [".cache/guest/vmlinuz", ".cache/guest/initramfs.img"] {
        assert!(
            root.join(file).exists(),
            "{file} is missing: run scripts/setup (it builds the guest images); this test \
             boots examples/linux-vm.json and fails rather than skips"
        );
    }
    let mut service = Service::start("exec");
    let id = format!("hcsctl-e2e-linux-{}", std::process::id());
    let id = id.as_str();
    // examples/linux-vm.json with COM1 on the pipe `hcsctl console` finds by default. Its
    // kernel and initrd paths stay relative (to the repository's root, hcsctl's directory
    // here): hcsctl makes them absolute, hcsd (whose directory is elsewhere) would not find
    // them otherwise.
    let mut document: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("examples/linux-vm.json")).expect("example"),
    )
    .expect("example JSON");
    document["VirtualMachine"]["Devices"]["ComPorts"] =
        serde_json::json!({"0": {"NamedPipe": format!(r"\\.\pipe\{id}-com1")}});
    let path = service.dir.join("linux-vm-com1.json");
    std::fs::write(&path, document.to_string()).expect("document written");
    service.create(id, path.to_str().expect("UTF-8 path"));
    assert_eq!(
        service.expect(0, &["start", id]).trim(),
        format!("started {id}")
    );

    // The console shows what the guest writes to ttyS0; SIGINT detaches (exit 0) and
    // leaves the system running.
    let mut console = service
        .command(&["console", id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hcsctl console starts");
    let mut console_out = console.stdout.take().expect("piped stdout");
    let (chunks, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        let mut all = Vec::new();
        while let Ok(n) = console_out.read(&mut buffer) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buffer[..n]);
            let _ = chunks.send(text(&all));
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut shown = String::new();
    while !shown.contains("console marker 42") {
        assert!(
            Instant::now() < deadline,
            "the console did not show the marker; it showed: {shown:?}"
        );
        // Attaching takes a moment: write until the console has it.
        let marker = "echo console marker $((6*7)) > /dev/ttyS0";
        service.expect(0, &["exec", id, "--", "sh", "-c", marker]);
        if let Ok(text) = seen.recv_timeout(Duration::from_millis(500)) {
            shown = text;
        }
        while let Ok(text) = seen.try_recv() {
            shown = text;
        }
    }
    let pid = i32::try_from(console.id()).expect("pid fits");
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped; no memory is
    // involved.
    let rc = unsafe { libc::kill(pid, libc::SIGINT) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let output = console.wait_with_output().expect("hcsctl console ends");
    assert_eq!(
        output.status.code(),
        Some(0),
        "console: {}",
        text(&output.stderr)
    );
    assert_eq!(service.state(id), "Running");

    let output = service.run(&[
        "exec",
        id,
        "--",
        "sh",
        "-c",
        "echo hello from $(uname -s); echo to stderr >&2; exit 7",
    ]);
    assert_eq!(
        output.status.code(),
        Some(7),
        "{}",
        describe(&["exec"], &output)
    );
    assert_eq!(text(&output.stdout), "hello from Linux\n");
    assert_eq!(text(&output.stderr), "to stderr\n");

    let mut cat = service
        .command(&["exec", id, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hcsctl exec starts");
    cat.stdin
        .take()
        .expect("piped stdin")
        .write_all(b"through stdin\n")
        .expect("written");
    let output = cat.wait_with_output().expect("hcsctl exec ends");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        describe(&["exec cat"], &output)
    );
    assert_eq!(text(&output.stdout), "through stdin\n");

    assert_eq!(
        service
            .expect(0, &["shutdown", "--timeout", "60", id])
            .trim(),
        format!("shut down {id}")
    );
    let deadline = Instant::now() + TIMEOUT;
    while service.list(&[]).iter().any(|s| s["Id"] == id) {
        assert!(
            Instant::now() < deadline,
            "{id} still listed after shutdown"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    service.created.clear();
}
