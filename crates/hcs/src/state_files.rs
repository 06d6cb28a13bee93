//! The VM utility functions of HCS-API §3.6: empty guest-state (`.vmgs`) and runtime-state
//! (`.vmrs`) files, and VM access grants.
//!
//! The files are in our own format: a magic line naming the kind and format version, so
//! a later restore can tell an empty file from a saved state. Access grants have nothing
//! to change yet: the VMs of the embedded host run as the calling user, so a file the
//! caller can read is one its VMs can read; they check that the file exists.

use hcs_schema::HResult;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::Path;

/// The first bytes of an empty guest-state file.
pub const GUEST_STATE_MAGIC: &[u8] = b"HCS-LINUX VMGS 1\n";
/// The first bytes of an empty runtime-state file.
pub const RUNTIME_STATE_MAGIC: &[u8] = b"HCS-LINUX VMRS 1\n";

fn io_hresult(kind: ErrorKind) -> HResult {
    match kind {
        ErrorKind::AlreadyExists => HResult::ERROR_FILE_EXISTS,
        ErrorKind::NotFound => HResult::ERROR_PATH_NOT_FOUND,
        ErrorKind::PermissionDenied => HResult::E_ACCESSDENIED,
        _ => HResult::E_FAIL,
    }
}

fn create_new(path: &str, magic: &[u8]) -> HResult {
    if path.is_empty() {
        return HResult::E_INVALIDARG;
    }
    let file = OpenOptions::new().write(true).create_new(true).open(path);
    match file.and_then(|mut file| file.write_all(magic)) {
        Ok(()) => HResult::S_OK,
        Err(e) => io_hresult(e.kind()),
    }
}

/// `HcsCreateEmptyGuestStateFile`: `ERROR_FILE_EXISTS` if the path exists,
/// `ERROR_PATH_NOT_FOUND` if its directory does not.
pub fn create_empty_guest_state_file(path: &str) -> HResult {
    create_new(path, GUEST_STATE_MAGIC)
}

/// `HcsCreateEmptyRuntimeStateFile`: as for the guest-state file.
pub fn create_empty_runtime_state_file(path: &str) -> HResult {
    create_new(path, RUNTIME_STATE_MAGIC)
}

fn existing_file(path: &str) -> HResult {
    if path.is_empty() {
        return HResult::E_INVALIDARG;
    }
    match Path::new(path).metadata() {
        Ok(_) => HResult::S_OK,
        Err(e) if e.kind() == ErrorKind::NotFound => HResult::ERROR_FILE_NOT_FOUND,
        Err(e) => io_hresult(e.kind()),
    }
}

/// `HcsGrantVmAccess`: works before the system exists (the historical sample grants
/// first); a missing file is `ERROR_FILE_NOT_FOUND`.
pub fn grant_vm_access(vm_id: &str, path: &str) -> HResult {
    if vm_id.is_empty() {
        return HResult::E_INVALIDARG;
    }
    existing_file(path)
}

/// `HcsRevokeVmAccess`.
pub fn revoke_vm_access(vm_id: &str, path: &str) -> HResult {
    grant_vm_access(vm_id, path)
}

/// `HcsGrantVmGroupAccess`.
pub fn grant_vm_group_access(path: &str) -> HResult {
    existing_file(path)
}

/// `HcsRevokeVmGroupAccess`.
pub fn revoke_vm_group_access(path: &str) -> HResult {
    existing_file(path)
}

/// `HcsGetProcessorCompatibilityFromSavedState`: saved states do not exist yet.
pub fn get_processor_compatibility_from_saved_state(_path: &str) -> (HResult, Option<String>) {
    (HResult::E_NOTIMPL, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_state_files_are_created_once() {
        let dir = std::env::temp_dir().join(format!("hcs-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vmrs = dir.join("empty.vmrs");
        let vmrs = vmrs.to_str().unwrap();
        assert_eq!(create_empty_runtime_state_file(vmrs), HResult::S_OK);
        assert_eq!(std::fs::read(vmrs).unwrap(), RUNTIME_STATE_MAGIC);
        assert_eq!(
            create_empty_runtime_state_file(vmrs),
            HResult::ERROR_FILE_EXISTS
        );
        let missing_dir = dir.join("no/such/dir/x.vmgs");
        assert_eq!(
            create_empty_guest_state_file(missing_dir.to_str().unwrap()),
            HResult::ERROR_PATH_NOT_FOUND
        );
        // The utility sample: grant after creating.
        assert_eq!(grant_vm_access("Sample", vmrs), HResult::S_OK);
        assert_eq!(revoke_vm_access("Sample", vmrs), HResult::S_OK);
        assert_eq!(grant_vm_group_access(vmrs), HResult::S_OK);
        let gone = dir.join("gone.vhdx");
        assert_eq!(
            grant_vm_access("Sample", gone.to_str().unwrap()),
            HResult::ERROR_FILE_NOT_FOUND
        );
        assert_eq!(grant_vm_access("", vmrs), HResult::E_INVALIDARG);
        assert_eq!(create_empty_guest_state_file(""), HResult::E_INVALIDARG);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
