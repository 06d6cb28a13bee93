//! The compute system every part uses: the document of `examples/empty-vm.json` (resized
//! where a part asks for another size) and one create + start + terminate cycle through
//! the flat HCS API, as a C client of `computecore.h` would write it.

use std::time::{Duration, Instant};

use hcs::api;
use hcs::{HResult, HcsOperation, HcsSystem, INFINITE};

use crate::{BenchError, Result};

/// `examples/empty-vm.json`, as shipped: UEFI with no boot device, 1024 MB, 2 vCPUs.
pub const EMPTY_VM_JSON: &str = include_str!("../../../examples/empty-vm.json");

/// The empty VM's document with `memory_mb` and `vcpus` in place of the example's.
pub fn empty_vm_document(memory_mb: u64, vcpus: u32) -> Result<String> {
    let mut doc: serde_json::Value =
        serde_json::from_str(EMPTY_VM_JSON).map_err(|e| format!("examples/empty-vm.json: {e}"))?;
    let topology = doc
        .pointer_mut("/VirtualMachine/ComputeTopology")
        .ok_or("examples/empty-vm.json has no VirtualMachine.ComputeTopology")?;
    topology["Memory"]["SizeInMB"] = memory_mb.into();
    topology["Processor"]["Count"] = vcpus.into();
    serde_json::to_string(&doc).map_err(|e| BenchError(e.to_string()))
}

/// The document unchanged when the size is the example's own, so the headline figure runs
/// exactly `examples/empty-vm.json`.
pub fn document_for(memory_mb: u64, vcpus: u32) -> Result<String> {
    if (memory_mb, vcpus) == (1024, 2) {
        Ok(EMPTY_VM_JSON.to_owned())
    } else {
        empty_vm_document(memory_mb, vcpus)
    }
}

/// Waits for `operation` without limit and turns a failure into an error naming `what`.
pub fn wait_ok(operation: HcsOperation, what: &str) -> Result<Option<String>> {
    let (hresult, document) = api::wait_for_operation_result(operation, INFINITE);
    check(hresult, document, what)
}

/// `Ok(document)` for a success, else an error naming `what`.
pub fn check(hresult: HResult, document: Option<String>, what: &str) -> Result<Option<String>> {
    if hresult.failed() {
        Err(BenchError(format!(
            "{what} failed: {hresult:?} {}",
            document.unwrap_or_default()
        )))
    } else {
        Ok(document)
    }
}

/// One create + start + terminate + close of compute system `id` through the flat API,
/// with one operation reused for the three calls (operations are reusable once
/// completed). Returns the wall time from `HcsCreateOperation` to the last close.
pub fn flat_cycle(id: &str, document: &str) -> Result<Duration> {
    let start = Instant::now();
    let operation = api::create_operation(0, None);
    let outcome = run_cycle(id, document, operation);
    api::close_operation(operation);
    outcome.map(|()| start.elapsed())
}

fn run_cycle(id: &str, document: &str, operation: HcsOperation) -> Result<()> {
    let system = api::create_compute_system(id, document, operation, None)
        .map_err(|hresult| format!("HcsCreateComputeSystem({id}) refused: {hresult:?}"))?;
    let outcome = start_and_terminate(system, operation, id);
    api::close_compute_system(system);
    outcome
}

fn start_and_terminate(system: HcsSystem, operation: HcsOperation, id: &str) -> Result<()> {
    wait_ok(operation, &format!("create {id}"))?;
    issue(api::start_compute_system(system, operation, None), "start")?;
    wait_ok(operation, &format!("start {id}"))?;
    issue(
        api::terminate_compute_system(system, operation, None),
        "terminate",
    )?;
    wait_ok(operation, &format!("terminate {id}"))?;
    Ok(())
}

/// An error if a call that starts an operation refused to.
pub fn issue(hresult: HResult, what: &str) -> Result<()> {
    check(hresult, None, &format!("issuing {what}")).map(drop)
}

/// A compute-system id unique to this process, part and iteration.
pub fn unique_id(part: &str, thread: usize, iteration: usize) -> String {
    format!("bench-{}-{part}-{thread}-{iteration}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_document_keeps_the_rest_of_the_example() {
        let doc: serde_json::Value =
            serde_json::from_str(&empty_vm_document(64, 1).unwrap()).unwrap();
        let topology = &doc["VirtualMachine"]["ComputeTopology"];
        assert_eq!(topology["Memory"]["SizeInMB"], 64);
        assert_eq!(topology["Processor"]["Count"], 1);
        assert_eq!(doc["ShouldTerminateOnLastHandleClosed"], true);
        assert_eq!(document_for(1024, 2).unwrap(), EMPTY_VM_JSON);
    }
}
