//! Helpers for the workspace's tests and benchmarks only: this crate is a dev-dependency of
//! the crates whose tests use it and a dependency of `hcs-bench`, and is never linked into
//! production binaries.

mod procs;

pub use procs::pids_with_cmdline;
