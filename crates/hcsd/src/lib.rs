//! `hcsd`, the Host Compute Service: compute systems that belong to the host, not to the
//! process that created them.
//!
//! ```text
//!  client process (hcs / libcomputecore / hcsctl)
//!     │  Unix socket /run/hcs/hcsd.sock (hcs-wire frames; SO_PEERCRED; group `hcs`)
//!     v
//!  hcsd ── router ──────────────────────────────┐  one client connection = one session
//!     │   registry: system id -> worker         │  handles -> the worker they are bound to
//!     │   socketpair (or the worker's socket     │  after a restart)
//!     v                                          v
//!  hcsd worker (one process per compute system): hcs-host with one system, its engine
//!  (the KVM fds or the QEMU child) and its guest connection
//! ```
//!
//! What this crate owns: the listening socket and its access check ([`service`]), the
//! routing of each client's requests to the worker of the system they name, answers for
//! what belongs to no system (enumeration, service properties), what a client sees when a
//! worker dies ([`link`]), the worker process itself ([`worker`]) and the state directory
//! from which a restarted `hcsd` finds its workers again ([`state`]). What it does not own:
//! compute systems' semantics: every request about a system is answered by `hcs-host`
//! inside that system's worker, exactly as the embedded host answers it.

pub mod client_out;
pub mod link;
pub mod service;
pub mod state;
pub mod worker;
pub mod worker_protocol;
