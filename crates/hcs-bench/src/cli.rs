//! The command line shared by the `hcs-bench` binary and `cargo bench -p hcs-bench`: which
//! parts to run, their iteration counts, and the command that reproduces each part.

use std::time::{Duration, Instant};

use crate::{c_api, latency, lifecycle, linux, memory, service, throughput, BenchError, Result};

/// One part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// 1: create + start + terminate vs. the floor, the engine and QEMU.
    Lifecycle,
    /// 2: completion latency per notification style.
    Latency,
    /// 3: VMs per second from many client threads.
    Throughput,
    /// 4: RSS with many idle VMs.
    Memory,
    /// 5: completion latency through the C API vs the Rust API.
    CApi,
    /// Linux guests under QEMU vs bare QEMU (not in `all`: it boots real guests).
    Linux,
    /// The service `hcsd` against the embedded host (not in `all`: it needs the `hcsd`
    /// binary and takes about half a minute).
    Service,
}

impl Part {
    /// Every part, in order.
    pub const ALL: [Part; 5] = [
        Part::Lifecycle,
        Part::Latency,
        Part::Throughput,
        Part::Memory,
        Part::CApi,
    ];

    /// The subcommand that selects this part.
    pub fn name(self) -> &'static str {
        match self {
            Part::Lifecycle => "lifecycle",
            Part::Latency => "latency",
            Part::Throughput => "throughput",
            Part::Memory => "memory",
            Part::CApi => "c-api",
            Part::Linux => "linux",
            Part::Service => "service",
        }
    }
}

/// What to run, and how much.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The parts to run, in order.
    pub parts: Vec<Part>,
    /// Lifecycle iterations of each in-process line.
    pub iterations: usize,
    /// QEMU peer samples (0 skips the peer).
    pub qemu_iterations: usize,
    /// Untimed warm-up cycles.
    pub warmup: usize,
    /// Latency requests per style.
    pub requests: usize,
    /// Throughput client threads.
    pub threads: usize,
    /// Throughput duration per VM size.
    pub duration: Duration,
    /// Idle VMs held by the memory part.
    pub vms: usize,
    /// The `hcsd` binary of the service part (default: next to this binary).
    pub hcsd: Option<std::path::PathBuf>,
    /// Boot rounds of each line of the linux part (TCG boots swing; more rounds steady the
    /// median).
    pub boot_rounds: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            parts: Part::ALL.to_vec(),
            iterations: 300,
            boot_rounds: 5,
            qemu_iterations: 50,
            warmup: 10,
            requests: 5000,
            threads: 16,
            duration: Duration::from_secs(5),
            vms: 100,
            hcsd: None,
        }
    }
}

const USAGE: &str = "\
usage: hcs-bench [PART...] [OPTIONS]
       cargo bench -p hcs-bench -- [PART...] [OPTIONS]

parts (default: all): lifecycle latency throughput memory c-api; also: linux service

options:
  --iterations N        lifecycle cycles per line (default 300)
  --qemu-iterations N   QEMU peer samples, interleaved (default 50; 0 skips QEMU)
  --warmup N            untimed warm-up cycles (default 10)
  --requests N          latency, c-api and service requests per style (default 5000)
  --threads N           throughput client threads (default 16)
  --seconds S           throughput duration per VM size, and of the service's (default 5)
  --vms N               idle VMs for the memory and service parts (default 100)
  --boot-rounds N       linux: boots of ours and of bare QEMU, interleaved (default 5)
  --hcsd PATH           the hcsd binary of the service part (default: next to this one;
                        build it with cargo build --release -p hcsd)
  -h, --help            this text";

