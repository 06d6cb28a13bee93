//! What tools and tests ask of the host besides the HCS calls: which host this process
//! talks to, how the host judges a document (`hcsctl validate`), where a serial port's
//! socket is, and the test requests (live counts, holding a system's request queue),
//! which a host answers only when started for tests (`docs/settings.md`).

use crate::client::{client, next_handle, Link};
use crate::types::HcsSystem;
use crate::Error;
use hcs_protocol::{Diagnostic, RequestBody, Validation};
use hcs_schema::HResult;
use std::path::PathBuf;

/// Runs this process's compute systems in `host`, an embedded host the program built with
/// the settings and engines of its choosing (`hcs_host::Host::new`), instead of choosing a
/// host on first use (`HCS_HOST`). Must come before any other call of this crate: false,
/// and nothing changed, once a host was chosen. The fuzz target `c_entry` uses it to run on
/// a scripted engine.
pub fn use_embedded_host(host: hcs_host::Host) -> bool {
    crate::client::use_embedded(host)
}

/// The service's socket: `$HCS_SOCKET`, else `/run/hcs/hcsd.sock`.
pub fn service_socket_path() -> PathBuf {
    hcs_wire::socket_path()
}

/// How the host this process talks to judges a `ComputeSystem` document: every problem a
/// create would fail on, in the host's order, and what it would run it on. Nothing is
/// created. Fails only when the host cannot be asked.
pub fn validate_document(configuration: &str) -> Result<Validation, Error> {
    let (result, document) = host_call(RequestBody::ValidateDocument {
        configuration: configuration.to_owned(),
    });
    decode(result, document)
}

/// The host socket of a ComPort's `NamedPipe` value (`\\.\pipe\NAME` or an absolute
/// path) on the host this process talks to: where `hcsctl console` attaches. `None` for
/// `""` (disconnected); `E_INVALIDARG` for a value that is neither.
pub fn com_port_socket(named_pipe: &str) -> Result<Option<PathBuf>, Error> {
    let (result, document) = host_call(RequestBody::ComPortSocket {
        named_pipe: named_pipe.to_owned(),
    });
    let answer: serde_json::Value = decode(result, document)?;
    Ok(answer["Socket"].as_str().map(PathBuf::from))
}

fn host_call(body: RequestBody) -> (HResult, Option<String>) {
    let client = client();
    client.send_and_wait(&client.new_link(), body)
}

fn decode<T: serde::de::DeserializeOwned>(
    result: HResult,
    document: Option<String>,
) -> Result<T, Error> {
    let document = crate::error::check(result, document)?;
    serde_json::from_str(document.as_deref().unwrap_or("null")).map_err(|e| Error {
        hresult: HResult::E_UNEXPECTED,
        document: Some(
            hcs_schema::ResultError::from_failure(
                HResult::E_UNEXPECTED,
                format!("the host's answer could not be read: {e}"),
                "Validate",
            )
            .to_json(),
        ),
    })
}

pub use crate::client::{HostKind, HOST_ENV};

/// Which host this process's client talks to: chosen once, on first use, from
/// `HCS_HOST` (`embedded`, `service`, or `auto`/unset: the service if it answers at
/// [`hcs_wire::socket_path`], else the embedded host). See `docs/service.md`.
pub fn host_kind() -> HostKind {
    client().kind()
}

/// Counts of live objects, for leak checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveCounts {
    /// Open operation handles in this process.
    pub operations: usize,
    /// Open compute-system handles in this process.
    pub system_handles: usize,
    /// Open process handles in this process.
    pub process_handles: usize,
    /// Compute systems that exist in the host (the embedded host or the service).
    pub systems: usize,
    /// VMs alive in the host's engines.
    pub vms: usize,
}

/// What this process holds right now, and what its host holds (0 systems and VMs when
/// the host cannot be asked).
pub fn live_counts() -> LiveCounts {
    let client = client();
    let (result, document) = client.send_and_wait(
        &client.new_link(),
        RequestBody::Diagnostic(Diagnostic::LiveCounts),
    );
    let host: serde_json::Value = document
        .filter(|_| result.succeeded())
        .and_then(|d| serde_json::from_str(&d).ok())
        .unwrap_or_default();
    let count = |name: &str| host.get(name).and_then(|v| v.as_u64()).unwrap_or(0) as usize;
    LiveCounts {
        operations: client.operations.len(),
        system_handles: client.systems.len(),
        process_handles: client.processes.len(),
        systems: count("Systems"),
        vms: count("Vms"),
    }
}

/// Keeps the host's request queue of `system` blocked until the returned guard drops, so
/// that operations issued meanwhile stay pending: a deterministic way to observe
/// `HCS_E_OPERATION_PENDING`, timeouts and closes while work runs. The VM keeps running;
/// terminate is not held back (rule 54). `None` if the handle is invalid or the system
/// has stopped.
pub fn hold_system_requests(system: HcsSystem) -> Option<SystemHold> {
    let client = client();
    let object = client.system(system)?;
    let hold = next_handle();
    let (result, _) = client.send_and_wait(
        &object.link,
        RequestBody::Diagnostic(Diagnostic::HoldSystem {
            handle: object.handle,
            hold,
        }),
    );
    result.succeeded().then(|| SystemHold {
        hold,
        link: object.link.clone(),
    })
}

/// A hold on a system's request queue (see [`hold_system_requests`]); dropping it
/// releases the queue.
#[must_use = "the hold is released when this guard drops"]
pub struct SystemHold {
    hold: u64,
    link: Link,
}

impl std::fmt::Debug for SystemHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemHold")
            .field("hold", &self.hold)
            .finish()
    }
}

impl Drop for SystemHold {
    fn drop(&mut self) {
        client().send_and_wait(
            &self.link,
            RequestBody::Diagnostic(Diagnostic::ReleaseHold { hold: self.hold }),
        );
    }
}
