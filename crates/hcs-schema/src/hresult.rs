//! `HResult`: the Windows HRESULT values of HCS-API.md section 6, with names and meanings.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Windows `HRESULT`: a signed 32-bit status code; negative means failure.
///
/// Every code of HCS-API.md section 6 is an associated constant named as on Windows
/// (`HResult::HCS_E_INVALID_JSON`); the `HRESULT_FROM_WIN32` forms are named after their
/// Win32 code (`HResult::ERROR_NOT_SUPPORTED`). In JSON an `HResult` is the signed decimal
/// int32 (`-2143878899`). `Display` and `Debug` print `HCS_E_INVALID_JSON (0x8037010D)`.
///
/// ```
/// use hcs_schema::HResult;
/// let hr = HResult::HCS_E_INVALID_JSON;
/// assert!(hr.failed());
/// assert_eq!(hr.0, -2143878899);
/// assert_eq!(hr.to_string(), "HCS_E_INVALID_JSON (0x8037010D)");
/// assert_eq!(HResult::from_win32(0x32), HResult::ERROR_NOT_SUPPORTED);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct HResult(pub i32);

macro_rules! hresults {
    ($( $(#[$doc:meta])* $ident:ident = $value:literal, $name:literal, $meaning:literal; )*) => {
        impl HResult {
            $(
                $(#[$doc])*
                pub const $ident: HResult = HResult::from_bits($value);
            )*

            /// Every code of HCS-API.md section 6, in table order.
            pub const ALL: &'static [HResult] = &[$(HResult::$ident),*];

            /// The Windows name of the code (`"HCS_E_INVALID_JSON"`,
            /// `"HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)"`), or `None` for a code not in
            /// HCS-API.md section 6.
            pub const fn name(&self) -> Option<&'static str> {
                match self.0 as u32 {
                    $( $value => Some($name), )*
                    _ => None,
                }
            }

            /// The meaning of the code in one line, or `"unknown HRESULT"`.
            pub const fn description(&self) -> &'static str {
                match self.0 as u32 {
                    $( $value => $meaning, )*
                    _ => "unknown HRESULT",
                }
            }
        }
    };
}

hresults! {
    /// Success.
    S_OK = 0x0000_0000, "S_OK", "success";
    /// Not implemented.
    E_NOTIMPL = 0x8000_4001, "E_NOTIMPL", "not implemented";
    /// Invalid pointer (a required out-pointer or callback is NULL).
    E_POINTER = 0x8000_4003, "E_POINTER", "invalid pointer";
    /// Unspecified failure.
    E_FAIL = 0x8000_4005, "E_FAIL", "unspecified failure";
    /// Unexpected failure (a broken internal invariant).
    E_UNEXPECTED = 0x8000_FFFF, "E_UNEXPECTED", "unexpected failure";
    /// Invalid argument (`HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER)`).
    E_INVALIDARG = 0x8007_0057, "E_INVALIDARG", "invalid argument";
    /// Out of memory (`HRESULT_FROM_WIN32(ERROR_OUTOFMEMORY)`).
    E_OUTOFMEMORY = 0x8007_000E, "E_OUTOFMEMORY", "out of memory";
    /// Access denied (`HRESULT_FROM_WIN32(ERROR_ACCESS_DENIED)`).
    E_ACCESSDENIED = 0x8007_0005, "E_ACCESSDENIED", "access denied";
    /// Invalid handle (`HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE)`).
    E_HANDLE = 0x8007_0006, "E_HANDLE", "invalid handle";
    /// `HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)`: the HRESULT 0x80070002, not the Win32 code 2.
    ERROR_FILE_NOT_FOUND = 0x8007_0002, "HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)", "file not found";
    /// `HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)`: the HRESULT 0x80070003, not the Win32 code 3.
    ERROR_PATH_NOT_FOUND = 0x8007_0003, "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)", "path not found";
    /// `HRESULT_FROM_WIN32(ERROR_INVALID_DATA)`: the HRESULT 0x8007000D, not the Win32 code 13.
    ERROR_INVALID_DATA = 0x8007_000D, "HRESULT_FROM_WIN32(ERROR_INVALID_DATA)", "invalid data";
    /// `HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)`: the HRESULT 0x80070032, not the Win32 code 50.
    ERROR_NOT_SUPPORTED = 0x8007_0032, "HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)", "request not supported";
    /// `HRESULT_FROM_WIN32(ERROR_FILE_EXISTS)`: the HRESULT 0x80070050, not the Win32 code 80.
    ERROR_FILE_EXISTS = 0x8007_0050, "HRESULT_FROM_WIN32(ERROR_FILE_EXISTS)", "file exists";
    /// `HRESULT_FROM_WIN32(ERROR_NOT_FOUND)`: the HRESULT 0x80070490, not the Win32 code 1168.
    ERROR_NOT_FOUND = 0x8007_0490, "HRESULT_FROM_WIN32(ERROR_NOT_FOUND)", "element not found";
    /// The system exited unexpectedly while starting.
    HCS_E_TERMINATED_DURING_START = 0x8037_0100, "HCS_E_TERMINATED_DURING_START", "system exited unexpectedly while starting";
    /// The container OS differs from the host OS.
    HCS_E_IMAGE_MISMATCH = 0x8037_0101, "HCS_E_IMAGE_MISMATCH", "container OS differs from host OS";
    /// The VM cannot start: a platform feature is missing.
    HCS_E_HYPERV_NOT_INSTALLED = 0x8037_0102, "HCS_E_HYPERV_NOT_INSTALLED", "VM cannot start: platform feature missing";
    /// The request is invalid in the current state.
    HCS_E_INVALID_STATE = 0x8037_0105, "HCS_E_INVALID_STATE", "request invalid in the current state";
    /// The system exited unexpectedly.
    HCS_E_UNEXPECTED_EXIT = 0x8037_0106, "HCS_E_UNEXPECTED_EXIT", "system exited unexpectedly";
    /// The system was forcibly stopped.
    HCS_E_TERMINATED = 0x8037_0107, "HCS_E_TERMINATED", "system was forcibly stopped";
    /// Could not connect to the guest.
    HCS_E_CONNECT_FAILED = 0x8037_0108, "HCS_E_CONNECT_FAILED", "could not connect to the guest";
    /// The guest did not answer in time.
    HCS_E_CONNECTION_TIMEOUT = 0x8037_0109, "HCS_E_CONNECTION_TIMEOUT", "guest did not answer in time";
    /// The guest connection closed.
    HCS_E_CONNECTION_CLOSED = 0x8037_010A, "HCS_E_CONNECTION_CLOSED", "guest connection closed";
    /// The guest got an unknown message.
    HCS_E_UNKNOWN_MESSAGE = 0x8037_010B, "HCS_E_UNKNOWN_MESSAGE", "guest got an unknown message";
    /// No common protocol version with the guest.
    HCS_E_UNSUPPORTED_PROTOCOL_VERSION = 0x8037_010C, "HCS_E_UNSUPPORTED_PROTOCOL_VERSION", "no common protocol version with the guest";
    /// Invalid JSON document.
    HCS_E_INVALID_JSON = 0x8037_010D, "HCS_E_INVALID_JSON", "invalid JSON document";
    /// No system with that id.
    HCS_E_SYSTEM_NOT_FOUND = 0x8037_010E, "HCS_E_SYSTEM_NOT_FOUND", "no system with that id";
    /// The id is already in use.
    HCS_E_SYSTEM_ALREADY_EXISTS = 0x8037_010F, "HCS_E_SYSTEM_ALREADY_EXISTS", "id already in use";
    /// The system is not running.
    HCS_E_SYSTEM_ALREADY_STOPPED = 0x8037_0110, "HCS_E_SYSTEM_ALREADY_STOPPED", "system not running";
    /// Host/guest protocol violation.
    HCS_E_PROTOCOL_ERROR = 0x8037_0111, "HCS_E_PROTOCOL_ERROR", "host/guest protocol violation";
    /// Layer of unknown format.
    HCS_E_INVALID_LAYER = 0x8037_0112, "HCS_E_INVALID_LAYER", "layer of unknown format";
    /// The image needs a Windows Insider build.
    HCS_E_WINDOWS_INSIDER_REQUIRED = 0x8037_0113, "HCS_E_WINDOWS_INSIDER_REQUIRED", "image needs a Windows Insider build";
    /// A required feature is not installed (the service is not available).
    HCS_E_SERVICE_NOT_AVAILABLE = 0x8037_0114, "HCS_E_SERVICE_NOT_AVAILABLE", "required feature not installed";
    /// The operation was not started.
    HCS_E_OPERATION_NOT_STARTED = 0x8037_0115, "HCS_E_OPERATION_NOT_STARTED", "operation not started";
    /// The operation is already running.
    HCS_E_OPERATION_ALREADY_STARTED = 0x8037_0116, "HCS_E_OPERATION_ALREADY_STARTED", "operation already running";
    /// The operation is still running.
    HCS_E_OPERATION_PENDING = 0x8037_0117, "HCS_E_OPERATION_PENDING", "operation still running";
    /// The wait ended before the operation.
    HCS_E_OPERATION_TIMEOUT = 0x8037_0118, "HCS_E_OPERATION_TIMEOUT", "wait ended before the operation";
    /// An event callback is already registered on the handle.
    HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET = 0x8037_0119, "HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET", "an event callback is already registered on the handle";
    /// No memory for the operation result.
    HCS_E_OPERATION_RESULT_ALLOCATION_FAILED = 0x8037_011A, "HCS_E_OPERATION_RESULT_ALLOCATION_FAILED", "no memory for the result";
    /// The caller lacks the rights to use the service.
    HCS_E_ACCESS_DENIED = 0x8037_011B, "HCS_E_ACCESS_DENIED", "caller lacks rights";
    /// The guest reported a critical error; it stopped or restarted.
    HCS_E_GUEST_CRITICAL_ERROR = 0x8037_011C, "HCS_E_GUEST_CRITICAL_ERROR", "guest reported a critical error; stopped or restarted";
    /// Process information is unavailable.
    HCS_E_PROCESS_INFO_NOT_AVAILABLE = 0x8037_011D, "HCS_E_PROCESS_INFO_NOT_AVAILABLE", "process information unavailable";
    /// The service connection was lost.
    HCS_E_SERVICE_DISCONNECT = 0x8037_011E, "HCS_E_SERVICE_DISCONNECT", "service connection lost";
    /// The process already exited.
    HCS_E_PROCESS_ALREADY_STOPPED = 0x8037_011F, "HCS_E_PROCESS_ALREADY_STOPPED", "process already exited";
    /// The system is not configured for the operation.
    HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION = 0x8037_0120, "HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION", "system not configured for the operation";
    /// The operation was already cancelled.
    HCS_E_OPERATION_ALREADY_CANCELLED = 0x8037_0121, "HCS_E_OPERATION_ALREADY_CANCELLED", "operation already cancelled";
}

impl HResult {
    /// The HRESULT whose 32 bits are `bits` (e.g. `0x8037010D`).
    pub const fn from_bits(bits: u32) -> HResult {
        HResult(bits as i32)
    }

    /// `HRESULT_FROM_WIN32(code)`: 0x8007xxxx for a Win32 code in 1..=0xFFFF; 0 stays `S_OK`
    /// and a value that is already an HRESULT (high bit set) is kept.
    pub const fn from_win32(code: u32) -> HResult {
        if code as i32 <= 0 {
            HResult(code as i32)
        } else {
            HResult(((code & 0xFFFF) | 0x8007_0000) as i32)
        }
    }

    /// True for success codes (`>= 0`).
    pub const fn succeeded(&self) -> bool {
        self.0 >= 0
    }

    /// True for failure codes (`< 0`).
    pub const fn failed(&self) -> bool {
        self.0 < 0
    }

    /// The code as the unsigned 32-bit value usually written in hexadecimal.
    pub const fn as_u32(&self) -> u32 {
        self.0 as u32
    }

    /// The legacy v1 form (`ERROR_VMCOMPUTE_*`, 0xC037xxxx) of an HCS code in
    /// 0x80370100..=0x80370113; `None` for every other code. We never return these forms
    /// (HCS-API rule 45); they exist for logs and conformance tests.
    pub const fn legacy_v1_form(&self) -> Option<u32> {
        let v = self.0 as u32;
        if v >= 0x8037_0100 && v <= 0x8037_0113 {
            Some((v & 0xFFFF) | 0xC037_0000)
        } else {
            None
        }
    }

    /// The 0x8037xxxx code of a legacy v1 form 0xC0370100..=0xC0370113.
    pub const fn from_legacy_v1(code: u32) -> Option<HResult> {
        if code >= 0xC037_0100 && code <= 0xC037_0113 {
            Some(HResult(((code & 0xFFFF) | 0x8037_0000) as i32))
        } else {
            None
        }
    }
}

impl fmt::Display for HResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (0x{:08X})", self.as_u32()),
            None => write!(f, "0x{:08X}", self.as_u32()),
        }
    }
}