impl Options {
    /// Parses the arguments after the program name. `--bench` (which `cargo bench` passes)
    /// is ignored. `Ok(None)` means help was asked for.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Option<Options>> {
        let mut options = Options::default();
        let mut parts = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> Result<String> {
                args.next()
                    .ok_or_else(|| BenchError(format!("{name} needs a value\n{USAGE}")))
            };
            match arg.as_str() {
                "--bench" => {}
                "-h" | "--help" => return Ok(None),
                "--iterations" => options.iterations = number(&arg, &value(&arg)?)?.max(1),
                "--qemu-iterations" => options.qemu_iterations = number(&arg, &value(&arg)?)?,
                "--warmup" => options.warmup = number(&arg, &value(&arg)?)?,
                "--requests" => options.requests = number(&arg, &value(&arg)?)?.max(1),
                "--threads" => options.threads = number(&arg, &value(&arg)?)?.max(1),
                "--vms" => options.vms = number(&arg, &value(&arg)?)?.max(1),
                "--boot-rounds" => options.boot_rounds = number(&arg, &value(&arg)?)?.max(1),
                "--hcsd" => options.hcsd = Some(value(&arg)?.into()),
                "--seconds" => {
                    let v = value(&arg)?;
                    let seconds: f64 =
                        v.parse()
                            .ok()
                            .filter(|s: &f64| s.is_finite() && *s > 0.0)
                            .ok_or_else(|| BenchError(format!("--seconds: not a duration: {v}")))?;
                    options.duration = Duration::from_secs_f64(seconds);
                }
                "all" => parts.extend(Part::ALL),
                "linux" => parts.push(Part::Linux),
                "service" => parts.push(Part::Service),
                name => match Part::ALL.iter().find(|p| p.name() == name) {
                    Some(part) => parts.push(*part),
                    None => return Err(BenchError(format!("unknown argument {name:?}\n{USAGE}"))),
                },
            }
        }
        if !parts.is_empty() {
            options.parts = parts;
        }
        Ok(Some(options))
    }

    /// The command that reruns `part` with these settings.
    pub fn reproduce(&self, part: Part) -> String {
        let flags = match part {
            Part::Lifecycle => format!(
                "--iterations {} --qemu-iterations {} --warmup {}",
                self.iterations, self.qemu_iterations, self.warmup
            ),
            Part::Latency | Part::CApi => {
                format!("--requests {} --warmup {}", self.requests, self.warmup)
            }
            Part::Throughput => format!(
                "--threads {} --seconds {}",
                self.threads,
                self.duration.as_secs_f64()
            ),
            Part::Memory => format!("--vms {}", self.vms),
            Part::Linux => format!("--boot-rounds {}", self.boot_rounds),
            Part::Service => format!(
                "--requests {} --warmup {} --seconds {} --vms {}",
                self.requests,
                self.warmup,
                self.duration.as_secs_f64(),
                self.vms
            ),
        };
        format!(
            "cargo run --release -p hcs-bench -- {} {flags}   (or: cargo bench -p hcs-bench -- {} {flags})",
            part.name(),
            part.name()
        )
    }
}

fn number(flag: &str, value: &str) -> Result<usize> {
    value
        .parse()
        .map_err(|_| BenchError(format!("{flag}: not a number: {value}")))
}

/// Parses `args` (after the program name), runs the chosen parts, and returns the process
/// exit code: 0 when every part ran (whether or not its goals were met), 1 otherwise.
pub fn run<I: IntoIterator<Item = String>>(args: I) -> i32 {
    let args: Vec<String> = args.into_iter().collect();
    if args.first().map(String::as_str) == Some(service::CHILD_FLAG) {
        return service::child_main(&args[1..]);
    }
    let options = match Options::parse(args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("hcs-bench: {e}");
            return 2;
        }
    };
    print_machine();
    let mut failed = false;
    for part in &options.parts {
        let started = Instant::now();
        let outcome = match part {
            Part::Lifecycle => lifecycle::run(&options).map(drop),
            Part::Latency => latency::run(&options).map(drop),
            Part::Throughput => throughput::run(&options).map(drop),
            Part::Memory => memory::run(&options).map(drop),
            Part::CApi => c_api::run(&options).map(drop),
            Part::Linux => linux::run(&options),
            Part::Service => service::run(&options),
        };
        match outcome {
            Ok(()) => println!(
                "({} took {:.1} s)\n",
                part.name(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("hcs-bench: {}: {e}", part.name());
                failed = true;
            }
        }
    }
    i32::from(failed)
}

/// The machine the figures come from: cores, kernel, CPU, KVM.
fn print_machine() {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let flavour = if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        "kvm_pvm (a nested software hypervisor: PVM)"
    } else if std::path::Path::new("/sys/module/kvm_intel").exists() {
        "kvm_intel"
    } else if std::path::Path::new("/sys/module/kvm_amd").exists() {
        "kvm_amd"
    } else {
        "unknown flavour"
    };
    let kvm = match hcs_kvm::check_kvm() {
        Ok(info) => format!("{flavour}, {info:?}"),
        Err(e) => format!("unavailable: {e}"),
    };
    println!("# hcs-bench");
    println!("machine: {cores} cores, {cpu}, Linux {}", kernel.trim());
    println!("/dev/kvm: {kvm}");
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_run_every_part() {
        let options = parse(&["--bench"]).unwrap().unwrap();
        assert_eq!(options, Options::default());
        assert_eq!(options.parts, Part::ALL.to_vec());
    }

    #[test]
    fn parts_and_flags() {
        let options = parse(&["latency", "memory", "--requests", "7", "--seconds", "0.5"])
            .unwrap()
            .unwrap();
        assert_eq!(options.parts, vec![Part::Latency, Part::Memory]);
        assert_eq!(options.requests, 7);
        assert_eq!(options.duration, Duration::from_millis(500));
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["bogus"]).is_err());
        assert!(parse(&["--iterations"]).is_err());
        assert!(parse(&["--iterations", "x"]).is_err());
    }
}
