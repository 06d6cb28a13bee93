//! `hcs-guest`: the agent inside HCS Linux guests.
//!
//! As `/init` (PID 1) of the initramfs it mounts the basic file systems, loads the virtio
//! and vsock modules, connects to the host over AF_VSOCK (CID 2, port `CONTROL_PORT`) and
//! runs processes for it, speaking the protocol of `hcs-guest-protocol`; it reaps every
//! child and powers the VM off on `Shutdown` or when the ACPI power button is pressed
//! (connected to a host or not). See `docs/guest.md`.
//!
//! ```text
//! hcs-guest                          PID 1 in a VM: vsock to the host (CID 2)
//! hcs-guest --connect unix:PATH      a plain process (tests): control on PATH, stdio port N
//!                                    on PATH_N; no mounts, modules or power-off
//! hcs-guest --connect vsock:CID      a plain process inside a VM, to another CID
//! ```
//!
//! Exit status when not PID 1: 0 after `Shutdown` or when the host closed the connection,
//! 1 when the host refused the handshake or could not be reached, 2 for a bad command line.
//! PID 1 never exits: it powers off when the host refuses it, and otherwise reconnects.

mod agent;
mod button;
mod error;
mod init;
mod log;
mod process;
mod procfs;
mod relay;
mod spawn;
mod transport;

use agent::{Agent, Config, Outcome};
use error::Error;
use log::log;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transport::Endpoint;

/// The agent now running, for the power button (PID 1 starts a new one after a failure).
static AGENT: Mutex<Option<Arc<Agent>>> = Mutex::new(None);

/// A press of the power button: the running agent's graceful power-off, or a plain one
/// when no agent is running (between a failure and the next start).
fn power_button() {
    let agent = transport::lock(&AGENT).clone();
    match agent {
        Some(agent) => agent.power_button(),
        None => {
            log!("power button: no agent running; powering off");
            init::unmount_all();
            init::power_off(false);
        }
    }
}

fn main() {
    let pid1 = std::process::id() == 1;
    let config = match parse_args(std::env::args().skip(1), pid1) {
        Ok(c) => c,
        Err(e) => {
            log!("{e}");
            log!("usage: hcs-guest [--connect unix:PATH | vsock:CID]");
            std::process::exit(2);
        }
    };
    // Before any thread exists, so that every thread inherits the mask.
    if let Err(e) = process::block_sigchld() {
        log!("{e}");
    }
    if !pid1 {
        // Orphans of our processes come to us, as they would to PID 1, so that reaping and
        // shutdown behave the same in tests.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    if pid1 {
        log!("starting as PID 1");
        if std::panic::catch_unwind(init::setup).is_err() {
            log!("boot set-up panicked; going on");
        }
        // Whether or not a host ever connects: a host without a guest connection shuts the
        // guest down with the button.
        button::watch(power_button);
    }
    loop {
        let outcome = std::panic::catch_unwind(|| {
            Agent::new(config.clone()).map(|agent| {
                *transport::lock(&AGENT) = Some(agent.clone());
                let outcome = agent.run();
                *transport::lock(&AGENT) = None;
                outcome
            })
        });
        let code = match outcome {
            Ok(Ok(Outcome::HostClosed)) => 0,
            Ok(Ok(Outcome::Refused)) => {
                if pid1 {
                    init::power_off(false);
                }
                1
            }
            Ok(Ok(Outcome::Unreachable)) => 1,
            Ok(Err(e)) => {
                log!("{e}");
                1
            }
            Err(_) => {
                log!("the agent panicked");
                101
            }
        };
        if !pid1 {
            std::process::exit(code);
        }
        // PID 1 must not exit (the kernel would panic): start over.
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `[--connect ENDPOINT]`; the default is the host over vsock.
fn parse_args(mut args: impl Iterator<Item = String>, pid1: bool) -> Result<Config, Error> {
    let mut endpoint = Endpoint::host();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--connect" => {
                let value = args
                    .next()
                    .ok_or_else(|| Error::Usage("--connect needs a value".into()))?;
                endpoint = Endpoint::parse(&value)?;
            }
            // The kernel passes unknown command-line words to init as arguments.
            _ if pid1 => {}
            other => return Err(Error::Usage(format!("unknown argument {other}"))),
        }
    }
    Ok(Config { endpoint, pid1 })
}
