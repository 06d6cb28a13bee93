//! The C types of `computedefs.h` in Rust: handles, callbacks, structs and enum values,
//! with the Windows layouts (HCS-API §4.1, §5).

#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::c_void;

/// `HRESULT`.
pub type HRESULT = i32;
/// `DWORD`.
pub type DWORD = u32;
/// `WCHAR`: UTF-16.
pub type WCHAR = u16;
/// `PCWSTR`.
pub type PCWSTR = *const WCHAR;
/// `PWSTR`.
pub type PWSTR = *mut WCHAR;
/// `HANDLE`.
pub type HANDLE = *mut c_void;
/// `HLOCAL`.
pub type HLOCAL = *mut c_void;
/// `HCS_OPERATION`.
pub type HCS_OPERATION = *mut c_void;
/// `HCS_SYSTEM`.
pub type HCS_SYSTEM = *mut c_void;
/// `HCS_PROCESS`.
pub type HCS_PROCESS = *mut c_void;
/// `SECURITY_DESCRIPTOR`: only null is accepted.
pub type SECURITY_DESCRIPTOR = c_void;

/// `HCS_OPERATION_COMPLETION`.
pub type HCS_OPERATION_COMPLETION =
    Option<unsafe extern "C" fn(operation: HCS_OPERATION, context: *mut c_void)>;
/// `HCS_EVENT_CALLBACK`.
pub type HCS_EVENT_CALLBACK =
    Option<unsafe extern "C" fn(event: *mut HCS_EVENT, context: *mut c_void)>;

/// `HCS_EVENT` (24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HCS_EVENT {
    /// `HCS_EVENT_TYPE`.
    pub Type: u32,
    /// JSON or null; valid during the callback only.
    pub EventData: PCWSTR,
    /// The completed operation, for `HcsEventOperationCallback`.
    pub Operation: HCS_OPERATION,
}

/// `HCS_PROCESS_INFORMATION` (32 bytes); std handles are file descriptors.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HCS_PROCESS_INFORMATION {
    /// The process id in the guest.
    pub ProcessId: DWORD,
    /// Always 0.
    pub Reserved: DWORD,
    /// `(HANDLE)(intptr_t)fd` or null.
    pub StdInput: HANDLE,
    /// `(HANDLE)(intptr_t)fd` or null.
    pub StdOutput: HANDLE,
    /// `(HANDLE)(intptr_t)fd` or null.
    pub StdError: HANDLE,
}

/// `HCS_CREATE_OPTIONS_1` (48 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HCS_CREATE_OPTIONS_1 {
    /// `HcsCreateOptions_1`.
    pub Version: u32,
    /// Null.
    pub UserToken: HANDLE,
    /// Null.
    pub SecurityDescriptor: *const SECURITY_DESCRIPTOR,
    /// `HCS_EVENT_OPTIONS`.
    pub CallbackOptions: u32,
    /// The event callback's context.
    pub CallbackContext: *mut c_void,
    /// The event callback.
    pub Callback: HCS_EVENT_CALLBACK,
}

/// A struct's layout as the header must declare it.
pub struct StructLayout {
    /// The C name.
    pub name: &'static str,
    /// `sizeof`.
    pub size: usize,
    /// `offsetof` of each field.
    pub fields: &'static [(&'static str, usize)],
}

macro_rules! layout {
    ($ty:ident { $($field:ident),* }) => {
        StructLayout {
            name: stringify!($ty),
            size: std::mem::size_of::<$ty>(),
            fields: &[$((stringify!($field), std::mem::offset_of!($ty, $field))),*],
        }
    };
}

/// Every struct of the header.
pub const STRUCTS: &[StructLayout] = &[
    layout!(HCS_EVENT {
        Type,
        EventData,
        Operation
    }),
    layout!(HCS_PROCESS_INFORMATION {
        ProcessId,
        Reserved,
        StdInput,
        StdOutput,
        StdError
    }),
    layout!(HCS_CREATE_OPTIONS_1 {
        Version,
        UserToken,
        SecurityDescriptor,
        CallbackOptions,
        CallbackContext,
        Callback
    }),
];

