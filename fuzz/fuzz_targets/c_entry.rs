//! Fuzz target `c_entry`: arbitrary bytes decoded (with `arbitrary`) into a sequence of calls
//! into the C entry points of crates/computecore (`libcomputecore.so`'s exports, called
//! in-process through the rlib, with the embedded host and the KVM engine behind them).
//! With `FUZZ_ENGINE=fake` the embedded host runs on `hcs_test_support::FakeEngine`
//! instead (a scripted engine: no VM is built), so the same calls run many times faster.
//!
//! Arguments are chosen adversarially but never violate the C contract the header states
//! (a fuzzer that breaks it only finds its own bugs): every string is a NUL-terminated `u16`
//! buffer (arbitrary UTF-16 including lone surrogates and interior NULs, a preset document,
//! or NULL); out-pointers are NULL or valid; handles are live ones of the right kind, closed
//! ones, live ones of another kind, NULL, small integers or any 64-bit value (handles are
//! numbers, never dereferenced, HCS-API §5.1); flags are arbitrary; wait timeouts are 0-5 ms
//! (never `INFINITE`). File-system functions (state files, Grant/Revoke) get only paths that
//! cannot create files, and `SaveOptions` only preset documents.
//!
//! Invariants (a violation panics; libFuzzer reports it with the input):
//! * no crash, no panic, no hang (libFuzzer's -timeout), no ASan/LSan report;
//! * every returned HRESULT is in `HResult::ALL` (HCS-API §6); a call given a bad handle
//!   (NULL, closed, wrong kind, garbage) never succeeds and fails with `E_HANDLE`,
//!   `E_POINTER`, `E_INVALIDARG` or `E_NOTIMPL` (rule 49, 50); the getters return their
//!   null value for it (NULL, `HcsOperationTypeNone`, `HCS_INVALID_OPERATION_ID`);
//! * `_Out_` handles are NULL after a failure and non-NULL after success (rule 49);
//! * a never-used operation gives `HCS_E_OPERATION_NOT_STARTED` and no document (O-3);
//! * every returned document is NUL-terminated, well-formed UTF-16 JSON; a failure's document
//!   is a strict `ResultError` whose `Error` is the returned HRESULT (§2.3), and one for
//!   `HCS_E_INVALID_JSON` names a JSON path (`$`, rule 46); it is freed with `LocalFree` or
//!   `CoTaskMemFree` (rule 51) and `LocalFree` returns NULL;
//! * event callbacks get a known `HCS_EVENT_TYPE`, and for SystemExited / crash / process-exit
//!   events a strict `SystemExitStatus` / `CrashReport` / `ProcessStatus` (§4.1);
//! * after each input the harness terminates every system it created (re-opening it by id
//!   if the handle was closed), closes every handle, and then: no operation, system or process
//!   handle is left open, no returned string is unfreed (`outstanding_strings() == 0`), and
//!   within 20 s no system and no VM is left in the embedded host.
#![no_main]

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use computecore::abi::{HCS_EVENT, HCS_PROCESS_INFORMATION, PWSTR};
use computecore::*;
use hcs_schema::{CrashReport, HResult, ProcessStatus, ResultError, SystemExitStatus};
use libfuzzer_sys::fuzz_target;

const GENERIC_ALL: u32 = 0x1000_0000;
const HCS_INVALID_OPERATION_ID: u64 = u64::MAX;
const HCS_OPERATION_TYPE_NONE: i32 = -1;
/// Wait bound for the harness's own clean-up (never used for fuzzer-chosen waits).
const CLEANUP_WAIT_MS: u32 = 20_000;

/// A small VM the KVM engine accepts (64 MB, 1 vCPU); terminated after each input.
const SMALL_VM: &str = r#"{"SchemaVersion":{"Major":2,"Minor":1},"Owner":"hcs-fuzz","VirtualMachine":{"Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{"SizeInMB":64},"Processor":{"Count":1}}},"ShouldTerminateOnLastHandleClosed":true}"#;

/// Documents a client sends: valid, invalid (rules 17, 46, 47) and not supported (rule 48).
const DOCUMENTS: &[&str] = &[
    SMALL_VM,
    r#"{"SchemaVersion":{"Major":2,"Minor":1},"Owner":"hcs-fuzz","VirtualMachine":{"Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{"SizeInMB":64}}}}"#,
    r#"{"SchemaVersion":{"Major":2,"Minor":1},"Container":{}}"#,
    r#"{"SchemaVersion":{"Major":2,"Minor":1},"HostedSystem":{}}"#,
    r#"{"SchemaVersion":{"Major":3,"Minor":0},"VirtualMachine":{"Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{"SizeInMB":64}}}}"#,
    r#"{"VirtualMachine":{"Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{"SizeInMB":64}}}}"#,
    r#"{"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{},"ComputeTopology":{"Memory":{"SizeInMB":0},"Processor":{"Count":0}}}}"#,
    r#"{"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{"SizeInMB":64}},"Devices":{"Scsi":{"Primary disk":{"Attachments":{"0":{"Type":"VirtualDisk","Path":"/nonexistent/hcs-fuzz/disk.img"}}}}}}}"#,
    r#"{"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{"SizeInMB":64}},"Devices":{"ComPorts":{"0":{"NamedPipe":"/nonexistent/hcs-fuzz/com0"}}}}}"#,
    r#"{"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{"Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{"SizeInMB":4194304}}}}"#,
    r#"{"SchemaVersion":{"Major":2,"Minor":1},"Owner":"hcs-fuzz","VirtualMachine":{"Chipset":{"LinuxKernelDirect":{"KernelFilePath":"/nonexistent/vmlinuz"}},"ComputeTopology":{"Memory":{"SizeInMB":64}}}}"#,
    r#"{"SchemaVersion":{"Major":2,"Minor":1},"Unknown":1}"#,
    r#"{"PropertyTypes":["Memory","Statistics","ProcessList","GuestConnection"]}"#,
    r#"{"PropertyTypes":["Memory"],"Queries":{"q":{}}}"#,
    r#"{"Owners":["hcs-fuzz"],"Types":["VirtualMachine"]}"#,
    r#"{"Ids":["hcs-fuzz"],"Names":["x"]}"#,
    r#"{"ResourcePath":"VirtualMachine/ComputeTopology/Memory/SizeInMB","RequestType":"Update","Settings":128}"#,
    r#"{"ResourcePath":"VirtualMachine/Devices/Scsi/Primary disk/Attachments/1","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"/nonexistent/hcs-fuzz/data.img"}}"#,
    r#"{"ResourcePath":"VirtualMachine/Devices/ComPorts/0","RequestType":"Remove"}"#,
    r#"{"ResourcePath":"VirtualMachine/Nowhere","RequestType":"Add"}"#,
    r#"{"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"PreAdd"}"#,
    r#"{"PropertyTypes":["Basic","ProcessorTopology","CpuGroup","QoSCapabilities"]}"#,
    r#"{"PropertyType":"CpuGroup","Settings":{"Operation":"CreateGroup","OperationDetails":{"GroupId":"6f1c2a4e-0000-4000-8000-000000000001","LogicalProcessors":[0]}}}"#,
    r#"{"Mechanism":"GuestConnection","Type":"Shutdown","Force":false,"Reason":"fuzz"}"#,
    r#"{"Type":"Hibernate"}"#,
    r#"{"SuspensionLevel":"Suspend","HostedNotification":{"Reason":"Save"}}"#,
    r#"{"Type":"CrashGuest"}"#,
    r#"{"CommandArgs":["/bin/true"],"ConsoleSize":[25,80],"EmulateConsole":true}"#,
    r#"{"Signal":"CtrlC"}"#,
    r#"{"Signal":9}"#,
    r#"{"Operation":"CloseHandle","CloseHandle":{"Handle":"StdIn"}}"#,
    r#"{"SystemId":"hcs-fuzz","CrashParameters":[0,0,0,0,0]}"#,
    "{}",
    "[]",
    "null",
    "",
    " ",
    "{",
    "{\"SchemaVersion\":\u{1F600}}",
];

