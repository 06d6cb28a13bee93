//! What hcsctl changes in a ComputeSystem document before it sends it to the host.
//!
//! - Host file paths (kernel, initrd, disks, PMem images, state files) that are relative
//!   are made absolute against hcsctl's current directory: the service resolves paths in
//!   its own directory, not the caller's, so `hcsctl create examples/linux-vm.json` must
//!   not depend on where hcsd was started.
//! - `create` sets `ShouldTerminateOnLastHandleClosed` to false ([`outliving`]).
//!
//! A document that is not a JSON object is passed on untouched, for the host to report;
//! a document with nothing to change is passed on byte for byte.

use serde_json::Value;
use std::path::Path;

/// The document with its relative host file paths made absolute against `base`.
pub(crate) fn with_absolute_paths(text: &str, base: &Path) -> String {
    let Ok(mut document) = serde_json::from_str::<Value>(text) else {
        return text.to_owned();
    };
    let mut changed = false;
    let mut fix = |slot: Option<&mut Value>| {
        if let Some(Value::String(path)) = slot {
            if !path.is_empty() && Path::new(path.as_str()).is_relative() {
                *path = base.join(path.as_str()).display().to_string();
                changed = true;
            }
        }
    };
    if let Some(direct) = document.pointer_mut("/VirtualMachine/Chipset/LinuxKernelDirect") {
        fix(direct.get_mut("KernelFilePath"));
        fix(direct.get_mut("InitRdPath"));
    }
    if let Some(state) = document.pointer_mut("/VirtualMachine/GuestState") {
        fix(state.get_mut("GuestStateFilePath"));
        fix(state.get_mut("RuntimeStateFilePath"));
    }
    if let Some(restore) = document.pointer_mut("/VirtualMachine/RestoreState") {
        fix(restore.get_mut("SaveStateFilePath"));
    }
    if let Some(Value::Object(controllers)) = document.pointer_mut("/VirtualMachine/Devices/Scsi") {
        for controller in controllers.values_mut() {
            if let Some(Value::Object(attachments)) = controller.get_mut("Attachments") {
                for attachment in attachments.values_mut() {
                    fix(attachment.get_mut("Path"));
                }
            }
        }
    }
    if let Some(Value::Object(devices)) =
        document.pointer_mut("/VirtualMachine/Devices/VirtualPMem/Devices")
    {
        for device in devices.values_mut() {
            fix(device.get_mut("HostPath"));
        }
    }
    if changed {
        document.to_string()
    } else {
        text.to_owned()
    }
}

/// The document as `create` sends it: relative paths made absolute against the current
/// directory and `ShouldTerminateOnLastHandleClosed` false; and whether the document had
/// that member true.
pub(crate) fn for_create(text: &str) -> (String, bool) {
    let text = absolute(text);
    outliving(&text)
}

/// [`with_absolute_paths`] against the current directory (the text as it is if that
/// directory is unknown).
pub(crate) fn absolute(text: &str) -> String {
    match std::env::current_dir() {
        Ok(base) => with_absolute_paths(text, &base),
        Err(_) => text.to_owned(),
    }
}

/// The document with `ShouldTerminateOnLastHandleClosed` false, and whether it said true.
fn outliving(text: &str) -> (String, bool) {
    const MEMBER: &str = "ShouldTerminateOnLastHandleClosed";
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut document)) if document.get(MEMBER) == Some(&Value::Bool(true)) => {
            document.insert(MEMBER.into(), Value::Bool(false));
            (Value::Object(document).to_string(), true)
        }
        _ => (text.to_owned(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn relative_paths_become_absolute() {
        let doc = json!({
            "VirtualMachine": {
                "Chipset": {"LinuxKernelDirect": {"KernelFilePath": ".cache/guest/vmlinuz",
                                                  "InitRdPath": "/abs/initrd"}},
                "Devices": {
                    "Scsi": {"p": {"Attachments": {"0": {"Type": "VirtualDisk", "Path": "d.img"}}}},
                    "VirtualPMem": {"Devices": {"0": {"HostPath": "pmem.img"}}}
                }
            }
        })
        .to_string();
        let fixed: Value =
            serde_json::from_str(&with_absolute_paths(&doc, Path::new("/srv/vm"))).unwrap();
        let vm = &fixed["VirtualMachine"];
        assert_eq!(
            vm["Chipset"]["LinuxKernelDirect"]["KernelFilePath"],
            "/srv/vm/.cache/guest/vmlinuz"
        );
        assert_eq!(
            vm["Chipset"]["LinuxKernelDirect"]["InitRdPath"],
            "/abs/initrd"
        );
        assert_eq!(
            vm["Devices"]["Scsi"]["p"]["Attachments"]["0"]["Path"],
            "/srv/vm/d.img"
        );
        assert_eq!(
            vm["Devices"]["VirtualPMem"]["Devices"]["0"]["HostPath"],
            "/srv/vm/pmem.img"
        );
        // Nothing to change, or not JSON: byte for byte.
        let plain = "{ \"VirtualMachine\": {\"Chipset\": {\"Uefi\": {}}} }";
        assert_eq!(with_absolute_paths(plain, Path::new("/w")), plain);
        assert_eq!(with_absolute_paths("nope", Path::new("/w")), "nope");
        assert_eq!(with_absolute_paths("[1]", Path::new("/w")), "[1]");
        let odd = r#"{"VirtualMachine":{"Chipset":"x","Devices":{"Scsi":[1]}}}"#;
        assert_eq!(with_absolute_paths(odd, Path::new("/w")), odd);
    }

    #[test]
    fn created_systems_outlive_their_handle() {
        let (doc, changed) = outliving(r#"{"Owner":"x","ShouldTerminateOnLastHandleClosed":true}"#);
        assert!(changed);
        let doc: Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(doc["ShouldTerminateOnLastHandleClosed"], false);
        assert_eq!(doc["Owner"], "x");
        assert_eq!(
            outliving("{\"Owner\":\"x\"}"),
            ("{\"Owner\":\"x\"}".into(), false)
        );
        assert_eq!(outliving("not json"), ("not json".into(), false));
    }
}