/// Every enum of the header with every enumerator's value (as the 32 bits C stores).
pub const ENUMS: &[(&str, &[(&str, i64)])] = &[
    (
        "HCS_OPERATION_TYPE",
        &[
            ("HcsOperationTypeNone", -1),
            ("HcsOperationTypeEnumerate", 0),
            ("HcsOperationTypeCreate", 1),
            ("HcsOperationTypeStart", 2),
            ("HcsOperationTypeShutdown", 3),
            ("HcsOperationTypePause", 4),
            ("HcsOperationTypeResume", 5),
            ("HcsOperationTypeSave", 6),
            ("HcsOperationTypeTerminate", 7),
            ("HcsOperationTypeModify", 8),
            ("HcsOperationTypeGetProperties", 9),
            ("HcsOperationTypeCreateProcess", 10),
            ("HcsOperationTypeSignalProcess", 11),
            ("HcsOperationTypeGetProcessInfo", 12),
            ("HcsOperationTypeGetProcessProperties", 13),
            ("HcsOperationTypeModifyProcess", 14),
            ("HcsOperationTypeCrash", 15),
            ("HcsOperationTypeReserved1", 16),
            ("HcsOperationTypeReserved2", 17),
            ("HcsOperationTypeReserved3", 18),
            ("HcsOperationTypeLiveMigration", 19),
        ],
    ),
    (
        "HCS_EVENT_TYPE",
        &[
            ("HcsEventInvalid", 0x0000_0000),
            ("HcsEventSystemExited", 0x0000_0001),
            ("HcsEventSystemCrashInitiated", 0x0000_0002),
            ("HcsEventSystemCrashReport", 0x0000_0003),
            ("HcsEventSystemRdpEnhancedModeStateChanged", 0x0000_0004),
            ("HcsEventSystemSiloJobCreated", 0x0000_0005),
            ("HcsEventSystemGuestConnectionClosed", 0x0000_0006),
            ("HcsEventProcessExited", 0x0001_0000),
            ("HcsEventOperationCallback", 0x0100_0000),
            ("HcsEventServiceDisconnect", 0x0200_0000),
            ("HcsEventGroupVmLifecycle", 0x8000_0002),
            ("HcsEventGroupLiveMigration", 0x8000_0003),
            ("HcsEventGroupOperationInfo", 0xC000_0001),
        ],
    ),
    (
        "HCS_EVENT_OPTIONS",
        &[
            ("HcsEventOptionNone", 0),
            ("HcsEventOptionEnableOperationCallbacks", 1),
            ("HcsEventOptionEnableVmLifecycle", 2),
            ("HcsEventOptionEnableLiveMigrationEvents", 4),
        ],
    ),
    (
        "HCS_OPERATION_OPTIONS",
        &[
            ("HcsOperationOptionNone", 0),
            ("HcsOperationOptionProgressUpdate", 1),
            ("HcsOperationOptionReserved1", 2),
        ],
    ),
    (
        "HCS_RESOURCE_TYPE",
        &[
            ("HcsResourceTypeNone", 0),
            ("HcsResourceTypeFile", 1),
            ("HcsResourceTypeJob", 2),
            ("HcsResourceTypeComObject", 3),
            ("HcsResourceTypeSocket", 4),
        ],
    ),
    ("HCS_CREATE_OPTIONS", &[("HcsCreateOptions_1", 0x0001_0000)]),
    (
        "HCS_NOTIFICATIONS",
        &[
            ("HcsNotificationInvalid", 0x0000_0000),
            ("HcsNotificationSystemExited", 0x0000_0001),
            ("HcsNotificationSystemCreateCompleted", 0x0000_0002),
            ("HcsNotificationSystemStartCompleted", 0x0000_0003),
            ("HcsNotificationSystemPauseCompleted", 0x0000_0004),
            ("HcsNotificationSystemResumeCompleted", 0x0000_0005),
            ("HcsNotificationSystemCrashReport", 0x0000_0006),
            ("HcsNotificationSystemSiloJobCreated", 0x0000_0007),
            ("HcsNotificationSystemSaveCompleted", 0x0000_0008),
            (
                "HcsNotificationSystemRdpEnhancedModeStateChanged",
                0x0000_0009,
            ),
            ("HcsNotificationSystemShutdownFailed", 0x0000_000A),
            ("HcsNotificationSystemShutdownCompleted", 0x0000_000A),
            ("HcsNotificationSystemGetPropertiesCompleted", 0x0000_000B),
            ("HcsNotificationSystemModifyCompleted", 0x0000_000C),
            ("HcsNotificationSystemCrashInitiated", 0x0000_000D),
            ("HcsNotificationSystemGuestConnectionClosed", 0x0000_000E),
            ("HcsNotificationSystemOperationCompletion", 0x0000_000F),
            ("HcsNotificationSystemPassThru", 0x0000_0010),
            ("HcsNotificationOperationProgressUpdate", 0x0000_0100),
            ("HcsNotificationProcessExited", 0x0001_0000),
            ("HcsNotificationServiceDisconnect", 0x0100_0000),
            ("HcsNotificationFlagsReserved", 0xF000_0000),
        ],
    ),
    (
        "HCS_NOTIFICATION_FLAGS",
        &[
            ("HcsNotificationFlagSuccess", 0x0000_0000),
            ("HcsNotificationFlagFailure", 0x8000_0000),
        ],
    ),
];

/// Other constants of the header: `(name, value)`.
pub const CONSTANTS: &[(&str, u64)] = &[
    ("INFINITE", 0xFFFF_FFFF),
    ("GENERIC_ALL", 0x1000_0000),
    ("HCS_INVALID_OPERATION_ID", u64::MAX),
];