/// `SaveOptions` for `HcsSaveComputeSystem`: none may create a file.
const SAVE_OPTIONS: &[&str] = &[
    r#"{"SaveType":"ToFile","SaveStateFilePath":"/nonexistent/hcs-fuzz/save.vmrs"}"#,
    r#"{"SaveType":"AsTemplate"}"#,
    r#"{"SaveType":"ToFile"}"#,
    "{}",
    "{",
];

/// Paths for the file-system utility functions: none may create a file.
const PATHS: &[&str] = &[
    "/nonexistent/hcs-fuzz/state.vmgs",
    "/nonexistent/hcs-fuzz/",
    "",
    "relative-but-in-a-missing-dir/../../nonexistent/x",
];

static SEQUENCE: AtomicU64 = AtomicU64::new(0);
static COMPLETIONS: AtomicU64 = AtomicU64::new(0);
static EVENTS: AtomicU64 = AtomicU64::new(0);

/// A string argument.
#[derive(Arbitrary, Debug, Clone)]
enum Wide {
    Null,
    /// Well-formed text.
    Text(String),
    /// Any UTF-16 units (lone surrogates; an interior NUL ends the string early).
    Units(Vec<u16>),
    /// `DOCUMENTS[i % len]`.
    Document(u8),
    /// `DOCUMENTS[i % len]` with a lone surrogate spliced in at `at`.
    Broken(u8, u8, u16),
}

/// A compute-system id.
#[derive(Arbitrary, Debug, Clone)]
enum Id {
    /// A fresh id nobody uses (`hcs-fuzz-<pid>-<n>`).
    Fresh,
    /// The id of the last system this input created.
    Last,
    Other(Wide),
}

