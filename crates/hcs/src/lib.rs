//! The HCS client: compute systems, operations, callbacks, waits and futures.
//!
//! This crate is the client side of the Host Compute Service, as `computecore.dll` is in
//! a Windows process. It owns the operation model: an [`api::create_operation`] handle
//! tracks one asynchronous call at a time, and a client learns that the call finished in
//! one of three ways (HCS-API §2, §4.3):
//!
//! 1. it waits for it ([`api::wait_for_operation_result`], with a timeout or `INFINITE`);
//! 2. the operation's own completion callback runs;
//! 3. the compute system's event callback receives an `OperationCallback` event, when it
//!    was registered with `ENABLE_OPERATION_CALLBACKS` (then operations carrying their own
//!    callback are refused with `HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET`).
//!
//! ```text
//!  your code ──> api / ComputeSystem ──> Client ──Request──> hcs-host (embedded) ──> VMs
//!      ^                                   │    or ──socket──> hcsd (the service) ──> VMs
//!      │                                   │  <──Reply / Notification──┘
//!      └──── callbacks on dispatcher threads (never under our locks)
//! ```
//!
//! Two layers: [`api`] mirrors the C functions one for one (handles are numbers, results
//! are HRESULTs; the C ABI wraps it), and the idiomatic layer ([`ComputeSystem`],
//! [`Operation`], [`Pending`], [`EventStream`]) gives owned handles, blocking waits,
//! `async`/`await` and event streams.
//!
//! ```no_run
//! let doc = r#"{"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{
//!     "Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{"SizeInMB":1024},"Processor":{"Count":2}}}}"#;
//! let system = hcs::ComputeSystem::create("sample", doc).wait()?;
//! system.start().wait()?;
//! println!("{}", system.properties(Some(r#"{"PropertyTypes":["Memory"]}"#)).wait()?);
//! system.terminate().wait()?;
//! # Ok::<(), hcs::Error>(())
//! ```
//!
//! # Choosing the host
//!
//! Compute systems live in a host, chosen once per process on first use
//! ([`api::host_kind`]):
//!
//! * the service `hcsd`, over its Unix socket (`$HCS_SOCKET`, else `/run/hcs/hcsd.sock`):
//!   systems outlive this process and are shared with other clients;
//! * the embedded host: `hcs-host` inside this process, on the built-in VMM and QEMU:
//!   systems live and die with this process.
//!
//! `HCS_HOST=service` or `HCS_HOST=embedded` forces one (with `service` and no answering
//! hcsd, every call fails with `HCS_E_SERVICE_NOT_AVAILABLE`); unset or `auto`, the client
//! uses the service if a connect and handshake succeed, else the embedded host. Both carry
//! the same messages, so everything here behaves alike on either. When the service's
//! connection is lost, pending operations complete with `HCS_E_SERVICE_DISCONNECT`, event
//! callbacks get `ServiceDisconnect`, the old handles can only be closed, and the next
//! create or open reconnects (HCS-API rule 36). `docs/service.md` tells more.

pub mod api;
mod client;
mod dispatcher;
mod error;
mod handle_object;
mod idiomatic;
mod operation;
mod operation_info;
mod process;
mod remote;
mod state_files;
mod std_handles;
mod sync;
mod types;

pub use error::Error;
pub use hcs_protocol::{Validation, ValidationProblem};
pub use hcs_schema::HResult;
pub use idiomatic::{enumerate, ComputeSystem, Creating, EventStream, Operation, Pending};
pub use process::Process;
pub use types::{
    event_options, operation_options, Context, Event, EventCallback, EventType, HcsOperation,
    HcsProcess, HcsSystem, OperationCompletion, OperationType, ProcessInformation,
    SecurityDescriptor, GENERIC_ALL, HCS_INVALID_OPERATION_ID, INFINITE,
};
