//! The HCS functions, one Rust function per C function of `computecore.h`
//! (HCS-API §3.1 to §3.6), with the same handles, rules and HRESULTs.
//!
//! This is the layer the C ABI wraps and the conformance tests drive. Handles are plain
//! numbers checked against the client's tables, so a null, closed or wrong-kind handle
//! gives `E_HANDLE` (rule 49) and never undefined behaviour. The idiomatic API
//! ([`crate::ComputeSystem`], [`crate::Operation`]) is built on these functions.

use crate::client::{client, next_handle};
use crate::handle_object::HandleObject;
use crate::operation::Operation;
use crate::types::{
    event_options, operation_options, Context, EventCallback, HcsOperation, HcsProcess, HcsSystem,
    OperationCompletion, OperationType, ProcessInformation, SecurityDescriptor, GENERIC_ALL,
    HCS_INVALID_OPERATION_ID, INFINITE,
};
use hcs_protocol::{ProcessRequest, RequestBody, SystemRequest};
use hcs_schema::HResult;
use std::sync::Arc;
use std::time::Duration;

fn timeout(ms: u32) -> Option<Duration> {
    (ms != INFINITE).then(|| Duration::from_millis(u64::from(ms)))
}

// ---------------------------------------------------------------------------------------
// Operations (§3.1)

/// `HcsCreateOperation` (O-1, rule 1).
pub fn create_operation(context: Context, callback: Option<OperationCompletion>) -> HcsOperation {
    let handle = HcsOperation(next_handle());
    let op = Arc::new(Operation::new(handle, context, callback));
    client().operations.insert(handle.0, op);
    handle
}

/// `HcsCreateOperationWithNotifications`: an operation whose progress events go to
/// `callback` (HCS-API §2.4). No engine reports progress yet, so the callback is accepted
/// and never called (it is released at once); completion works as for
/// [`create_operation`] without a callback. Unknown option bits give `None`, as an
/// allocation failure does.
pub fn create_operation_with_notifications(
    options: u32,
    context: Context,
    _callback: EventCallback,
) -> Option<HcsOperation> {
    if options & !operation_options::ALL != 0 {
        return None;
    }
    Some(create_operation(context, None))
}

/// `HcsCloseOperation` (O-12, rules 11 and 12). Closing a null or closed handle does nothing.
pub fn close_operation(operation: HcsOperation) {
    if let Some(op) = client().operations.remove(operation.0) {
        op.close();
    }
}

/// `HcsGetOperationContext`: the context, or 0 for an invalid handle.
pub fn get_operation_context(operation: HcsOperation) -> Context {
    client()
        .operation(operation)
        .map(|op| op.context())
        .unwrap_or(0)
}

/// `HcsSetOperationContext` (O-14).
pub fn set_operation_context(operation: HcsOperation, context: Context) -> HResult {
    match client().operation(operation) {
        Some(op) => op.set_context(context),
        None => HResult::E_HANDLE,
    }
}

/// `HcsSetOperationCallback` (O-14): a missing callback is `E_POINTER`.
pub fn set_operation_callback(
    operation: HcsOperation,
    context: Context,
    callback: Option<OperationCompletion>,
) -> HResult {
    let Some(op) = client().operation(operation) else {
        return HResult::E_HANDLE;
    };
    match callback {
        Some(callback) => op.set_callback(context, callback),
        None => HResult::E_POINTER,
    }
}

/// `HcsGetOperationType` (rule 6): `None` for an invalid handle.
pub fn get_operation_type(operation: HcsOperation) -> OperationType {
    client()
        .operation(operation)
        .map(|op| op.op_type())
        .unwrap_or(OperationType::None)
}

/// `HcsGetOperationId` (O-17, rule 14).
pub fn get_operation_id(operation: HcsOperation) -> u64 {
    match client().operation(operation) {
        Some(op) => op.handle.0,
        None => HCS_INVALID_OPERATION_ID,
    }
}

/// `HcsGetComputeSystemFromOperation` (O-18, rule 14): the targeted system while the
/// operation is armed and that handle open; a borrowed handle, not to be closed.
pub fn get_compute_system_from_operation(operation: HcsOperation) -> Option<HcsSystem> {
    let client = client();
    let target = HcsSystem(client.operation(operation)?.target()?);
    client.system(target).map(|_| target)
}

