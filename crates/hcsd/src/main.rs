//! `hcsd`: the Host Compute Service daemon, and (as `hcsd worker`) its worker processes.

use clap::{Parser, Subcommand};
use hcs_host::HostConfig;
use hcsd::service::{Config, Service};
use hcsd::state::{StateDir, DEFAULT_STATE_DIR};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;

/// The Host Compute Service: compute systems (VMs) that belong to the host, served to
/// clients (libcomputecore, the hcs crate, hcsctl) over a Unix socket. Each compute system
/// runs in its own worker process, which survives a restart of hcsd.
#[derive(Parser)]
#[command(
    name = "hcsd",
    version,
    after_help = "Example:\n  \
    $ sudo hcsd --socket /run/hcs/hcsd.sock --state-dir /run/hcs/hcsd\n\n\
    Clients find the socket at $HCS_SOCKET, else /run/hcs/hcsd.sock. Access: root, hcsd's own \
    user and members of --group (default 'hcs'). Logs go to stderr; RUST_LOG=debug for more."
)]
struct Args {
    /// The socket clients connect to [default: $HCS_SOCKET, else /run/hcs/hcsd.sock]
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Where workers are recorded, so that a restarted hcsd finds them again.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The group whose members may connect (the socket is group-owned by it, mode 0660).
    #[arg(long, default_value = "hcs")]
    group: String,
    /// Answer the requests made for tests (holding a system's request queue, live
    /// counts). Never in production: any client could stall any system.
    #[arg(long)]
    test_hooks: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Internal: run one compute system's worker (started by hcsd, on descriptor 3).
    #[command(hide = true)]
    Worker {
        /// The state directory.
        #[arg(long)]
        state_dir: PathBuf,
        /// The compute system's id.
        #[arg(long)]
        id: String,
        /// The host settings hcsd read, as JSON.
        #[arg(long)]
        host_config: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let worker = matches!(args.command, Some(Command::Worker { .. }));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match args.command {
        Some(Command::Worker {
            state_dir,
            id,
            host_config,
        }) => run_worker(state_dir, id, &host_config),
        None => {
            // Read once, here, and passed to every worker.
            let host = HostConfig {
                test_hooks: args.test_hooks,
                ..HostConfig::from_env()
            };
            run_service(args.socket, args.state_dir, args.group, host)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hcsd{}: {error}", if worker { " worker" } else { "" });
            ExitCode::FAILURE
        }
    }
}

fn run_worker(state_dir: PathBuf, id: String, host_config: &str) -> Result<(), String> {
    let host: HostConfig = serde_json::from_str(host_config)
        .map_err(|e| format!("--host-config: {e} (workers are started by hcsd)"))?;
    let state = StateDir::open(&state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    // SAFETY: hcsd starts workers with their end of the socketpair on this descriptor,
    // which nothing else in this process uses.
    let fd = unsafe { OwnedFd::from_raw_fd(hcsd::worker::WORKER_FD) };
    hcsd::worker::run(state, host, id, fd).map_err(|e| e.to_string())
}

fn run_service(
    socket: Option<PathBuf>,
    state_dir: PathBuf,
    group: String,
    host: HostConfig,
) -> Result<(), String> {
    let state = StateDir::open(&state_dir).map_err(|e| {
        format!(
            "cannot use the state directory {}: {e} (run as root, or pass --state-dir)",
            state_dir.display()
        )
    })?;
    let _lock = state.lock().map_err(|e| e.to_string())?;
    let gid = hcs_wire::peer::group_id(&group);
    if gid.is_none() {
        tracing::warn!(
            group,
            "group does not exist: only root and hcsd's own user may connect (create it with \
             `groupadd --system {group}`)"
        );
    }
    let listener = match hcsd::service::activated_listener() {
        Some(listener) => {
            tracing::info!("listening on the socket systemd passed");
            listener
        }
        None => {
            let path = hcsd::service::socket_path(socket);
            let listener = hcsd::service::bind(&path, gid)
                .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
            tracing::info!(socket = %path.display(), "listening");
            listener
        }
    };
    let service = Service::new(Config {
        state,
        group: gid.map(|gid| (group, gid)),
        host,
    });
    tracing::info!(workers = service.worker_count(), "hcsd ready");
    let on_signal = service.clone();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!(
                signal,
                "stopping; compute systems keep running in their workers"
            );
            on_signal.shut_down();
            std::process::exit(0);
        }
    });
    service.serve(listener);
    Ok(())
}
