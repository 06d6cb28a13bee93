//! `hcsctl run DOC.json -- CMD ARGS...` and `hcsctl run DOC.json --console`: boot a Linux
//! guest, use it from this terminal, tear it down (like `docker run --rm`).
//!
//! ```text
//!  create ──> start (waits for the guest agent) ──> HcsCreateProcess(CMD, 3 pipes)
//!     our stdin ──> process stdin      process stdout ──> our stdout
//!                                      process stderr ──> our stderr
//!  ProcessExited ──> drain stdout/stderr ──> terminate the VM ──> exit with CMD's code
//!  first SIGINT/SIGTERM ──> forwarded to CMD; the second ──> terminate the VM (exit 130)
//! ```
//!
//! `--console` instead connects this terminal to the guest's first serial port (COM1,
//! ttyS0: the kernel console with `console=ttyS0`) until the VM exits; Ctrl-C terminates it.

use crate::{read_document, CliError, RunArgs};
use hcs::{ComputeSystem, HResult};
use serde_json::{json, Value};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long tearing the VM down may take.
const TEARDOWN: Duration = Duration::from_secs(30);

/// Progress on stderr, only for a person at a terminal (never mixed into piped output).
fn progress(text: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("hcsctl: {text}");
    }
}

fn system_id(args: &RunArgs) -> String {
    args.id
        .clone()
        .unwrap_or_else(|| crate::run::default_id(&args.document))
}

/// `hcsctl run DOC -- CMD ARGS...`: returns CMD's exit code (its low 8 bits).
pub(crate) fn run_command(args: &RunArgs) -> Result<u8, CliError> {
    let text = read_document(&args.document)?;
    let id = system_id(args);
    let signals = Signals::watch()?;
    progress(&format!("booting {id} ..."));
    let system = ComputeSystem::create(&id, &text).wait()?;
    let outcome = run_in(&system, &args.command, &signals);
    let _ = system.terminate().wait_timeout(TEARDOWN);
    outcome
}

fn run_in(system: &ComputeSystem, command: &[String], signals: &Signals) -> Result<u8, CliError> {
    system.start().wait()?;
    let parameters = json!({
        "CommandArgs": command,
        "WorkingDirectory": "/",
        "Environment": {"TERM": std::env::var("TERM").unwrap_or_else(|_| "dumb".into())},
        "CreateStdInPipe": true,
        "CreateStdOutPipe": true,
        "CreateStdErrPipe": true,
    });
    let mut process = system.create_process(&parameters.to_string())?;
    let stdin = process.take_stdin();
    let stdout = process.take_stdout();
    let stderr = process.take_stderr();
    // Stdin is copied on a detached thread: it may block on our terminal forever.
    if let Some(mut to_guest) = stdin {
        std::thread::Builder::new()
            .name("hcsctl-stdin".into())
            .spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_guest);
                // Dropping `to_guest` gives the guest process EOF.
            })
            .map_err(|e| CliError::Setup(format!("cannot start a thread: {e}")))?;
    }
    let copy_out = |from: Option<std::fs::File>, to_stderr: bool| {
        std::thread::Builder::new()
            .name("hcsctl-output".into())
            .spawn(move || {
                if let Some(mut from) = from {
                    let _ = if to_stderr {
                        std::io::copy(&mut from, &mut std::io::stderr().lock())
                    } else {
                        std::io::copy(&mut from, &mut std::io::stdout().lock())
                    };
                }
            })
    };
    let out = copy_out(stdout, false)
        .map_err(|e| CliError::Setup(format!("cannot start a thread: {e}")))?;
    let err = copy_out(stderr, true)
        .map_err(|e| CliError::Setup(format!("cannot start a thread: {e}")))?;
    // Wait for the exit, forwarding the first signal to the process.
    let code = loop {
        match process.wait_for_exit_code(Some(Duration::from_millis(100))) {
            Ok(code) => break code,
            Err(e) if e.hresult == HResult::HCS_E_OPERATION_TIMEOUT => {}
            Err(e) => return Err(e.into()),
        }
        match signals.take() {
            Some(n) if signals.count() == 1 => {
                let _ = process
                    .signal(Some(&json!({ "Signal": n }).to_string()))
                    .wait();
            }
            Some(_) => {
                progress("terminating the VM");
                return Ok(130);
            }
            None => {}
        }
    };
    // The agent closes the streams before it reports the exit: these end promptly.
    let _ = out.join();
    let _ = err.join();
    let _ = std::io::stdout().flush();
    Ok((code & 0xff) as u8)
}