/// `HcsGetProcessFromOperation` (O-18): the process the tracked call concerns while the
/// operation is armed and that process handle open; borrowed, not to be closed.
pub fn get_process_from_operation(operation: HcsOperation) -> Option<HcsProcess> {
    let client = client();
    let process = client.operation(operation)?.process()?;
    client.process(process).map(|_| process)
}

/// `HcsGetOperationProperties` (HCS-API §2.4): an `OperationInfo` document. `options`
/// must be absent or `{}`.
pub fn get_operation_properties(
    operation: HcsOperation,
    options: Option<&str>,
) -> Result<String, HResult> {
    let op = client().operation(operation).ok_or(HResult::E_HANDLE)?;
    if let Some(options) = options {
        match serde_json::from_str::<serde_json::Value>(options) {
            Ok(serde_json::Value::Object(map)) if map.is_empty() => {}
            _ => return Err(HResult::E_INVALIDARG),
        }
    }
    Ok(crate::operation_info::document(&op.info()))
}

/// `HcsAddResourceToOperation`: host resources (jobs, sockets) have no Linux meaning
/// yet: `E_NOTIMPL` (HCS-API §2.4).
pub fn add_resource_to_operation(operation: HcsOperation) -> HResult {
    match client().operation(operation) {
        Some(_) => HResult::E_NOTIMPL,
        None => HResult::E_HANDLE,
    }
}

/// `HcsGetOperationResult` (O-3 to O-5, rules 2, 3, 5, 16).
pub fn get_operation_result(operation: HcsOperation) -> (HResult, Option<String>) {
    match client().operation(operation) {
        Some(op) => op.get(),
        None => (HResult::E_HANDLE, None),
    }
}

/// The process information of a completed `HcsCreateProcess` or `HcsGetProcessInfo`
/// (O-15, O-16, rule 39): `None` unless the operation completed with `S_OK` for one of
/// them. The first call hands the std descriptors to the caller, who owns them from then
/// on; later calls (and `HcsGetProcessInfo`) return the same numbers.
pub fn get_operation_process_information(operation: HcsOperation) -> Option<ProcessInformation> {
    let client = client();
    let op = client.operation(operation)?;
    if !matches!(
        op.op_type(),
        OperationType::CreateProcess | OperationType::GetProcessInfo
    ) {
        return None;
    }
    let (result, document) = op.get();
    if result != HResult::S_OK {
        return None;
    }
    let process_id = crate::std_handles::process_id(document.as_deref()?)?;
    let [std_input, std_output, std_error] = op
        .process()
        .and_then(|p| client.process(p))
        .map(|p| p.std_handles.hand_out())
        .unwrap_or_default();
    Some(ProcessInformation {
        process_id,
        std_input,
        std_output,
        std_error,
    })
}

/// `HcsWaitForOperationResult` (O-4, rules 2, 4, 5): `INFINITE` waits without limit.
pub fn wait_for_operation_result(
    operation: HcsOperation,
    timeout_ms: u32,
) -> (HResult, Option<String>) {
    match client().operation(operation) {
        Some(op) => op.wait(timeout(timeout_ms)),
        None => (HResult::E_HANDLE, None),
    }
}

/// `HcsCancelOperation` (O-13, rule 13): not implemented, as documented.
pub fn cancel_operation(_operation: HcsOperation) -> HResult {
    HResult::E_NOTIMPL
}

// ---------------------------------------------------------------------------------------
// Compute systems (§3.2)

/// Arms `op` for a call made through `handle` (a system or process handle), about
/// `process` for the process functions.
fn arm(
    op: &Arc<Operation>,
    handle: Option<&Arc<HandleObject>>,
    op_type: OperationType,
    process: Option<HcsProcess>,
) -> Result<u64, HResult> {
    // §4.3, rule 33: an operation with its own callback is refused on a handle whose
    // event callback takes operation completions.
    if let Some(handle) = handle {
        if op.has_callback() && handle.operation_callbacks_enabled() {
            return Err(HResult::HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET);
        }
    }
    let generation = op.arm(op_type, handle.map(|h| h.handle), process)?;
    if let Some(handle) = handle {
        if !op.has_callback() {
            handle.track(op);
        }
    }
    Ok(generation)
}

