//! The state directory: one record per worker process, so that a restarted `hcsd` finds
//! its running compute systems again.
//!
//! ```text
//!  <state-dir>/hcsd.lock            held (flock) by the running hcsd: one hcsd per directory
//!  <state-dir>/workers/<pid>.json   {"pid":..,"id":..,"socket":..}, written by the worker
//!  <state-dir>/workers/<pid>.sock   where the worker waits for hcsd after losing it
//! ```

use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The default state directory (runtime state: VMs do not survive a reboot).
pub const DEFAULT_STATE_DIR: &str = "/run/hcs/hcsd";

/// What a worker leaves in the state directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// The worker's process id.
    pub pid: u32,
    /// Its compute system's id.
    pub id: String,
    /// Its socket.
    pub socket: PathBuf,
}

/// A state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating, mode 0700) the directory at `root`.
    pub fn open(root: &Path) -> io::Result<StateDir> {
        let workers = root.join("workers");
        fs::create_dir_all(&workers)?;
        for dir in [root, workers.as_path()] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the directory's lock, or fails if another `hcsd` holds it.
    pub fn lock(&self) -> io::Result<nix::fcntl::Flock<File>> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("hcsd.lock"))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
            |(_, errno)| {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "another hcsd uses the state directory {} ({errno})",
                        self.root.display()
                    ),
                )
            },
        )
    }

    /// Where worker `pid` listens.
    pub fn worker_socket(&self, pid: u32) -> PathBuf {
        self.root.join("workers").join(format!("{pid}.sock"))
    }

    fn record_path(&self, pid: u32) -> PathBuf {
        self.root.join("workers").join(format!("{pid}.json"))
    }

    /// Writes a worker's record (atomically: a reader never sees half of it).
    pub fn write_record(&self, record: &WorkerRecord) -> io::Result<()> {
        let path = self.record_path(record.pid);
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(record).map_err(io::Error::other)?)?;
        fs::rename(tmp, path)
    }

    /// Every worker record, in pid order; unreadable ones are skipped.
    pub fn records(&self) -> Vec<WorkerRecord> {
        let Ok(entries) = fs::read_dir(self.root.join("workers")) else {
            return Vec::new();
        };
        let mut records: Vec<WorkerRecord> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        records.sort_by_key(|r| r.pid);
        records
    }

    /// Removes worker `pid`'s record and socket.
    pub fn remove(&self, pid: u32) {
        let _ = fs::remove_file(self.record_path(pid));
        let _ = fs::remove_file(self.worker_socket(pid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_the_lock_is_exclusive() {
        let root = std::env::temp_dir().join(format!("hcsd-state-{}", std::process::id()));
        let state = StateDir::open(&root).unwrap();
        let record = WorkerRecord {
            pid: 42,
            id: "vm".into(),
            socket: state.worker_socket(42),
        };
        state.write_record(&record).unwrap();
        assert_eq!(state.records(), vec![record]);
        state.remove(42);
        assert!(state.records().is_empty());
        let held = state.lock().unwrap();
        assert!(state.lock().is_err());
        drop(held);
        assert!(state.lock().is_ok());
        let _ = fs::remove_dir_all(root);
    }
}
