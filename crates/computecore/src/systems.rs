//! The compute-system functions of HCS-API §3.2 (`HcsCreateComputeSystem` and friends).

use crate::abi::{
    HANDLE, HCS_CREATE_OPTIONS_1, HCS_EVENT_CALLBACK, HCS_OPERATION, HCS_SYSTEM, HRESULT, PCWSTR,
    PWSTR, SECURITY_DESCRIPTOR,
};
use crate::ffi::{self, guard, hresult, operation, system};
use crate::strings;
use hcs::{api, HResult};
use std::ffi::c_void;

/// `HcsEnumerateComputeSystems` (rule 23).
///
/// # Safety
/// `query` is null or a NUL-terminated UTF-16 string.
#[no_mangle]
pub unsafe extern "C" fn HcsEnumerateComputeSystems(
    query: PCWSTR,
    operation_handle: HCS_OPERATION,
) -> HRESULT {
    hresult("HcsEnumerateComputeSystems", || {
        // SAFETY: forwarded from the caller.
        let query = unsafe { strings::optional(query) }?;
        Ok(api::enumerate_compute_systems(
            query.as_deref(),
            operation(operation_handle),
        ))
    })
}

/// `HcsEnumerateComputeSystemsInNamespace`: namespaces are not implemented (`E_NOTIMPL`,
/// rule 50).
#[no_mangle]
pub extern "C" fn HcsEnumerateComputeSystemsInNamespace(
    _id_namespace: PCWSTR,
    _query: PCWSTR,
    _operation: HCS_OPERATION,
) -> HRESULT {
    HResult::E_NOTIMPL.0
}

/// `HcsCreateComputeSystem` (rules 17–21, 46–49).
///
/// # Safety
/// `id` and `configuration` are null or NUL-terminated UTF-16 strings; `compute_system`
/// is null or valid for a write of one handle.
#[no_mangle]
pub unsafe extern "C" fn HcsCreateComputeSystem(
    id: PCWSTR,
    configuration: PCWSTR,
    operation_handle: HCS_OPERATION,
    security_descriptor: *const SECURITY_DESCRIPTOR,
    compute_system: *mut HCS_SYSTEM,
) -> HRESULT {
    hresult("HcsCreateComputeSystem", || {
        // SAFETY: forwarded from the caller.
        unsafe { ffi::clear_out(compute_system) }?;
        // SAFETY: forwarded from the caller.
        let id = unsafe { strings::required(id) }?;
        // SAFETY: forwarded from the caller.
        let configuration = unsafe { strings::required(configuration) }?;
        if !security_descriptor.is_null() {
            return Err(HResult::E_INVALIDARG);
        }
        let handle =
            api::create_compute_system(&id, &configuration, operation(operation_handle), None)?;
        // SAFETY: checked non-null and writable above.
        unsafe { compute_system.write(ffi::to_c(handle.0)) };
        Ok(HResult::S_OK)
    })
}

/// `HcsCreateComputeSystemInNamespace`: namespaces are not implemented (`E_NOTIMPL`);
/// the `_Out_` handle is set to null.
///
/// # Safety
/// `compute_system` is null or valid for a write of one handle.
#[no_mangle]
pub unsafe extern "C" fn HcsCreateComputeSystemInNamespace(
    _id_namespace: PCWSTR,
    _id: PCWSTR,
    _configuration: PCWSTR,
    _operation: HCS_OPERATION,
    _options: *const HCS_CREATE_OPTIONS_1,
    compute_system: *mut HCS_SYSTEM,
) -> HRESULT {
    hresult("HcsCreateComputeSystemInNamespace", || {
        // SAFETY: forwarded from the caller.
        unsafe { ffi::clear_out(compute_system) }?;
        Err(HResult::E_NOTIMPL)
    })
}

/// `HcsOpenComputeSystem` (rules 19, 21).
///
/// # Safety
/// `id` is null or a NUL-terminated UTF-16 string; `compute_system` is null or valid for
/// a write of one handle.
#[no_mangle]
pub unsafe extern "C" fn HcsOpenComputeSystem(
    id: PCWSTR,
    requested_access: u32,
    compute_system: *mut HCS_SYSTEM,
) -> HRESULT {
    hresult("HcsOpenComputeSystem", || {
        // SAFETY: forwarded from the caller.
        unsafe { ffi::clear_out(compute_system) }?;
        // SAFETY: forwarded from the caller.
        let id = unsafe { strings::required(id) }?;
        let handle = api::open_compute_system(&id, requested_access)?;
        // SAFETY: checked non-null and writable above.
        unsafe { compute_system.write(ffi::to_c(handle.0)) };
        Ok(HResult::S_OK)
    })
}

/// `HcsOpenComputeSystemInNamespace`: `E_NOTIMPL`; the `_Out_` handle is set to null.
///
/// # Safety
/// `compute_system` is null or valid for a write of one handle.
#[no_mangle]
pub unsafe extern "C" fn HcsOpenComputeSystemInNamespace(
    _id_namespace: PCWSTR,
    _id: PCWSTR,
    _requested_access: u32,
    compute_system: *mut HCS_SYSTEM,
) -> HRESULT {
    hresult("HcsOpenComputeSystemInNamespace", || {
        // SAFETY: forwarded from the caller.
        unsafe { ffi::clear_out(compute_system) }?;
        Err(HResult::E_NOTIMPL)
    })
}