/// Arms `operation` for a call made through `handle` (none for enumerate), about
/// `process` for the process functions, and sends `body` to the host.
fn tracked_request(
    operation: HcsOperation,
    handle: Option<&Arc<HandleObject>>,
    op_type: OperationType,
    process: Option<HcsProcess>,
    body: RequestBody,
) -> HResult {
    let client = client();
    let Some(op) = client.operation(operation) else {
        return HResult::E_HANDLE;
    };
    match arm(&op, handle, op_type, process) {
        Ok(generation) => {
            let link = match handle {
                Some(handle) => handle.link.clone(),
                None => client.new_link(),
            };
            client.send_for_operation(&link, op, generation, body);
            HResult::S_OK
        }
        Err(hresult) => hresult,
    }
}

fn system_request(
    system: HcsSystem,
    operation: HcsOperation,
    op_type: OperationType,
    request: SystemRequest,
) -> HResult {
    let Some(object) = client().system(system) else {
        return HResult::E_HANDLE;
    };
    let body = RequestBody::System {
        handle: object.handle,
        request,
    };
    tracked_request(operation, Some(&object), op_type, None, body)
}

/// `HcsEnumerateComputeSystems` (rule 23): a JSON array of `Properties`.
pub fn enumerate_compute_systems(query: Option<&str>, operation: HcsOperation) -> HResult {
    let body = RequestBody::Enumerate {
        query: query.map(str::to_owned),
    };
    tracked_request(operation, None, OperationType::Enumerate, None, body)
}

/// `HcsCreateComputeSystem` (rules 17–20, 46–49): the handle is returned at once and is
/// usable while the create is pending; the outcome comes through the operation.
pub fn create_compute_system(
    id: &str,
    configuration: &str,
    operation: HcsOperation,
    security_descriptor: Option<&SecurityDescriptor>,
) -> Result<HcsSystem, HResult> {
    if id.is_empty() || security_descriptor.is_some() {
        return Err(HResult::E_INVALIDARG);
    }
    let client = client();
    let op = client.operation(operation).ok_or(HResult::E_HANDLE)?;
    let handle = HcsSystem(next_handle());
    let link = client.new_link();
    let system = Arc::new(HandleObject::system(handle.0, id.to_owned(), link.clone()));
    let generation = arm(&op, Some(&system), OperationType::Create, None)?;
    client.systems.insert(handle.0, system);
    client.send_for_operation(
        &link,
        op,
        generation,
        RequestBody::CreateSystem {
            handle: handle.0,
            id: id.to_owned(),
            configuration: configuration.to_owned(),
        },
    );
    Ok(handle)
}

/// `HcsOpenComputeSystem` (rules 19, 21): a new, independent handle.
pub fn open_compute_system(id: &str, requested_access: u32) -> Result<HcsSystem, HResult> {
    if id.is_empty() || requested_access != GENERIC_ALL {
        return Err(HResult::E_INVALIDARG);
    }
    let client = client();
    let handle = HcsSystem(next_handle());
    let link = client.new_link();
    client.systems.insert(
        handle.0,
        Arc::new(HandleObject::system(handle.0, id.to_owned(), link.clone())),
    );
    let (result, _) = client.send_and_wait(
        &link,
        RequestBody::OpenSystem {
            handle: handle.0,
            id: id.to_owned(),
        },
    );
    if result.failed() {
        client.systems.remove(handle.0);
        return Err(result);
    }
    Ok(handle)
}

/// `HcsCloseComputeSystem` (rules 28, 29): no event; no callback of this handle after
/// it returns. Closing a null or closed handle does nothing.
pub fn close_compute_system(system: HcsSystem) {
    let client = client();
    if let Some(object) = client.systems.remove(system.0) {
        object.close();
        client.send_and_forget(&object.link, RequestBody::CloseSystem { handle: system.0 });
    }
}

/// Rule 49 before rule 21: a closed or invalid handle (`handle_open` false) or operation
/// gives `E_HANDLE` before a misused reserved argument gives `E_INVALIDARG`.
fn check_reserved(
    handle_open: bool,
    operation: HcsOperation,
    reserved_unused: bool,
) -> Result<(), HResult> {
    if !handle_open || client().operation(operation).is_none() {
        return Err(HResult::E_HANDLE);
    }
    if !reserved_unused {
        return Err(HResult::E_INVALIDARG);
    }
    Ok(())
}