impl fmt::Debug for HResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<i32> for HResult {
    fn from(value: i32) -> Self {
        HResult(value)
    }
}

impl From<HResult> for i32 {
    fn from(value: HResult) -> Self {
        value.0
    }
}

impl Serialize for HResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i32(self.0)
    }
}

impl<'de> Deserialize<'de> for HResult {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        i32::deserialize(deserializer).map(HResult)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HCS-API.md section 6, column by column: name, HRESULT, int32.
    const TABLE: &[(&str, u32, i32)] = &[
        ("S_OK", 0x0000_0000, 0),
        ("E_NOTIMPL", 0x8000_4001, -2147467263),
        ("E_POINTER", 0x8000_4003, -2147467261),
        ("E_FAIL", 0x8000_4005, -2147467259),
        ("E_UNEXPECTED", 0x8000_FFFF, -2147418113),
        ("E_INVALIDARG", 0x8007_0057, -2147024809),
        ("E_OUTOFMEMORY", 0x8007_000E, -2147024882),
        ("E_ACCESSDENIED", 0x8007_0005, -2147024891),
        ("E_HANDLE", 0x8007_0006, -2147024890),
        (
            "HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)",
            0x8007_0002,
            -2147024894,
        ),
        (
            "HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND)",
            0x8007_0003,
            -2147024893,
        ),
        (
            "HRESULT_FROM_WIN32(ERROR_INVALID_DATA)",
            0x8007_000D,
            -2147024883,
        ),
        (
            "HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)",
            0x8007_0032,
            -2147024846,
        ),
        (
            "HRESULT_FROM_WIN32(ERROR_FILE_EXISTS)",
            0x8007_0050,
            -2147024816,
        ),
        (
            "HRESULT_FROM_WIN32(ERROR_NOT_FOUND)",
            0x8007_0490,
            -2147023728,
        ),
        ("HCS_E_TERMINATED_DURING_START", 0x8037_0100, -2143878912),
        ("HCS_E_IMAGE_MISMATCH", 0x8037_0101, -2143878911),
        ("HCS_E_HYPERV_NOT_INSTALLED", 0x8037_0102, -2143878910),
        ("HCS_E_INVALID_STATE", 0x8037_0105, -2143878907),
        ("HCS_E_UNEXPECTED_EXIT", 0x8037_0106, -2143878906),
        ("HCS_E_TERMINATED", 0x8037_0107, -2143878905),
        ("HCS_E_CONNECT_FAILED", 0x8037_0108, -2143878904),
        ("HCS_E_CONNECTION_TIMEOUT", 0x8037_0109, -2143878903),
        ("HCS_E_CONNECTION_CLOSED", 0x8037_010A, -2143878902),
        ("HCS_E_UNKNOWN_MESSAGE", 0x8037_010B, -2143878901),
        (
            "HCS_E_UNSUPPORTED_PROTOCOL_VERSION",
            0x8037_010C,
            -2143878900,
        ),
        ("HCS_E_INVALID_JSON", 0x8037_010D, -2143878899),
        ("HCS_E_SYSTEM_NOT_FOUND", 0x8037_010E, -2143878898),
        ("HCS_E_SYSTEM_ALREADY_EXISTS", 0x8037_010F, -2143878897),
        ("HCS_E_SYSTEM_ALREADY_STOPPED", 0x8037_0110, -2143878896),
        ("HCS_E_PROTOCOL_ERROR", 0x8037_0111, -2143878895),
        ("HCS_E_INVALID_LAYER", 0x8037_0112, -2143878894),
        ("HCS_E_WINDOWS_INSIDER_REQUIRED", 0x8037_0113, -2143878893),
        ("HCS_E_SERVICE_NOT_AVAILABLE", 0x8037_0114, -2143878892),
        ("HCS_E_OPERATION_NOT_STARTED", 0x8037_0115, -2143878891),
        ("HCS_E_OPERATION_ALREADY_STARTED", 0x8037_0116, -2143878890),
        ("HCS_E_OPERATION_PENDING", 0x8037_0117, -2143878889),
        ("HCS_E_OPERATION_TIMEOUT", 0x8037_0118, -2143878888),
        (
            "HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET",
            0x8037_0119,
            -2143878887,
        ),
        (
            "HCS_E_OPERATION_RESULT_ALLOCATION_FAILED",
            0x8037_011A,
            -2143878886,
        ),
        ("HCS_E_ACCESS_DENIED", 0x8037_011B, -2143878885),
        ("HCS_E_GUEST_CRITICAL_ERROR", 0x8037_011C, -2143878884),
        ("HCS_E_PROCESS_INFO_NOT_AVAILABLE", 0x8037_011D, -2143878883),
        ("HCS_E_SERVICE_DISCONNECT", 0x8037_011E, -2143878882),
        ("HCS_E_PROCESS_ALREADY_STOPPED", 0x8037_011F, -2143878881),
        (
            "HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION",
            0x8037_0120,
            -2143878880,
        ),
        (
            "HCS_E_OPERATION_ALREADY_CANCELLED",
            0x8037_0121,
            -2143878879,
        ),
    ];