/// A handle argument.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum H {
    Null,
    Live(u8),
    Closed(u8),
    /// A live handle of another kind (e.g. a system handle as an operation).
    OtherKind(u8),
    Small(u8),
    Garbage(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SystemCall {
    Start,
    ShutDown,
    Terminate,
    Crash,
    Pause,
    Resume,
    Save(u8),
    GetProperties,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ProcessCall {
    Terminate,
    Signal,
    GetInfo,
    GetProperties,
    Modify,
}

#[derive(Arbitrary, Debug, Clone)]
enum Call {
    CreateOperation {
        context: u8,
        callback: bool,
    },
    CreateOperationWithNotifications {
        options: u32,
        callback: bool,
    },
    CloseOperation(H),
    GetOperationContext(H),
    SetOperationContext(H, u8),
    GetComputeSystemFromOperation(H),
    GetProcessFromOperation(H),
    GetOperationType(H),
    GetOperationId(H),
    GetOperationResult {
        op: H,
        out: bool,
    },
    GetOperationResultAndProcessInfo {
        op: H,
        info: bool,
        out: bool,
    },
    WaitForOperationResult {
        op: H,
        timeout: u8,
        out: bool,
    },
    WaitForOperationResultAndProcessInfo {
        op: H,
        timeout: u8,
        info: bool,
        out: bool,
    },
    SetOperationCallback {
        op: H,
        context: u8,
        callback: bool,
    },
    CancelOperation(H),
    GetOperationProperties {
        op: H,
        options: Wide,
        out: bool,
    },
    AddResourceToOperation {
        op: H,
        kind: i32,
        uri: Wide,
    },
    Enumerate {
        query: Wide,
        op: H,
    },
    EnumerateInNamespace {
        namespace: Wide,
        query: Wide,
        op: H,
    },
    CreateComputeSystem {
        id: Id,
        configuration: Wide,
        op: H,
        security_descriptor: bool,
        out: bool,
    },
    CreateComputeSystemInNamespace {
        id: Id,
        configuration: Wide,
        op: H,
        out: bool,
    },
    OpenComputeSystem {
        id: Id,
        access: Option<u32>,
        out: bool,
    },
    CloseComputeSystem(H),
    System {
        call: SystemCall,
        system: H,
        op: H,
        options: Wide,
    },
    Modify {
        system: H,
        op: H,
        configuration: Wide,
        identity: u8,
    },
    WaitForComputeSystemExit {
        system: H,
        timeout: u8,
        out: bool,
    },
    SetComputeSystemCallback {
        system: H,
        options: u32,
        context: u8,
        callback: bool,
    },
    CreateProcess {
        system: H,
        parameters: Wide,
        op: H,
        out: bool,
    },
    OpenProcess {
        system: H,
        pid: u32,
        access: Option<u32>,
        out: bool,
    },
    CloseProcess(H),
    Process {
        call: ProcessCall,
        process: H,
        op: H,
        options: Wide,
    },
    SetProcessCallback {
        process: H,
        options: u32,
        context: u8,
        callback: bool,
    },
    WaitForProcessExit {
        process: H,
        timeout: u8,
        out: bool,
    },
    GetServiceProperties {
        query: Wide,
        out: bool,
    },
    ModifyServiceSettings {
        settings: Wide,
        out: bool,
    },
    SubmitWerReport(Wide),
    FileFunction {
        which: u8,
        path: u8,
        vm_id: Wide,
    },
    ProcessorCompatibility {
        path: u8,
        out: bool,
    },
    LiveMigration {
        which: u8,
        system: H,
        op: H,
        options: Wide,
    },
    LocalFreeForeign(u64),
    Sleep(u8),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Operation,
    System,
    Process,
}

#[derive(Default)]
struct Handles {
    live: Vec<usize>,
    closed: Vec<usize>,
}

/// What the harness created during one input.
#[derive(Default)]
struct State {
    operations: Handles,
    systems: Handles,
    processes: Handles,
    /// Ids of systems this input created (create returned `S_OK`).
    created: Vec<String>,
    last_id: Option<String>,
}

impl State {
    fn table(&mut self, kind: Kind) -> &mut Handles {
        match kind {
            Kind::Operation => &mut self.operations,
            Kind::System => &mut self.systems,
            Kind::Process => &mut self.processes,
        }
    }

    fn is_live(&self, value: usize) -> bool {
        [&self.operations, &self.systems, &self.processes]
            .iter()
            .any(|t| t.live.contains(&value))
    }

    /// The handle value for `h`, and whether it is a live handle of `kind`.
    fn resolve(&mut self, h: H, kind: Kind) -> (usize, bool) {
        let value = match h {
            H::Null => 0,
            H::Live(i) => {
                let live = &self.table(kind).live;
                if live.is_empty() {
                    0
                } else {
                    live[i as usize % live.len()]
                }
            }
            H::Closed(i) => {
                let closed = &self.table(kind).closed;
                if closed.is_empty() {
                    0
                } else {
                    closed[i as usize % closed.len()]
                }
            }
            H::OtherKind(i) => {
                let others: Vec<usize> = [Kind::Operation, Kind::System, Kind::Process]
                    .into_iter()
                    .filter(|k| *k != kind)
                    .flat_map(|k| self.table(k).live.clone())
                    .collect();
                if others.is_empty() {
                    0
                } else {
                    others[i as usize % others.len()]
                }
            }
            H::Small(v) => v as usize,
            H::Garbage(v) => v as usize,
        };
        let good = value != 0 && self.table(kind).live.contains(&value);
        (value, good)
    }

    /// `value` was given to a call as a `kind` handle and was not a live one of that kind,
    /// but may be live as another kind or a garbage value equal to a live handle.
    fn surely_bad(&self, value: usize, good: bool) -> bool {
        !good && !self.is_live(value)
    }

    fn add(&mut self, kind: Kind, value: usize) {
        assert_ne!(value, 0);
        self.table(kind).live.push(value);
    }

    fn close(&mut self, kind: Kind, value: usize) {
        let table = self.table(kind);
        if let Some(i) = table.live.iter().position(|v| *v == value) {
            table.live.swap_remove(i);
            table.closed.push(value);
        }
    }
}

/// A NUL-terminated UTF-16 buffer (or NULL) that lives as long as the call needs it.
struct Buffer(Option<Vec<u16>>);

impl Buffer {
    fn ptr(&self) -> *const u16 {
        self.0.as_ref().map_or(std::ptr::null(), |b| b.as_ptr())
    }
}

fn text(s: &str) -> Buffer {
    Buffer(Some(s.encode_utf16().chain(std::iter::once(0)).collect()))
}

fn wide(w: &Wide) -> Buffer {
    match w {
        Wide::Null => Buffer(None),
        Wide::Text(s) => text(s),
        Wide::Units(units) => Buffer(Some(
            units.iter().copied().chain(std::iter::once(0)).collect(),
        )),
        Wide::Document(i) => text(DOCUMENTS[*i as usize % DOCUMENTS.len()]),
        Wide::Broken(i, at, unit) => {
            let mut units: Vec<u16> = DOCUMENTS[*i as usize % DOCUMENTS.len()]
                .encode_utf16()
                .collect();
            let at = *at as usize % (units.len() + 1);
            units.insert(at, 0xD800 | (*unit & 0x7FF));
            units.push(0);
            Buffer(Some(units))
        }
    }
}

fn id(state: &State, id: &Id) -> Buffer {
    match id {
        Id::Fresh => text(&format!(
            "hcs-fuzz-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        )),
        Id::Last => match &state.last_id {
            Some(last) => text(last),
            None => text("hcs-fuzz-no-such-system"),
        },
        Id::Other(w) => wide(w),
    }
}

fn timeout(t: u8) -> u32 {
    u32::from(t % 6)
}

/// Checks an HRESULT against HCS-API §6.
fn check_hr(function: &str, hr: i32) -> HResult {
    let hr = HResult(hr);
    assert!(
        HResult::ALL.contains(&hr),
        "{function} returned {hr}, not a code of HCS-API section 6"
    );
    hr
}

/// Rule 49: a bad handle never succeeds, and fails with an argument error.
fn check_bad_handle(function: &str, hr: HResult) {
    assert!(
        matches!(
            hr,
            HResult::E_HANDLE | HResult::E_POINTER | HResult::E_INVALIDARG | HResult::E_NOTIMPL
        ),
        "{function} with a bad handle returned {hr}, expected E_HANDLE (rule 49)"
    );
}

/// Reads a NUL-terminated UTF-16 string returned by the library.
///
/// # Safety
/// `p` is a non-null NUL-terminated UTF-16 string.
unsafe fn read_wide(p: *const u16) -> Result<String, std::string::FromUtf16Error> {
    let mut len = 0;
    // SAFETY: NUL-terminated (caller's promise); we stop at the NUL.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` units were just read.
    String::from_utf16(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Checks and frees a returned document (`free_with` picks LocalFree or CoTaskMemFree).
fn take_document(function: &str, hr: HResult, doc: PWSTR, free_with: bool) {
    if doc.is_null() {
        return;
    }
    // SAFETY: the library returned it as a NUL-terminated string.
    let text = unsafe { read_wide(doc) }
        .unwrap_or_else(|e| panic!("{function} returned a document that is not UTF-16: {e}"));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{function} returned a document that is not JSON ({e}): {text}")
    });
    if hr.failed() {
        let error: ResultError = hcs_schema::parse(&text).unwrap_or_else(|e| {
            panic!("{function} failed with {hr} and a document that is not a ResultError ({e:?}): {text}")
        });
        assert_eq!(
            error.error,
            Some(hr.0),
            "{function} returned {hr} but its ResultError says otherwise: {text}"
        );
        if hr == HResult::HCS_E_INVALID_JSON {
            let message = error.error_message.unwrap_or_default();
            assert!(
                message.contains('$'),
                "{function}: HCS_E_INVALID_JSON whose ErrorMessage names no JSON path (rule 46): {text}"
            );
        }
    }
    drop(value);
    if free_with {
        let rest = LocalFree(doc.cast());
        assert!(
            rest.is_null(),
            "LocalFree of a returned document did not return NULL"
        );
    } else {
        CoTaskMemFree(doc.cast());
    }
}

unsafe extern "C" fn on_completion(operation: *mut c_void, _context: *mut c_void) {
    COMPLETIONS.fetch_add(1, Ordering::Relaxed);
    assert!(
        !operation.is_null(),
        "completion callback with a NULL operation"
    );
    // Reading the result inside the callback is allowed (O-10, O-11). Without the document:
    // a string allocated here could still be unfreed when the input's clean-up counts them.
    // SAFETY: NULL out-pointer.
    let hr = unsafe { HcsGetOperationResult(operation, std::ptr::null_mut()) };
    let hr = check_hr("HcsGetOperationResult (in a completion callback)", hr);
    assert_ne!(
        hr,
        HResult::HCS_E_OPERATION_PENDING,
        "the completion callback ran while the operation is pending (O-10)"
    );
}

unsafe extern "C" fn on_event(event: *mut HCS_EVENT, _context: *mut c_void) {
    EVENTS.fetch_add(1, Ordering::Relaxed);
    assert!(!event.is_null(), "event callback with a NULL event");
    // SAFETY: the library passes a valid event for the duration of the call.
    let event = unsafe { &*event };
    let data = if event.EventData.is_null() {
        None
    } else {
        // SAFETY: EventData is a NUL-terminated string owned by the library during the call.
        Some(unsafe { read_wide(event.EventData) }.expect("EventData is not UTF-16"))
    };
    match event.Type {
        0x1 => {
            let data = data
                .as_deref()
                .expect("HcsEventSystemExited without EventData");
            let _: SystemExitStatus = hcs_schema::parse(data).unwrap_or_else(|e| {
                panic!("SystemExited EventData is not a SystemExitStatus: {e:?}: {data}")
            });
        }
        0x2 | 0x3 => {
            let data = data.as_deref().expect("crash event without EventData");
            let _: CrashReport = hcs_schema::parse(data)
                .unwrap_or_else(|e| panic!("crash EventData is not a CrashReport: {e:?}: {data}"));
        }
        0x0001_0000 => {
            let data = data
                .as_deref()
                .expect("HcsEventProcessExited without EventData");
            let _: ProcessStatus = hcs_schema::parse(data).unwrap_or_else(|e| {
                panic!("ProcessExited EventData is not a ProcessStatus: {e:?}: {data}")
            });
        }
        0x0100_0000 => assert!(
            !event.Operation.is_null(),
            "HcsEventOperationCallback without its operation"
        ),
        0x4 | 0x5 | 0x6 | 0x0200_0000 | 0x8000_0002 | 0x8000_0003 | 0xC000_0001 => {}
        other => panic!("event callback with an unknown HCS_EVENT_TYPE {other:#x}"),
    }
    if let Some(data) = &data {
        serde_json::from_str::<serde_json::Value>(data)
            .unwrap_or_else(|e| panic!("EventData is not JSON ({e}): {data}"));
    }
}

fn completion(callback: bool) -> computecore::abi::HCS_OPERATION_COMPLETION {
    callback.then_some(on_completion as unsafe extern "C" fn(*mut c_void, *mut c_void))
}

fn event_callback(callback: bool) -> computecore::abi::HCS_EVENT_CALLBACK {
    callback.then_some(on_event as unsafe extern "C" fn(*mut HCS_EVENT, *mut c_void))
}

fn out_ptr(doc: &mut PWSTR, out: bool) -> *mut PWSTR {
    if out {
        doc
    } else {
        std::ptr::null_mut()
    }
}

/// Checks an `_Out_` handle after a create/open call and records it.
fn out_handle(
    state: &mut State,
    function: &str,
    hr: HResult,
    out: bool,
    handle: *mut c_void,
    kind: Kind,
) {
    if !out {
        assert!(hr.failed(), "{function} succeeded without an out-pointer");
        return;
    }
    if hr.succeeded() {
        assert!(!handle.is_null(), "{function} succeeded with a NULL handle");
        state.add(kind, handle as usize);
    } else {
        assert!(
            handle.is_null(),
            "{function} failed with {hr} but set its _Out_ handle (rule 49)"
        );
    }
}

/// O-2 and rule 9: after `S_OK` a live operation tracks the call (`HcsGetOperationType` is
/// its type, HCS-API 5.2); after a synchronous failure it is as it was.
fn check_arming(function: &str, op: usize, good: bool, before: i32, hr: HResult, expected: i32) {
    if !good {
        return;
    }
    let after = HcsGetOperationType(op as *mut c_void);
    if hr == HResult::S_OK {
        assert_eq!(
            after, expected,
            "{function} returned S_OK but the operation's type is {after} (O-2)"
        );
    } else if hr.failed() {
        assert_eq!(
            after, before,
            "{function} failed synchronously with {hr} but changed the operation's type from {before} to {after} (rule 9)"
        );
    }
}

fn run(state: &mut State, call: &Call) {
    match call {
        Call::CreateOperation { context, callback } => {
            let op = HcsCreateOperation(
                usize::from(*context) as *const c_void,
                completion(*callback),
            );
            assert!(!op.is_null(), "HcsCreateOperation returned NULL");
            state.add(Kind::Operation, op as usize);
            // O-3: never used.
            let mut doc: PWSTR = 1usize as PWSTR;
            // SAFETY: a valid out-pointer.
            let hr = check_hr("HcsGetOperationResult", unsafe {
                HcsGetOperationResult(op, &mut doc)
            });
            assert_eq!(
                hr,
                HResult::HCS_E_OPERATION_NOT_STARTED,
                "a new operation (O-3)"
            );
            assert!(doc.is_null(), "a new operation has a document (O-3)");
            assert_eq!(HcsGetOperationType(op), HCS_OPERATION_TYPE_NONE);
            assert_ne!(HcsGetOperationId(op), HCS_INVALID_OPERATION_ID);
        }
        Call::CreateOperationWithNotifications { options, callback } => {
            let op = HcsCreateOperationWithNotifications(
                *options,
                std::ptr::null(),
                event_callback(*callback),
            );
            if *options & !0x3 != 0 || !*callback {
                assert!(op.is_null(), "HcsCreateOperationWithNotifications accepted options {options:#x} / a NULL callback");
            } else {
                assert!(
                    !op.is_null(),
                    "HcsCreateOperationWithNotifications returned NULL"
                );
            }
            if !op.is_null() {
                state.add(Kind::Operation, op as usize);
            }
        }
        Call::CloseOperation(h) => {
            let (v, _) = state.resolve(*h, Kind::Operation);
            let was_live = state.operations.live.contains(&v);
            HcsCloseOperation(v as *mut c_void);
            if was_live {
                state.close(Kind::Operation, v);
            }
        }
        Call::GetOperationContext(h) => {
            let (v, good) = state.resolve(*h, Kind::Operation);
            let context = HcsGetOperationContext(v as *mut c_void);
            if state.surely_bad(v, good) {
                assert!(
                    context.is_null(),
                    "HcsGetOperationContext of a bad handle is not NULL"
                );
            }
        }
        Call::SetOperationContext(h, context) => {
            let (v, good) = state.resolve(*h, Kind::Operation);
            let hr = check_hr(
                "HcsSetOperationContext",
                HcsSetOperationContext(v as *mut c_void, usize::from(*context) as *const c_void),
            );
            if state.surely_bad(v, good) {
                check_bad_handle("HcsSetOperationContext", hr);
            } else if hr.succeeded() {
                assert_eq!(
                    HcsGetOperationContext(v as *mut c_void) as usize,
                    usize::from(*context),
                    "O-14"
                );
            }
        }
        Call::GetComputeSystemFromOperation(h) => {
            let (v, good) = state.resolve(*h, Kind::Operation);
            let system = HcsGetComputeSystemFromOperation(v as *mut c_void);
            if state.surely_bad(v, good) {
                assert!(
                    system.is_null(),
                    "HcsGetComputeSystemFromOperation of a bad handle"
                );
            }
        }
        Call::GetProcessFromOperation(h) => {
            let (v, good) = state.resolve(*h, Kind::Operation);
            let process = HcsGetProcessFromOperation(v as *mut c_void);
            if state.surely_bad(v, good) {
                assert!(
                    process.is_null(),
                    "HcsGetProcessFromOperation of a bad handle"
                );
            }
        }
        Call::GetOperationType(h) => {
            let (v, good) = state.resolve(*h, Kind::Operation);
            let t = HcsGetOperationType(v as *mut c_void);
            assert!(
                (-1..=19).contains(&t),
                "HcsGetOperationType returned {t} (HCS-API 5.2)"
            );
            if state.surely_bad(v, good) {
                assert_eq!(
                    t, HCS_OPERATION_TYPE_NONE,
                    "HcsGetOperationType of a bad handle"
                );
            }
        }
        Call::GetOperationId(h) => {
            let (v, good) = state.resolve(*h, Kind::Operation);
            let id = HcsGetOperationId(v as *mut c_void);
            if state.surely_bad(v, good) {
                assert_eq!(
                    id, HCS_INVALID_OPERATION_ID,
                    "HcsGetOperationId of a bad handle (O-17)"
                );
            } else if good {
                assert_ne!(
                    id, HCS_INVALID_OPERATION_ID,
                    "HcsGetOperationId of a live handle (O-17)"
                );
            }
        }
        Call::GetOperationResult { op, out } => {
            let (v, good) = state.resolve(*op, Kind::Operation);
            let mut doc: PWSTR = std::ptr::null_mut();
            // SAFETY: NULL or a valid out-pointer.
            let hr = unsafe { HcsGetOperationResult(v as *mut c_void, out_ptr(&mut doc, *out)) };
            let hr = check_hr("HcsGetOperationResult", hr);
            if state.surely_bad(v, good) {
                check_bad_handle("HcsGetOperationResult", hr);
                assert!(doc.is_null());
            }
            if good && *out && hr != HResult::HCS_E_OPERATION_PENDING {
                // O-9 / rule 16: reads do not consume; the same HRESULT and an equal new copy.
                let mut again: PWSTR = std::ptr::null_mut();
                // SAFETY: a valid out-pointer.
                let hr2 = check_hr("HcsGetOperationResult", unsafe {
                    HcsGetOperationResult(v as *mut c_void, &mut again)
                });
                assert_eq!(
                    hr2, hr,
                    "a second HcsGetOperationResult gives another HRESULT (rule 16)"
                );
                assert_eq!(
                    again.is_null(),
                    doc.is_null(),
                    "a second HcsGetOperationResult gives another document (rule 16)"
                );
                if !doc.is_null() {
                    assert_ne!(
                        again, doc,
                        "a second HcsGetOperationResult returns the same allocation (O-6)"
                    );
                    // SAFETY: both are returned NUL-terminated strings.
                    let (a, b) = unsafe { (read_wide(doc), read_wide(again)) };
                    assert_eq!(
                        a.ok(),
                        b.ok(),
                        "a second HcsGetOperationResult gives another document (rule 16)"
                    );
                }
                take_document("HcsGetOperationResult", hr2, again, false);
            }
            take_document("HcsGetOperationResult", hr, doc, true);
        }
        Call::GetOperationResultAndProcessInfo { op, info, out } => {
            let (v, good) = state.resolve(*op, Kind::Operation);
            let mut doc: PWSTR = std::ptr::null_mut();
            let mut pi = HCS_PROCESS_INFORMATION {
                ProcessId: 7,
                Reserved: 7,
                StdInput: std::ptr::null_mut(),
                StdOutput: std::ptr::null_mut(),
                StdError: std::ptr::null_mut(),
            };
            let pi_ptr = if *info {
                &mut pi as *mut _
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: NULL or valid out-pointers.
            let hr = unsafe {
                HcsGetOperationResultAndProcessInfo(
                    v as *mut c_void,
                    pi_ptr,
                    out_ptr(&mut doc, *out),
                )
            };
            let hr = check_hr("HcsGetOperationResultAndProcessInfo", hr);
            if state.surely_bad(v, good) {
                check_bad_handle("HcsGetOperationResultAndProcessInfo", hr);
            }
            if *info && hr.succeeded() {
                assert_eq!(
                    pi.Reserved, 0,
                    "HCS_PROCESS_INFORMATION.Reserved is not 0 (5.4)"
                );
            }
            take_document("HcsGetOperationResultAndProcessInfo", hr, doc, false);
        }
        Call::WaitForOperationResult {
            op,
            timeout: t,
            out,
        } => {
            let (v, good) = state.resolve(*op, Kind::Operation);
            let mut doc: PWSTR = std::ptr::null_mut();
            let started = Instant::now();
            // SAFETY: NULL or a valid out-pointer.
            let hr = unsafe {
                HcsWaitForOperationResult(v as *mut c_void, timeout(*t), out_ptr(&mut doc, *out))
            };
            let hr = check_hr("HcsWaitForOperationResult", hr);
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "HcsWaitForOperationResult({} ms) took {:?}",
                timeout(*t),
                started.elapsed()
            );
            if state.surely_bad(v, good) {
                check_bad_handle("HcsWaitForOperationResult", hr);
            }
            take_document("HcsWaitForOperationResult", hr, doc, true);
        }
        Call::WaitForOperationResultAndProcessInfo {
            op,
            timeout: t,
            info,
            out,
        } => {
            let (v, good) = state.resolve(*op, Kind::Operation);
            let mut doc: PWSTR = std::ptr::null_mut();
            let mut pi = HCS_PROCESS_INFORMATION {
                ProcessId: 7,
                Reserved: 7,
                StdInput: std::ptr::null_mut(),
                StdOutput: std::ptr::null_mut(),
                StdError: std::ptr::null_mut(),
            };
            let pi_ptr = if *info {
                &mut pi as *mut _
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: NULL or valid out-pointers.
            let hr = unsafe {
                HcsWaitForOperationResultAndProcessInfo(
                    v as *mut c_void,
                    timeout(*t),
                    pi_ptr,
                    out_ptr(&mut doc, *out),
                )
            };
            let hr = check_hr("HcsWaitForOperationResultAndProcessInfo", hr);
            if state.surely_bad(v, good) {
                check_bad_handle("HcsWaitForOperationResultAndProcessInfo", hr);
            }
            take_document("HcsWaitForOperationResultAndProcessInfo", hr, doc, false);
        }
        Call::SetOperationCallback {
            op,
            context,
            callback,
        } => {
            let (v, good) = state.resolve(*op, Kind::Operation);
            let hr = HcsSetOperationCallback(
                v as *mut c_void,
                usize::from(*context) as *const c_void,
                completion(*callback),
            );
            let hr = check_hr("HcsSetOperationCallback", hr);
            if state.surely_bad(v, good) {
                check_bad_handle("HcsSetOperationCallback", hr);
            }
        }
        Call::CancelOperation(h) => {
            let (v, _) = state.resolve(*h, Kind::Operation);
            let hr = check_hr("HcsCancelOperation", HcsCancelOperation(v as *mut c_void));
            assert!(hr.failed(), "HcsCancelOperation succeeded (O-13)");
        }
        Call::GetOperationProperties { op, options, out } => {
            let (v, good) = state.resolve(*op, Kind::Operation);
            let options = wide(options);
            let mut doc: PWSTR = 1usize as PWSTR;
            let out_p = if *out {
                &mut doc as *mut PWSTR
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: NULL or a NUL-terminated string; NULL or a valid out-pointer.
            let hr = unsafe { HcsGetOperationProperties(v as *mut c_void, options.ptr(), out_p) };
            let hr = check_hr("HcsGetOperationProperties", hr);
            if state.surely_bad(v, good) {
                check_bad_handle("HcsGetOperationProperties", hr);
            }
            if !*out {
                check_bad_handle("HcsGetOperationProperties without resultDocument", hr);
                return;
            }
            if hr.failed() {
                // Nothing written on a synchronous failure other than clearing the out-pointer.
                assert!(
                    doc.is_null() || doc as usize != 1,
                    "HcsGetOperationProperties left resultDocument unset"
                );
            }
            if doc as usize != 1 {
                take_document("HcsGetOperationProperties", hr, doc, true);
            }
        }
        Call::AddResourceToOperation { op, kind, uri } => {
            let (v, _) = state.resolve(*op, Kind::Operation);
            let uri = wide(uri);
            let hr =
                HcsAddResourceToOperation(v as *mut c_void, *kind, uri.ptr(), std::ptr::null_mut());
            check_hr("HcsAddResourceToOperation", hr);
        }
        Call::Enumerate { query, op } => {
            let (v, good) = state.resolve(*op, Kind::Operation);
            let query = wide(query);
            let before = HcsGetOperationType(v as *mut c_void);
            // SAFETY: NULL or a NUL-terminated string.
            let hr = check_hr("HcsEnumerateComputeSystems", unsafe {
                HcsEnumerateComputeSystems(query.ptr(), v as *mut c_void)
            });
            if state.surely_bad(v, good) {
                check_bad_handle("HcsEnumerateComputeSystems", hr);
            }
            check_arming("HcsEnumerateComputeSystems", v, good, before, hr, 0);
        }
        Call::EnumerateInNamespace {
            namespace,
            query,
            op,
        } => {
            let (v, _) = state.resolve(*op, Kind::Operation);
            let (namespace, query) = (wide(namespace), wide(query));
            let hr = HcsEnumerateComputeSystemsInNamespace(
                namespace.ptr(),
                query.ptr(),
                v as *mut c_void,
            );
            check_hr("HcsEnumerateComputeSystemsInNamespace", hr);
        }
        Call::CreateComputeSystem {
            id: i,
            configuration,
            op,
            security_descriptor,
            out,
        } => {
            let (v, good) = state.resolve(*op, Kind::Operation);
            let id_buffer = id(state, i);
            let configuration = wide(configuration);
            let sd = [0u64; 4];
            let sd_ptr = if *security_descriptor {
                sd.as_ptr().cast::<c_void>()
            } else {
                std::ptr::null()
            };
            let mut handle: *mut c_void = 1usize as *mut c_void;
            let out_p = if *out {
                &mut handle as *mut _
            } else {
                std::ptr::null_mut()
            };
            let before = HcsGetOperationType(v as *mut c_void);
            // SAFETY: NULL or NUL-terminated strings, NULL or a valid out-pointer; the security
            // descriptor is a readable buffer (only NULL is accepted).
            let hr = unsafe {
                HcsCreateComputeSystem(
                    id_buffer.ptr(),
                    configuration.ptr(),
                    v as *mut c_void,
                    sd_ptr,
                    out_p,
                )
            };
            let hr = check_hr("HcsCreateComputeSystem", hr);
            if state.surely_bad(v, good) {
                check_bad_handle("HcsCreateComputeSystem", hr);
            }
            if *security_descriptor {
                assert!(
                    hr.failed(),
                    "HcsCreateComputeSystem accepted a security descriptor"
                );
            }
            check_arming("HcsCreateComputeSystem", v, good, before, hr, 1);
            out_handle(
                state,
                "HcsCreateComputeSystem",
                hr,
                *out,
                handle,
                Kind::System,
            );
            if hr.succeeded() {
                let units = id_buffer.0.as_deref().unwrap_or(&[]);
                let end = units.iter().position(|u| *u == 0).unwrap_or(units.len());
                if let Ok(id) = String::from_utf16(&units[..end]) {
                    state.created.push(id.clone());
                    state.last_id = Some(id);
                }
            }
        }
        Call::CreateComputeSystemInNamespace {
            id: i,
            configuration,
            op,
            out,
        } => {
            let (v, _) = state.resolve(*op, Kind::Operation);
            let id_buffer = id(state, i);
            let configuration = wide(configuration);
            let mut handle: *mut c_void = 1usize as *mut c_void;
            let out_p = if *out {
                &mut handle as *mut _
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: NULL or a valid out-pointer; the strings are NUL-terminated or NULL.
            let hr = unsafe {
                HcsCreateComputeSystemInNamespace(
                    std::ptr::null(),
                    id_buffer.ptr(),
                    configuration.ptr(),
                    v as *mut c_void,
                    std::ptr::null(),
                    out_p,
                )
            };
            let hr = check_hr("HcsCreateComputeSystemInNamespace", hr);
            out_handle(
                state,
                "HcsCreateComputeSystemInNamespace",
                hr,
                *out,
                handle,
                Kind::System,
            );
        }
        Call::OpenComputeSystem { id: i, access, out } => {
            let id_buffer = id(state, i);
            let mut handle: *mut c_void = 1usize as *mut c_void;
            let out_p = if *out {
                &mut handle as *mut _
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: NULL or a NUL-terminated string; NULL or a valid out-pointer.
            let hr = unsafe {
                HcsOpenComputeSystem(id_buffer.ptr(), access.unwrap_or(GENERIC_ALL), out_p)
            };
            let hr = check_hr("HcsOpenComputeSystem", hr);
            out_handle(
                state,
                "HcsOpenComputeSystem",
                hr,
                *out,
                handle,
                Kind::System,
            );
        }
        Call::CloseComputeSystem(h) => {
            let (v, _) = state.resolve(*h, Kind::System);
            let was_live = state.systems.live.contains(&v);
            HcsCloseComputeSystem(v as *mut c_void);
            if was_live {
                state.close(Kind::System, v);
            }
        }
        Call::System {
            call,
            system,
            op,
            options,
        } => {
            let (s, s_good) = state.resolve(*system, Kind::System);
            let (o, o_good) = state.resolve(*op, Kind::Operation);
            let options = match call {
                SystemCall::Save(i) => text(SAVE_OPTIONS[*i as usize % SAVE_OPTIONS.len()]),
                _ => wide(options),
            };
            let (s_ptr, o_ptr, opt) = (s as *mut c_void, o as *mut c_void, options.ptr());
            let before = HcsGetOperationType(o_ptr);
            let expected = match call {
                SystemCall::Start => 2,
                SystemCall::ShutDown => 3,
                SystemCall::Pause => 4,
                SystemCall::Resume => 5,
                SystemCall::Save(_) => 6,
                SystemCall::Terminate => 7,
                SystemCall::GetProperties => 9,
                SystemCall::Crash => 15,
            };
            // SAFETY: `options` is NULL or NUL-terminated.
            let (name, hr) = unsafe {
                match call {
                    SystemCall::Start => (
                        "HcsStartComputeSystem",
                        HcsStartComputeSystem(s_ptr, o_ptr, opt),
                    ),
                    SystemCall::ShutDown => (
                        "HcsShutDownComputeSystem",
                        HcsShutDownComputeSystem(s_ptr, o_ptr, opt),
                    ),
                    SystemCall::Terminate => (
                        "HcsTerminateComputeSystem",
                        HcsTerminateComputeSystem(s_ptr, o_ptr, opt),
                    ),
                    SystemCall::Crash => (
                        "HcsCrashComputeSystem",
                        HcsCrashComputeSystem(s_ptr, o_ptr, opt),
                    ),
                    SystemCall::Pause => (
                        "HcsPauseComputeSystem",
                        HcsPauseComputeSystem(s_ptr, o_ptr, opt),
                    ),
                    SystemCall::Resume => (
                        "HcsResumeComputeSystem",
                        HcsResumeComputeSystem(s_ptr, o_ptr, opt),
                    ),
                    SystemCall::Save(_) => (
                        "HcsSaveComputeSystem",
                        HcsSaveComputeSystem(s_ptr, o_ptr, opt),
                    ),
                    SystemCall::GetProperties => (
                        "HcsGetComputeSystemProperties",
                        HcsGetComputeSystemProperties(s_ptr, o_ptr, opt),
                    ),
                }
            };
            let hr = check_hr(name, hr);
            if state.surely_bad(s, s_good) || state.surely_bad(o, o_good) {
                check_bad_handle(name, hr);
            }
            check_arming(name, o, o_good, before, hr, expected);
            if hr == HResult::S_OK {
                let from_op = HcsGetComputeSystemFromOperation(o_ptr);
                assert!(
                    from_op.is_null() || from_op == s_ptr,
                    "HcsGetComputeSystemFromOperation after {name} gives another system (O-2)"
                );
            }
        }
        Call::Modify {
            system,
            op,
            configuration,
            identity,
        } => {
            let (s, s_good) = state.resolve(*system, Kind::System);
            let (o, o_good) = state.resolve(*op, Kind::Operation);
            let configuration = wide(configuration);
            let before = HcsGetOperationType(o as *mut c_void);
            // SAFETY: NULL or a NUL-terminated string; identity is a number, never dereferenced.
            let hr = unsafe {
                HcsModifyComputeSystem(
                    s as *mut c_void,
                    o as *mut c_void,
                    configuration.ptr(),
                    usize::from(*identity) as *mut c_void,
                )
            };
            let hr = check_hr("HcsModifyComputeSystem", hr);
            if state.surely_bad(s, s_good) || state.surely_bad(o, o_good) {
                check_bad_handle("HcsModifyComputeSystem", hr);
            }
            check_arming("HcsModifyComputeSystem", o, o_good, before, hr, 8);
        }
        Call::WaitForComputeSystemExit {
            system,
            timeout: t,
            out,
        } => {
            let (s, s_good) = state.resolve(*system, Kind::System);
            let mut doc: PWSTR = std::ptr::null_mut();
            let started = Instant::now();
            // SAFETY: NULL or a valid out-pointer.
            let hr = unsafe {
                HcsWaitForComputeSystemExit(s as *mut c_void, timeout(*t), out_ptr(&mut doc, *out))
            };
            let hr = check_hr("HcsWaitForComputeSystemExit", hr);
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "HcsWaitForComputeSystemExit took {:?}",
                started.elapsed()
            );
            if state.surely_bad(s, s_good) {
                check_bad_handle("HcsWaitForComputeSystemExit", hr);
            }
            if hr == HResult::S_OK && !doc.is_null() {
                // SAFETY: a returned NUL-terminated string.
                let text = unsafe { read_wide(doc) }.expect("exit document is not UTF-16");
                let _: SystemExitStatus = hcs_schema::parse(&text).unwrap_or_else(|e| {
                    panic!("exit document is not a SystemExitStatus: {e:?}: {text}")
                });
            }
            take_document("HcsWaitForComputeSystemExit", hr, doc, false);
        }
        Call::SetComputeSystemCallback {
            system,
            options,
            context,
            callback,
        } => {
            let (s, s_good) = state.resolve(*system, Kind::System);
            let hr = HcsSetComputeSystemCallback(
                s as *mut c_void,
                *options,
                usize::from(*context) as *const c_void,
                event_callback(*callback),
            );
            let hr = check_hr("HcsSetComputeSystemCallback", hr);
            if state.surely_bad(s, s_good) {
                check_bad_handle("HcsSetComputeSystemCallback", hr);
            }
            if *options & !0x7 != 0 || !*callback {
                assert!(
                    hr.failed(),
                    "HcsSetComputeSystemCallback accepted options {options:#x} / a NULL callback"
                );
            }
        }
        Call::CreateProcess {
            system,
            parameters,
            op,
            out,
        } => {
            let (s, s_good) = state.resolve(*system, Kind::System);
            let (o, o_good) = state.resolve(*op, Kind::Operation);
            let parameters = wide(parameters);
            let before = HcsGetOperationType(o as *mut c_void);
            let mut handle: *mut c_void = 1usize as *mut c_void;
            let out_p = if *out {
                &mut handle as *mut _
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: NULL or a NUL-terminated string; NULL or a valid out-pointer.
            let hr = unsafe {
                HcsCreateProcess(
                    s as *mut c_void,
                    parameters.ptr(),
                    o as *mut c_void,
                    std::ptr::null(),
                    out_p,
                )
            };
            let hr = check_hr("HcsCreateProcess", hr);
            if state.surely_bad(s, s_good) || state.surely_bad(o, o_good) {
                check_bad_handle("HcsCreateProcess", hr);
            }
            check_arming("HcsCreateProcess", o, o_good, before, hr, 10);
            out_handle(state, "HcsCreateProcess", hr, *out, handle, Kind::Process);
        }
        Call::OpenProcess {
            system,
            pid,
            access,
            out,
        } => {
            let (s, s_good) = state.resolve(*system, Kind::System);
            let mut handle: *mut c_void = 1usize as *mut c_void;
            let out_p = if *out {
                &mut handle as *mut _
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: NULL or a valid out-pointer.
            let hr = unsafe {
                HcsOpenProcess(s as *mut c_void, *pid, access.unwrap_or(GENERIC_ALL), out_p)
            };
            let hr = check_hr("HcsOpenProcess", hr);
            if state.surely_bad(s, s_good) {
                check_bad_handle("HcsOpenProcess", hr);
            }
            out_handle(state, "HcsOpenProcess", hr, *out, handle, Kind::Process);
        }
        Call::CloseProcess(h) => {
            let (v, _) = state.resolve(*h, Kind::Process);
            let was_live = state.processes.live.contains(&v);
            HcsCloseProcess(v as *mut c_void);
            if was_live {
                state.close(Kind::Process, v);
            }
        }
        Call::Process {
            call,
            process,
            op,
            options,
        } => {
            let (p, p_good) = state.resolve(*process, Kind::Process);
            let (o, o_good) = state.resolve(*op, Kind::Operation);
            let options = wide(options);
            let (p_ptr, o_ptr, opt) = (p as *mut c_void, o as *mut c_void, options.ptr());
            let before = HcsGetOperationType(o_ptr);
            let expected = match call {
                ProcessCall::Terminate | ProcessCall::Signal => 11,
                ProcessCall::GetInfo => 12,
                ProcessCall::GetProperties => 13,
                ProcessCall::Modify => 14,
            };
            // SAFETY: `options` is NULL or NUL-terminated.
            let (name, hr) = unsafe {
                match call {
                    ProcessCall::Terminate => (
                        "HcsTerminateProcess",
                        HcsTerminateProcess(p_ptr, o_ptr, opt),
                    ),
                    ProcessCall::Signal => {
                        ("HcsSignalProcess", HcsSignalProcess(p_ptr, o_ptr, opt))
                    }
                    ProcessCall::GetInfo => ("HcsGetProcessInfo", HcsGetProcessInfo(p_ptr, o_ptr)),
                    ProcessCall::GetProperties => (
                        "HcsGetProcessProperties",
                        HcsGetProcessProperties(p_ptr, o_ptr, opt),
                    ),
                    ProcessCall::Modify => {
                        ("HcsModifyProcess", HcsModifyProcess(p_ptr, o_ptr, opt))
                    }
                }
            };
            let hr = check_hr(name, hr);
            if state.surely_bad(p, p_good) || state.surely_bad(o, o_good) {
                check_bad_handle(name, hr);
            }
            check_arming(name, o, o_good, before, hr, expected);
        }
        Call::SetProcessCallback {
            process,
            options,
            context,
            callback,
        } => {
            let (p, p_good) = state.resolve(*process, Kind::Process);
            let hr = HcsSetProcessCallback(
                p as *mut c_void,
                *options,
                usize::from(*context) as *mut c_void,
                event_callback(*callback),
            );
            let hr = check_hr("HcsSetProcessCallback", hr);
            if state.surely_bad(p, p_good) {
                check_bad_handle("HcsSetProcessCallback", hr);
            }
        }
        Call::WaitForProcessExit {
            process,
            timeout: t,
            out,
        } => {
            let (p, p_good) = state.resolve(*process, Kind::Process);
            let mut doc: PWSTR = std::ptr::null_mut();
            // SAFETY: NULL or a valid out-pointer.
            let hr = unsafe {
                HcsWaitForProcessExit(p as *mut c_void, timeout(*t), out_ptr(&mut doc, *out))
            };
            let hr = check_hr("HcsWaitForProcessExit", hr);
            if state.surely_bad(p, p_good) {
                check_bad_handle("HcsWaitForProcessExit", hr);
            }
            take_document("HcsWaitForProcessExit", hr, doc, true);
        }
        Call::GetServiceProperties { query, out } => {
            let query = wide(query);
            let mut doc: PWSTR = 1usize as PWSTR;
            let out_p = if *out {
                &mut doc as *mut PWSTR
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: NULL or a NUL-terminated string; NULL or a valid out-pointer.
            let hr = unsafe { HcsGetServiceProperties(query.ptr(), out_p) };
            let hr = check_hr("HcsGetServiceProperties", hr);
            if !*out {
                assert_eq!(
                    hr,
                    HResult::E_POINTER,
                    "HcsGetServiceProperties without result (rule 49)"
                );
                return;
            }
            assert_ne!(
                doc as usize, 1,
                "HcsGetServiceProperties left its result unset"
            );
            take_document("HcsGetServiceProperties", hr, doc, true);
        }
        Call::ModifyServiceSettings { settings, out } => {
            let settings = wide(settings);
            let mut doc: PWSTR = std::ptr::null_mut();
            // SAFETY: NULL or a NUL-terminated string; NULL or a valid out-pointer.
            let hr = unsafe { HcsModifyServiceSettings(settings.ptr(), out_ptr(&mut doc, *out)) };
            let hr = check_hr("HcsModifyServiceSettings", hr);
            take_document("HcsModifyServiceSettings", hr, doc, false);
        }
        Call::SubmitWerReport(report) => {
            let report = wide(report);
            // SAFETY: NULL or a NUL-terminated string.
            check_hr("HcsSubmitWerReport", unsafe {
                HcsSubmitWerReport(report.ptr())
            });
        }
        Call::FileFunction { which, path, vm_id } => {
            let path = if *path as usize % (PATHS.len() + 1) == PATHS.len() {
                Buffer(None)
            } else {
                text(PATHS[*path as usize % (PATHS.len() + 1)])
            };
            let vm_id = wide(vm_id);
            // SAFETY: NULL or NUL-terminated strings; no path can create a file.
            let (name, hr) = unsafe {
                match which % 6 {
                    0 => (
                        "HcsCreateEmptyGuestStateFile",
                        HcsCreateEmptyGuestStateFile(path.ptr()),
                    ),
                    1 => (
                        "HcsCreateEmptyRuntimeStateFile",
                        HcsCreateEmptyRuntimeStateFile(path.ptr()),
                    ),
                    2 => (
                        "HcsGrantVmAccess",
                        HcsGrantVmAccess(vm_id.ptr(), path.ptr()),
                    ),
                    3 => (
                        "HcsRevokeVmAccess",
                        HcsRevokeVmAccess(vm_id.ptr(), path.ptr()),
                    ),
                    4 => ("HcsGrantVmGroupAccess", HcsGrantVmGroupAccess(path.ptr())),
                    _ => ("HcsRevokeVmGroupAccess", HcsRevokeVmGroupAccess(path.ptr())),
                }
            };
            let hr = check_hr(name, hr);
            assert!(hr.failed(), "{name} succeeded on a path that cannot exist");
        }
        Call::ProcessorCompatibility { path, out } => {
            let path = text(PATHS[*path as usize % PATHS.len()]);
            let mut doc: *const u16 = std::ptr::null();
            let out_p = if *out {
                &mut doc as *mut *const u16
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: a NUL-terminated string; NULL or a valid out-pointer.
            let hr = unsafe { HcsGetProcessorCompatibilityFromSavedState(path.ptr(), out_p) };
            let hr = check_hr("HcsGetProcessorCompatibilityFromSavedState", hr);
            take_document(
                "HcsGetProcessorCompatibilityFromSavedState",
                hr,
                doc as PWSTR,
                true,
            );
        }
        Call::LiveMigration {
            which,
            system,
            op,
            options,
        } => {
            let (s, _) = state.resolve(*system, Kind::System);
            let (o, _) = state.resolve(*op, Kind::Operation);
            let options = wide(options);
            let (s_ptr, o_ptr, opt) = (s as *mut c_void, o as *mut c_void, options.ptr());
            let (name, hr) = match which % 4 {
                0 => (
                    "HcsInitializeLiveMigrationOnSource",
                    HcsInitializeLiveMigrationOnSource(s_ptr, o_ptr, opt),
                ),
                1 => (
                    "HcsStartLiveMigrationOnSource",
                    HcsStartLiveMigrationOnSource(s_ptr, o_ptr, opt),
                ),
                2 => (
                    "HcsStartLiveMigrationTransfer",
                    HcsStartLiveMigrationTransfer(s_ptr, o_ptr, opt),
                ),
                _ => (
                    "HcsFinalizeLiveMigration",
                    HcsFinalizeLiveMigration(s_ptr, o_ptr, opt),
                ),
            };
            let hr = check_hr(name, hr);
            assert_eq!(hr, HResult::E_NOTIMPL, "{name} (rule 50)");
        }
        Call::LocalFreeForeign(v) => {
            // A pointer the library never returned: left alone and handed back (rule 51).
            let mut local = [0u16; 4];
            let foreign = if *v % 2 == 0 {
                local.as_mut_ptr().cast::<c_void>()
            } else {
                (*v | 1) as usize as *mut c_void
            };
            assert_eq!(
                LocalFree(foreign),
                foreign,
                "LocalFree of a foreign pointer"
            );
            CoTaskMemFree(foreign);
        }
        Call::Sleep(ms) => std::thread::sleep(Duration::from_millis(u64::from(ms % 6))),
    }
}

/// Waits for `op` (a harness operation) up to the clean-up bound; its result.
fn wait_cleanup(op: *mut c_void) -> HResult {
    let mut doc: PWSTR = std::ptr::null_mut();
    // SAFETY: a valid out-pointer.
    let hr = unsafe { HcsWaitForOperationResult(op, CLEANUP_WAIT_MS, &mut doc) };
    let hr = check_hr("HcsWaitForOperationResult (clean-up)", hr);
    take_document("HcsWaitForOperationResult (clean-up)", hr, doc, true);
    hr
}

/// Terminates every system this input created and closes every handle it holds.
fn cleanup(state: &mut State) {
    // Re-open every created system by id, so that one whose handles the input closed is
    // terminated too.
    for id in &state.created {
        let id = text(id);
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: a NUL-terminated string and a valid out-pointer.
        let hr = unsafe { HcsOpenComputeSystem(id.ptr(), GENERIC_ALL, &mut handle) };
        if check_hr("HcsOpenComputeSystem (clean-up)", hr).succeeded() {
            state.systems.live.push(handle as usize);
        }
    }
    for &system in &state.systems.live {
        let op = HcsCreateOperation(std::ptr::null(), None);
        assert!(!op.is_null());
        let deadline = Instant::now() + Duration::from_millis(u64::from(CLEANUP_WAIT_MS));
        loop {
            // SAFETY: NULL options.
            let hr =
                unsafe { HcsTerminateComputeSystem(system as *mut c_void, op, std::ptr::null()) };
            let hr = check_hr("HcsTerminateComputeSystem (clean-up)", hr);
            if hr.succeeded() {
                let done = wait_cleanup(op);
                assert_ne!(
                    done,
                    HResult::HCS_E_OPERATION_TIMEOUT,
                    "terminate did not finish in {CLEANUP_WAIT_MS} ms"
                );
                break;
            }
            // Stopped, gone, or created by a failed create: nothing to terminate. A system whose
            // create is still pending refuses with HCS_E_INVALID_STATE: retry.
            if hr != HResult::HCS_E_INVALID_STATE || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        HcsCloseOperation(op);
    }
    for &system in &state.systems.live {
        HcsCloseComputeSystem(system as *mut c_void);
    }
    for &process in &state.processes.live {
        HcsCloseProcess(process as *mut c_void);
    }
    for &op in &state.operations.live {
        HcsCloseOperation(op as *mut c_void);
    }

    let counts = hcs::api::live_counts();
    assert_eq!(
        counts.operations, 0,
        "operation handles left open after closing all: {counts:?}"
    );
    assert_eq!(
        counts.system_handles, 0,
        "system handles left open after closing all: {counts:?}"
    );
    assert_eq!(
        counts.process_handles, 0,
        "process handles left open after closing all: {counts:?}"
    );
    assert_eq!(
        outstanding_strings(),
        0,
        "returned strings not freed after all were freed (rule 51)"
    );
    let deadline = Instant::now() + Duration::from_millis(u64::from(CLEANUP_WAIT_MS));
    loop {
        let counts = hcs::api::live_counts();
        if counts.systems == 0 && counts.vms == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "systems or VMs left in the host after terminating and closing everything: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Where the input's calls start: from nothing, or with a system already created or
/// running (so that every input can reach the states a random sequence rarely builds).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Start {
    Nothing,
    /// A create of the small VM, still pending or just finished (its operation is live).
    Creating,
    /// The small VM created (Off).
    Created,
    /// The small VM created and started.
    Running,
}

#[derive(Arbitrary, Debug)]
struct Input {
    start: Start,
    calls: Vec<Call>,
}

/// The calls of a `Start`, made with the harness's own checks.
fn prepare(state: &mut State, start: Start) {
    if matches!(start, Start::Nothing) {
        return;
    }
    run(
        state,
        &Call::CreateOperation {
            context: 1,
            callback: false,
        },
    );
    run(
        state,
        &Call::CreateComputeSystem {
            id: Id::Fresh,
            configuration: Wide::Document(0),
            op: H::Live(0),
            security_descriptor: false,
            out: true,
        },
    );
    if matches!(start, Start::Creating) {
        return;
    }
    let op = state.operations.live[0] as *mut c_void;
    let hr = wait_cleanup(op);
    assert_eq!(
        hr,
        HResult::S_OK,
        "creating the small VM ({SMALL_VM}) failed"
    );
    if matches!(start, Start::Running) {
        let system = *state.systems.live.last().expect("the created system") as *mut c_void;
        // SAFETY: NULL options.
        let hr = check_hr("HcsStartComputeSystem", unsafe {
            HcsStartComputeSystem(system, op, std::ptr::null())
        });
        assert_eq!(hr, HResult::S_OK, "HcsStartComputeSystem of the small VM");
        let hr = wait_cleanup(op);
        assert_eq!(hr, HResult::S_OK, "starting the small VM failed");
    }
}

/// Threads of this process (from /proc/self/task).
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// The host ends a system's worker and VM threads after the system is gone, without joining
/// them. LeakSanitizer (which libFuzzer runs right after an input that allocated more than it
/// freed) misreports the thread-local values of a thread that is exiting at that moment, so
/// wait (at most 2 s) until the threads this input started have ended.
fn wait_for_threads(before: usize) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while thread_count() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// With `FUZZ_ENGINE=fake`, makes the embedded host one on the scripted engine, before the
/// first call chooses the host.
fn choose_engine() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("FUZZ_ENGINE").as_deref() == Ok("fake") {
            let config = hcs_host::HostConfig {
                test_hooks: true,
                ..hcs_host::HostConfig::from_env()
            };
            let engine: std::sync::Arc<dyn hcs_engine::Engine> =
                std::sync::Arc::new(hcs_test_support::FakeEngine::new());
            assert!(hcs::api::use_embedded_host(hcs_host::Host::new(config, vec![engine])));
        }
    });
}

fuzz_target!(|input: Input| {
    choose_engine();
    let threads = thread_count();
    let mut state = State::default();
    prepare(&mut state, input.start);
    for call in input.calls.iter().take(64) {
        run(&mut state, call);
    }
    cleanup(&mut state);
    wait_for_threads(threads);
});