/// `HcsStartComputeSystem`; `options` is reserved (rule 21).
pub fn start_compute_system(
    system: HcsSystem,
    operation: HcsOperation,
    options: Option<&str>,
) -> HResult {
    let open = client().system(system).is_some();
    if let Err(hresult) = check_reserved(open, operation, options.is_none()) {
        return hresult;
    }
    system_request(
        system,
        operation,
        OperationType::Start,
        SystemRequest::Start,
    )
}

/// `HcsShutDownComputeSystem` with optional `ShutdownOptions`.
pub fn shut_down_compute_system(
    system: HcsSystem,
    operation: HcsOperation,
    options: Option<&str>,
) -> HResult {
    system_request(
        system,
        operation,
        OperationType::Shutdown,
        SystemRequest::Shutdown(options.map(str::to_owned)),
    )
}

/// `HcsTerminateComputeSystem`; `options` is reserved (rules 21, 53, 54).
pub fn terminate_compute_system(
    system: HcsSystem,
    operation: HcsOperation,
    options: Option<&str>,
) -> HResult {
    let open = client().system(system).is_some();
    if let Err(hresult) = check_reserved(open, operation, options.is_none()) {
        return hresult;
    }
    system_request(
        system,
        operation,
        OperationType::Terminate,
        SystemRequest::Terminate,
    )
}

/// `HcsCrashComputeSystem` with optional `CrashOptions`: an NMI to the guest.
pub fn crash_compute_system(
    system: HcsSystem,
    operation: HcsOperation,
    options: Option<&str>,
) -> HResult {
    system_request(
        system,
        operation,
        OperationType::Crash,
        SystemRequest::Crash(options.map(str::to_owned)),
    )
}

/// `HcsPauseComputeSystem` with optional `PauseOptions`.
pub fn pause_compute_system(
    system: HcsSystem,
    operation: HcsOperation,
    options: Option<&str>,
) -> HResult {
    system_request(
        system,
        operation,
        OperationType::Pause,
        SystemRequest::Pause(options.map(str::to_owned)),
    )
}

/// `HcsResumeComputeSystem`; `options` is reserved (rule 21).
pub fn resume_compute_system(
    system: HcsSystem,
    operation: HcsOperation,
    options: Option<&str>,
) -> HResult {
    let open = client().system(system).is_some();
    if let Err(hresult) = check_reserved(open, operation, options.is_none()) {
        return hresult;
    }
    system_request(
        system,
        operation,
        OperationType::Resume,
        SystemRequest::Resume,
    )
}

/// `HcsSaveComputeSystem` with optional `SaveOptions`.
pub fn save_compute_system(
    system: HcsSystem,
    operation: HcsOperation,
    options: Option<&str>,
) -> HResult {
    system_request(
        system,
        operation,
        OperationType::Save,
        SystemRequest::Save(options.map(str::to_owned)),
    )
}

/// `HcsGetComputeSystemProperties` with an optional `System_PropertyQuery` (rule 22).
pub fn get_compute_system_properties(
    system: HcsSystem,
    operation: HcsOperation,
    property_query: Option<&str>,
) -> HResult {
    system_request(
        system,
        operation,
        OperationType::GetProperties,
        SystemRequest::GetProperties(property_query.map(str::to_owned)),
    )
}

/// `HcsModifyComputeSystem` with a `ModifySettingRequest` (rule 31); `identity` must be
/// null (0) on Linux.
pub fn modify_compute_system(
    system: HcsSystem,
    operation: HcsOperation,
    configuration: &str,
    identity: usize,
) -> HResult {
    let open = client().system(system).is_some();
    if let Err(hresult) = check_reserved(open, operation, identity == 0) {
        return hresult;
    }
    system_request(
        system,
        operation,
        OperationType::Modify,
        SystemRequest::Modify(configuration.to_owned()),
    )
}

/// `HcsWaitForComputeSystemExit` (rule 30): the `SystemExitStatus` at the exit, or
/// `HCS_E_OPERATION_TIMEOUT`.
pub fn wait_for_compute_system_exit(
    system: HcsSystem,
    timeout_ms: u32,
) -> (HResult, Option<String>) {
    match client().system(system) {
        Some(object) => object.wait_for_exit(timeout(timeout_ms)),
        None => (HResult::E_HANDLE, None),
    }
}

