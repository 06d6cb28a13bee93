//! The processes the host created: spawning them with their stdio, the table that tracks
//! them, reaping every child (orphans too, as PID 1), signals, stdin, terminal size, and the
//! one `ProcessExited` per process, sent once its output has drained.
//!
//! ```text
//!  CreateProcess: plan (checks) -> connect stdio ports -> [table lock: pipes/pty, fork+exec,
//!                 relays started, entry inserted] -> Created{pid} -> Announce dropped
//!  reaper thread: SIGCHLD -> [table lock: waitpid(-1, WNOHANG) loop] -> finisher per exit
//!  finisher:      stop stdin -> wait output relays (<= 2 s, then stop them) -> wait Announce
//!                 -> ProcessExited{pid, exit_code} -> entry becomes a tombstone
//! ```
//!
//! Every fork happens under the table lock, and the reaper waits under the same lock, so
//! the reaper can never take a child before its entry exists, nor a pid be signalled after
//! it was reaped and reused.

use crate::error::Error;
use crate::log::log;
use crate::relay::{self, End, Stop};
use crate::spawn;
use crate::transport::{lock, Endpoint, Sink, Stream};
use hcs_guest_protocol::{
    CreateProcess, GuestMessage, ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_NOT_FOUND,
    E_FAIL, E_INVALIDARG, HCS_E_PROCESS_ALREADY_STOPPED,
};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::pty::{openpty, Winsize};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios::{tcgetattr, LocalFlags};
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long after a process exits its output may still drain (a grandchild can hold the
/// pipe open) before its streams are closed anyway.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Tombstones kept so that a signal to a recently exited pid says "already stopped".
const TOMBSTONES: usize = 4096;

/// Stack of relay and helper threads (their buffers are on the heap).
const THREAD_STACK: usize = 128 * 1024;

/// The table of processes created by the host, and the reaper.
pub struct Processes {
    table: Mutex<Table>,
    changed: Condvar,
    sink: Arc<Sink>,
    endpoint: Endpoint,
    pid1: bool,
    serial: AtomicU64,
}

#[derive(Default)]
struct Table {
    live: HashMap<u32, Entry>,
    gone: VecDeque<u32>,
}

struct Entry {
    serial: u64,
    /// Set when reaped.
    exit: Option<i32>,
    stdin_stop: Arc<Stop>,
    output_stop: Arc<Stop>,
    pty: Option<Arc<OwnedFd>>,
    /// Taken by the reaper for the finisher.
    finish: Option<Finish>,
}

struct Finish {
    /// Disconnected once every relay of the process has closed its stream.
    relays: Receiver<()>,
    /// Disconnected once the `Created` answer was sent.
    announced: Receiver<()>,
}

/// Held by the request that created a process until its `Created` answer is sent; the
/// process's `ProcessExited` waits for it to be dropped, so it never comes first.
pub struct Announce {
    _created_sent: Sender<()>,
}

impl Processes {
    /// An empty table; `ProcessExited` goes to `sink`, stdio connects through `endpoint`.
    /// `pid1`: signals at shutdown go to every process, not only ours.
    pub fn new(sink: Arc<Sink>, endpoint: Endpoint, pid1: bool) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Table::default()),
            changed: Condvar::new(),
            sink,
            endpoint,
            pid1,
            serial: AtomicU64::new(0),
        })
    }

    /// Starts the reaper thread. SIGCHLD must already be blocked in every thread
    /// ([`block_sigchld`], called first thing in `main`).
    pub fn start_reaper(self: &Arc<Self>) -> Result<(), Error> {
        let this = self.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let mut set = SigSet::empty();
                set.add(Signal::SIGCHLD);
                loop {
                    // A failed sigwait (not expected) still reaps, after a short pause.
                    if set.wait().is_err() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    this.reap();
                }
            })
            .map(drop)
            .map_err(|e| Error::io("start the reaper", e))
    }

    /// Reaps every exited child; the ones we created get their finisher.
    fn reap(self: &Arc<Self>) {
        let mut exits = Vec::new();
        {
            let mut table = lock(&self.table);
            loop {
                let mut status = 0;
                // SAFETY: waitpid writes only to `status`, a local.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid == 0 {
                    break;
                }
                if pid < 0 {
                    if Errno::last() == Errno::EINTR {
                        continue;
                    }
                    break; // ECHILD: no children at all
                }
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else if libc::WIFSIGNALED(status) {
                    128 + libc::WTERMSIG(status)
                } else {
                    continue;
                };
                let pid = pid as u32;
                if let Some(entry) = table.live.get_mut(&pid) {
                    if entry.exit.is_none() {
                        entry.exit = Some(code);
                        if let Some(finish) = entry.finish.take() {
                            exits.push(Exited {
                                pid,
                                code,
                                serial: entry.serial,
                                stdin_stop: entry.stdin_stop.clone(),
                                output_stop: entry.output_stop.clone(),
                                finish,
                            });
                        }
                    }
                }
            }
        }
        for exited in exits {
            let this = self.clone();
            let slot = Arc::new(Mutex::new(Some(exited)));
            let theirs = slot.clone();
            let started = std::thread::Builder::new()
                .name("exit".into())
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    if let Some(exited) = lock(&theirs).take() {
                        this.finish(exited);
                    }
                });
            if started.is_err() {
                // No thread to spare: finish here (the reaper pauses meanwhile).
                if let Some(exited) = lock(&slot).take() {
                    self.finish(exited);
                }
            }
        }
    }

    /// Closes the streams of an exited process and reports its exit, exactly once.
    fn finish(&self, exited: Exited) {
        let Exited {
            pid,
            code,
            serial,
            stdin_stop,
            output_stop,
            finish,
        } = exited;
        stdin_stop.fire();
        let deadline = Instant::now() + OUTPUT_GRACE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match finish.relays.recv_timeout(left) {
                Ok(()) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    log!("pid {pid} exited but its output is still open; closing it");
                    output_stop.fire();
                    // Stopped relays end at once; bound the wait anyway.
                    let _ = finish.relays.recv_timeout(Duration::from_secs(1));
                    break;
                }
            }
        }
        // Blocks until the CreateProcess request dropped its Announce (answer sent).
        let _ = finish.announced.recv();
        self.sink.send(&GuestMessage::ProcessExited {
            pid,
            exit_code: code,
        });
        let mut table = lock(&self.table);
        if table.live.get(&pid).is_some_and(|e| e.serial == serial) {
            table.live.remove(&pid);
        }
        table.gone.push_back(pid);
        while table.gone.len() > TOMBSTONES {
            table.gone.pop_front();
        }
        self.changed.notify_all();
    }

    /// Starts a process for the host. Nothing is left behind on failure.
    pub fn create(&self, request: &CreateProcess) -> Result<(u32, Announce), Error> {
        let plan = spawn::plan(request)?;
        let connect = |port: Option<u32>, name: &str| -> Result<Option<Stream>, Error> {
            port.map(|port| {
                self.endpoint.connect_port(port).map_err(|e| {
                    Error::request(
                        E_FAIL,
                        format!("cannot connect {name} to host port {port}: {e}"),
                    )
                })
            })
            .transpose()
        };
        let stdin_stream = connect(request.stdin_port, "stdin")?;
        let stdout_stream = connect(request.stdout_port, "stdout")?;
        let stderr_stream = connect(request.stderr_port, "stderr")?;

        let mut command = Command::new(&plan.program);
        command
            .arg0(&request.argv[0])
            .args(&request.argv[1..])
            .env_clear()
            .envs(&request.env)
            .current_dir(&plan.cwd);
        if let Some((uid, gid)) = plan.user {
            command.uid(uid).gid(gid);
        }
        let terminal = request.terminal.is_some();
        // SAFETY: the closure runs in the child between fork and exec and only makes
        // async-signal-safe system calls (setsid, ioctl); std has already put the pty slave
        // (when there is one) on fd 0.
        unsafe {
            command.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }

        let stdin_stop = Arc::new(Stop::new()?);
        let output_stop = Arc::new(Stop::new()?);
        let (relays_tx, relays_rx) = mpsc::channel::<()>();
        let (announce_tx, announce_rx) = mpsc::channel::<()>();

        // From here descriptors that a child must inherit exist: hold the table lock (all
        // forks happen under it) until the child is forked and they are closed again.
        let mut table = lock(&self.table);
        let mut relays: Vec<Relay> = Vec::new();
        let mut pty = None;
        match request.terminal {
            Some((rows, cols)) => {
                let size = Winsize {
                    ws_row: rows,
                    ws_col: cols,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                let ends = openpty(Some(&size), None)
                    .map_err(|e| Error::request(E_FAIL, format!("openpty: {e}")))?;
                cloexec(&ends.master)?;
                cloexec(&ends.slave)?;
                let master = Arc::new(ends.master);
                command
                    .stdin(Stdio::from(dup(&ends.slave)?))
                    .stdout(Stdio::from(dup(&ends.slave)?))
                    .stderr(Stdio::from(ends.slave));
                if let Some(stream) = stdin_stream {
                    relays.push(Relay {
                        name: "stdin",
                        src: stream.into_fd(),
                        dst: dup(&master)?,
                        stop: stdin_stop.clone(),
                        eot_on_end: true,
                        splice: false,
                    });
                }
                // With no stdout stream the output still has to be drained.
                let out = match stdout_stream {
                    Some(stream) => stream.into_fd(),
                    None => dev_null()?,
                };
                relays.push(Relay {
                    name: "stdout",
                    src: dup(&master)?,
                    dst: out,
                    stop: output_stop.clone(),
                    eot_on_end: false,
                    splice: false,
                });
                // A terminal has no separate stderr: its stream (if any) ends at once.
                if let Some(stream) = stderr_stream {
                    stream.shutdown(nix::sys::socket::Shutdown::Both);
                }
                pty = Some(master);
            }
            None => {
                match stdin_stream {
                    Some(stream) => {
                        let (child, ours) = pipe()?;
                        command.stdin(Stdio::from(child));
                        relays.push(Relay {
                            name: "stdin",
                            src: stream.into_fd(),
                            dst: ours,
                            stop: stdin_stop.clone(),
                            eot_on_end: false,
                            splice: false,
                        });
                    }
                    None => {
                        command.stdin(Stdio::null());
                    }
                }
                for (name, stream) in [("stdout", stdout_stream), ("stderr", stderr_stream)] {
                    let child_end = match stream {
                        Some(stream) => {
                            let (ours, child) = pipe()?;
                            // Bigger pipes mean fewer wake-ups per megabyte.
                            let _ = fcntl(ours.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(1 << 20));
                            relays.push(Relay {
                                name,
                                src: ours,
                                dst: stream.into_fd(),
                                stop: output_stop.clone(),
                                eot_on_end: false,
                                splice: true,
                            });
                            Stdio::from(child)
                        }
                        None => Stdio::null(),
                    };
                    if name == "stdout" {
                        command.stdout(child_end);
                    } else {
                        command.stderr(child_end);
                    }
                }
            }
        }
        let child = command
            .spawn()
            .map_err(|e| spawn_error(&request.argv[0], e))?;
        let pid = child.id();
        // Closes the child's ends of the pipes / the pty slave in this process. Dropping
        // a Child neither waits nor kills; the reaper owns waiting.
        drop(command);
        drop(child);
        for relay in relays {
            relay.start(relays_tx.clone());
        }
        drop(relays_tx);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        table.gone.retain(|p| *p != pid);
        table.live.insert(
            pid,
            Entry {
                serial,
                exit: None,
                stdin_stop,
                output_stop,
                pty,
                finish: Some(Finish {
                    relays: relays_rx,
                    announced: announce_rx,
                }),
            },
        );
        Ok((
            pid,
            Announce {
                _created_sent: announce_tx,
            },
        ))
    }

    /// Sends `signal` to the process group of `pid` (or to `pid` if it left its group).
    pub fn signal(&self, pid: u32, signal: i32) -> Result<(), Error> {
        if !(1..=64).contains(&signal) {
            return Err(Error::request(
                E_INVALIDARG,
                format!("{signal} is not a signal number (1..=64)"),
            ));
        }
        let table = lock(&self.table);
        match table.live.get(&pid) {
            Some(entry) if entry.exit.is_none() => {
                let pid = pid as i32;
                // SAFETY: kill takes plain integers and touches no memory of ours; the
                // table lock keeps the pid from being reaped (and reused) meanwhile.
                let sent = unsafe { libc::kill(-pid, signal) == 0 || libc::kill(pid, signal) == 0 };
                if sent {
                    Ok(())
                } else {
                    Err(Error::request(
                        E_FAIL,
                        format!("kill {pid}: {}", Errno::last()),
                    ))
                }
            }
            Some(_) => Err(already_stopped(pid)),
            None if table.gone.contains(&pid) => Err(already_stopped(pid)),
            None => Err(not_found(pid)),
        }
    }

    /// Closes the process's stdin (the child reads end of file).
    pub fn close_stdin(&self, pid: u32) -> Result<(), Error> {
        let table = lock(&self.table);
        match table.live.get(&pid) {
            Some(entry) => {
                // Drain, not stop: the bytes written before the close still arrive.
                entry.stdin_stop.drain();
                Ok(())
            }
            None if table.gone.contains(&pid) => Ok(()),
            None => Err(not_found(pid)),
        }
    }

    /// Sets the terminal size of a process created with a terminal.
    pub fn resize(&self, pid: u32, rows: u16, cols: u16) -> Result<(), Error> {
        let table = lock(&self.table);
        match table.live.get(&pid) {
            Some(entry) if entry.exit.is_none() => {
                let Some(master) = entry.pty.as_ref() else {
                    return Err(Error::request(
                        E_INVALIDARG,
                        format!("process {pid} has no terminal"),
                    ));
                };
                let size = Winsize {
                    ws_row: rows,
                    ws_col: cols,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is a local.
                let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
                if r < 0 {
                    return Err(Error::request(
                        E_FAIL,
                        format!("TIOCSWINSZ: {}", Errno::last()),
                    ));
                }
                Ok(())
            }
            Some(_) => Err(already_stopped(pid)),
            None if table.gone.contains(&pid) => Err(already_stopped(pid)),
            None => Err(not_found(pid)),
        }
    }

    /// Sends `signal` to every process: as PID 1 to all of them (`kill(-1)`), otherwise
    /// to the process groups this agent created.
    pub fn signal_all(&self, signal: Signal) {
        let table = lock(&self.table);
        if self.pid1 {
            // SAFETY: kill takes plain integers; -1 is every process but PID 1 itself.
            unsafe { libc::kill(-1, signal as i32) };
            return;
        }
        for (pid, entry) in &table.live {
            if entry.exit.is_none() {
                // SAFETY: as in `signal`; the lock keeps the pid ours.
                unsafe { libc::kill(-(*pid as i32), signal as i32) };
            }
        }
    }

    /// Waits until every created process has been reported exited, at most `timeout`.
    /// True when none is left.
    pub fn wait_all_reported(&self, timeout: Duration) -> bool {
        let table = lock(&self.table);
        let (table, _) = self
            .changed
            .wait_timeout_while(table, timeout, |t| !t.live.is_empty())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table.live.is_empty()
    }
}

/// What the reaper hands a finisher.
struct Exited {
    pid: u32,
    code: i32,
    serial: u64,
    stdin_stop: Arc<Stop>,
    output_stop: Arc<Stop>,
    finish: Finish,
}

/// One direction of a process's stdio.
struct Relay {
    name: &'static str,
    src: OwnedFd,
    dst: OwnedFd,
    stop: Arc<Stop>,
    /// Source is a pipe and destination a socket: try `splice` first.
    splice: bool,
    /// For a terminal's stdin: when the stream ends, type ^D if the line discipline is
    /// canonical, so that a shell on the terminal sees end of file.
    eot_on_end: bool,
}

impl Relay {
    /// Runs the relay on its own thread; `done` is dropped once both ends are closed.
    fn start(self, done: Sender<()>) {
        let name = self.name;
        let started = std::thread::Builder::new()
            .name(name.into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let result = relay::set_nonblocking(self.src.as_fd())
                    .and_then(|()| relay::set_nonblocking(self.dst.as_fd()));
                if let Err(e) = result {
                    log!("{name} relay: {e}");
                } else {
                    let (mut end, moved) = if self.splice {
                        relay::splice_pipe(self.src.as_fd(), self.dst.as_fd(), &self.stop)
                    } else {
                        (End::PeerGone, 0)
                    };
                    if !self.splice || (end == End::PeerGone && moved == 0) {
                        end = relay::pump(self.src.as_fd(), self.dst.as_fd(), &self.stop).0;
                    }
                    if self.eot_on_end && end != End::PeerGone {
                        type_eot(&self.dst);
                    }
                }
                // A clean end of stream for the host (a pipe ignores this).
                let _ = nix::sys::socket::shutdown(
                    self.dst.as_raw_fd(),
                    nix::sys::socket::Shutdown::Write,
                );
                drop(self.src);
                drop(self.dst);
                drop(done);
            });
        if let Err(e) = started {
            log!("cannot start the {name} relay: {e}");
        }
    }
}

