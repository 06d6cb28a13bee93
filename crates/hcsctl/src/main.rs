//! `hcsctl`: the operator's command line for HCS compute systems.
//!
//! This file holds the command-line definition (clap derive), the tool's one error type and
//! the mapping from outcomes to exit codes. Each subcommand lives in a module:
//!
//! ```text
//!  hcsctl run DOC.json            ──> run.rs       create, watch events, start, wait for the exit
//!  hcsctl run DOC.json -- CMD     ──> exec.rs      a command in a throw-away VM
//!                                      boot.rs      run's create and start, a signal interrupting
//!  hcsctl validate DOC.json       ──> validate.rs  parse + validate + "can this host run it"
//!  hcsctl list|create|start|pause|resume|shutdown|terminate|save|wait|properties|modify
//!                                 ──> systems.rs   one HCS call each on a system by id
//!  hcsctl events ID               ──> events.rs    the event callback of an opened handle
//!  hcsctl console ID              ──> exec.rs      the serial console of a running system
//!  hcsctl exec ID -- CMD          ──> exec.rs      a command in a running system
//!                                      document.rs  relative paths made absolute (the service
//!                                                   resolves them in its own directory)
//!                                      terminal.rs  raw mode and size of this terminal
//!                                      output.rs    every line the tool prints (human and JSON)
//! ```
//!
//! Exit codes: 0 success, 1 an HCS failure (or an invalid document, or a system that exited
//! unexpectedly), 2 a usage error or a file that cannot be read; `exec` and `run -- CMD`
//! exit with the command's own code.

