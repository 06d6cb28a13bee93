//! `hcsctl run` against a real Linux guest: `run DOC -- CMD` (stdio, exit code, teardown,
//! `--tty`, Ctrl-C during the boot) and `run DOC --console` (boot output on COM1, Ctrl-C
//! terminates the VM).
//!
//! Each test boots one VM of `examples/linux-vm.json` (the kernel and initramfs that
//! `scripts/setup` builds, as absolute paths, and a kernel command line with a token unique
//! to the test) with `--id` set to a unique id, in hcsctl's embedded host (`HCS_HOST=embedded`,
//! whatever service runs on this machine) and a runtime directory of its own. The tests take
//! turns (one TCG boot at a time on a small machine). Without QEMU or the guest images they
//! fail, never skip.

use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const HCSCTL: &str = env!("CARGO_BIN_EXE_hcsctl");

/// A boot under TCG takes seconds; generous, for a shared two-core machine.
const TIMEOUT: Duration = Duration::from_secs(60);

/// One VM at a time.
static ONE_VM: Mutex<()> = Mutex::new(());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_qemu() {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join("qemu-system-x86_64").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "qemu-system-x86_64 is not installed: run scripts/setup; these tests boot a real Linux \
         guest under QEMU and are never skipped"
    );
}

/// A guest image of `scripts/setup`, as an absolute path.
fn image(name: &str) -> String {
    let path = repo_root().join(".cache/guest").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup (it fetches the guest kernel and builds the \
         initramfs with the hcs-guest agent); these tests boot a real Linux guest and are \
         never skipped",
        path.display()
    );
    path.canonicalize()
        .expect("canonical image path")
        .to_string_lossy()
        .into_owned()
}

