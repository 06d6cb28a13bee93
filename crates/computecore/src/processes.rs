//! The process functions of HCS-API §3.4 (`HcsCreateProcess` and friends).
//!
//! Processes run in Linux guests through their agent (docs/guest.md). The std handles
//! of `HCS_PROCESS_INFORMATION` are file descriptors owned by the caller; they come with
//! the operation's result (`Hcs*OperationResultAndProcessInfo`) or from
//! `HcsGetProcessInfo`. A system that cannot run processes answers per §3.3
//! (`HCS_E_INVALID_STATE`, `HCS_E_SYSTEM_NOT_FOUND`) or, for a running VM without a
//! guest connection, `HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION`. The handles,
//! callbacks and waits work as for systems.

use crate::abi::{
    HCS_EVENT_CALLBACK, HCS_OPERATION, HCS_PROCESS, HCS_SYSTEM, HRESULT, PCWSTR, PWSTR,
    SECURITY_DESCRIPTOR,
};
use crate::ffi::{self, guard, hresult, operation, process, system};
use crate::strings;
use hcs::{api, HResult};
use std::ffi::c_void;

/// `HcsCreateProcess` (rule 39): `processParameters` required, security descriptor null.
///
/// # Safety
/// `process_parameters` is null or a NUL-terminated UTF-16 string; `process_out` is null
/// or valid for a write of one handle.
#[no_mangle]
pub unsafe extern "C" fn HcsCreateProcess(
    compute_system: HCS_SYSTEM,
    process_parameters: PCWSTR,
    operation_handle: HCS_OPERATION,
    security_descriptor: *const SECURITY_DESCRIPTOR,
    process_out: *mut HCS_PROCESS,
) -> HRESULT {
    hresult("HcsCreateProcess", || {
        // SAFETY: forwarded from the caller.
        unsafe { ffi::clear_out(process_out) }?;
        // SAFETY: forwarded from the caller.
        let parameters = unsafe { strings::required(process_parameters) }?;
        if !security_descriptor.is_null() {
            return Err(HResult::E_INVALIDARG);
        }
        let handle = api::create_process(
            system(compute_system),
            &parameters,
            operation(operation_handle),
            None,
        )?;
        // SAFETY: checked non-null and writable above.
        unsafe { process_out.write(ffi::to_c(handle.0)) };
        Ok(HResult::S_OK)
    })
}

/// `HcsOpenProcess`: `HRESULT_FROM_WIN32(ERROR_NOT_FOUND)` for an unknown pid.
///
/// # Safety
/// `process_out` is null or valid for a write of one handle.
#[no_mangle]
pub unsafe extern "C" fn HcsOpenProcess(
    compute_system: HCS_SYSTEM,
    process_id: u32,
    requested_access: u32,
    process_out: *mut HCS_PROCESS,
) -> HRESULT {
    hresult("HcsOpenProcess", || {
        // SAFETY: forwarded from the caller.
        unsafe { ffi::clear_out(process_out) }?;
        let handle = api::open_process(system(compute_system), process_id, requested_access)?;
        // SAFETY: checked non-null and writable above.
        unsafe { process_out.write(ffi::to_c(handle.0)) };
        Ok(HResult::S_OK)
    })
}

/// `HcsCloseProcess`: a null or closed handle is ignored.
#[no_mangle]
pub extern "C" fn HcsCloseProcess(process_handle: HCS_PROCESS) {
    guard("HcsCloseProcess", (), || {
        api::close_process(process(process_handle))
    })
}

/// `HcsTerminateProcess` (rule 41); `options` is reserved (rule 21).
///
/// # Safety
/// `options` is null or a NUL-terminated UTF-16 string.
#[no_mangle]
pub unsafe extern "C" fn HcsTerminateProcess(
    process_handle: HCS_PROCESS,
    operation_handle: HCS_OPERATION,
    options: PCWSTR,
) -> HRESULT {
    // SAFETY: forwarded from the caller.
    unsafe {
        ffi::with_options(
            "HcsTerminateProcess",
            process(process_handle),
            operation_handle,
            options,
            api::terminate_process,
        )
    }
}

/// `HcsSignalProcess` with `SignalProcessOptions` or null (rule 41).
///
/// # Safety
/// `options` is null or a NUL-terminated UTF-16 string.
#[no_mangle]
pub unsafe extern "C" fn HcsSignalProcess(
    process_handle: HCS_PROCESS,
    operation_handle: HCS_OPERATION,
    options: PCWSTR,
) -> HRESULT {
    // SAFETY: forwarded from the caller.
    unsafe {
        ffi::with_options(
            "HcsSignalProcess",
            process(process_handle),
            operation_handle,
            options,
            api::signal_process,
        )
    }
}

/// `HcsGetProcessInfo` (rule 40).
#[no_mangle]
pub extern "C" fn HcsGetProcessInfo(
    process_handle: HCS_PROCESS,
    operation_handle: HCS_OPERATION,
) -> HRESULT {
    hresult("HcsGetProcessInfo", || {
        Ok(api::get_process_info(
            process(process_handle),
            operation(operation_handle),
        ))
    })
}

/// `HcsGetProcessProperties` (rule 42).
///
/// # Safety
/// `property_query` is null or a NUL-terminated UTF-16 string.
#[no_mangle]
pub unsafe extern "C" fn HcsGetProcessProperties(
    process_handle: HCS_PROCESS,
    operation_handle: HCS_OPERATION,
    property_query: PCWSTR,
) -> HRESULT {
    // SAFETY: forwarded from the caller.
    unsafe {
        ffi::with_options(
            "HcsGetProcessProperties",
            process(process_handle),
            operation_handle,
            property_query,
            api::get_process_properties,
        )
    }
}

/// `HcsModifyProcess` with a `ProcessModifyRequest` (required).
///
/// # Safety
/// `settings` is null or a NUL-terminated UTF-16 string.
#[no_mangle]
pub unsafe extern "C" fn HcsModifyProcess(
    process_handle: HCS_PROCESS,
    operation_handle: HCS_OPERATION,
    settings: PCWSTR,
) -> HRESULT {
    hresult("HcsModifyProcess", || {
        // SAFETY: forwarded from the caller.
        let settings = unsafe { strings::required(settings) }?;
        Ok(api::modify_process(
            process(process_handle),
            operation(operation_handle),
            &settings,
        ))
    })
}

/// `HcsSetProcessCallback` (§4.2; a null context is accepted, HCS-API §9 item 12).
#[no_mangle]
pub extern "C" fn HcsSetProcessCallback(
    process_handle: HCS_PROCESS,
    callback_options: u32,
    context: *mut c_void,
    callback: HCS_EVENT_CALLBACK,
) -> HRESULT {
    hresult("HcsSetProcessCallback", || {
        Ok(api::set_process_callback(
            process(process_handle),
            callback_options,
            context as usize,
            ffi::event_callback(callback),
        ))
    })
}

/// `HcsWaitForProcessExit` (rule 30).
///
/// # Safety
/// `result` is null or valid for a write of one `PWSTR`.
#[no_mangle]
pub unsafe extern "C" fn HcsWaitForProcessExit(
    process_handle: HCS_PROCESS,
    timeout_ms: u32,
    result: *mut PWSTR,
) -> HRESULT {
    hresult("HcsWaitForProcessExit", || {
        let (hr, document) = api::wait_for_process_exit(process(process_handle), timeout_ms);
        // SAFETY: forwarded from the caller.
        unsafe { strings::store(result, document) }?;
        Ok(hr)
    })
}