mod boot;
mod document;
mod events;
mod exec;
mod output;
mod run;
mod systems;
mod terminal;
mod validate;

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Runs and manages HCS compute systems (virtual machines described by JSON documents).
#[derive(Debug, Parser)]
#[command(
    name = "hcsctl",
    version,
    about = "Run and manage HCS compute systems (VMs described by HCS JSON documents)",
    long_about = "Run and manage HCS compute systems: virtual machines described by the JSON \
                  documents of the Windows Host Compute Service (HCS v2).\n\n\
                  hcsctl talks to the service hcsd when its socket answers (/run/hcs/hcsd.sock, \
                  or $HCS_SOCKET), else to an embedded host inside hcsctl itself; HCS_HOST=service \
                  or HCS_HOST=embedded forces one. Systems created through the service outlive \
                  hcsctl; systems of the embedded host end with the hcsctl process that made them.",
    after_help = "Examples:\n  \
                  hcsctl validate examples/empty-vm.json\n  \
                  hcsctl run examples/empty-vm.json            # Ctrl-C terminates the VM\n  \
                  hcsctl run --json examples/empty-vm.json | jq .event\n  \
                  id=$(hcsctl create examples/linux-vm.json) && hcsctl start \"$id\"\n  \
                  hcsctl list\n  \
                  hcsctl exec \"$id\" -- uname -a\n  \
                  hcsctl terminate \"$id\"\n\n\
                  Exit codes (for scripts):\n  \
                  0  success\n  \
                  1  an HCS call failed (the error names the HRESULT, its value and the host's \
                  message), a document is invalid, or a system exited unexpectedly\n  \
                  2  usage error, or a file that cannot be read\n  \
                  exec ID -- CMD and run DOC -- CMD exit with CMD's own exit code.\n\n\
                  With --json every result is JSON on stdout, errors included: \
                  {\"error\":{\"hresult\":<int32 or null>,\"name\":\"...\",\"message\":\"...\"}}.\n\
                  Set RUST_LOG (e.g. RUST_LOG=debug) for the host's logs on stderr."
)]
struct Cli {
    /// Machine-readable output: JSON on stdout (errors as {"error":{…}}).
    #[arg(long, global = true)]
    json: bool,
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
                      terminates the system and prints its SystemExited event; a signal during \
                      the boot does so at once, without waiting for the start).\n\n\
                      With -- CMD, boot the VM, run CMD in its guest with this terminal's stdin, \
                      stdout and stderr, exit with CMD's exit code and tear the VM down, like \
                      `docker run -i --rm`. -t/--tty gives CMD a terminal (EmulateConsole) as \
                      `hcsctl exec --tty` does: of this terminal's size, this terminal in raw \
                      mode while CMD runs, window size changes passed on. When stdin is not a \
                      terminal (a pipe, a file), --tty still gives CMD a terminal, 24x80 unless \
                      stdout is a terminal, and leaves this one as it is, as `docker run -t` \
                      does with a pipe; stdin is still relayed (the guest terminal echoes it).",
        after_help = "Examples:\n  \
                      $ hcsctl run examples/empty-vm.json\n  \
                      2025-01-01T12:00:00.100Z  created empty-vm-3fa2c1\n  \
                      2025-01-01T12:00:00.102Z  started empty-vm-3fa2c1 (2 vCPUs, 1024 MB)\n  \
                      ^C\n  \
                      2025-01-01T12:00:03.200Z  terminating empty-vm-3fa2c1 (SIGINT)\n  \
                      2025-01-01T12:00:03.201Z  SystemExited  ForcedExit status=0x00000000 \
                      (Terminate by Client)\n\n  \
                      $ hcsctl run examples/linux-vm.json -- uname -r\n  \
                      6.1.0-28-cloud-amd64\n  \
                      $ hcsctl run -t examples/linux-vm.json -- /bin/sh\n\n\
                      Exit codes: 0 after a graceful or forced exit (including Ctrl-C, also \
                      during the boot), 1 after an unexpected exit or an HCS failure, 2 if the \
                      document cannot be read; with -- CMD, CMD's exit code (the first Ctrl-C \
                      goes to CMD; a second one kills it, exit 130; a Ctrl-C during the boot, \
                      before CMD started, exits 130 too; the VM is torn down either way)."
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
    /// List compute systems (HcsEnumerateComputeSystems).
    #[command(
        long_about = "List the compute systems of the host (HcsEnumerateComputeSystems), \
                      optionally filtered by a SystemQuery: systems whose owner is one of the \
                      --owner values and whose id is one of the --id values. Prints a table \
                      ID, OWNER, STATE, TYPE, RUNTIME (the guest OS type), sorted by id; with \
                      --json the host's array of Properties documents, `[]` when there are none.",
        after_help = "Examples:\n  \
                      $ hcsctl list\n  \
                      ID                OWNER   STATE    TYPE            RUNTIME\n  \
                      empty-vm-3fa2c1   Sample  Running  VirtualMachine  Unknown\n  \
                      linux-vm-09be77   Sample  Paused   VirtualMachine  Linux\n\n  \
                      $ hcsctl list --owner Sample --json | jq -r '.[].Id'\n\n\
                      Exit codes: 0 listed (even if nothing), 1 HCS failure."
    )]
    List(ListArgs),
    /// Create a compute system that outlives hcsctl; prints its id.
    #[command(
        long_about = "Create a compute system from a ComputeSystem document \
                      (HcsCreateComputeSystem) and print its id; the system is created, not \
                      started (see `hcsctl start`). Its handle is closed when hcsctl ends, so \
                      ShouldTerminateOnLastHandleClosed is set to false in what is sent (a note \
                      on stderr says so if the document had it true). Against the service the \
                      system lives on in hcsd; against the embedded host (no service running, or \
                      HCS_HOST=embedded) it ends with this hcsctl process, and a warning on \
                      stderr says so.",
        after_help = "Examples:\n  \
                      $ hcsctl create examples/empty-vm.json\n  \
                      empty-vm-3fa2c1\n  \
                      $ hcsctl create --id web1 examples/linux-vm.json --json\n  \
                      {\"system\":\"web1\",\"host\":\"service\"}\n\n\
                      Exit codes: 0 created, 1 HCS failure (e.g. HCS_E_INVALID_JSON, \
                      HCS_E_SYSTEM_ALREADY_EXISTS), 2 if the document cannot be read."
    )]
    Create(CreateArgs),
    /// Start a created compute system (HcsStartComputeSystem).
    #[command(
        long_about = "Start a created compute system (HcsStartComputeSystem) and wait until it \
                      runs: for a Linux guest with a GuestConnection, until its agent has \
                      connected.",
        after_help = "Example:\n  $ hcsctl start empty-vm-3fa2c1\n  started empty-vm-3fa2c1\n\n\
                      Exit codes: 0 started, 1 HCS failure (HCS_E_SYSTEM_NOT_FOUND, \
                      HCS_E_INVALID_STATE, ...)."
    )]
    Start(IdArgs),
    /// Pause a running compute system (HcsPauseComputeSystem).
    #[command(
        long_about = "Pause a running compute system (HcsPauseComputeSystem): its vCPUs stop; \
                      its memory stays. `hcsctl resume` continues it.",
        after_help = "Example:\n  $ hcsctl pause empty-vm-3fa2c1\n  paused empty-vm-3fa2c1\n\n\
                      Exit codes: 0 paused, 1 HCS failure (HCS_E_INVALID_STATE if not running)."
    )]
    Pause(IdArgs),
    /// Resume a paused compute system (HcsResumeComputeSystem).
    #[command(
        long_about = "Resume a paused compute system (HcsResumeComputeSystem).",
        after_help = "Example:\n  $ hcsctl resume empty-vm-3fa2c1\n  resumed empty-vm-3fa2c1\n\n\
                      Exit codes: 0 resumed, 1 HCS failure (HCS_E_INVALID_STATE if not paused)."
    )]
    Resume(IdArgs),
    /// Ask the guest to shut down and wait for it (HcsShutDownComputeSystem).
    #[command(
        long_about = "Ask the guest to shut down cleanly (HcsShutDownComputeSystem: through the \
                      guest agent, else the ACPI power button) and wait until the shutdown \
                      completes, or --timeout seconds (then the shutdown goes on, and the exit \
                      is HCS_E_OPERATION_TIMEOUT). A system without a guest (the empty VM) \
                      answers HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION: use terminate.",
        after_help = "Example:\n  $ hcsctl shutdown --timeout 30 linux-vm-09be77\n  \
                      shut down linux-vm-09be77\n\n\
                      Exit codes: 0 shut down, 1 HCS failure or timeout."
    )]
    Shutdown(TimeoutArgs),
    /// Stop a compute system at once (HcsTerminateComputeSystem).
    #[command(
        long_about = "Stop a compute system at once (HcsTerminateComputeSystem; its exit is a \
                      ForcedExit). The system is gone afterwards.",
        after_help = "Example:\n  $ hcsctl terminate empty-vm-3fa2c1\n  terminated empty-vm-3fa2c1\n\n\
                      Exit codes: 0 terminated, 1 HCS failure (HCS_E_SYSTEM_NOT_FOUND, \
                      HCS_E_SYSTEM_ALREADY_STOPPED)."
    )]
    Terminate(IdArgs),
    /// Save a paused compute system's state to a file (HcsSaveComputeSystem).
    #[command(
        long_about = "Save the state of a paused compute system into a file \
                      (HcsSaveComputeSystem with SaveOptions {\"SaveType\":\"ToFile\"}); a \
                      relative path is made absolute against the current directory. A running \
                      system answers HCS_E_INVALID_STATE: pause it first. Engines that cannot \
                      save yet answer HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED).",
        after_help = "Example:\n  \
                      $ hcsctl pause linux-vm-09be77 && hcsctl save linux-vm-09be77 vm.vmrs\n  \
                      saved linux-vm-09be77\n\n\
                      Exit codes: 0 saved, 1 HCS failure."
    )]
    Save(SaveArgs),
    /// Wait until a compute system exits; print its exit status (HcsWaitForComputeSystemExit).
    #[command(
        long_about = "Wait until a compute system exits (HcsWaitForComputeSystemExit), at most \
                      --timeout seconds, and print its SystemExitStatus: the exit type, the \
                      status HRESULT and who caused it.",
        after_help = "Examples:\n  \
                      $ hcsctl wait linux-vm-09be77\n  \
                      GracefulExit status=0x00000000 (Shutdown by GuestOS)\n  \
                      $ hcsctl wait --json --timeout 5 linux-vm-09be77\n  \
                      {\"Status\":0,\"ExitType\":\"GracefulExit\",\"Attribution\":[...]}\n\n\
                      Exit codes: 0 after a graceful or forced exit, 1 after an unexpected exit, \
                      an HCS failure or the timeout (HCS_E_OPERATION_TIMEOUT)."
    )]
    Wait(TimeoutArgs),
    /// Print a compute system's properties (HcsGetComputeSystemProperties).
    #[command(
        long_about = "Print the Properties document of a compute system \
                      (HcsGetComputeSystemProperties). --query is a System_PropertyQuery \
                      document, or a comma-separated list of property types as a shorthand \
                      (Memory,Statistics = {\"PropertyTypes\":[\"Memory\",\"Statistics\"]}); \
                      without it only the basic properties come back.",
        after_help = "Examples:\n  \
                      $ hcsctl properties empty-vm-3fa2c1\n  \
                      $ hcsctl properties --query Memory,Statistics empty-vm-3fa2c1\n  \
                      $ hcsctl properties --json --query '{\"PropertyTypes\":[\"Memory\"]}' \
                      empty-vm-3fa2c1 | jq .Memory\n\n\
                      Exit codes: 0 printed, 1 HCS failure."
    )]
    Properties(PropertiesArgs),
    /// Change a compute system with a ModifySettingRequest (HcsModifyComputeSystem).
    #[command(
        long_about = "Apply a ModifySettingRequest document (HcsModifyComputeSystem), read from \
                      a file or, with `-`, from stdin.",
        after_help = "Example:\n  \
                      $ echo '{\"ResourcePath\":\"VirtualMachine/ComputeTopology/Memory/SizeInMB\",\
                      \"RequestType\":\"Update\",\"Settings\":1024}' | hcsctl modify \
                      empty-vm-3fa2c1 -\n  \
                      modified empty-vm-3fa2c1\n\n\
                      Exit codes: 0 applied, 1 HCS failure, 2 if the file cannot be read."
    )]
    Modify(ModifyArgs),
    /// Print a compute system's events as they happen.
    #[command(
        long_about = "Register an event callback on a new handle of the system \
                      (HcsSetComputeSystemCallback) and print its events, one per line (as \
                      `hcsctl run` does; JSON objects with --json). HCS keeps no event history: \
                      only events from now on are seen. Without --follow, print the next event \
                      and exit (like `virsh event`); with --follow, print every event until the \
                      system exits (its SystemExited is the last line) or SIGINT/SIGTERM. \
                      --timeout bounds the wait: without --follow, no event in time is \
                      HCS_E_OPERATION_TIMEOUT; with --follow, it simply ends the watch.",
        after_help = "Examples:\n  \
                      $ hcsctl events --follow empty-vm-3fa2c1\n  \
                      2025-01-01T12:00:03.201Z  SystemExited  ForcedExit status=0x00000000 \
                      (Terminate by Client)\n  \
                      $ hcsctl events --json --timeout 60 empty-vm-3fa2c1 | jq .event\n\n\
                      Exit codes: 0 (the event came, the system exited, or the watch was \
                      stopped), 1 HCS failure or timeout without --follow."
    )]
    Events(EventsArgs),
    /// Attach this terminal to a compute system's serial port.
    #[command(
        long_about = "Attach this terminal to the serial port (ComPort) of a running compute \
                      system: what the guest writes appears here, what is typed goes to the \
                      guest (line by line). The port's socket is the host's mapping of its \
                      NamedPipe: \\\\.\\pipe\\NAME is <runtime dir>/pipe/NAME (/run/hcs for \
                      root, else $XDG_RUNTIME_DIR/hcs; $HCS_RUNTIME_DIR overrides). Properties \
                      do not carry the document, so the pipe is --pipe NAME|PATH, by default \
                      <ID>-com<N+1> for --port N (the name `hcsctl run --console` gives COM1). \
                      Ctrl-C detaches; the system keeps running. The attachment ends when the \
                      system exits.",
        after_help = "Examples:\n  \
                      $ hcsctl console linux-vm-09be77        # pipe \\\\.\\pipe\\linux-vm-09be77-com1\n  \
                      $ hcsctl console --pipe vm-serial web1  # pipe \\\\.\\pipe\\vm-serial\n  \
                      $ hcsctl console --pipe /tmp/web1.sock web1\n\n\
                      Exit codes: 0 detached or the system exited, 1 HCS failure or no such \
                      console socket."
    )]
    Console(ConsoleArgs),
    /// Run a command in a running compute system with this terminal's stdio.
    #[command(
        long_about = "Open a running compute system (HcsOpenComputeSystem) and run a command in \
                      its guest (HcsCreateProcess; the document needs a guest agent, as \
                      examples/linux-vm.json has) with this terminal's stdin, stdout and \
                      stderr, then exit with the command's exit code. The first SIGINT/SIGTERM \
                      is forwarded to the command; a second one kills it. --tty gives the \
                      command a terminal (EmulateConsole) of this terminal's size and puts this \
                      terminal in raw mode, for interactive programs (Ctrl-C then goes to the \
                      guest); window size changes are passed on. When stdin is not a terminal, \
                      --tty still gives the command a terminal (24x80 unless stdout is a \
                      terminal) and leaves this one as it is, as `docker exec -t` does.",
        after_help = "Examples:\n  \
                      $ hcsctl exec linux-vm-09be77 -- uname -r\n  \
                      6.1.0-28-cloud-amd64\n  \
                      $ hcsctl exec --tty linux-vm-09be77 -- /bin/sh\n\n\
                      Exit codes: the command's own exit code; 1 if an HCS call failed, 2 on a \
                      usage error."
    )]
    Exec(ExecArgs),
    /// Print a shell completion script.
    #[command(
        long_about = "Print the completion script of hcsctl for a shell, to be sourced or \
                      installed where the shell looks for completions.",
        after_help = "Examples:\n  \
                      $ source <(hcsctl completions bash)\n  \
                      $ hcsctl completions bash > /etc/bash_completion.d/hcsctl\n  \
                      $ hcsctl completions zsh > \"${fpath[1]}/_hcsctl\"\n  \
                      $ hcsctl completions fish > ~/.config/fish/completions/hcsctl.fish\n\n\
                      Exit codes: 0, or 2 for an unknown shell."
    )]
    Completions(CompletionsArgs),
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
    /// Attach this terminal to the guest's serial console (COM1) until the VM exits;
    /// Ctrl-C terminates the VM.
    #[arg(long, conflicts_with = "command")]
    pub console: bool,
    /// With -- CMD: give CMD a terminal (EmulateConsole) and put this one in raw mode, as
    /// exec --tty does.
    #[arg(long, short, requires = "command")]
    pub tty: bool,
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
}

