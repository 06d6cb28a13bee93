//! The operation functions of HCS-API §3.1 (`HcsCreateOperation` and friends).

use crate::abi::{
    HANDLE, HCS_EVENT_CALLBACK, HCS_OPERATION, HCS_OPERATION_COMPLETION, HCS_PROCESS,
    HCS_PROCESS_INFORMATION, HCS_SYSTEM, HRESULT, PCWSTR, PWSTR,
};
use crate::ffi::{self, guard, hresult, operation};
use crate::strings;
use hcs::{api, HResult, HcsOperation, OperationType, HCS_INVALID_OPERATION_ID};
use std::ffi::c_void;

/// `HcsCreateOperation` (O-1, rule 1).
#[no_mangle]
pub extern "C" fn HcsCreateOperation(
    context: *const c_void,
    callback: HCS_OPERATION_COMPLETION,
) -> HCS_OPERATION {
    guard("HcsCreateOperation", std::ptr::null_mut(), || {
        let op = api::create_operation(context as usize, ffi::completion(callback));
        ffi::to_c(op.0)
    })
}

/// `HcsCreateOperationWithNotifications` (HCS-API §2.4): null for unknown option bits or
/// a null callback.
#[no_mangle]
pub extern "C" fn HcsCreateOperationWithNotifications(
    event_types: u32,
    context: *const c_void,
    callback: HCS_EVENT_CALLBACK,
) -> HCS_OPERATION {
    guard(
        "HcsCreateOperationWithNotifications",
        std::ptr::null_mut(),
        || {
            let Some(callback) = ffi::event_callback(callback) else {
                return std::ptr::null_mut();
            };
            api::create_operation_with_notifications(event_types, context as usize, callback)
                .map_or(std::ptr::null_mut(), |op| ffi::to_c(op.0))
        },
    )
}

/// `HcsCloseOperation` (O-12, rules 11, 12): a null or closed handle is ignored.
#[no_mangle]
pub extern "C" fn HcsCloseOperation(operation_handle: HCS_OPERATION) {
    guard("HcsCloseOperation", (), || {
        api::close_operation(operation(operation_handle))
    })
}

/// `HcsGetOperationContext`: null for an invalid handle.
#[no_mangle]
pub extern "C" fn HcsGetOperationContext(operation_handle: HCS_OPERATION) -> *mut c_void {
    guard("HcsGetOperationContext", std::ptr::null_mut(), || {
        api::get_operation_context(operation(operation_handle)) as *mut c_void
    })
}

/// `HcsSetOperationContext` (O-14).
#[no_mangle]
pub extern "C" fn HcsSetOperationContext(
    operation_handle: HCS_OPERATION,
    context: *const c_void,
) -> HRESULT {
    hresult("HcsSetOperationContext", || {
        Ok(api::set_operation_context(
            operation(operation_handle),
            context as usize,
        ))
    })
}

/// `HcsGetComputeSystemFromOperation` (O-18, rule 14): borrowed, or null.
#[no_mangle]
pub extern "C" fn HcsGetComputeSystemFromOperation(operation_handle: HCS_OPERATION) -> HCS_SYSTEM {
    guard(
        "HcsGetComputeSystemFromOperation",
        std::ptr::null_mut(),
        || {
            api::get_compute_system_from_operation(operation(operation_handle))
                .map_or(std::ptr::null_mut(), |s| ffi::to_c(s.0))
        },
    )
}

/// `HcsGetProcessFromOperation` (O-18): borrowed, or null.
#[no_mangle]
pub extern "C" fn HcsGetProcessFromOperation(operation_handle: HCS_OPERATION) -> HCS_PROCESS {
    guard("HcsGetProcessFromOperation", std::ptr::null_mut(), || {
        api::get_process_from_operation(operation(operation_handle))
            .map_or(std::ptr::null_mut(), |p| ffi::to_c(p.0))
    })
}

/// `HcsGetOperationType` (rule 6): `HcsOperationTypeNone` for an invalid handle.
#[no_mangle]
pub extern "C" fn HcsGetOperationType(operation_handle: HCS_OPERATION) -> i32 {
    guard("HcsGetOperationType", OperationType::None as i32, || {
        api::get_operation_type(operation(operation_handle)) as i32
    })
}

