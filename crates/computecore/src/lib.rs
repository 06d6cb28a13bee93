//! `libcomputecore.so`: the HCS C API of `include/computecore.h` on Linux.
//!
//! Every function of HCS-API §3.1 to §3.6 is exported under its Windows name with the
//! Windows signature, plus `LocalFree` and `CoTaskMemFree` for the strings it returns.
//! This crate owns only the C boundary; all behaviour is in the `hcs` client crate, whose
//! [`hcs::api`] has one Rust function per C function:
//!
//! ```text
//!  C / C++ caller ── computecore.h ──> this crate ──> hcs::api ──> client ──> host ──> VM
//!                     UTF-16, pointers,   checks pointers and UTF-16, converts handles,
//!                     function pointers   wraps C callbacks, allocates result strings
//! ```
//!
//! What the boundary guarantees (HCS-API §5.1, rules 49 and 51):
//! * Null, closed, garbage or wrong-kind handles give `E_HANDLE`, never a crash: a handle
//!   is a number looked up in a table, never dereferenced.
//! * Null required strings and ill-formed UTF-16 give `E_INVALIDARG`; null required
//!   out-pointers give `E_POINTER`; `_Out_` handles are set to `NULL` on failure.
//! * Result strings are NUL-terminated UTF-16 from `malloc`, recorded in a registry so that
//!   `LocalFree` and `CoTaskMemFree` free exactly the strings this library returned and
//!   leave any other pointer (or a second free) alone.
//! * C callbacks run on the library's dispatcher threads and may call any function,
//!   including closing the operation or handle they were called for. A panic never
//!   crosses into C: each export catches it and returns `E_FAIL` (or its null value).
//!
//! The Rust types of the C structs and the values of the C enums are in [`abi`]; the header
//! check (`tests/header.rs`) compiles `computecore.h` and compares them field by field.

pub mod abi;
mod ffi;
mod operations;
mod processes;
mod service;
mod strings;
mod systems;

pub use operations::*;
pub use processes::*;
pub use service::*;
pub use strings::{outstanding_strings, CoTaskMemFree, LocalFree};
pub use systems::*;

/// The name of every function this library exports, in header order (the header check
/// compares it with `computecore.h` and with the library's dynamic symbols).
pub const EXPORTS: &[&str] = &[
    "HcsCreateOperation",
    "HcsCreateOperationWithNotifications",
    "HcsCloseOperation",
    "HcsGetOperationContext",
    "HcsSetOperationContext",
    "HcsGetComputeSystemFromOperation",
    "HcsGetProcessFromOperation",
    "HcsGetOperationType",
    "HcsGetOperationId",
    "HcsGetOperationResult",
    "HcsGetOperationResultAndProcessInfo",
    "HcsWaitForOperationResult",
    "HcsWaitForOperationResultAndProcessInfo",
    "HcsSetOperationCallback",
    "HcsCancelOperation",
    "HcsGetOperationProperties",
    "HcsAddResourceToOperation",
    "HcsEnumerateComputeSystems",
    "HcsEnumerateComputeSystemsInNamespace",
    "HcsCreateComputeSystem",
    "HcsCreateComputeSystemInNamespace",
    "HcsOpenComputeSystem",
    "HcsOpenComputeSystemInNamespace",
    "HcsCloseComputeSystem",
    "HcsStartComputeSystem",
    "HcsShutDownComputeSystem",
    "HcsTerminateComputeSystem",
    "HcsCrashComputeSystem",
    "HcsPauseComputeSystem",
    "HcsResumeComputeSystem",
    "HcsSaveComputeSystem",
    "HcsGetComputeSystemProperties",
    "HcsModifyComputeSystem",
    "HcsWaitForComputeSystemExit",
    "HcsSetComputeSystemCallback",
    "HcsInitializeLiveMigrationOnSource",
    "HcsStartLiveMigrationOnSource",
    "HcsStartLiveMigrationTransfer",
    "HcsFinalizeLiveMigration",
    "HcsCreateProcess",
    "HcsOpenProcess",
    "HcsCloseProcess",
    "HcsTerminateProcess",
    "HcsSignalProcess",
    "HcsGetProcessInfo",
    "HcsGetProcessProperties",
    "HcsModifyProcess",
    "HcsSetProcessCallback",
    "HcsWaitForProcessExit",
    "HcsGetServiceProperties",
    "HcsModifyServiceSettings",
    "HcsSubmitWerReport",
    "HcsCreateEmptyGuestStateFile",
    "HcsCreateEmptyRuntimeStateFile",
    "HcsGrantVmAccess",
    "HcsRevokeVmAccess",
    "HcsGrantVmGroupAccess",
    "HcsRevokeVmGroupAccess",
    "HcsGetProcessorCompatibilityFromSavedState",
    "LocalFree",
    "CoTaskMemFree",
];
