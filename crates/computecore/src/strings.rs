//! Strings across the C boundary: UTF-16 in, UTF-16 out, and the registry that lets
//! `LocalFree` and `CoTaskMemFree` free exactly what this library handed out.

use crate::abi::{HLOCAL, PCWSTR, PWSTR};
use hcs::HResult;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::ffi::c_void;

/// Addresses of the strings returned and not yet freed.
static RETURNED: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

/// Reads an optional NUL-terminated UTF-16 string: `Ok(None)` for null, `E_INVALIDARG`
/// for ill-formed UTF-16 (a lone surrogate).
///
/// # Safety
/// `text` is null or points to a readable, NUL-terminated array of `u16`.
pub(crate) unsafe fn optional(text: PCWSTR) -> Result<Option<String>, HResult> {
    if text.is_null() {
        return Ok(None);
    }
    let mut len = 0;
    // SAFETY: the caller promises a NUL-terminated array; we stop at the NUL.
    while unsafe { *text.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` elements before the NUL were just read through the same pointer.
    let units = unsafe { std::slice::from_raw_parts(text, len) };
    String::from_utf16(units)
        .map(Some)
        .map_err(|_| HResult::E_INVALIDARG)
}

/// Reads a required NUL-terminated UTF-16 string: null is `E_INVALIDARG` (rule 49).
///
/// # Safety
/// As for [`optional`].
pub(crate) unsafe fn required(text: PCWSTR) -> Result<String, HResult> {
    // SAFETY: forwarded from the caller.
    unsafe { optional(text) }?.ok_or(HResult::E_INVALIDARG)
}

/// Allocates `text` as a NUL-terminated UTF-16 string for the caller, who frees it with
/// `LocalFree` or `CoTaskMemFree`. Null if memory ran out.
pub(crate) fn allocate(text: &str) -> PWSTR {
    let units: Vec<u16> = text.encode_utf16().chain(std::iter::once(0)).collect();
    let bytes = units.len() * std::mem::size_of::<u16>();
    // SAFETY: malloc has no preconditions; the result is checked for null below.
    let memory = unsafe { libc::malloc(bytes) }.cast::<u16>();
    if memory.is_null() {
        return memory;
    }
    // SAFETY: `memory` holds `units.len()` u16s (malloc aligns for any type) and does not
    // overlap `units`.
    unsafe { std::ptr::copy_nonoverlapping(units.as_ptr(), memory, units.len()) };
    RETURNED
        .lock()
        .get_or_insert_with(HashSet::new)
        .insert(memory as usize);
    memory
}

/// Stores `document` into an optional out-pointer: nothing if `out` is null, null if
/// there is no document (O-6, rule 2). Fails with
/// `HCS_E_OPERATION_RESULT_ALLOCATION_FAILED` if the copy cannot be allocated.
///
/// # Safety
/// `out` is null or valid for a write of one `PWSTR`.
pub(crate) unsafe fn store(out: *mut PWSTR, document: Option<String>) -> Result<(), HResult> {
    if out.is_null() {
        return Ok(());
    }
    let value = match document {
        None => std::ptr::null_mut(),
        Some(text) => {
            let copy = allocate(&text);
            if copy.is_null() {
                // SAFETY: `out` is valid for a write (caller's promise).
                unsafe { out.write(std::ptr::null_mut()) };
                return Err(HResult::HCS_E_OPERATION_RESULT_ALLOCATION_FAILED);
            }
            copy
        }
    };
    // SAFETY: `out` is valid for a write (caller's promise).
    unsafe { out.write(value) };
    Ok(())
}

/// Frees `memory` if this library returned it and it is not freed yet.
fn release(memory: *mut c_void) -> bool {
    if memory.is_null() {
        return false;
    }
    let known = RETURNED
        .lock()
        .as_mut()
        .is_some_and(|set| set.remove(&(memory as usize)));
    if known {
        // SAFETY: the registry held this address, so it came from our malloc and has not
        // been freed; it was removed from the registry above, so it is freed only once.
        unsafe { libc::free(memory) };
    } else {
        tracing::warn!(
            address = memory as usize,
            "LocalFree/CoTaskMemFree of a pointer this library did not return (or already freed): ignored"
        );
    }
    known
}

/// `LocalFree`: frees a string this library returned and gives `NULL`. Any other pointer
/// is left alone and returned, as Windows' `LocalFree` returns the handle it could not
/// free (HCS-API §5.1, rule 51).
#[no_mangle]
pub extern "C" fn LocalFree(memory: HLOCAL) -> HLOCAL {
    // On a panic nothing was freed: hand the pointer back, as for one we do not know.
    crate::ffi::guard("LocalFree", memory, || {
        if memory.is_null() || release(memory) {
            std::ptr::null_mut()
        } else {
            memory
        }
    })
}

/// `CoTaskMemFree`: frees a string this library returned (hcsshim's choice, HCS-API §9
/// item 11); any other pointer is left alone.
#[no_mangle]
pub extern "C" fn CoTaskMemFree(memory: *mut c_void) {
    crate::ffi::guard("CoTaskMemFree", (), || {
        release(memory);
    })
}

/// Strings handed out and not yet freed (for leak tests).
pub fn outstanding_strings() -> usize {
    RETURNED.lock().as_ref().map_or(0, HashSet::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide(text: &str) -> Vec<u16> {
        text.encode_utf16().chain(std::iter::once(0)).collect()
    }

    #[test]
    fn utf16_round_trips_and_lone_surrogates_are_refused() {
        let text = wide("Ünïcödé ✓ 𝄞");
        // SAFETY: NUL-terminated buffer.
        assert_eq!(unsafe { required(text.as_ptr()) }.unwrap(), "Ünïcödé ✓ 𝄞");
        let bad = [0x41u16, 0xD800, 0x42, 0];
        // SAFETY: NUL-terminated buffer.
        let lone_surrogate = unsafe { optional(bad.as_ptr()) };
        assert_eq!(lone_surrogate, Err(HResult::E_INVALIDARG));
        // SAFETY: null is allowed.
        assert_eq!(unsafe { optional(std::ptr::null()) }, Ok(None));
        // SAFETY: null is allowed.
        let missing = unsafe { required(std::ptr::null()) };
        assert_eq!(missing, Err(HResult::E_INVALIDARG));
    }

    #[test]
    fn rule_51_only_returned_strings_are_freed_and_only_once() {
        let copy = allocate("{\"a\":1}");
        // SAFETY: `copy` is a NUL-terminated string we just allocated.
        assert_eq!(unsafe { required(copy) }.unwrap(), "{\"a\":1}");
        assert!(LocalFree(copy.cast()).is_null());
        // A second free, and a pointer we never returned, are left alone.
        assert_eq!(LocalFree(copy.cast()), copy.cast());
        let mut local = 5u16;
        let foreign = (&mut local as *mut u16).cast::<c_void>();
        assert_eq!(LocalFree(foreign), foreign);
        CoTaskMemFree(foreign);
        assert!(LocalFree(std::ptr::null_mut()).is_null());
        let copy = allocate("x");
        CoTaskMemFree(copy.cast());
        assert_eq!(LocalFree(copy.cast()), copy.cast());
    }
}
