//! `hcsctl`: the operator's command line for HCS compute systems.
//!
//! This file holds the command-line definition (clap derive), the tool's one error type and
//! the mapping from outcomes to exit codes. Each subcommand lives in its own module:
//!
//! ```text
//!  hcsctl run DOC.json       ──> run.rs       create, watch events, start, wait for the exit
//!  hcsctl validate DOC.json  ──> validate.rs  parse + validate + "can this host run it"
//!                                 output.rs    every line the tool prints (human and JSON)
//! ```
//!
//! Exit codes: 0 success, 1 an HCS failure (or an invalid document, or a system that exited
//! unexpectedly), 2 a usage error or a file that cannot be read.

mod exec;
mod output;
mod run;
mod validate;

use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs and checks HCS compute systems (virtual machines described by JSON documents).
#[derive(Debug, Parser)]
#[command(
    name = "hcsctl",
    version,
    about = "Run and check HCS compute systems (VMs described by HCS JSON documents)",
    long_about = "Run and check HCS compute systems: virtual machines described by the JSON \
                  documents of the Windows Host Compute Service (HCS v2), run by this host's \
                  built-in VMM on KVM.",
    after_help = "Examples:\n  \
                  hcsctl validate examples/empty-vm.json\n  \
                  hcsctl run examples/empty-vm.json            # Ctrl-C terminates the VM\n  \
                  hcsctl run --json examples/empty-vm.json | jq .event\n\n\
                  Exit codes: 0 success, 1 HCS failure or invalid document, 2 usage error or \
                  unreadable file.\nSet RUST_LOG (e.g. RUST_LOG=debug) for the service's logs \
                  on stderr."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a compute system from a document, start it and print its events until it exits.
    #[command(
        long_about = "Create a compute system from a ComputeSystem document, register for its \
                      events, start it and print one line per event as it happens, until the \
                      system exits on its own or the tool gets SIGINT/SIGTERM (then it \
                      terminates the system and prints its SystemExited event).",
        after_help = "Example:\n  \
                      $ hcsctl run examples/empty-vm.json\n  \
                      2025-01-01T12:00:00.100Z  created empty-vm-3fa2c1\n  \
                      2025-01-01T12:00:00.102Z  started empty-vm-3fa2c1 (2 vCPUs, 1024 MB)\n  \
                      ^C\n  \
                      2025-01-01T12:00:03.200Z  terminating empty-vm-3fa2c1 (SIGINT)\n  \
                      2025-01-01T12:00:03.201Z  SystemExited  ForcedExit status=0x00000000 \
                      (Terminate by Client)\n\n\
                      Exit codes: 0 after a graceful or forced exit (including Ctrl-C), 1 after \
                      an unexpected exit or an HCS failure, 2 if the document cannot be read."
    )]
    Run(RunArgs),
    /// Check a document exactly as the host would, without creating anything.
    #[command(
        long_about = "Parse and validate a ComputeSystem document exactly as the host does at \
                      create (strict JSON, schema, this host's vCPU and memory limits) and check \
                      that this host can run it. Every error is printed with its JSON path and \
                      HRESULT. Nothing is created.",
        after_help = "Examples:\n  \
                      $ hcsctl validate examples/empty-vm.json\n  \
                      ok: examples/empty-vm.json is a valid ComputeSystem document \
                      (VirtualMachine, 2 vCPUs, 1024 MB, engine: built-in KVM)\n\n  \
                      $ hcsctl validate bad.json\n  \
                      error: $.VirtualMachine.ComputeTopology.Processor.Count: must be between 1 \
                      and 1024, got 0 [HCS_E_INVALID_JSON (0x8037010D)]\n\n  \
                      $ hcsctl validate --json bad.json\n  \
                      {\"valid\":false,\"errors\":[{\"path\":\"$.VirtualMachine.ComputeTopology.\
                      Processor.Count\",\"hresult\":-2143878899,\"hresultName\":\
                      \"HCS_E_INVALID_JSON\",\"message\":\"must be between 1 and 1024, got 0\"}],\
                      \"notes\":[]}\n\n\
                      Exit codes: 0 valid, 1 invalid, 2 if the document cannot be read."
    )]
    Validate(ValidateArgs),
}

/// Arguments of `hcsctl run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The ComputeSystem document (JSON).
    #[arg(value_name = "DOC.json")]
    pub document: PathBuf,
    /// Id of the new compute system [default: the file stem and a short random suffix].
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Print one JSON object per line instead of text.
    #[arg(long, conflicts_with_all = ["console", "command"])]
    pub json: bool,
    /// Attach this terminal to the guest's serial console (COM1) until the VM exits.
    #[arg(long, conflicts_with = "command")]
    pub console: bool,
    /// Run this command in the guest with this terminal's stdin, stdout and stderr, exit
    /// with its exit code and tear the VM down (the document needs a guest agent).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Arguments of `hcsctl validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The ComputeSystem document (JSON).
    #[arg(value_name = "DOC.json")]
    pub document: PathBuf,
    /// Print `{"valid":…,"errors":[…]}` instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The document file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file named on the command line.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An HCS call failed: `<HRESULT name> (0x…): <ErrorMessage>`.
    #[error("{0}")]
    Hcs(#[from] hcs::Error),
    /// The tool could not set itself up (signal handlers, threads).
    #[error("{0}")]
    Setup(String),
}

impl CliError {
    /// The process exit code for this error.
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Read { .. } => 2,
            CliError::Hcs(_) | CliError::Setup(_) => 1,
        }
    }
}

/// Reads a document file; a failure names the file and the OS error.
pub(crate) fn read_document(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A second subscriber can only exist if something else set one; keep the first.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let outcome = match cli.command {
        Command::Run(args) if !args.command.is_empty() => exec::run_command(&args),
        Command::Run(args) if args.console => exec::console(&args),
        Command::Run(args) => run::run(&args),
        Command::Validate(args) => validate::validate(&args),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            output::error_line(&error.to_string());
            ExitCode::from(error.exit_code())
        }
    }
}
