//! Part `service`: the Host Compute Service `hcsd` against the embedded host, in the same
//! run: what a client pays for having its compute systems in the service (one worker
//! process per VM) rather than inside its own process.
//!
//! ```text
//!  measured                       service                        embedded (the peer)
//!  GetProperties round trip       a client process, HCS_HOST=    a client process, HCS_HOST=
//!  (wait and callback)            service -> hcsd -> worker      embedded (the host's thread)
//!  VMs/s, create+start+           16 client processes            16 threads in one process,
//!  terminate+close                through one hcsd               and 16 embedded processes
//!  memory, 100 running VMs        PSS of hcsd + its workers      PSS growth of the process
//! ```
//!
//! The client chooses its host once per process, so every measurement runs in a child
//! process (this binary again, with the hidden `--service-child ROLE` arguments and
//! `HCS_HOST` set) that prints its figures on stdout; the latency children alternate,
//! embedded and service, so that both see the same machine. `hcsd` is started by the part
//! on a scratch socket and state directory (`target/release/hcsd` next to this binary, or
//! `--hcsd PATH`), and killed with its workers at the end.
//!
//! This file runs the part and answers the child roles; `latency`, `throughput` and `memory`
//! hold the three comparisons (both their parent and child sides), `hcsd` the scratch `hcsd`.

mod hcsd;
mod latency;
mod memory;
mod throughput;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hcs::api;

use crate::cli::{Options, Part};
use crate::{BenchError, Result};

use hcsd::Hcsd;
use latency::{child_latency, latency_comparison};
use memory::{child_memory, memory_comparison, memory_of};
use throughput::{child_cycles, throughput_comparison};

/// The hidden first argument that makes this binary a measuring child.
pub const CHILD_FLAG: &str = "--service-child";

/// Where the two hosts are: the scratch `hcsd`, and how to point a child at either.
struct Hosts {
    hcsd: Hcsd,
}

impl Hosts {
    /// A child of this binary running `role`, on the service or the embedded host.
    fn child(&self, service: bool, role: &[String]) -> Command {
        let mut command =
            Command::new(std::env::current_exe().unwrap_or_else(|_| "hcs-bench".into()));
        command.arg(CHILD_FLAG).args(role);
        if service {
            command
                .env(hcs::api::HOST_ENV, "service")
                .env("HCS_SOCKET", &self.hcsd.socket);
        } else {
            command.env(hcs::api::HOST_ENV, "embedded");
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command
    }
}

/// Runs the part and prints its tables and ratios.
pub fn run(options: &Options) -> Result<()> {
    hcs_kvm::check_kvm().map_err(|e| format!("the service part needs /dev/kvm: {e}"))?;
    println!("## The service (hcsd) against the embedded host");
    println!("reproduce: {}", options.reproduce(Part::Service));
    let binary = match &options.hcsd {
        Some(path) => path.clone(),
        None => {
            // target/release/hcs-bench, or target/release/deps/hcs-bench-HASH under
            // `cargo bench`: hcsd is in target/release.
            let exe = std::env::current_exe().map_err(|e| format!("where is this binary: {e}"))?;
            let dir = exe.parent().unwrap_or(Path::new("."));
            let dir = match dir.file_name() {
                Some(name) if name == "deps" => dir.parent().unwrap_or(dir),
                _ => dir,
            };
            dir.join("hcsd")
        }
    };
    if !binary.exists() {
        return Err(BenchError(format!(
            "{} is missing: build it first (cargo build --release -p hcsd) or pass --hcsd PATH",
            binary.display()
        )));
    }
    let hosts = Hosts {
        hcsd: Hcsd::start(&binary)?,
    };
    println!(
        "hcsd: {} (pid {}), socket {}",
        binary.display(),
        hosts.hcsd.pid(),
        hosts.hcsd.socket.display()
    );
    // Memory first, while hcsd is fresh: the throughput runs leave its allocator holding
    // memory (printed at the end).
    let fresh = memory_of(hosts.hcsd.pid())?;
    let outcome = memory_comparison(options, &hosts)
        .and_then(|()| latency_comparison(options, &hosts))
        .and_then(|()| throughput_comparison(options, &hosts));
    if let Ok(now) = memory_of(hosts.hcsd.pid()) {
        println!();
        println!(
            "hcsd at the end of the part: PSS {} KiB, RSS {} KiB (at its start: PSS {} KiB, RSS {} KiB)",
            now.pss, now.rss, fresh.pss, fresh.rss
        );
    }
    let leftover = hosts.hcsd.workers();
    drop(hosts);
    outcome?;
    if !leftover.is_empty() {
        return Err(BenchError(format!(
            "workers were left running at the end (killed): {leftover:?}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Children

/// Runs the child role in `args` (after [`CHILD_FLAG`]); returns the exit code.
pub fn child_main(args: &[String]) -> i32 {
    let number = |i: usize| -> Result<f64> {
        args.get(i)
            .and_then(|a| a.parse::<f64>().ok())
            .ok_or_else(|| BenchError(format!("{CHILD_FLAG}: bad arguments {args:?}")))
    };
    let outcome = match args.first().map(String::as_str) {
        Some("latency") => {
            number(1).and_then(|r| number(2).and_then(|w| child_latency(r as usize, w as usize)))
        }
        Some("cycles") => number(1).and_then(|s| {
            number(2).and_then(|t| number(3).and_then(|at| child_cycles(s, t as usize, at as u64)))
        }),
        Some("memory") => number(1).and_then(|n| child_memory(n as usize)),
        _ => Err(BenchError(format!("{CHILD_FLAG}: unknown role {args:?}"))),
    };
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hcs-bench {CHILD_FLAG} ({}): {e}", host_label());
            1
        }
    }
}

fn host_label() -> String {
    format!("{:?}", api::host_kind())
}

fn host_name(service: bool) -> &'static str {
    if service {
        "service"
    } else {
        "embedded"
    }
}

/// Durations as a comma-separated list of nanoseconds.
fn nanos(samples: &[Duration]) -> String {
    samples
        .iter()
        .map(|d| d.as_nanos().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The rest of the line of `stdout` that starts with `name `.
fn field<'a>(stdout: &'a str, name: &str) -> Result<&'a str> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .ok_or_else(|| BenchError(format!("no {name:?} line in the child's output:\n{stdout}")))
}

/// The durations of the line `name NS,NS,...`.
fn durations(stdout: &str, name: &str) -> Result<Vec<Duration>> {
    field(stdout, name)?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .map(Duration::from_nanos)
                .map_err(|_| BenchError(format!("not a number in the {name:?} line: {s}")))
        })
        .collect()
}
