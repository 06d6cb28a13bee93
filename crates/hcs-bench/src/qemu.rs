//! The QEMU peer of the lifecycle benchmark: the measurement of `scripts/bench-qemu-peer`,
//! in Rust so that it can be interleaved with our own cycles in one run.
//!
//! One sample: launch `qemu-system-x86_64 -machine microvm,accel=kvm -m 1024 -smp 2` with
//! no kernel (microvm's firmware finds nothing to boot and idles: our empty VM), connect to
//! QMP, `qmp_capabilities`, poll `query-status` until "running", `quit`, reap the process.
//! The wall time from launch to exit is the sample; the three phases are kept as well.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::stats::Samples;
use crate::{BenchError, Result};

const TIMEOUT: Duration = Duration::from_secs(30);

/// How to launch the peer.
#[derive(Debug, Clone)]
pub struct QemuPeer {
    /// The QEMU binary.
    pub binary: PathBuf,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// Where the QMP sockets go.
    pub workdir: PathBuf,
    next: usize,
}

/// One sample, split in phases.
#[derive(Debug, Clone, Copy)]
pub struct QemuSample {
    /// Launch to exit.
    pub total: Duration,
    /// Launch to the QMP greeting.
    pub launch_to_qmp: Duration,
    /// QMP up to `query-status` saying "running".
    pub qmp_to_running: Duration,
    /// `quit` to the process reaped.
    pub quit_to_exit: Duration,
}

/// The peer's samples, phase by phase.
#[derive(Debug, Clone, Default)]
pub struct QemuSamples {
    /// Launch to exit.
    pub total: Samples,
    /// Launch to QMP.
    pub launch_to_qmp: Samples,
    /// QMP to running.
    pub qmp_to_running: Samples,
    /// Quit to exit.
    pub quit_to_exit: Samples,
}

impl QemuSamples {
    /// Adds one sample.
    pub fn push(&mut self, sample: QemuSample) {
        self.total.push(sample.total);
        self.launch_to_qmp.push(sample.launch_to_qmp);
        self.qmp_to_running.push(sample.qmp_to_running);
        self.quit_to_exit.push(sample.quit_to_exit);
    }
}

impl QemuPeer {
    /// Finds `qemu-system-x86_64` on `PATH` and checks with one run that it reaches
    /// "running" with `accel=kvm` (or `accel`, when given). `Err` says why not.
    pub fn probe(accel: &str) -> Result<QemuPeer> {
        let binary = find_on_path("qemu-system-x86_64")
            .ok_or("qemu-system-x86_64 not found on PATH (scripts/setup installs it)")?;
        let workdir = std::env::temp_dir().join(format!("hcs-bench-qemu-{}", std::process::id()));
        std::fs::create_dir_all(&workdir)
            .map_err(|e| format!("creating {}: {e}", workdir.display()))?;
        let mut peer = QemuPeer {
            binary,
            accel: accel.to_owned(),
            workdir,
            next: 0,
        };
        peer.sample()?;
        Ok(peer)
    }

    /// The QEMU command line of one sample (with `SOCK` for the socket).
    pub fn command_line(&self) -> String {
        let name = self
            .binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::iter::once(name)
            .chain(self.arguments(Path::new("SOCK")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `qemu-system-x86_64 --version`, first line.
    pub fn version(&self) -> String {
        Command::new(&self.binary)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".into())
    }

    fn arguments(&self, socket: &Path) -> Vec<String> {
        [
            "-machine",
            &format!("microvm,accel={}", self.accel),
            "-m",
            "1024",
            "-smp",
            "2",
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-display",
            "none",
            "-qmp",
            &format!("unix:{},server,wait=off", socket.display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// One launch + QMP handshake + running + quit + exit.
    pub fn sample(&mut self) -> Result<QemuSample> {
        let socket = self.workdir.join(format!("qmp-{}.sock", self.next));
        self.next += 1;
        let start = Instant::now();
        let deadline = start + TIMEOUT;
        let mut child = Command::new(&self.binary)
            .args(self.arguments(&socket))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("launching {}: {e}", self.binary.display()))?;
        let outcome = drive(&mut child, &socket, start, deadline);
        let _ = std::fs::remove_file(&socket);
        match outcome {
            Ok(sample) => Ok(sample),
            Err(error) => {
                let _ = child.kill();
                let output = child.wait_with_output().ok();
                let stderr = output
                    .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
                    .unwrap_or_default();
                Err(BenchError(format!("{error}; qemu stderr: {stderr}")))
            }
        }
    }
}

impl Drop for QemuPeer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

fn drive(
    child: &mut Child,
    socket: &Path,
    start: Instant,
    deadline: Instant,
) -> Result<QemuSample> {
    let stream = loop {
        match UnixStream::connect(socket) {
            Ok(stream) => break stream,
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("qemu exited ({status}) before QMP was up").into());
                }
                if Instant::now() > deadline {
                    return Err("timed out waiting for the QMP socket".into());
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    };
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut qmp = Qmp {
        reader: BufReader::new(stream.try_clone().map_err(|e| e.to_string())?),
        writer: stream,
    };
    let greeting = qmp.read()?;
    if greeting.get("QMP").is_none() {
        return Err(format!("unexpected QMP greeting: {greeting}").into());
    }
    // As in scripts/bench-qemu-peer: QMP is up once its greeting has arrived.
    let qmp_up = Instant::now();
    qmp.execute("qmp_capabilities")?;
    loop {
        let status = qmp.execute("query-status")?;
        if status["status"] == "running" {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("never reached running (last status {status})").into());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let running = Instant::now();
    // QEMU may close the socket before its reply to quit arrives.
    let _ = qmp.execute("quit");
    drop(qmp);
    let status = child.wait().map_err(|e| e.to_string())?;
    let exited = Instant::now();
    if !status.success() {
        return Err(format!("qemu exited with {status}").into());
    }
    Ok(QemuSample {
        total: exited - start,
        launch_to_qmp: qmp_up - start,
        qmp_to_running: running - qmp_up,
        quit_to_exit: exited - running,
    })
}

/// A minimal QMP client: one request, one reply; events are skipped.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn read(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| format!("reading QMP: {e}"))?;
        if n == 0 {
            return Err("QMP connection closed".into());
        }
        serde_json::from_str(&line).map_err(|e| BenchError(format!("QMP said {line:?}: {e}")))
    }

    fn execute(&mut self, command: &str) -> Result<serde_json::Value> {
        let request = format!("{{\"execute\":\"{command}\"}}\n");
        self.writer
            .write_all(request.as_bytes())
            .map_err(|e| format!("writing QMP: {e}"))?;
        loop {
            let reply = self.read()?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(format!("{command}: {error}").into());
            }
            return Ok(reply.get("return").cloned().unwrap_or_default());
        }
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}
