//! Child processes (QEMU, the vsock backend): finding, spawning, signalling and reaping
//! them without ever signalling a reaped (possibly reused) pid. All of the crate's
//! `unsafe` is here.
//!
//! Children die with this process: they are spawned by one long-lived "spawner" thread with
//! `PR_SET_PDEATHSIG(SIGKILL)`. (The kernel sends that signal when the *thread* that forked
//! ends, so forking from the caller's thread, which may be short-lived, would be wrong.) A
//! crashed or killed owner thus never leaves a QEMU running. Each child leads a process
//! group of its own, so signals a terminal sends to its owner's group do not reach it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};

use parking_lot::Mutex;

use crate::error::Error;

/// Finds a program: `given` if set (the setting named `env`; it must exist), else `name`
/// on `PATH`, else in `extra`.
pub(crate) fn find_program(
    program: &'static str,
    env: &str,
    given: Option<&Path>,
    name: &str,
    extra: &[PathBuf],
) -> Result<PathBuf, Error> {
    if let Some(path) = given {
        let path = path.to_path_buf();
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::NotInstalled {
                program,
                detail: format!("{env}={} is not an executable file", path.display()),
            })
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path_var)
        .chain(extra.iter().cloned())
        .collect();
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| Error::NotInstalled {
            program,
            detail: format!(
                "no {name} in ${env}, PATH{}",
                if extra.is_empty() {
                    String::new()
                } else {
                    format!(
                        " or {}",
                        extra
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// How a child ended, as a sentence fragment ("exited with status 1", "was killed by
/// signal 9 (SIGKILL)").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExitStatus(pub String);

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A child process this crate spawned and alone reaps.
///
/// Reaping is two steps: wait until it has exited without reaping (`WNOWAIT`), then reap
/// under the state lock. [`Process::kill`] signals under the same lock only while the child
/// is not reaped, so a signal never reaches a reused pid.
pub(crate) struct Process {
    name: &'static str,
    pid: libc::pid_t,
    /// `None` while not reaped.
    reaped: Mutex<Option<ExitStatus>>,
    /// Where its stdout and stderr go.
    log: PathBuf,
}

impl Process {
    /// Spawns `program args` with stdin from /dev/null, stdout and stderr appended to
    /// `log`, and `pass_fd` (if any) as fd 3 in the child.
    pub(crate) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[OsString],
        log: &Path,
        pass_fd: Option<&OwnedFd>,
    ) -> Result<Process, Error> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("cannot create {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io(format!("cannot create {}", log.display()), e))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // A process group of its own: the Ctrl-C a terminal sends to the foreground
            // group is its owner's to handle (a tool forwards it to a guest process, or
            // terminates the VM through the host), never QEMU's own death.
            .process_group(0);
        let fd = pass_fd.map(AsRawFd::as_raw_fd);
        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
        // getppid, dup2 and fcntl, which are async-signal-safe; it touches no memory of the
        // parent besides the copied integers `fd` and `parent`.
        unsafe {
            command.pre_exec(move || in_child(fd, parent));
        }
        let child = spawn_from_spawner(command)
            .map_err(|e| Error::io(format!("cannot run {}", program.display()), e))?;
        let pid = libc::pid_t::try_from(child.id())
            .map_err(|_| Error::io("pid out of range", std::io::ErrorKind::Other.into()))?;
        // Dropping `Child` neither waits nor kills; this crate reaps by pid.
        drop(child);
        tracing::debug!(name, pid, program = %program.display(), "spawned");
        Ok(Process {
            name,
            pid,
            reaped: Mutex::new(None),
            log: log.to_owned(),
        })
    }

    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// Blocks until the child has exited, reaps it and says how it ended. Safe to call from
    /// several threads: the first reaps, the others get the same status.
    pub(crate) fn wait(&self) -> ExitStatus {
        self.wait_inner(true)
            .unwrap_or_else(|| ExitStatus("ended (status unknown)".to_owned()))
    }

    /// The exit status if the child has exited (reaping it), else `None`.
    pub(crate) fn try_wait(&self) -> Option<ExitStatus> {
        self.wait_inner(false)
    }

    fn wait_inner(&self, block: bool) -> Option<ExitStatus> {
        if let Some(status) = self.reaped.lock().clone() {
            return Some(status);
        }
        let flags = libc::WEXITED | libc::WNOWAIT | if block { 0 } else { libc::WNOHANG };
        loop {
            // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid writes only into `info`, which outlives the call.
            let rc = unsafe { libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, flags) };
            if rc == -1 {
                match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // ECHILD: another thread reaped it meanwhile (its status is stored).
                    _ => return self.reaped.lock().clone(),
                }
            }
            // SAFETY: waitid succeeded, so si_pid is the field it filled in (0 if WNOHANG
            // found nothing to report).
            if unsafe { info.si_pid() } == 0 {
                return None;
            }
            break;
        }
        let mut reaped = self.reaped.lock();
        if let Some(status) = reaped.clone() {
            return Some(status);
        }
        let mut raw = 0;
        // SAFETY: the child is a zombie (waitid said so) and nobody reaped it (we hold the
        // lock and `reaped` is empty): waitpid returns at once and writes only `raw`.
        let rc = unsafe { libc::waitpid(self.pid, &mut raw, 0) };
        let status = if rc == self.pid {
            describe(raw)
        } else {
            ExitStatus("ended (status unknown)".to_owned())
        };
        tracing::debug!(name = self.name, pid = self.pid, %status, "reaped");
        *reaped = Some(status.clone());
        Some(status)
    }

    /// Sends SIGKILL unless the child has been reaped already.
    pub(crate) fn kill(&self) {
        let reaped = self.reaped.lock();
        if reaped.is_none() {
            // SAFETY: kill(2) has no memory effects; the pid is our unreaped child (checked
            // under the lock that reaping takes), so it cannot belong to another process.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    /// Host CPU time (user + system) the child has used, in 100 ns units; `None` once it
    /// has been reaped or if /proc cannot be read.
    pub(crate) fn cpu_time_100ns(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let ticks = parse_cpu_ticks(&stat)?;
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = u64::try_from(hz).ok().filter(|&hz| hz > 0)?;
        Some(ticks.saturating_mul(10_000_000) / hz)
    }

    /// The last `lines` lines of the child's stdout and stderr.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

/// A spawn request to the spawner thread.
type SpawnRequest = (Command, mpsc::SyncSender<std::io::Result<Child>>);

/// Spawns `command` from the process-lifetime spawner thread (see the module doc).
fn spawn_from_spawner(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<std::io::Result<parking_lot::Mutex<mpsc::Sender<SpawnRequest>>>> =
        OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("hcs-qemu-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .map(|_| parking_lot::Mutex::new(tx))
    });
    let spawner = spawner
        .as_ref()
        .map_err(|e| std::io::Error::new(e.kind(), format!("spawner thread: {e}")))?;
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let gone = || std::io::Error::other("the spawner thread has ended");
    spawner
        .lock()
        .send((command, reply_tx))
        .map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}

/// In the child before exec: dies with this process, and gets `fd` (if any) as fd 3.
fn in_child(fd: Option<libc::c_int>, parent: libc::pid_t) -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers only; no memory effects.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // The parent may have died before prctl: then nobody would send the signal.
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        return Err(std::io::Error::other("the owner process has ended"));
    }
    match fd {
        Some(fd) => pass_fd_as_3(fd),
        None => Ok(()),
    }
}

/// Makes `fd` the child's fd 3, inheritable.
fn pass_fd_as_3(fd: libc::c_int) -> std::io::Result<()> {
    if fd == 3 {
        // dup2 to itself keeps FD_CLOEXEC: clear it instead.
        // SAFETY: fcntl on an open fd; no memory effects.
        if unsafe { libc::fcntl(3, libc::F_SETFD, 0) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
    } else {
        // SAFETY: dup2 on an open fd; no memory effects. The new fd 3 has no FD_CLOEXEC.
        if unsafe { libc::dup2(fd, 3) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// utime + stime (fields 14 and 15) from a /proc/<pid>/stat line.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Words for a wait status.
fn describe(raw: libc::c_int) -> ExitStatus {
    if libc::WIFEXITED(raw) {
        ExitStatus(format!("exited with status {}", libc::WEXITSTATUS(raw)))
    } else if libc::WIFSIGNALED(raw) {
        let sig = libc::WTERMSIG(raw);
        let name = match sig {
            libc::SIGKILL => " (SIGKILL)",
            libc::SIGTERM => " (SIGTERM)",
            libc::SIGSEGV => " (SIGSEGV)",
            libc::SIGABRT => " (SIGABRT)",
            libc::SIGBUS => " (SIGBUS)",
            libc::SIGINT => " (SIGINT)",
            _ => "",
        };
        ExitStatus(format!("was killed by signal {sig}{name}"))
    } else {
        ExitStatus(format!("ended with wait status {raw:#x}"))
    }
}

/// The last `lines` lines of a log file (at most its last 16 KiB); empty if unreadable.
fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(16 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_after_the_name() {
        let stat = "1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn spawn_wait_kill() {
        let dir = std::env::temp_dir().join(format!("hcs-qemu-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let p = Process::spawn(
            "sh",
            Path::new("/bin/sh"),
            &["-c".into(), "echo one; echo two >&2; exit 3".into()],
            &log,
            None,
        )
        .unwrap();
        assert_eq!(p.wait().0, "exited with status 3");
        assert_eq!(p.log_tail(1), "two");
        p.kill(); // reaped: no signal sent
        let q =
            Process::spawn("sleep", Path::new("/bin/sleep"), &["30".into()], &log, None).unwrap();
        assert_eq!(q.try_wait(), None);
        q.kill();
        assert_eq!(q.wait().0, "was killed by signal 9 (SIGKILL)");
        assert_eq!(q.try_wait().unwrap().0, "was killed by signal 9 (SIGKILL)");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_program_says_run_setup() {
        let err = find_program(
            "nothing",
            "HCS_QEMU_TEST_NO_SUCH_VAR",
            None,
            "no-such-program-x",
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("run scripts/setup"), "{err}");
    }
}
