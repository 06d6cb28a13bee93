//! The HCS service core: every compute system of a host, their lifecycle, and the sessions
//! clients drive them through.
//!
//! ```text
//!  client (hcs)                          hcs-host
//!  ─────────────   hcs_protocol::Request  ┌───────────────────────────────────────────────┐
//!  Session::send ───────────────────────> │ Session: handles, the session rules           │
//!                                         │ Host: engines + registry id -> System         │
//!  MessageSink::deliver <──────────────── │ System: lifecycle table, request queue, guest │
//!       Reply / Notification              │   session, shutdown, processes                │
//!                                         └──────── hcs_engine::Engine ───────────────────┘
//!                                           hcs-kvm (built-in VMM)   hcs-qemu (QEMU/QMP)
//! ```
//!
//! One host serves both ways a client reaches it: the *embedded* host runs inside the
//! client's process; in the service, each `hcsd` worker process runs a host holding one
//! system, and `hcsd`'s router forwards each client's requests to the worker of the system
//! they name. Either way the messages are `hcs-protocol`'s, and every rule is answered
//! here, once.
//!
//! What this crate owns: parsing and validating documents (through `hcs-schema`), deciding
//! what the host can run ([`plan`]) and which engine runs it, the registry of systems by
//! id, the lifecycle of HCS-API §3.3 with its error codes ([`refusals`] words every
//! refusal), ShouldTerminateOnLastHandleClosed, exit status documents, properties, and the
//! guest agent's connection. What it does not own: the operation model (callbacks, waits,
//! operation handles), which lives in the client (`hcs`); the VMs themselves, which engines
//! build behind `hcs_engine::Engine`; and how messages cross a socket (`hcs-wire`).
//!
//! The settings come in once, as a [`HostConfig`] (`docs/settings.md`).

pub mod config;
pub mod gone;
mod guest;
mod host;
mod lifecycle;
mod modify;
pub mod paths;
mod peer;
pub mod plan;
mod processes;
mod properties;
pub mod refusals;
mod registry;
pub mod service;
mod session;
mod system;

#[cfg(test)]
mod tests;

pub use config::HostConfig;
pub use host::Host;
pub use processes::lost_status_document;
pub use properties::worker_lost_exit_status;
pub use registry::check_document_and_id;
pub use session::Session;
