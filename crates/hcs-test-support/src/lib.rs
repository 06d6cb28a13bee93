//! Helpers for the workspace's tests and benchmarks only: this crate is a dev-dependency of
//! the crates whose tests use it and a dependency of `hcs-bench`, and is never linked into
//! production binaries.
//!
//! * [`FakeEngine`]: a scripted `hcs_engine::Engine`, so that the host's state machine,
//!   request queue and stop rules are tested without `/dev/kvm`, in milliseconds;
//! * [`Recorder`]: a session's sink that keeps every message, to look at replies and their
//!   order;
//! * [`pids_with_cmdline`]: how tests find a VM's QEMU, vsock backend or hcsd worker.

mod fake_agent;
mod fake_engine;
mod procs;
mod recorder;

pub use fake_engine::{Call, FakeEngine, FakeVm, Gate};
pub use procs::pids_with_cmdline;
pub use recorder::Recorder;
