//! Using a guest from this terminal: a command with our stdio, or a serial console.
//!
//! `hcsctl run DOC.json -- CMD` and `hcsctl run DOC.json --console` boot a throw-away VM
//! (like `docker run --rm`); `hcsctl exec ID -- CMD` and `hcsctl console ID` use a system
//! that already runs and leave it running. Both pairs share the relays below.
//!
//! ```text
//!  relay:  HcsCreateProcess(CMD, pipes or a pty)
//!     our stdin ──> process stdin      process stdout ──> our stdout
//!                                      process stderr ──> our stderr
//!  ProcessExited ──> drain stdout/stderr ──> CMD's exit code
//!  first SIGINT/SIGTERM ──> forwarded to CMD; the second ──> CMD killed (exit 130)
//!  --tty: a guest terminal (EmulateConsole, ConsoleSize), ours in raw mode,
//!         SIGWINCH ──> HcsModifyProcess ConsoleSize
//!
//!  attach: the ComPort's Unix socket <──> our stdin/stdout, until the system exits
//!  run --console: first SIGINT/SIGTERM ──> VM terminated (exit 0 after its forced exit)
//!  run: a SIGINT/SIGTERM during the boot (boot.rs) ──> VM terminated at once; exit 130 with
//!       -- CMD (CMD never ran: as if killed), 0 with --console (the forced exit)
//! ```
//!
//! `--console` of `run` connects to the guest's first serial port (COM1, ttyS0: the kernel
//! console with `console=ttyS0`) before the start, so that no boot message is lost.

use crate::boot::{boot, Boot};
use crate::terminal::RawMode;
use crate::{read_document, CliError, ConsoleArgs, ExecArgs, RunArgs};
use hcs::{ComputeSystem, HResult};
use serde_json::{json, Value};
use signal_hook::consts::{SIGINT, SIGTERM, SIGWINCH};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long tearing the VM down may take.
const TEARDOWN: Duration = Duration::from_secs(30);

/// How often the wait loops look at signals.
const TICK: Duration = Duration::from_millis(100);

/// Progress on stderr, only for a person at a terminal (never mixed into piped output).
fn progress(text: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("hcsctl: {text}");
    }
}

fn thread_error(e: std::io::Error) -> CliError {
    CliError::Setup(format!("cannot start a thread: {e}"))
}

fn system_id(args: &RunArgs) -> String {
    args.id
        .clone()
        .unwrap_or_else(|| crate::run::default_id(&args.document))
}

/// `--json` makes no sense where the output is the guest's own bytes.
fn refuse_json(json: bool, what: &str) -> Result<(), CliError> {
    if json {
        return Err(CliError::Usage(format!(
            "--json does not apply to {what}: its output is the guest's"
        )));
    }
    Ok(())
}

/// `hcsctl run DOC [--tty] -- CMD ARGS...`: returns CMD's exit code (its low 8 bits), or 130
/// when a signal came during the boot.
pub(crate) fn run_command(args: &RunArgs, json: bool) -> Result<u8, CliError> {
    refuse_json(json, "run -- CMD")?;
    let text = crate::document::absolute(&read_document(&args.document)?);
    let id = system_id(args);
    let signals = Signals::watch()?;
    progress(&format!("booting {id} ..."));
    let system = match boot(&id, &text, |_| Ok(()), || signals.count() > 0)? {
        Boot::Running(system) => system,
        Boot::Interrupted(system) => {
            progress("terminating the VM");
            let _ = system.terminate().wait_timeout(TEARDOWN);
            return Ok(130);
        }
    };
    let outcome = relay(&system, &args.command, args.tty, &signals);
    if matches!(outcome, Ok(130)) {
        progress("terminating the VM");
    }
    let _ = system.terminate().wait_timeout(TEARDOWN);
    outcome
}

/// `hcsctl exec ID [--tty] -- CMD ARGS...`: returns CMD's exit code; the system runs on.
pub(crate) fn exec(args: &ExecArgs) -> Result<u8, CliError> {
    let signals = Signals::watch()?;
    let system = ComputeSystem::open(&args.id)?;
    relay(&system, &args.command, args.tty, &signals)
}