/// `HcsCloseComputeSystem` (rules 28, 29): a null or closed handle is ignored.
#[no_mangle]
pub extern "C" fn HcsCloseComputeSystem(compute_system: HCS_SYSTEM) {
    guard("HcsCloseComputeSystem", (), || {
        api::close_compute_system(system(compute_system))
    })
}

macro_rules! system_function {
    ($(#[$doc:meta])* $name:ident => $call:path) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// `options` is null or a NUL-terminated UTF-16 string.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            compute_system: HCS_SYSTEM,
            operation: HCS_OPERATION,
            options: PCWSTR,
        ) -> HRESULT {
            // SAFETY: forwarded from the caller.
            unsafe {
                ffi::with_options(stringify!($name), system(compute_system), operation, options, $call)
            }
        }
    };
}

system_function!(
    /// `HcsStartComputeSystem`; `options` is reserved (rule 21).
    HcsStartComputeSystem => api::start_compute_system
);
system_function!(
    /// `HcsShutDownComputeSystem` with `ShutdownOptions` or null.
    HcsShutDownComputeSystem => api::shut_down_compute_system
);
system_function!(
    /// `HcsTerminateComputeSystem`; `options` is reserved (rules 21, 53, 54).
    HcsTerminateComputeSystem => api::terminate_compute_system
);
system_function!(
    /// `HcsCrashComputeSystem` with `CrashOptions` or null.
    HcsCrashComputeSystem => api::crash_compute_system
);
system_function!(
    /// `HcsPauseComputeSystem` with `PauseOptions` or null.
    HcsPauseComputeSystem => api::pause_compute_system
);
system_function!(
    /// `HcsResumeComputeSystem`; `options` is reserved (rule 21).
    HcsResumeComputeSystem => api::resume_compute_system
);
system_function!(
    /// `HcsSaveComputeSystem` with `SaveOptions` (rule 25).
    HcsSaveComputeSystem => api::save_compute_system
);
system_function!(
    /// `HcsGetComputeSystemProperties` with a `System_PropertyQuery` or null (rule 22).
    HcsGetComputeSystemProperties => api::get_compute_system_properties
);

/// `HcsModifyComputeSystem` (rule 31): `configuration` required, `identity` null.
///
/// # Safety
/// `configuration` is null or a NUL-terminated UTF-16 string.
#[no_mangle]
pub unsafe extern "C" fn HcsModifyComputeSystem(
    compute_system: HCS_SYSTEM,
    operation_handle: HCS_OPERATION,
    configuration: PCWSTR,
    identity: HANDLE,
) -> HRESULT {
    hresult("HcsModifyComputeSystem", || {
        // SAFETY: forwarded from the caller.
        let configuration = unsafe { strings::required(configuration) }?;
        Ok(api::modify_compute_system(
            system(compute_system),
            operation(operation_handle),
            &configuration,
            identity as usize,
        ))
    })
}

/// `HcsWaitForComputeSystemExit` (rule 30).
///
/// # Safety
/// `result` is null or valid for a write of one `PWSTR`.
#[no_mangle]
pub unsafe extern "C" fn HcsWaitForComputeSystemExit(
    compute_system: HCS_SYSTEM,
    timeout_ms: u32,
    result: *mut PWSTR,
) -> HRESULT {
    hresult("HcsWaitForComputeSystemExit", || {
        let (hr, document) = api::wait_for_compute_system_exit(system(compute_system), timeout_ms);
        // SAFETY: forwarded from the caller.
        unsafe { strings::store(result, document) }?;
        Ok(hr)
    })
}

/// `HcsSetComputeSystemCallback` (§4.2, §4.3, rules 32–34, 55).
#[no_mangle]
pub extern "C" fn HcsSetComputeSystemCallback(
    compute_system: HCS_SYSTEM,
    callback_options: u32,
    context: *const c_void,
    callback: HCS_EVENT_CALLBACK,
) -> HRESULT {
    hresult("HcsSetComputeSystemCallback", || {
        Ok(api::set_compute_system_callback(
            system(compute_system),
            callback_options,
            context as usize,
            ffi::event_callback(callback),
        ))
    })
}

macro_rules! not_implemented {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[no_mangle]
        pub extern "C" fn $name(
            _compute_system: HCS_SYSTEM,
            _operation: HCS_OPERATION,
            _options: PCWSTR,
        ) -> HRESULT {
            HResult::E_NOTIMPL.0
        }
    };
}

not_implemented!(
    /// Live migration: `E_NOTIMPL` (rule 50).
    HcsInitializeLiveMigrationOnSource
);
not_implemented!(
    /// Live migration: `E_NOTIMPL` (rule 50).
    HcsStartLiveMigrationOnSource
);
not_implemented!(
    /// Live migration: `E_NOTIMPL` (rule 50).
    HcsStartLiveMigrationTransfer
);
not_implemented!(
    /// Live migration: `E_NOTIMPL` (rule 50).
    HcsFinalizeLiveMigration
);
