//! Parsing documents into schema types, with errors that name the JSON path (HCS-API rule 46).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_path_to_error::Segment;

use crate::HResult;

/// A document that is not acceptable: an HRESULT, the JSONPath of the offending value and a
/// message a person can act on (which starts with the path).
///
/// For syntax, type, unknown-property and validation errors the HRESULT is
/// `HCS_E_INVALID_JSON`; the host may build its own with [`DocumentError::new`] (e.g.
/// `ERROR_NOT_SUPPORTED` naming the path of a feature it lacks, HCS-API rule 48).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DocumentError {
    /// The HRESULT that the failing call returns.
    pub hresult: HResult,
    /// JSONPath of the offending value: `$`, `$.VirtualMachine.Chipset`,
    /// `$.VirtualMachine.Devices.Scsi["Primary disk"]`, `$.Layers[0]`.
    pub path: String,
    /// The whole message, `"<path>: <what is wrong>"`.
    pub message: String,
}

impl DocumentError {
    /// An error with `hresult` at `path`; the message is `"<path>: <what>"`.
    pub fn new(hresult: HResult, path: impl Into<String>, what: impl fmt::Display) -> Self {
        let path = path.into();
        let message = format!("{path}: {what}");
        DocumentError {
            hresult,
            path,
            message,
        }
    }

    /// An `HCS_E_INVALID_JSON` error at `path`.
    pub fn invalid_json(path: impl Into<String>, what: impl fmt::Display) -> Self {
        Self::new(HResult::HCS_E_INVALID_JSON, path, what)
    }
}

/// Parses `json` into `T` strictly: malformed JSON, an empty document, trailing characters,
/// wrong value types, unknown properties (case-sensitive), unknown enum strings and
/// out-of-range numbers all fail with `HCS_E_INVALID_JSON` and the JSONPath of the culprit.
/// `null` stands for an absent member. No semantic validation: see [`crate::validate`].
///
/// ```
/// use hcs_schema::{parse, HResult, PauseOptions, PauseSuspensionLevel};
/// let pause: PauseOptions = parse(r#"{ "SuspensionLevel": "Suspend" }"#).unwrap();
/// assert_eq!(pause.suspension_level, Some(PauseSuspensionLevel::Suspend));
///
/// let err = parse::<PauseOptions>(r#"{ "SuspensionLevel": "suspend" }"#).unwrap_err();
/// assert_eq!(err.hresult, HResult::HCS_E_INVALID_JSON);
/// assert_eq!(err.path, "$.SuspensionLevel");
/// ```
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, DocumentError> {
    if json.trim_matches(is_json_whitespace).is_empty() {
        return Err(DocumentError::invalid_json(
            "$",
            "empty document; expected a JSON value",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| from_path_error("$", &e))?;
    de.end()
        .map_err(|e| DocumentError::invalid_json("$", json_error_message(&e)))?;
    Ok(value)
}

/// Parses an already-parsed JSON value (an `Any` member such as
/// `ModifySettingRequest.Settings`) into `T`, with the same strictness as [`parse`];
/// `path` is the JSONPath of `value` in its document and prefixes the error paths.
///
/// ```
/// use hcs_schema::{parse, parse_value, Attachment, ModifySettingRequest};
/// let req: ModifySettingRequest = parse(r#"{"ResourcePath":"VirtualMachine/Devices/Scsi/0/Attachments/1",
///     "RequestType":"Add","Settings":{"Type":"VirtualDisk","Pathh":"/d.img"}}"#).unwrap();
/// let settings = req.settings.unwrap_or_default();
/// let err = parse_value::<Attachment>(&settings, "$.Settings").unwrap_err();
/// assert_eq!(err.path, "$.Settings.Pathh");
/// ```
pub fn parse_value<T: DeserializeOwned>(
    value: &serde_json::Value,
    path: &str,
) -> Result<T, DocumentError> {
    serde_path_to_error::deserialize(value).map_err(|e| from_path_error(path, &e))
}

/// Serializes a document to compact JSON (absent members omitted).
pub fn to_json<T: Serialize + ?Sized>(document: &T) -> String {
    // The schema types serialize infallibly (string map keys, no non-finite floats).
    serde_json::to_string(document).unwrap_or_else(|_| String::from("null"))
}

fn is_json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// JSONPath of member `key` of the value at `parent`: `parent.Key` for identifier-like keys,
/// `parent["key"]` for the others (`$.VirtualMachine.Devices.Scsi["Primary disk"]`,
/// `$.VirtualMachine.Devices.ComPorts["0"]`).
pub fn path_member(parent: &str, key: &str) -> String {
    let mut chars = key.chars();
    let identifier = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        format!("{parent}.{key}")
    } else {
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""));
        format!("{parent}[{quoted}]")
    }
}

/// JSONPath of element `index` of the array at `parent`: `parent[index]`.
pub fn path_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

fn from_path_error(
    base: &str,
    err: &serde_path_to_error::Error<serde_json::Error>,
) -> DocumentError {
    let mut path = base.to_string();
    let mut last_key = None;
    for segment in err.path().iter() {
        last_key = match segment {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        };
        match segment {
            Segment::Seq { index } => path = path_index(&path, *index),
            Segment::Map { key } => path = path_member(&path, key),
            Segment::Enum { variant } => path = path_member(&path, variant),
            Segment::Unknown => {}
        }
    }
    let inner = err.inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let raw = json_error_message(inner);
            let (path, what) = readable(path, last_key, raw);
            DocumentError::invalid_json(path, what)
        }
        _ => DocumentError::invalid_json(path, json_error_message(inner)),
    }
}