/// The guest terminal's size without a terminal here: rows, columns.
const DEFAULT_SIZE: (u16, u16) = (24, 80);

/// The `ProcessParameters` of a relayed command: our `TERM`, three pipes, or with `tty` a
/// terminal of our terminal's size, else 24x80 (its stderr is the terminal).
fn process_parameters(command: &[String], tty: bool) -> Value {
    let mut parameters = json!({
        "CommandArgs": command,
        "WorkingDirectory": "/",
        "Environment": {"TERM": std::env::var("TERM").unwrap_or_else(|_| "dumb".into())},
        "CreateStdInPipe": true,
        "CreateStdOutPipe": true,
        "CreateStdErrPipe": !tty,
    });
    if tty {
        parameters["EmulateConsole"] = json!(true);
        let (rows, cols) = crate::terminal::size().unwrap_or(DEFAULT_SIZE);
        parameters["ConsoleSize"] = json!([rows, cols]);
    }
    parameters
}

/// Tells a guest terminal our terminal's new size (after a SIGWINCH).
fn resize(process: &hcs::Process) {
    if let Some((rows, cols)) = crate::terminal::size() {
        let request = json!({
            "Operation": "ConsoleSize",
            "ConsoleSize": { "Height": rows, "Width": cols },
        });
        let _ = process
            .modify(&request.to_string())
            .wait_timeout(Duration::from_secs(5));
    }
}