    #[test]
    fn section_6_table_names_and_values() {
        assert_eq!(HResult::ALL.len(), TABLE.len());
        for (&(name, hex, int), &hr) in TABLE.iter().zip(HResult::ALL) {
            assert_eq!(hr.as_u32(), hex, "{name}");
            assert_eq!(hr.0, int, "{name}");
            assert_eq!(hr.name(), Some(name));
            assert_ne!(hr.description(), "unknown HRESULT");
        }
        let hcs = TABLE
            .iter()
            .filter(|(n, _, _)| n.starts_with("HCS_E_"))
            .count();
        assert_eq!(hcs, 32);
    }

    #[test]
    fn named_constants_have_the_table_values() {
        assert_eq!(HResult::S_OK.0, 0);
        assert_eq!(HResult::E_NOTIMPL.as_u32(), 0x8000_4001);
        assert_eq!(HResult::E_HANDLE.as_u32(), 0x8007_0006);
        assert_eq!(HResult::ERROR_NOT_FOUND.as_u32(), 0x8007_0490);
        assert_eq!(HResult::HCS_E_INVALID_JSON.0, -2143878899);
        assert_eq!(
            HResult::HCS_E_OPERATION_ALREADY_CANCELLED.as_u32(),
            0x8037_0121
        );
    }

