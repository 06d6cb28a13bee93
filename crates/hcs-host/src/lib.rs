//! The HCS service core: every compute system of a host, their lifecycle, and the
//! messages clients use to drive them.
//!
//! ```text
//!  client (hcs crate)                     hcs-host
//!  ───────────────────   Request    ┌──────────────────────────────────────────────┐
//!  Session::send ───────────────────> Host registry: id -> System                  │
//!                                   │   System: state machine + FIFO worker thread │
//!  MessageSink::deliver <─────────── │   ── Engine trait ──> hcs-kvm (built-in VMM) │
//!        Reply / Notification       └──────────────────────────────────────────────┘
//! ```
//!
//! What this crate owns: parsing and validating documents (through `hcs-schema`), deciding
//! what the host can run ([`plan`]), the registry of systems by id, the lifecycle of
//! HCS-API §3.3 with its error codes, ShouldTerminateOnLastHandleClosed, exit status
//! documents and properties. What it does not own: the operation model (callbacks, waits,
//! operation handles), which lives in the client (`hcs`), and the VMs themselves, which
//! engines build behind the [`Engine`] trait.
//!
//! The same messages serve the embedded host (this crate inside the client's process) and,
//! later, the service: a transport only has to carry [`protocol`] types.

pub mod engine;
mod error;
mod guest;
mod host;
pub mod kvm_engine;
mod modify;
pub mod paths;
pub mod plan;
mod processes;
mod properties;
pub mod protocol;
pub mod qemu_engine;
pub mod service;
mod system;

pub use engine::{Engine, EngineError, EngineExit, EngineLimits, EngineVm, VmPlan};
pub use error::Failure;
pub use host::{reply_message, Host, Session, SystemHold};
pub use processes::lost_status_document;
pub use properties::worker_lost_exit_status;
pub use protocol::{
    HostMessage, MessageSink, Notification, ProcessHandle, ProcessRequest, Reply, Request,
    RequestBody, SystemHandle, SystemRequest,
};