/// Process ids of QEMU processes whose command line mentions `needle`.
fn qemu_pids(needle: &str) -> Vec<u32> {
    hcs_test_support::pids_with_cmdline(&["qemu-system", needle])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One test's VM: its id, its document and runtime directory in a directory of its own
/// (removed at the end, kept and named when the test fails), and the QEMU of the id
/// killed if the test left one.
struct Guest {
    id: String,
    dir: PathBuf,
    document: PathBuf,
}

impl Guest {
    /// `examples/linux-vm.json` with absolute image paths and `cmdline` plus a unique token.
    fn new(name: &str, cmdline: &str) -> Guest {
        require_qemu();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let id = format!("run-{name}-{}-{nanos:08x}", std::process::id());
        let dir = std::env::temp_dir().join(format!("hcsctl-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        let example = repo_root().join("examples/linux-vm.json");
        let mut document: Value =
            serde_json::from_str(&std::fs::read_to_string(&example).expect("the example"))
                .expect("the example is JSON");
        let direct = &mut document["VirtualMachine"]["Chipset"]["LinuxKernelDirect"];
        direct["KernelFilePath"] = image("vmlinuz").into();
        direct["InitRdPath"] = image("initramfs.img").into();
        direct["KernelCmdLine"] = format!("{cmdline} hcsctl_test={id}").into();
        let path = dir.join("linux-vm.json");
        std::fs::write(&path, document.to_string()).expect("document written");
        Guest {
            id,
            dir,
            document: path,
        }
    }

    /// `hcsctl run --id ID DOC extra...` in the embedded host, with our runtime directory.
    fn run(&self, extra: &[&str], stdin: Stdio) -> Running {
        let mut child = Command::new(HCSCTL)
            .arg("run")
            .arg("--id")
            .arg(&self.id)
            .arg(&self.document)
            .args(extra)
            .env("HCS_HOST", "embedded")
            .env("HCS_RUNTIME_DIR", self.dir.join("run"))
            .env_remove("RUST_LOG")
            // A group of its own, as a shell gives a foreground job: `signal_group` is
            // then what a terminal's Ctrl-C does.
            .process_group(0)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hcsctl starts");
        let stdout = chunks(child.stdout.take().expect("piped stdout"));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stderr.read_to_end(&mut all);
            all
        });
        Running {
            child,
            stdout,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Asserts that no QEMU of this VM is left now that hcsctl has exited.
    fn assert_no_qemu(&self) {
        let pids = qemu_pids(&self.id);
        assert!(
            pids.is_empty(),
            "QEMU of {} still running after hcsctl exited: {pids:?}",
            self.id
        );
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        for pid in qemu_pids(&self.id) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        if std::thread::panicking() {
            eprintln!("kept {} (document, runtime files)", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What a reader thread reads from `from`, chunk by chunk.
fn chunks(mut from: ChildStdout) -> Receiver<Vec<u8>> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 65536];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 || sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    receiver
}

/// A running hcsctl, killed on drop if it is still running.
struct Running {
    child: Child,
    stdout: Receiver<Vec<u8>>,
    seen: Vec<u8>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

/// How an hcsctl ended.
struct Ended {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ended {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\nstdout ({} bytes, tail): {}\nstderr: {}",
            self.status,
            self.stdout.len(),
            &self.stdout[self.stdout.len().saturating_sub(2000)..],
            self.stderr
        )
    }
}

impl Running {
    /// Reads stdout until it contains `needle`; fails after `TIMEOUT` or at its end.
    fn read_until(&mut self, needle: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !text(&self.seen).contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(chunk) => self.seen.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {needle:?} on stdout in {TIMEOUT:?}; it showed: {:?}",
                        text(&self.seen)
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "stdout ended without {needle:?} ({:?}); it showed: {:?}",
                    self.child.try_wait(),
                    text(&self.seen)
                ),
            }
        }
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Sends `signal` to hcsctl's whole process group, as a terminal's Ctrl-C reaches every
    /// process of the foreground job.
    fn signal_group(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on the process group our child leads (it has not been reaped).
        let rc = unsafe { libc::kill(-pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits for the exit (killing hcsctl after `TIMEOUT`) and for the rest of its output.
    fn finish(mut self) -> Ended {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let mut seen = std::mem::take(&mut self.seen);
                seen.extend(self.stdout.try_iter().flatten());
                panic!(
                    "hcsctl did not exit in {TIMEOUT:?} (killed); stdout tail: {:?}",
                    text(&seen[seen.len().saturating_sub(2000)..])
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Its pipes close with it (unless something it started still holds them).
        let mut stdout = std::mem::take(&mut self.seen);
        let rest = Instant::now() + Duration::from_secs(10);
        loop {
            match self
                .stdout
                .recv_timeout(rest.saturating_duration_since(Instant::now()))
            {
                Ok(chunk) => stdout.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("hcsctl exited ({status}) but its stdout stayed open 10 s")
                }
            }
        }
        let stderr = self
            .stderr
            .take()
            .expect("once")
            .join()
            .expect("stderr read");
        Ended {
            status,
            stdout: text(&stdout),
            stderr: text(&stderr),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn one_vm() -> std::sync::MutexGuard<'static, ()> {
    ONE_VM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn run_command_relays_stdio_and_exits_with_its_code_and_leaves_no_qemu() {
    let _one = one_vm();
    let started = Instant::now();
    let guest = Guest::new("stdio", "console=ttyS0 quiet");
    let mut running = guest.run(
        &[
            "--",
            "/bin/sh",
            "-c",
            r#"read x; echo "out:$x"; echo err >&2; exit 3"#,
        ],
        Stdio::piped(),
    );
    let mut stdin = running.child.stdin.take().expect("piped stdin");
    stdin.write_all(b"hello\n").expect("stdin written");
    drop(stdin);
    let ended = running.finish();
    eprintln!("run -- sh: {:?}", started.elapsed());
    assert_eq!(ended.status.code(), Some(3), "{}", ended.describe());
    assert_eq!(ended.stdout, "out:hello\n", "{}", ended.describe());
    assert!(ended.stderr.contains("err"), "{}", ended.describe());
    guest.assert_no_qemu();
}

#[test]
fn run_command_large_output_arrives_complete() {
    let _one = one_vm();
    let started = Instant::now();
    let guest = Guest::new("large", "console=ttyS0 quiet");
    let running = guest.run(&["--", "/bin/sh", "-c", "seq 1 200000"], Stdio::null());
    let ended = running.finish();
    eprintln!("run -- seq: {:?}", started.elapsed());
    assert_eq!(ended.status.code(), Some(0), "{}", ended.describe());
    assert!(ended.stdout.ends_with("\n200000\n"), "{}", ended.describe());
    let lines: Vec<&str> = ended.stdout.lines().collect();
    assert_eq!(lines.len(), 200_000, "{}", ended.describe());
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, line)| *line == (i + 1).to_string()),
        "lines out of order or damaged: {}",
        ended.describe()
    );
    guest.assert_no_qemu();
}

#[test]
fn run_console_shows_the_boot_and_ctrl_c_terminates_the_vm() {
    let _one = one_vm();
    let started = Instant::now();
    // No `quiet`: the kernel's boot messages go to the console.
    let guest = Guest::new("console", "console=ttyS0");
    // Stdin stays open (a terminal would): hcsctl must not end because of its EOF.
    let mut running = guest.run(&["--console"], Stdio::piped());
    running.read_until("Linux version");
    assert_eq!(qemu_pids(&guest.id).len(), 1, "one QEMU of {}", guest.id);
    running.signal(libc::SIGINT);
    let ended = running.finish();
    eprintln!("run --console: {:?}", started.elapsed());
    // `hcsctl run`: "0 after a graceful or forced exit (including Ctrl-C)".
    assert_eq!(ended.status.code(), Some(0), "{}", ended.describe());
    assert!(
        ended.stdout.contains("Linux version"),
        "{}",
        ended.describe()
    );
    guest.assert_no_qemu();
}

#[test]
fn run_tty_gives_the_command_a_terminal_even_with_stdin_from_a_pipe() {
    let _one = one_vm();
    let started = Instant::now();
    let guest = Guest::new("tty", "console=ttyS0 quiet");
    let mut running = guest.run(
        &["--tty", "--", "/bin/sh", "-c", "tty; stty size"],
        Stdio::piped(),
    );
    // A pipe, not a terminal: no raw mode here, and the size hcsctl sends without one.
    drop(running.child.stdin.take());
    let ended = running.finish();
    eprintln!("run --tty: {:?}", started.elapsed());
    assert_eq!(ended.status.code(), Some(0), "{}", ended.describe());
    // The guest terminal ends lines with CR LF.
    let lines: Vec<&str> = ended.stdout.lines().map(str::trim).collect();
    assert!(
        lines.iter().any(|line| line.starts_with("/dev/pts/")),
        "{}",
        ended.describe()
    );
    assert!(lines.contains(&"24 80"), "{}", ended.describe());
    guest.assert_no_qemu();
}

#[test]
fn ctrl_c_during_the_boot_terminates_the_vm_at_once_with_exit_130() {
    let _one = one_vm();
    let guest = Guest::new("boot", "console=ttyS0 quiet");
    let mut running = guest.run(&["--", "sleep", "600"], Stdio::null());
    // The boot (create and start) takes longer than this even with KVM.
    std::thread::sleep(Duration::from_millis(300));
    let early = running.child.try_wait().expect("try_wait");
    assert!(early.is_none(), "hcsctl ended before the signal: {early:?}");
    running.signal(libc::SIGINT);
    let signalled = Instant::now();
    let ended = running.finish();
    let took = signalled.elapsed();
    eprintln!("SIGINT during the boot: exit after {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "hcsctl took {took:?} to exit after SIGINT: {}",
        ended.describe()
    );
    // `run -- CMD`: a Ctrl-C during the boot, before CMD started, exits 130.
    assert_eq!(ended.status.code(), Some(130), "{}", ended.describe());
    assert_eq!(ended.stdout, "", "{}", ended.describe());
    guest.assert_no_qemu();
}

#[test]
fn a_terminal_ctrl_c_reaches_the_command_not_qemu() {
    let _one = one_vm();
    let guest = Guest::new("group", "console=ttyS0 quiet");
    let mut running = guest.run(
        &["--", "/bin/sh", "-c", "echo ready; exec sleep 600"],
        Stdio::null(),
    );
    running.read_until("ready");
    // A Ctrl-C at a terminal signals the whole foreground job: QEMU, in a group of its own,
    // must not die of it; hcsctl forwards it to the command (SIGINT: exit 130).
    running.signal_group(libc::SIGINT);
    let ended = running.finish();
    assert_eq!(ended.status.code(), Some(130), "{}", ended.describe());
    assert!(
        !ended.stderr.contains("HCS_E"),
        "the VM died under the command: {}",
        ended.describe()
    );
    guest.assert_no_qemu();
}