    #[test]
    fn from_win32_builds_the_8007_forms() {
        assert_eq!(HResult::from_win32(0), HResult::S_OK);
        assert_eq!(HResult::from_win32(2), HResult::ERROR_FILE_NOT_FOUND);
        assert_eq!(HResult::from_win32(3), HResult::ERROR_PATH_NOT_FOUND);
        assert_eq!(HResult::from_win32(5), HResult::E_ACCESSDENIED);
        assert_eq!(HResult::from_win32(6), HResult::E_HANDLE);
        assert_eq!(HResult::from_win32(0xD), HResult::ERROR_INVALID_DATA);
        assert_eq!(HResult::from_win32(14), HResult::E_OUTOFMEMORY);
        assert_eq!(HResult::from_win32(0x32), HResult::ERROR_NOT_SUPPORTED);
        assert_eq!(HResult::from_win32(80), HResult::ERROR_FILE_EXISTS);
        assert_eq!(HResult::from_win32(87), HResult::E_INVALIDARG);
        assert_eq!(HResult::from_win32(0x490), HResult::ERROR_NOT_FOUND);
        assert_eq!(
            HResult::from_win32(0x8037_010D),
            HResult::HCS_E_INVALID_JSON
        );
    }

    #[test]
    fn rule_45_legacy_v1_forms() {
        assert_eq!(
            HResult::HCS_E_SYSTEM_NOT_FOUND.legacy_v1_form(),
            Some(0xC037_010E)
        );
        assert_eq!(
            HResult::HCS_E_SYSTEM_ALREADY_STOPPED.legacy_v1_form(),
            Some(0xC037_0110)
        );
        assert_eq!(
            HResult::HCS_E_INVALID_STATE.legacy_v1_form(),
            Some(0xC037_0105)
        );
        assert_eq!(
            HResult::HCS_E_TERMINATED_DURING_START.legacy_v1_form(),
            Some(0xC037_0100)
        );
        assert_eq!(
            HResult::HCS_E_WINDOWS_INSIDER_REQUIRED.legacy_v1_form(),
            Some(0xC037_0113)
        );
        assert_eq!(HResult::HCS_E_SERVICE_NOT_AVAILABLE.legacy_v1_form(), None);
        assert_eq!(HResult::E_FAIL.legacy_v1_form(), None);
        assert_eq!(
            HResult::from_legacy_v1(0xC037_010E),
            Some(HResult::HCS_E_SYSTEM_NOT_FOUND)
        );
        assert_eq!(HResult::from_legacy_v1(0xC037_0114), None);
        for hr in HResult::ALL {
            assert!(
                hr.as_u32() & 0xFFFF_0000 != 0xC037_0000,
                "{hr} is a legacy form"
            );
        }
    }

