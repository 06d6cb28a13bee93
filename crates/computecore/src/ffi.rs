//! The pieces every export uses: the panic guard, the handle-operation-options call shape,
//! handle conversions, `_Out_` writes and the wrapping of C callbacks into the Rust API's
//! callbacks.

use crate::abi::{
    HCS_EVENT, HCS_EVENT_CALLBACK, HCS_OPERATION, HCS_OPERATION_COMPLETION, HRESULT, PCWSTR,
};
use hcs::{
    Event, EventCallback, HResult, HcsOperation, HcsProcess, HcsSystem, OperationCompletion,
};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Runs an export's body; a panic (a bug of ours) never unwinds into C: it is logged and
/// the export returns `on_panic`.
pub(crate) fn guard<T>(name: &str, on_panic: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            tracing::error!(function = name, "internal panic; returning a failure to C");
            on_panic
        }
    }
}

/// Runs an export returning an `HRESULT`; `Err(hr)` and panics (`E_FAIL`) become codes.
pub(crate) fn hresult(name: &str, body: impl FnOnce() -> Result<HResult, HResult>) -> i32 {
    guard(name, HResult::E_FAIL.0, || match body() {
        Ok(hr) | Err(hr) => hr.0,
    })
}

/// Runs an asynchronous function that takes a handle, an operation and optional UTF-16
/// `options` (the shape of most system and process functions).
///
/// # Safety
/// `options` is null or a NUL-terminated UTF-16 string.
pub(crate) unsafe fn with_options<H>(
    name: &str,
    handle: H,
    operation_handle: HCS_OPERATION,
    options: PCWSTR,
    call: fn(H, HcsOperation, Option<&str>) -> HResult,
) -> HRESULT {
    hresult(name, || {
        // SAFETY: forwarded from the caller.
        let options = unsafe { crate::strings::optional(options) }?;
        Ok(call(
            handle,
            operation(operation_handle),
            options.as_deref(),
        ))
    })
}

/// C handles are the client's handle numbers carried in a pointer; they are never
/// dereferenced, so any value is safe to pass.
pub(crate) fn operation(handle: HCS_OPERATION) -> HcsOperation {
    HcsOperation(handle as u64)
}

pub(crate) fn system(handle: *mut c_void) -> HcsSystem {
    HcsSystem(handle as u64)
}

pub(crate) fn process(handle: *mut c_void) -> HcsProcess {
    HcsProcess(handle as u64)
}

pub(crate) fn to_c(handle: u64) -> *mut c_void {
    handle as usize as *mut c_void
}

/// Sets an `_Out_` handle to null before any check, so that every synchronous failure
/// leaves it null (rule 49). A null `out` is `E_POINTER`.
///
/// # Safety
/// `out` is null or valid for a write of one pointer.
pub(crate) unsafe fn clear_out(out: *mut *mut c_void) -> Result<(), HResult> {
    if out.is_null() {
        return Err(HResult::E_POINTER);
    }
    // SAFETY: non-null and valid for a write (caller's promise).
    unsafe { out.write(std::ptr::null_mut()) };
    Ok(())
}

/// Wraps a C completion callback. The context the Rust API passes back is the
/// operation's current context (a `void*` stored as a number).
pub(crate) fn completion(callback: HCS_OPERATION_COMPLETION) -> Option<OperationCompletion> {
    let callback = callback?;
    Some(Arc::new(move |operation: HcsOperation, context: usize| {
        // SAFETY: the caller registered this function for exactly this signature; the
        // handle is a number and the context is the caller's own pointer, handed back.
        unsafe { callback(to_c(operation.0), context as *mut c_void) }
    }))
}

/// Wraps a C event callback. The event's JSON is converted to UTF-16 for the duration of
/// the call only (rule 37).
pub(crate) fn event_callback(callback: HCS_EVENT_CALLBACK) -> Option<EventCallback> {
    let callback = callback?;
    Some(Arc::new(move |event: &Event, context: usize| {
        let data: Option<Vec<u16>> = event
            .event_data
            .as_deref()
            .map(|text| text.encode_utf16().chain(std::iter::once(0)).collect());
        let mut c_event = HCS_EVENT {
            Type: event.event_type as u32,
            EventData: data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr()),
            Operation: event
                .operation
                .map_or(std::ptr::null_mut(), |op| to_c(op.0)),
        };
        // SAFETY: the caller registered this function for this signature; `c_event` and
        // the `data` it points into outlive the call.
        unsafe { callback(&mut c_event, context as *mut c_void) }
    }))
}