/// `HcsSetComputeSystemCallback` (§4.2, §4.3, rules 32–34, 55).
pub fn set_compute_system_callback(
    system: HcsSystem,
    callback_options: u32,
    context: Context,
    callback: Option<EventCallback>,
) -> HResult {
    let client = client();
    let Some(object) = client.system(system) else {
        return HResult::E_HANDLE;
    };
    if callback_options & !event_options::ALL != 0 {
        return HResult::E_INVALIDARG;
    }
    let Some(callback) = callback else {
        return HResult::E_POINTER;
    };
    object.set_callback(&client.dispatcher, callback_options, context, callback)
}

// ---------------------------------------------------------------------------------------
// Processes (§3.4)

/// `HcsCreateProcess` (rule 39): the handle is returned at once; the outcome comes through
/// the operation, which reports to the *system* handle's event callback (§4.3). No engine
/// runs guest processes yet: a running system without a guest connection answers
/// `HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION`, any other state per HCS-API §3.3.
pub fn create_process(
    system: HcsSystem,
    parameters: &str,
    operation: HcsOperation,
    security_descriptor: Option<&SecurityDescriptor>,
) -> Result<HcsProcess, HResult> {
    let client = client();
    let system = client.system(system).ok_or(HResult::E_HANDLE)?;
    let op = client.operation(operation).ok_or(HResult::E_HANDLE)?;
    if security_descriptor.is_some() {
        return Err(HResult::E_INVALIDARG);
    }
    let handle = HcsProcess(next_handle());
    let process = Arc::new(HandleObject::process(
        handle.0,
        system.id.clone(),
        system.link.clone(),
    ));
    let generation = arm(
        &op,
        Some(&system),
        OperationType::CreateProcess,
        Some(handle),
    )?;
    client.processes.insert(handle.0, process);
    client.send_for_operation(
        &system.link,
        op,
        generation,
        RequestBody::System {
            handle: system.handle,
            request: SystemRequest::CreateProcess {
                process: handle.0,
                parameters: parameters.to_owned(),
            },
        },
    );
    Ok(handle)
}

/// `HcsOpenProcess`: a new handle to process `pid` of the system; an unknown pid is
/// `HRESULT_FROM_WIN32(ERROR_NOT_FOUND)`. `requestedAccess` is ignored (HCS-API §3.4).
pub fn open_process(
    system: HcsSystem,
    pid: u32,
    _requested_access: u32,
) -> Result<HcsProcess, HResult> {
    let client = client();
    let system = client.system(system).ok_or(HResult::E_HANDLE)?;
    let handle = HcsProcess(next_handle());
    client.processes.insert(
        handle.0,
        Arc::new(HandleObject::process(
            handle.0,
            system.id.clone(),
            system.link.clone(),
        )),
    );
    let (result, _) = client.send_and_wait(
        &system.link,
        RequestBody::OpenProcess {
            system: system.handle,
            process: handle.0,
            pid,
        },
    );
    if result.failed() {
        if let Some(object) = client.processes.remove(handle.0) {
            object.close();
        }
        return Err(result);
    }
    Ok(handle)
}

/// `HcsCloseProcess`: releases the handle only; no callback of it runs after it returns.
pub fn close_process(process: HcsProcess) {
    let client = client();
    if let Some(object) = client.processes.remove(process.0) {
        object.close();
        client.send_and_forget(
            &object.link,
            RequestBody::CloseProcess { handle: process.0 },
        );
    }
}

fn process_request(
    process: HcsProcess,
    operation: HcsOperation,
    op_type: OperationType,
    request: ProcessRequest,
) -> HResult {
    let Some(object) = client().process(process) else {
        return HResult::E_HANDLE;
    };
    let body = RequestBody::Process {
        handle: process.0,
        request,
    };
    tracked_request(operation, Some(&object), op_type, Some(process), body)
}