/// serde_json's message; syntax errors keep their "at line L column C" and say "malformed
/// JSON", data errors lose the position (the path says where).
fn json_error_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    match err.classify() {
        serde_json::error::Category::Data => {
            let suffix = format!(" at line {} column {}", err.line(), err.column());
            full.strip_suffix(&suffix).unwrap_or(&full).to_string()
        }
        serde_json::error::Category::Eof => format!("malformed JSON: unexpected end: {full}"),
        _ => format!("malformed JSON: {full}"),
    }
}

/// Turns serde's data-error wording into ours. The path of an unknown property ends with
/// its name (serde_path_to_error records it; `last_key`), else the name is appended.
fn readable(path: String, last_key: Option<&str>, raw: String) -> (String, String) {
    if let Some(rest) = raw.strip_prefix("unknown field `") {
        let (key, tail) = if let Some(i) = rest.rfind("`, expected ") {
            (&rest[..i], &rest[i + "`, expected ".len()..])
        } else if let Some(i) = rest.rfind("`, there are no fields") {
            (&rest[..i], "")
        } else {
            return (path, raw);
        };
        let what = if tail.is_empty() {
            format!("unknown property \"{key}\"; this object has no properties (send {{}})")
        } else {
            let expected = tail
                .strip_prefix("one of ")
                .unwrap_or(tail)
                .replace('`', "");
            format!("unknown property \"{key}\"; expected one of {expected}")
        };
        let path = if last_key == Some(key) {
            path
        } else {
            path_member(&path, key)
        };
        return (path, what);
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = raw.strip_prefix(prefix) {
            if let Some(i) = rest.rfind(", expected ") {
                let got = unexpected(&rest[..i]);
                let expected = expected(&rest[i + ", expected ".len()..]);
                return (path, format!("expected {expected}, got {got}"));
            }
        }
    }
    if let Some(rest) = raw.strip_prefix("invalid length ") {
        if let Some(i) = rest.rfind(", expected ") {
            return (
                path,
                format!(
                    "expected {}, got {} elements",
                    expected(&rest[i + ", expected ".len()..]),
                    &rest[..i]
                ),
            );
        }
    }
    (path, raw)
}

/// serde's `Unexpected` wording as JSON: ``integer `-1` `` -> `-1`.
fn unexpected(got: &str) -> String {
    for prefix in ["integer ", "floating point ", "boolean "] {
        if let Some(v) = got.strip_prefix(prefix) {
            return v.trim_matches('`').to_string();
        }
    }
    if let Some(v) = got.strip_prefix("string ") {
        return v.to_string();
    }
    match got {
        "sequence" => "an array".into(),
        "map" => "an object".into(),
        "unit value" | "null" => "null".into(),
        other => other.into(),
    }
}

/// serde's `expected` wording in JSON terms: `u32` -> `an unsigned integer between 0 and
/// 4294967295`.
fn expected(what: &str) -> String {
    match what {
        "u8" => format!("an unsigned integer between 0 and {}", u8::MAX),
        "u16" => format!("an unsigned integer between 0 and {}", u16::MAX),
        "u32" => format!("an unsigned integer between 0 and {}", u32::MAX),
        "u64" => format!("an unsigned integer between 0 and {}", u64::MAX),
        "i8" => format!("an integer between {} and {}", i8::MIN, i8::MAX),
        "i16" => format!("an integer between {} and {}", i16::MIN, i16::MAX),
        "i32" => format!("an integer between {} and {}", i32::MIN, i32::MAX),
        "i64" => format!("an integer between {} and {}", i64::MIN, i64::MAX),
        "a sequence" => "an array".into(),
        "a map" => "an object".into(),
        "a boolean" => "a boolean (true or false)".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(path_member("$", "VirtualMachine"), "$.VirtualMachine");
        assert_eq!(path_member("$.S", "Primary disk"), "$.S[\"Primary disk\"]");
        assert_eq!(path_member("$.C", "0"), "$.C[\"0\"]");
        assert_eq!(path_member("$", "a\"b"), "$[\"a\\\"b\"]");
        assert_eq!(path_index("$.L", 3), "$.L[3]");
    }

    #[test]
    fn readable_messages() {
        let (p, m) = readable(
            "$.P".into(),
            None,
            "unknown field `Countt`, expected one of `Count`, `Limit`".into(),
        );
        assert_eq!(p, "$.P.Countt");
        assert_eq!(
            m,
            "unknown property \"Countt\"; expected one of Count, Limit"
        );
        let (_, m) = readable(
            "$".into(),
            None,
            "invalid type: string \"big\", expected u64".into(),
        );
        assert_eq!(
            m,
            "expected an unsigned integer between 0 and 18446744073709551615, got \"big\""
        );
        let (_, m) = readable(
            "$".into(),
            None,
            "invalid value: integer `-1`, expected u32".into(),
        );
        assert_eq!(
            m,
            "expected an unsigned integer between 0 and 4294967295, got -1"
        );
    }
}