/// Arguments of `hcsctl list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only systems with this owner (repeatable: any of them).
    #[arg(long, value_name = "OWNER")]
    pub owner: Vec<String>,
    /// Only the system with this id (repeatable: any of them).
    #[arg(long, value_name = "ID")]
    pub id: Vec<String>,
}

/// Arguments of `hcsctl create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The ComputeSystem document (JSON).
    #[arg(value_name = "DOC.json")]
    pub document: PathBuf,
    /// Id of the new compute system [default: the file stem and a short random suffix].
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

/// A system id, for the verbs that need nothing else.
#[derive(Debug, Args)]
pub(crate) struct IdArgs {
    /// The compute system's id.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// A system id and an optional timeout.
#[derive(Debug, Args)]
pub(crate) struct TimeoutArgs {
    /// The compute system's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Give up after this many seconds (decimals allowed) [default: no limit].
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,
}

/// Arguments of `hcsctl save`.
#[derive(Debug, Args)]
pub(crate) struct SaveArgs {
    /// The compute system's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The file to save the state into.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Arguments of `hcsctl properties`.
#[derive(Debug, Args)]
pub(crate) struct PropertiesArgs {
    /// The compute system's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// A System_PropertyQuery document, or property types separated by commas.
    #[arg(long, value_name = "JSON|TYPES")]
    pub query: Option<String>,
}

/// Arguments of `hcsctl modify`.
#[derive(Debug, Args)]
pub(crate) struct ModifyArgs {
    /// The compute system's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The ModifySettingRequest document; `-` reads it from stdin.
    #[arg(value_name = "SETTINGS.json|-")]
    pub settings: PathBuf,
}

/// Arguments of `hcsctl events`.
#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// The compute system's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Print every event until the system exits or SIGINT/SIGTERM, not just the next one.
    #[arg(long, short)]
    pub follow: bool,
    /// Give up after this many seconds (decimals allowed) [default: no limit].
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,
}

/// Arguments of `hcsctl console`.
#[derive(Debug, Args)]
pub(crate) struct ConsoleArgs {
    /// The compute system's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The serial port: 0 is COM1 (ttyS0), 1 is COM2.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub port: u8,
    /// The port's NamedPipe: a pipe name (NAME or \\.\pipe\NAME) or a socket path
    /// [default: <ID>-com<N+1>].
    #[arg(long, value_name = "NAME|PATH")]
    pub pipe: Option<String>,
}

/// Arguments of `hcsctl exec`.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// The compute system's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Give the command a terminal (EmulateConsole) and put this one in raw mode.
    #[arg(long, short)]
    pub tty: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Arguments of `hcsctl completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `--timeout` values: non-negative seconds, decimals allowed.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text:?} is not a non-negative number of seconds"))
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
    /// An HCS call failed: `<HRESULT name> (0x…): <ErrorMessage>`, or the code's meaning
    /// when the host gave no error document.
    #[error("{}: {}", .0.hresult, hcs_message(.0))]
    Hcs(#[from] hcs::Error),
    /// The command line asks for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),
    /// The tool could not set itself up (signal handlers, threads, sockets).
    #[error("{0}")]
    Setup(String),
}

impl CliError {
    /// The process exit code for this error.
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Read { .. } | CliError::Usage(_) => 2,
            CliError::Hcs(_) | CliError::Setup(_) => 1,
        }
    }

    /// `{"error":{"hresult","name","message"}}`: the HRESULT as the signed int32 of HCS
    /// documents (null when the failure is not an HCS one), its name, the message.
    fn json(&self) -> String {
        let (hresult, name, message) = match self {
            CliError::Hcs(error) => (
                serde_json::Value::from(error.hresult.0),
                error.hresult.name().unwrap_or("unknown HRESULT").to_owned(),
                hcs_message(error),
            ),
            CliError::Read { .. } => (
                serde_json::Value::Null,
                String::from("FILE_UNREADABLE"),
                self.to_string(),
            ),
            CliError::Usage(_) => (
                serde_json::Value::Null,
                String::from("USAGE"),
                self.to_string(),
            ),
            CliError::Setup(_) => (
                serde_json::Value::Null,
                String::from("HCSCTL_FAILURE"),
                self.to_string(),
            ),
        };
        output::error_json(&hresult, &name, &message)
    }
}

/// The `ErrorMessage` of an HCS error's document, else the meaning of its HRESULT.
fn hcs_message(error: &hcs::Error) -> String {
    error
        .message()
        .unwrap_or_else(|| error.hresult.description().to_owned())
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

/// Parses the command line; a usage error in `--json` mode is printed as a JSON error.
fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(error) => {
            let json = std::env::args().skip(1).any(|a| a == "--json");
            let usage = error.use_stderr();
            if usage && json {
                let text = error.to_string();
                let first = text.lines().next().unwrap_or("usage error");
                let message = first.trim_start_matches("error: ").to_owned();
                output::line(&CliError::Usage(message).json());
            } else {
                let _ = error.print();
            }
            Err(ExitCode::from(if usage { 2 } else { 0 }))
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging();
    let json = cli.json;
    let outcome = match cli.command {
        Command::Run(args) if !args.command.is_empty() => exec::run_command(&args, json),
        Command::Run(args) if args.console => exec::run_console(&args, json),
        Command::Run(args) => run::run(&args, json),
        Command::Validate(args) => validate::validate(&args, json),
        Command::List(args) => systems::list(&args, json),
        Command::Create(args) => systems::create(&args, json),
        Command::Start(args) => systems::lifecycle(&args.id, systems::Action::Start, None, json),
        Command::Pause(args) => systems::lifecycle(&args.id, systems::Action::Pause, None, json),
        Command::Resume(args) => systems::lifecycle(&args.id, systems::Action::Resume, None, json),
        Command::Shutdown(args) => {
            systems::lifecycle(&args.id, systems::Action::Shutdown, args.timeout, json)
        }
        Command::Terminate(args) => {
            systems::lifecycle(&args.id, systems::Action::Terminate, None, json)
        }
        Command::Save(args) => systems::save(&args, json),
        Command::Wait(args) => systems::wait(&args, json),
        Command::Properties(args) => systems::properties(&args, json),
        Command::Modify(args) => systems::modify(&args, json),
        Command::Events(args) => events::events(&args, json),
        Command::Console(args) => exec::console(&args),
        Command::Exec(args) => exec::exec(&args),
        Command::Completions(args) => {
            // Into a buffer first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "hcsctl", &mut script);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&script).and_then(|()| out.flush());
            Ok(0)
        }
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            if json {
                output::line(&error.json());
            } else {
                output::error_line(&error.to_string());
            }
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn errors_as_json() {
        let error = CliError::Hcs(hcs::Error::from_hresult(
            hcs::HResult::HCS_E_SYSTEM_NOT_FOUND,
        ));
        let value: serde_json::Value = serde_json::from_str(&error.json()).unwrap();
        assert_eq!(value["error"]["hresult"], -2143878898);
        assert_eq!(value["error"]["name"], "HCS_E_SYSTEM_NOT_FOUND");
        let usage: serde_json::Value =
            serde_json::from_str(&CliError::Usage("bad".into()).json()).unwrap();
        assert!(usage["error"]["hresult"].is_null());
        assert_eq!(usage["error"]["message"], "bad");
        assert_eq!(error.exit_code(), 1);
    }
}