/// `HcsTerminateProcess` (rule 41); `options` is reserved (rule 21). Reported as
/// `SignalProcess`, the type HCS has for it (HCS-API §9 item 7).
pub fn terminate_process(
    process: HcsProcess,
    operation: HcsOperation,
    options: Option<&str>,
) -> HResult {
    let open = client().process(process).is_some();
    if let Err(hresult) = check_reserved(open, operation, options.is_none()) {
        return hresult;
    }
    process_request(
        process,
        operation,
        OperationType::SignalProcess,
        ProcessRequest::Terminate,
    )
}

/// `HcsSignalProcess` with optional `SignalProcessOptions` (rule 41).
pub fn signal_process(
    process: HcsProcess,
    operation: HcsOperation,
    options: Option<&str>,
) -> HResult {
    process_request(
        process,
        operation,
        OperationType::SignalProcess,
        ProcessRequest::Signal(options.map(str::to_owned)),
    )
}

/// `HcsGetProcessInfo` (rule 40).
pub fn get_process_info(process: HcsProcess, operation: HcsOperation) -> HResult {
    process_request(
        process,
        operation,
        OperationType::GetProcessInfo,
        ProcessRequest::GetInfo,
    )
}

/// `HcsGetProcessProperties` (rule 42).
pub fn get_process_properties(
    process: HcsProcess,
    operation: HcsOperation,
    property_query: Option<&str>,
) -> HResult {
    process_request(
        process,
        operation,
        OperationType::GetProcessProperties,
        ProcessRequest::GetProperties(property_query.map(str::to_owned)),
    )
}

/// `HcsModifyProcess` with a `ProcessModifyRequest`.
pub fn modify_process(process: HcsProcess, operation: HcsOperation, settings: &str) -> HResult {
    process_request(
        process,
        operation,
        OperationType::ModifyProcess,
        ProcessRequest::Modify(settings.to_owned()),
    )
}

/// `HcsSetProcessCallback` (§4.2, rules 32, 33, 35).
pub fn set_process_callback(
    process: HcsProcess,
    callback_options: u32,
    context: Context,
    callback: Option<EventCallback>,
) -> HResult {
    let client = client();
    let Some(object) = client.process(process) else {
        return HResult::E_HANDLE;
    };
    if callback_options & !event_options::ALL != 0 {
        return HResult::E_INVALIDARG;
    }
    let Some(callback) = callback else {
        return HResult::E_POINTER;
    };
    object.set_callback(&client.dispatcher, callback_options, context, callback)
}

/// `HcsWaitForProcessExit` (rule 30): the `ProcessStatus` at the exit, or
/// `HCS_E_OPERATION_TIMEOUT`.
pub fn wait_for_process_exit(process: HcsProcess, timeout_ms: u32) -> (HResult, Option<String>) {
    match client().process(process) {
        Some(object) => object.wait_for_exit(timeout(timeout_ms)),
        None => (HResult::E_HANDLE, None),
    }
}

// ---------------------------------------------------------------------------------------
// Host service (§3.5)

/// `HcsGetServiceProperties` with a `Service_PropertyQuery` (rule 43).
pub fn get_service_properties(query: Option<&str>) -> (HResult, Option<String>) {
    service_request(RequestBody::GetServiceProperties {
        query: query.map(str::to_owned),
    })
}

/// Sends a request that goes through no handle and waits for its reply.
fn service_request(body: RequestBody) -> (HResult, Option<String>) {
    let client = client();
    client.send_and_wait(&client.new_link(), body)
}

/// `HcsModifyServiceSettings` with a `ModificationRequest`.
pub fn modify_service_settings(settings: &str) -> (HResult, Option<String>) {
    service_request(RequestBody::ModifyServiceSettings {
        settings: settings.to_owned(),
    })
}

/// `HcsSubmitWerReport` with a `CrashReport` (the `EventData` of a crash report event).
pub fn submit_wer_report(report: &str) -> HResult {
    service_request(RequestBody::SubmitWerReport {
        report: report.to_owned(),
    })
    .0
}

// ---------------------------------------------------------------------------------------
// VM utility functions (§3.6)

pub use crate::state_files::{
    create_empty_guest_state_file, create_empty_runtime_state_file,
    get_processor_compatibility_from_saved_state, grant_vm_access, grant_vm_group_access,
    revoke_vm_access, revoke_vm_group_access,
};

// ---------------------------------------------------------------------------------------
// Not HCS calls: what tools and tests ask of the host (`tools.rs`)

mod tools;
pub use tools::*;
