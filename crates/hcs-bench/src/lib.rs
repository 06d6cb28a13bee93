//! Benchmarks of the HCS client on the built-in VMM, run by the `hcs-bench` binary and by
//! `cargo bench -p hcs-bench` (both call [`run`]).
//!
//! This crate owns measurement only: it drives the public APIs of `hcs` (the flat
//! `computecore`-shaped [`hcs::api`] and the idiomatic [`hcs::ComputeSystem`]) and of
//! `hcs-kvm` ([`hcs_kvm::Vm`], [`hcs_kvm::floor`]), and QEMU from Debian as a peer. It
//! changes nothing in them.
//!
//! ```text
//!  part          what is timed                                   compared with
//!  lifecycle     create + start + terminate of examples/         bare KVM ioctls (floor),
//!                empty-vm.json through hcs::api                  hcs_kvm::Vm alone, QEMU microvm
//!  latency       GetProperties issue -> wait returns / callback  blocking wait (baseline),
//!                starts / awaiting task resumes                  spin-polling GetOperationResult
//!  throughput    16 threads x (create + start + terminate)       goal: 500 VMs/s
//!  memory        process RSS with 100 idle 1024 MB VMs           RSS before
//!  c-api         GetProperties through libcomputecore's C       the same through hcs::api
//!                functions: wait returns / callback starts       (goal: under 2 us added)
//!  service       the same work through hcsd (child processes     the embedded host, same
//!                with HCS_HOST=service): latency, VMs/s, PSS     run (not in the default set)
//! ```
//!
//! Every part prints its figures as a table and as ratios against its goals, and the
//! command that reproduces it. Results and their analysis are in `docs/benchmarks.md`.

pub mod c_api;
pub mod cli;
pub mod latency;
pub mod lifecycle;
pub mod linux;
pub mod memory;
pub mod qemu;
pub mod service;
pub mod stats;
pub mod system;
pub mod throughput;

pub use cli::{run, Options, Part};

/// A failure that ends a benchmark part: what went wrong, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchError(pub String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<String> for BenchError {
    fn from(message: String) -> Self {
        BenchError(message)
    }
}

impl From<&str> for BenchError {
    fn from(message: &str) -> Self {
        BenchError(message.to_owned())
    }
}

/// The result of a benchmark step.
pub type Result<T> = std::result::Result<T, BenchError>;