/// `hcsctl run DOC --console`: the serial console of COM1 on this terminal.
pub(crate) fn console(args: &RunArgs) -> Result<u8, CliError> {
    let text = read_document(&args.document)?;
    let id = system_id(args);
    let (document, socket) = with_console_port(&text, &id)?;
    let signals = Signals::watch()?;
    let system = ComputeSystem::create(&id, &document).wait()?;
    if let Some(dir) = socket.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Attach before the start so that no boot message is lost.
    let stream = UnixStream::connect(&socket).map_err(|e| {
        CliError::Setup(format!(
            "cannot attach to the console at {}: {e}",
            socket.display()
        ))
    })?;
    progress(&format!(
        "console of {id} on {} (Ctrl-C terminates the VM)",
        socket.display()
    ));
    let mut from_guest = stream
        .try_clone()
        .map_err(|e| CliError::Setup(format!("console: {e}")))?;
    std::thread::Builder::new()
        .name("hcsctl-console-out".into())
        .spawn(move || {
            let _ = std::io::copy(&mut from_guest, &mut std::io::stdout().lock());
        })
        .map_err(|e| CliError::Setup(format!("cannot start a thread: {e}")))?;
    let mut to_guest = stream;
    std::thread::Builder::new()
        .name("hcsctl-console-in".into())
        .spawn(move || {
            let mut buffer = [0u8; 4096];
            let mut input = std::io::stdin().lock();
            while let Ok(n) = input.read(&mut buffer) {
                if n == 0 || to_guest.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| CliError::Setup(format!("cannot start a thread: {e}")))?;
    let started = system.start().wait();
    if let Err(error) = started {
        let _ = system.terminate().wait_timeout(TEARDOWN);
        return Err(error.into());
    }
    loop {
        match system.wait_for_exit(Some(Duration::from_millis(100))) {
            Ok(status) => {
                let status: Value = serde_json::from_str(&status).unwrap_or_default();
                return Ok(match status["ExitType"].as_str() {
                    Some("GracefulExit" | "ForcedExit") => 0,
                    _ => 1,
                });
            }
            Err(e) if e.hresult == HResult::HCS_E_OPERATION_TIMEOUT => {}
            Err(e) => return Err(e.into()),
        }
        if signals.take().is_some() {
            let _ = system.terminate().wait_timeout(TEARDOWN);
            return Ok(130);
        }
    }
}

/// The document with COM1 on a socket, and that socket's path: the document's own COM1
/// when it has one, else one added under the host's pipe directory.
fn with_console_port(text: &str, id: &str) -> Result<(String, PathBuf), CliError> {
    // An unparsable document is left to the create, which reports it properly.
    let Ok(mut document) = serde_json::from_str::<Value>(text) else {
        return Ok((text.to_owned(), PathBuf::new()));
    };
    let ports = &mut document["VirtualMachine"]["Devices"]["ComPorts"];
    if ports.is_null() {
        *ports = json!({});
    }
    let named = ports["0"]["NamedPipe"].as_str().unwrap_or("").to_owned();
    let named = if named.is_empty() {
        let name = format!(r"\\.\pipe\{id}-com1");
        ports["0"] = json!({ "NamedPipe": name });
        name
    } else {
        named
    };
    let socket = hcs_host::paths::com_port_socket(&named)
        .map_err(|reason| CliError::Setup(format!("ComPorts.0.NamedPipe: {reason}")))?
        .ok_or_else(|| CliError::Setup("COM1 is disconnected".into()))?;
    Ok((document.to_string(), socket))
}

/// SIGINT and SIGTERM, counted, so that the wait loops can react between waits.
struct Signals {
    last: Arc<std::sync::atomic::AtomicI32>,
    seen: Arc<std::sync::atomic::AtomicUsize>,
    fresh: Arc<AtomicBool>,
}

impl Signals {
    fn watch() -> Result<Signals, CliError> {
        let signals = Signals {
            last: Arc::default(),
            seen: Arc::default(),
            fresh: Arc::default(),
        };
        let mut hook = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .map_err(|e| CliError::Setup(format!("cannot handle SIGINT/SIGTERM: {e}")))?;
        let (last, seen, fresh) = (
            Arc::clone(&signals.last),
            Arc::clone(&signals.seen),
            Arc::clone(&signals.fresh),
        );
        std::thread::Builder::new()
            .name("hcsctl-signals".into())
            .spawn(move || {
                for signal in hook.forever() {
                    last.store(signal, Ordering::SeqCst);
                    seen.fetch_add(1, Ordering::SeqCst);
                    fresh.store(true, Ordering::SeqCst);
                }
            })
            .map_err(|e| CliError::Setup(format!("cannot start a thread: {e}")))?;
        Ok(signals)
    }

    /// The last signal if one arrived since the previous call.
    fn take(&self) -> Option<i32> {
        self.fresh
            .swap(false, Ordering::SeqCst)
            .then(|| self.last.load(Ordering::SeqCst))
    }

    /// How many signals arrived in all.
    fn count(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }
}