    #[test]
    fn display_and_debug() {
        assert_eq!(
            HResult::HCS_E_INVALID_JSON.to_string(),
            "HCS_E_INVALID_JSON (0x8037010D)"
        );
        assert_eq!(
            format!("{:?}", HResult::ERROR_NOT_SUPPORTED),
            "HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED) (0x80070032)"
        );
        assert_eq!(HResult(0x1234).to_string(), "0x00001234");
        assert_eq!(HResult(-1).to_string(), "0xFFFFFFFF");
        assert_eq!(HResult(-1).name(), None);
        assert_eq!(HResult(-1).description(), "unknown HRESULT");
    }

    #[test]
    fn success_and_failure() {
        assert!(HResult::S_OK.succeeded());
        assert!(!HResult::S_OK.failed());
        assert!(HResult(1).succeeded());
        assert!(HResult::E_FAIL.failed());
    }

    #[test]
    fn serde_as_signed_int32() {
        let json = serde_json::to_string(&HResult::HCS_E_INVALID_JSON).unwrap_or_default();
        assert_eq!(json, "-2143878899");
        let back: Result<HResult, _> = serde_json::from_str("-2143878899");
        assert_eq!(back.ok(), Some(HResult::HCS_E_INVALID_JSON));
        assert!(serde_json::from_str::<HResult>("2147483648").is_err());
    }
}