/// `HcsGetOperationId` (rule 14): `HCS_INVALID_OPERATION_ID` for an invalid handle.
#[no_mangle]
pub extern "C" fn HcsGetOperationId(operation_handle: HCS_OPERATION) -> u64 {
    guard("HcsGetOperationId", HCS_INVALID_OPERATION_ID, || {
        api::get_operation_id(operation(operation_handle))
    })
}

/// Stores a Get/Wait outcome: the document into `out`, the HRESULT returned.
///
/// # Safety
/// `out` is null or valid for a write of one `PWSTR`.
unsafe fn finish(out: *mut PWSTR, (result, document): (HResult, Option<String>)) -> HResult {
    // SAFETY: forwarded from the caller.
    match unsafe { strings::store(out, document) } {
        Ok(()) => result,
        Err(hresult) => hresult,
    }
}

/// `HcsGetOperationResult` (rules 2, 3, 5, 16).
///
/// # Safety
/// `result_document` is null or valid for a write of one `PWSTR`.
#[no_mangle]
pub unsafe extern "C" fn HcsGetOperationResult(
    operation_handle: HCS_OPERATION,
    result_document: *mut PWSTR,
) -> HRESULT {
    hresult("HcsGetOperationResult", || {
        let outcome = api::get_operation_result(operation(operation_handle));
        // SAFETY: forwarded from the caller.
        Ok(unsafe { finish(result_document, outcome) })
    })
}

/// `HcsWaitForOperationResult` (rules 2, 4, 5).
///
/// # Safety
/// `result_document` is null or valid for a write of one `PWSTR`.
#[no_mangle]
pub unsafe extern "C" fn HcsWaitForOperationResult(
    operation_handle: HCS_OPERATION,
    timeout_ms: u32,
    result_document: *mut PWSTR,
) -> HRESULT {
    hresult("HcsWaitForOperationResult", || {
        let outcome = api::wait_for_operation_result(operation(operation_handle), timeout_ms);
        // SAFETY: forwarded from the caller.
        Ok(unsafe { finish(result_document, outcome) })
    })
}

/// Rule 15: a process-information pointer is only for CreateProcess and GetProcessInfo.
fn process_info_allowed(op_type: OperationType) -> bool {
    matches!(
        op_type,
        OperationType::None | OperationType::CreateProcess | OperationType::GetProcessInfo
    )
}

/// Fills `*info` after a successful CreateProcess or GetProcessInfo (O-15, O-16): the
/// guest pid, and the std handles as file descriptors cast to `HANDLE` (NULL when the
/// pipe was not asked for; HCS-API §5.1). The caller owns and closes them.
///
/// # Safety
/// `info` is null or valid for a write of one `HCS_PROCESS_INFORMATION`.
unsafe fn fill_process_info(
    info: *mut HCS_PROCESS_INFORMATION,
    operation: hcs::HcsOperation,
    result: HResult,
) {
    if info.is_null() || result != HResult::S_OK {
        return;
    }
    let process = api::get_operation_process_information(operation);
    let handle = |fd: Option<std::os::fd::RawFd>| match fd {
        Some(fd) => fd as isize as HANDLE,
        None => std::ptr::null_mut(),
    };
    // SAFETY: non-null and valid for a write (caller's promise).
    unsafe {
        info.write(HCS_PROCESS_INFORMATION {
            ProcessId: process.map_or(0, |p| p.process_id),
            Reserved: 0,
            StdInput: handle(process.and_then(|p| p.std_input)),
            StdOutput: handle(process.and_then(|p| p.std_output)),
            StdError: handle(process.and_then(|p| p.std_error)),
        })
    };
}

/// `HcsGetOperationResultAndProcessInfo` (O-15, rule 15).
///
/// # Safety
/// `process_information` and `result_document` are null or valid for one write each.
#[no_mangle]
pub unsafe extern "C" fn HcsGetOperationResultAndProcessInfo(
    operation_handle: HCS_OPERATION,
    process_information: *mut HCS_PROCESS_INFORMATION,
    result_document: *mut PWSTR,
) -> HRESULT {
    // SAFETY: the caller's guarantees, passed on.
    unsafe {
        result_and_process_info(
            "HcsGetOperationResultAndProcessInfo",
            operation_handle,
            process_information,
            result_document,
            api::get_operation_result,
        )
    }
}