/// Runs `command` in `system` with this terminal's stdio; returns its exit code (its low 8
/// bits), or 130 after a second signal killed it.
fn relay(
    system: &ComputeSystem,
    command: &[String],
    tty: bool,
    signals: &Signals,
) -> Result<u8, CliError> {
    let parameters = process_parameters(command, tty);
    let mut process = system.create_process(&parameters.to_string())?;
    // Raw only once the process exists; restored when this function returns.
    let _raw = if tty { RawMode::enter() } else { None };
    // The guest terminal follows ours; without a terminal here no SIGWINCH comes.
    let resized = Arc::new(AtomicBool::new(false));
    let _winch = if tty {
        Some(WinchHook::register(&resized)?)
    } else {
        None
    };
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
            .map_err(thread_error)?;
    }
    let copy_out = |from: Option<std::fs::File>, to_stderr: bool| {
        std::thread::Builder::new()
            .name("hcsctl-output".into())
            .spawn(move || {
                if let Some(mut from) = from {
                    let _ = if to_stderr {
                        std::io::copy(&mut from, &mut std::io::stderr().lock()).map(|_| ())
                    } else {
                        copy_flushing(&mut from, &mut std::io::stdout())
                    };
                }
            })
    };
    let out = copy_out(stdout, false).map_err(thread_error)?;
    let err = copy_out(stderr, true).map_err(thread_error)?;
    // Wait for the exit, forwarding the first signal to the process.
    let code = loop {
        match process.wait_for_exit_code(Some(TICK)) {
            Ok(code) => break code,
            Err(e) if e.hresult == HResult::HCS_E_OPERATION_TIMEOUT => {}
            Err(e) => return Err(e.into()),
        }
        if resized.swap(false, Ordering::SeqCst) {
            resize(&process);
        }
        match signals.take() {
            Some(n) if signals.count() == 1 => {
                let _ = process
                    .signal(Some(&json!({ "Signal": n }).to_string()))
                    .wait();
            }
            Some(_) => {
                let _ = process.terminate().wait_timeout(TEARDOWN);
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

/// Copies to stdout, flushing after every read (a terminal program's prompt has no newline).
fn copy_flushing(from: &mut impl Read, to: &mut std::io::Stdout) -> std::io::Result<()> {
    let mut buffer = [0u8; 8192];
    loop {
        let n = from.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        let mut out = to.lock();
        out.write_all(&buffer[..n])?;
        out.flush()?;
    }
}

/// `hcsctl run DOC --console`: the serial console of COM1 on this terminal.
pub(crate) fn run_console(args: &RunArgs, json: bool) -> Result<u8, CliError> {
    refuse_json(json, "run --console")?;
    let text = crate::document::absolute(&read_document(&args.document)?);
    let id = system_id(args);
    let (document, socket) = with_console_port(&text, &id)?;
    let signals = Signals::watch()?;
    // Attach before the start so that no boot message is lost.
    let attach_console = |_: &ComputeSystem| {
        if let Some(dir) = socket.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
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
        attach(stream)
    };
    let system = match boot(&id, &document, attach_console, || signals.count() > 0)? {
        Boot::Running(system) => system,
        Boot::Interrupted(system) => return terminate_on_signal(&system),
    };
    match watch_exit(&system, &signals)? {
        Some(code) => Ok(code),
        None => terminate_on_signal(&system),
    }
}

/// After Ctrl-C of `run --console`: as plain `run`, terminate and exit 0 after the forced
/// exit (or with the status of an exit of its own that came first).
fn terminate_on_signal(system: &ComputeSystem) -> Result<u8, CliError> {
    progress("terminating the VM");
    let terminated = system.terminate().wait_timeout(TEARDOWN);
    match (system.wait_for_exit(Some(TICK)), terminated) {
        (Ok(status), _) => Ok(exit_code(&status)),
        (Err(_), Err(error)) => Err(error.into()),
        (Err(_), Ok(())) => Ok(exit_code(&system.wait_for_exit(Some(TEARDOWN))?)),
    }
}

/// `hcsctl console ID`: this terminal on a running system's serial port until the system
/// exits (0, or 1 after an unexpected exit) or a signal detaches it (0).
pub(crate) fn console(args: &ConsoleArgs) -> Result<u8, CliError> {
    let signals = Signals::watch()?;
    let system = ComputeSystem::open(&args.id)?;
    let pipe = args
        .pipe
        .clone()
        .unwrap_or_else(|| format!("{}-com{}", args.id, u32::from(args.port) + 1));
    let candidates = console_sockets(&pipe)?;
    let mut failures = Vec::new();
    let mut attached = None;
    for socket in &candidates {
        match UnixStream::connect(socket) {
            Ok(stream) => {
                attached = Some((stream, socket));
                break;
            }
            Err(e) => failures.push(format!("{}: {e}", socket.display())),
        }
    }
    let Some((stream, socket)) = attached else {
        return Err(CliError::Setup(format!(
            "cannot attach to the console of {} (pipe {pipe:?}; is it the NamedPipe of a \
             ComPort in its document? see --pipe): {}",
            args.id,
            failures.join("; ")
        )));
    };
    progress(&format!(
        "console of {} on {} (Ctrl-C detaches; the system keeps running)",
        args.id,
        socket.display()
    ));
    attach(stream)?;
    Ok(watch_exit(&system, &signals)?.unwrap_or(0))
}

/// The sockets that may serve the pipe `pipe`: an absolute path as it is; a pipe name
/// (`NAME` or `\\.\pipe\NAME`) where the host this hcsctl talks to puts it (hcsd's
/// runtime directory, or this user's for the embedded host).
fn console_sockets(pipe: &str) -> Result<Vec<PathBuf>, CliError> {
    let named = if pipe.starts_with('/') || pipe.starts_with(r"\\.\pipe\") {
        pipe.to_owned()
    } else {
        format!(r"\\.\pipe\{pipe}")
    };
    let socket = com_port_socket(&named)
        .map_err(|reason| CliError::Usage(format!("--pipe: {reason}")))?
        .ok_or_else(|| CliError::Usage("--pipe: empty".into()))?;
    Ok(vec![socket])
}

/// The host's socket for a `NamedPipe` value, or why the value is refused.
fn com_port_socket(named_pipe: &str) -> Result<Option<PathBuf>, String> {
    hcs::api::com_port_socket(named_pipe)
        .map_err(|error| error.message().unwrap_or_else(|| error.hresult.to_string()))
}

/// Relays a console socket and this terminal, on two detached threads.
fn attach(stream: UnixStream) -> Result<(), CliError> {
    let mut from_guest = stream
        .try_clone()
        .map_err(|e| CliError::Setup(format!("console: {e}")))?;
    std::thread::Builder::new()
        .name("hcsctl-console-out".into())
        .spawn(move || {
            let _ = copy_flushing(&mut from_guest, &mut std::io::stdout());
        })
        .map_err(thread_error)?;
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
        .map_err(thread_error)?;
    Ok(())
}

/// Waits for the system's exit: `Some(0)` after a graceful or forced one, `Some(1)` after
/// any other, `None` when a signal came first.
fn watch_exit(system: &ComputeSystem, signals: &Signals) -> Result<Option<u8>, CliError> {
    loop {
        match system.wait_for_exit(Some(TICK)) {
            Ok(status) => return Ok(Some(exit_code(&status))),
            Err(e) if e.hresult == HResult::HCS_E_OPERATION_TIMEOUT => {}
            Err(e) => return Err(e.into()),
        }
        if signals.take().is_some() {
            return Ok(None);
        }
    }
}

/// The exit code for a system's exit status: 0 after a graceful or forced exit, else 1.
fn exit_code(status: &str) -> u8 {
    let status: Value = serde_json::from_str(status).unwrap_or_default();
    match status["ExitType"].as_str() {
        Some("GracefulExit" | "ForcedExit") => 0,
        _ => 1,
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
    let socket = com_port_socket(&named)
        .map_err(|reason| CliError::Setup(format!("ComPorts.0.NamedPipe: {reason}")))?
        .ok_or_else(|| CliError::Setup("COM1 is disconnected".into()))?;
    Ok((document.to_string(), socket))
}

/// SIGWINCH sets a flag while this lives (the default, ignoring it, comes back on drop).
struct WinchHook(signal_hook::SigId);

impl WinchHook {
    fn register(flag: &Arc<AtomicBool>) -> Result<WinchHook, CliError> {
        signal_hook::flag::register(SIGWINCH, Arc::clone(flag))
            .map(WinchHook)
            .map_err(|e| CliError::Setup(format!("cannot handle SIGWINCH: {e}")))
    }
}

impl Drop for WinchHook {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.0);
    }
}

/// SIGINT and SIGTERM, counted, so that the wait loops can react between waits.
pub(crate) struct Signals {
    last: Arc<std::sync::atomic::AtomicI32>,
    seen: Arc<std::sync::atomic::AtomicUsize>,
    fresh: Arc<AtomicBool>,
}

impl Signals {
    /// Catches SIGINT and SIGTERM from now on (they no longer end the process).
    pub(crate) fn watch() -> Result<Signals, CliError> {
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
            .map_err(thread_error)?;
        Ok(signals)
    }

    /// The last signal if one arrived since the previous call.
    pub(crate) fn take(&self) -> Option<i32> {
        self.fresh
            .swap(false, Ordering::SeqCst)
            .then(|| self.last.load(Ordering::SeqCst))
    }

    /// How many signals arrived in all.
    pub(crate) fn count(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters() {
        let command = vec![String::from("uname"), String::from("-a")];
        let pipes = process_parameters(&command, false);
        assert_eq!(pipes["CommandArgs"], json!(["uname", "-a"]));
        assert_eq!(pipes["CreateStdErrPipe"], true);
        assert!(pipes.get("EmulateConsole").is_none());
        let tty = process_parameters(&command, true);
        assert_eq!(tty["EmulateConsole"], true);
        assert_eq!(tty["CreateStdErrPipe"], false);
        // The size of the terminal the test runs in, else 24x80.
        let (rows, cols) = crate::terminal::size().unwrap_or(DEFAULT_SIZE);
        assert_eq!(tty["ConsoleSize"], json!([rows, cols]));
    }

    #[test]
    fn console_socket_candidates() {
        let path = console_sockets("/tmp/x.sock").unwrap();
        assert_eq!(path, vec![PathBuf::from("/tmp/x.sock")]);
        let named = console_sockets("vm-com1").unwrap();
        let host = hcs::api::com_port_socket(r"\\.\pipe\vm-com1").unwrap();
        assert_eq!(Some(named[0].clone()), host);
        assert!(named[0].ends_with("pipe/vm-com1"));
        assert_eq!(console_sockets(r"\\.\pipe\vm-com1").unwrap(), named);
        assert!(matches!(console_sockets("a/b"), Err(CliError::Usage(_))));
    }
}
