//! The host service functions (HCS-API §3.5) and the VM utility functions (§3.6).

use crate::abi::{HRESULT, PCWSTR, PWSTR};
use crate::ffi::hresult;
use crate::strings;
use hcs::{api, HResult};

/// `HcsGetServiceProperties` (rule 43): `result` is required.
///
/// # Safety
/// `property_query` is null or a NUL-terminated UTF-16 string; `result` is null or valid
/// for a write of one `PWSTR`.
#[no_mangle]
pub unsafe extern "C" fn HcsGetServiceProperties(
    property_query: PCWSTR,
    result: *mut PWSTR,
) -> HRESULT {
    hresult("HcsGetServiceProperties", || {
        if result.is_null() {
            return Err(HResult::E_POINTER);
        }
        // SAFETY: checked non-null; valid for a write (caller's promise).
        unsafe { result.write(std::ptr::null_mut()) };
        // SAFETY: forwarded from the caller.
        let query = unsafe { strings::optional(property_query) }?;
        let (hr, document) = api::get_service_properties(query.as_deref());
        // SAFETY: forwarded from the caller.
        unsafe { strings::store(result, document) }?;
        Ok(hr)
    })
}

/// `HcsModifyServiceSettings`: `settings` required; `result` optional.
///
/// # Safety
/// `settings` is null or a NUL-terminated UTF-16 string; `result` is null or valid for a
/// write of one `PWSTR`.
#[no_mangle]
pub unsafe extern "C" fn HcsModifyServiceSettings(settings: PCWSTR, result: *mut PWSTR) -> HRESULT {
    hresult("HcsModifyServiceSettings", || {
        // SAFETY: forwarded from the caller.
        unsafe { strings::store(result, None) }?;
        // SAFETY: forwarded from the caller.
        let settings = unsafe { strings::required(settings) }?;
        let (hr, document) = api::modify_service_settings(&settings);
        // SAFETY: forwarded from the caller.
        unsafe { strings::store(result, document) }?;
        Ok(hr)
    })
}

/// `HcsSubmitWerReport` with a `CrashReport`.
///
/// # Safety
/// `settings` is null or a NUL-terminated UTF-16 string.
#[no_mangle]
pub unsafe extern "C" fn HcsSubmitWerReport(settings: PCWSTR) -> HRESULT {
    hresult("HcsSubmitWerReport", || {
        // SAFETY: forwarded from the caller.
        let report = unsafe { strings::required(settings) }?;
        Ok(api::submit_wer_report(&report))
    })
}

macro_rules! path_function {
    ($(#[$doc:meta])* $name:ident => $call:path) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// `path` is null or a NUL-terminated UTF-16 string.
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: PCWSTR) -> HRESULT {
            hresult(stringify!($name), || {
                // SAFETY: forwarded from the caller.
                let path = unsafe { strings::required(path) }?;
                Ok($call(&path))
            })
        }
    };
}

macro_rules! access_function {
    ($(#[$doc:meta])* $name:ident => $call:path) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// `vm_id` and `path` are null or NUL-terminated UTF-16 strings.
        #[no_mangle]
        pub unsafe extern "C" fn $name(vm_id: PCWSTR, path: PCWSTR) -> HRESULT {
            hresult(stringify!($name), || {
                // SAFETY: forwarded from the caller.
                let vm_id = unsafe { strings::required(vm_id) }?;
                // SAFETY: forwarded from the caller.
                let path = unsafe { strings::required(path) }?;
                Ok($call(&vm_id, &path))
            })
        }
    };
}

path_function!(
    /// `HcsCreateEmptyGuestStateFile`: `ERROR_FILE_EXISTS`, `ERROR_PATH_NOT_FOUND`.
    HcsCreateEmptyGuestStateFile => api::create_empty_guest_state_file
);
path_function!(
    /// `HcsCreateEmptyRuntimeStateFile`: `ERROR_FILE_EXISTS`, `ERROR_PATH_NOT_FOUND`.
    HcsCreateEmptyRuntimeStateFile => api::create_empty_runtime_state_file
);
path_function!(
    /// `HcsGrantVmGroupAccess`: `ERROR_FILE_NOT_FOUND` for a missing file.
    HcsGrantVmGroupAccess => api::grant_vm_group_access
);
path_function!(
    /// `HcsRevokeVmGroupAccess`: `ERROR_FILE_NOT_FOUND` for a missing file.
    HcsRevokeVmGroupAccess => api::revoke_vm_group_access
);
access_function!(
    /// `HcsGrantVmAccess`: `ERROR_FILE_NOT_FOUND` for a missing file.
    HcsGrantVmAccess => api::grant_vm_access
);
access_function!(
    /// `HcsRevokeVmAccess`: `ERROR_FILE_NOT_FOUND` for a missing file.
    HcsRevokeVmAccess => api::revoke_vm_access
);

/// `HcsGetProcessorCompatibilityFromSavedState`: `E_NOTIMPL` until saved states exist;
/// the out-string is set to null.
///
/// # Safety
/// `runtime_file_name` is null or a NUL-terminated UTF-16 string; `features` is null or
/// valid for a write of one pointer.
#[no_mangle]
pub unsafe extern "C" fn HcsGetProcessorCompatibilityFromSavedState(
    runtime_file_name: PCWSTR,
    features: *mut PCWSTR,
) -> HRESULT {
    hresult("HcsGetProcessorCompatibilityFromSavedState", || {
        // SAFETY: forwarded from the caller (a `PCWSTR*` is written like a `PWSTR*`).
        unsafe { strings::store(features.cast(), None) }?;
        // SAFETY: forwarded from the caller.
        let path = unsafe { strings::required(runtime_file_name) }?;
        let (hr, document) = api::get_processor_compatibility_from_saved_state(&path);
        // SAFETY: forwarded from the caller.
        unsafe { strings::store(features.cast(), document) }?;
        Ok(hr)
    })
}