fn type_eot(master: &OwnedFd) {
    if let Ok(termios) = tcgetattr(master.as_fd()) {
        if termios.local_flags.contains(LocalFlags::ICANON) {
            let _ = nix::unistd::write(master, &[4u8]);
        }
    }
}

/// Blocks SIGCHLD in the calling thread (and so in every thread it starts later); the
/// reaper takes it with `sigwait`. Call first in `main`.
pub fn block_sigchld() -> Result<(), Error> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.thread_block()
        .map_err(|e| Error::os("block SIGCHLD", e))
}

fn spawn_error(argv0: &str, e: std::io::Error) -> Error {
    let code = match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => ERROR_FILE_NOT_FOUND,
        Some(libc::EACCES) | Some(libc::EPERM) => ERROR_ACCESS_DENIED,
        _ if e.kind() == std::io::ErrorKind::InvalidInput => E_INVALIDARG,
        _ => E_FAIL,
    };
    Error::request(code, format!("cannot start {argv0}: {e}"))
}

fn already_stopped(pid: u32) -> Error {
    Error::request(
        HCS_E_PROCESS_ALREADY_STOPPED,
        format!("process {pid} has already exited"),
    )
}

fn not_found(pid: u32) -> Error {
    Error::request(ERROR_NOT_FOUND, format!("no process {pid}"))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::request(E_FAIL, format!("pipe: {e}")))
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, Error> {
    fd.try_clone()
        .map_err(|e| Error::request(E_FAIL, format!("dup: {e}")))
}

fn cloexec(fd: &OwnedFd) -> Result<(), Error> {
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map(drop)
        .map_err(|e| Error::request(E_FAIL, format!("FD_CLOEXEC: {e}")))
}

fn dev_null() -> Result<OwnedFd, Error> {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| Error::request(E_FAIL, format!("/dev/null: {e}")))
}