// The Rust API's enums must carry the same values as the header's.
const _: () = {
    assert!(hcs::OperationType::Crash as i32 == 15);
    assert!(hcs::EventType::GroupOperationInfo as u32 == 0xC000_0001);
    assert!(hcs::event_options::ALL == 0x7);
    assert!(hcs::INFINITE == 0xFFFF_FFFF);
};

#[cfg(test)]
mod tests {
    use super::ENUMS;
    use hcs::{EventType, OperationType};

    fn table(name: &str) -> &'static [(&'static str, i64)] {
        ENUMS
            .iter()
            .find(|(enum_name, _)| *enum_name == name)
            .map(|(_, values)| *values)
            .unwrap_or_else(|| panic!("{name} is not in ENUMS"))
    }

    fn value(name: &str, enumerator: &str) -> i64 {
        table(name)
            .iter()
            .find(|(n, _)| *n == enumerator)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{enumerator} is not in {name}"))
    }

    // Exhaustive matches: a variant added to the Rust API fails to compile here until the
    // header table (and so the header, which the header test compares) names it.
    fn operation_type_name(t: OperationType) -> &'static str {
        match t {
            OperationType::None => "HcsOperationTypeNone",
            OperationType::Enumerate => "HcsOperationTypeEnumerate",
            OperationType::Create => "HcsOperationTypeCreate",
            OperationType::Start => "HcsOperationTypeStart",
            OperationType::Shutdown => "HcsOperationTypeShutdown",
            OperationType::Pause => "HcsOperationTypePause",
            OperationType::Resume => "HcsOperationTypeResume",
            OperationType::Save => "HcsOperationTypeSave",
            OperationType::Terminate => "HcsOperationTypeTerminate",
            OperationType::Modify => "HcsOperationTypeModify",
            OperationType::GetProperties => "HcsOperationTypeGetProperties",
            OperationType::CreateProcess => "HcsOperationTypeCreateProcess",
            OperationType::SignalProcess => "HcsOperationTypeSignalProcess",
            OperationType::GetProcessInfo => "HcsOperationTypeGetProcessInfo",
            OperationType::GetProcessProperties => "HcsOperationTypeGetProcessProperties",
            OperationType::ModifyProcess => "HcsOperationTypeModifyProcess",
            OperationType::Crash => "HcsOperationTypeCrash",
        }
    }

    fn event_type_name(t: EventType) -> &'static str {
        match t {
            EventType::Invalid => "HcsEventInvalid",
            EventType::SystemExited => "HcsEventSystemExited",
            EventType::SystemCrashInitiated => "HcsEventSystemCrashInitiated",
            EventType::SystemCrashReport => "HcsEventSystemCrashReport",
            EventType::SystemRdpEnhancedModeStateChanged => {
                "HcsEventSystemRdpEnhancedModeStateChanged"
            }
            EventType::SystemSiloJobCreated => "HcsEventSystemSiloJobCreated",
            EventType::SystemGuestConnectionClosed => "HcsEventSystemGuestConnectionClosed",
            EventType::ProcessExited => "HcsEventProcessExited",
            EventType::OperationCallback => "HcsEventOperationCallback",
            EventType::ServiceDisconnect => "HcsEventServiceDisconnect",
            EventType::GroupVmLifecycle => "HcsEventGroupVmLifecycle",
            EventType::GroupLiveMigration => "HcsEventGroupLiveMigration",
            EventType::GroupOperationInfo => "HcsEventGroupOperationInfo",
        }
    }

    #[test]
    fn the_header_tables_carry_the_values_of_the_rust_api() {
        use OperationType as O;
        for t in [
            O::None,
            O::Enumerate,
            O::Create,
            O::Start,
            O::Shutdown,
            O::Pause,
            O::Resume,
            O::Save,
            O::Terminate,
            O::Modify,
            O::GetProperties,
            O::CreateProcess,
            O::SignalProcess,
            O::GetProcessInfo,
            O::GetProcessProperties,
            O::ModifyProcess,
            O::Crash,
        ] {
            let name = operation_type_name(t);
            assert_eq!(value("HCS_OPERATION_TYPE", name), t as i32 as i64, "{name}");
        }
        use EventType as E;
        for t in [
            E::Invalid,
            E::SystemExited,
            E::SystemCrashInitiated,
            E::SystemCrashReport,
            E::SystemRdpEnhancedModeStateChanged,
            E::SystemSiloJobCreated,
            E::SystemGuestConnectionClosed,
            E::ProcessExited,
            E::OperationCallback,
            E::ServiceDisconnect,
            E::GroupVmLifecycle,
            E::GroupLiveMigration,
            E::GroupOperationInfo,
        ] {
            let name = event_type_name(t);
            assert_eq!(value("HCS_EVENT_TYPE", name), t as u32 as i64, "{name}");
        }
    }
}