/// `HcsWaitForOperationResultAndProcessInfo` (O-15, rule 15).
///
/// # Safety
/// `process_information` and `result_document` are null or valid for one write each.
#[no_mangle]
pub unsafe extern "C" fn HcsWaitForOperationResultAndProcessInfo(
    operation_handle: HCS_OPERATION,
    timeout_ms: u32,
    process_information: *mut HCS_PROCESS_INFORMATION,
    result_document: *mut PWSTR,
) -> HRESULT {
    // SAFETY: the caller's guarantees, passed on.
    unsafe {
        result_and_process_info(
            "HcsWaitForOperationResultAndProcessInfo",
            operation_handle,
            process_information,
            result_document,
            |op| api::wait_for_operation_result(op, timeout_ms),
        )
    }
}

/// The two AndProcessInfo functions: `process_information` only for operations that
/// start or describe a process (else `E_INVALIDARG`, before anything is read), then the
/// result as `get` gives it, then the process information.
///
/// # Safety
/// `process_information` and `result_document` are null or valid for one write each.
unsafe fn result_and_process_info(
    name: &str,
    operation_handle: HCS_OPERATION,
    process_information: *mut HCS_PROCESS_INFORMATION,
    result_document: *mut PWSTR,
    get: impl FnOnce(HcsOperation) -> (HResult, Option<String>),
) -> HRESULT {
    hresult(name, || {
        let op = operation(operation_handle);
        if !process_information.is_null() && !process_info_allowed(api::get_operation_type(op)) {
            return Err(HResult::E_INVALIDARG);
        }
        // SAFETY: result_document is null or writable (this function's contract).
        let result = unsafe { finish(result_document, get(op)) };
        // SAFETY: process_information is null or writable (this function's contract).
        unsafe { fill_process_info(process_information, op, result) };
        Ok(result)
    })
}

/// `HcsSetOperationCallback` (O-14): a null callback is `E_POINTER`.
#[no_mangle]
pub extern "C" fn HcsSetOperationCallback(
    operation_handle: HCS_OPERATION,
    context: *const c_void,
    callback: HCS_OPERATION_COMPLETION,
) -> HRESULT {
    hresult("HcsSetOperationCallback", || {
        Ok(api::set_operation_callback(
            operation(operation_handle),
            context as usize,
            ffi::completion(callback),
        ))
    })
}

/// `HcsCancelOperation` (O-13, rule 13): `E_NOTIMPL`, as documented.
#[no_mangle]
pub extern "C" fn HcsCancelOperation(operation_handle: HCS_OPERATION) -> HRESULT {
    hresult("HcsCancelOperation", || {
        Ok(api::cancel_operation(operation(operation_handle)))
    })
}

/// `HcsGetOperationProperties` (HCS-API §2.4): an `OperationInfo` document; `options`
/// null or `{}`; `resultDocument` required.
///
/// # Safety
/// `options` is null or a NUL-terminated UTF-16 string; `result_document` is null or
/// valid for a write of one `PWSTR`.
#[no_mangle]
pub unsafe extern "C" fn HcsGetOperationProperties(
    operation_handle: HCS_OPERATION,
    options: PCWSTR,
    result_document: *mut PWSTR,
) -> HRESULT {
    hresult("HcsGetOperationProperties", || {
        if result_document.is_null() {
            return Err(HResult::E_POINTER);
        }
        // SAFETY: valid for a write (caller's promise); cleared before any other check.
        unsafe { result_document.write(std::ptr::null_mut()) };
        // SAFETY: forwarded from the caller.
        let options = unsafe { strings::optional(options) }?;
        let document =
            api::get_operation_properties(operation(operation_handle), options.as_deref())?;
        // SAFETY: forwarded from the caller.
        unsafe { strings::store(result_document, Some(document)) }?;
        Ok(HResult::S_OK)
    })
}

/// `HcsAddResourceToOperation`: `E_NOTIMPL` (HCS-API §2.4).
#[no_mangle]
pub extern "C" fn HcsAddResourceToOperation(
    operation_handle: HCS_OPERATION,
    _resource_type: i32,
    _uri: PCWSTR,
    _handle: HANDLE,
) -> HRESULT {
    hresult("HcsAddResourceToOperation", || {
        Ok(api::add_resource_to_operation(operation(operation_handle)))
    })
}
