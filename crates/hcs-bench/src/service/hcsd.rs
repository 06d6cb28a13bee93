//! The scratch `hcsd` of the part: started on a socket and state directory of its own,
//! killed with its workers at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{BenchError, Result};

/// An `hcsd` of this run: socket and state directory in a scratch directory; killed with
/// its workers on drop.
pub(super) struct Hcsd {
    dir: PathBuf,
    pub(super) socket: PathBuf,
    state: PathBuf,
    child: Child,
}

impl Hcsd {
    pub(super) fn start(binary: &Path) -> Result<Hcsd> {
        let dir = std::env::temp_dir().join(format!("hcs-bench-service-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = std::fs::File::create(dir.join("hcsd.log"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("hcsd.sock");
        let state = dir.join("state");
        let child = Command::new(binary)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let hcsd = Hcsd {
            dir,
            socket,
            state,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !hcsd.socket.exists() {
            if Instant::now() > deadline {
                return Err(BenchError(format!(
                    "hcsd did not make its socket within 20 s; its log:\n{}",
                    std::fs::read_to_string(hcsd.dir.join("hcsd.log")).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(hcsd)
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Pids of the worker processes of this state directory.
    pub(super) fn workers(&self) -> Vec<u32> {
        hcs_test_support::pids_with_cmdline(&[" worker ", &self.state.to_string_lossy()])
    }
}

impl Drop for Hcsd {
    fn drop(&mut self) {
        for pid in self.workers() {
            // SAFETY: plain kill(2) on a worker of the hcsd this part started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
