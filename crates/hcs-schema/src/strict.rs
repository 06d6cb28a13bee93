//! The traits every generated type implements, and the strict serde visitors behind them.
//!
//! serde's derives are lenient in two ways HCS is not: a struct also deserializes from a JSON
//! array of its fields in order, and a unit enum variant also from `{"Variant": null}`. The
//! generated types therefore implement `Deserialize` through the visitors here, which accept
//! only a JSON object for an object type and only an exact string for an enum.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, Visitor};

use crate::{DocumentError, ProcessSignal, SignalValue};

/// A schema enum (HCS-SCHEMA.md section 1, or an extension enum of section 3).
pub trait SchemaEnum: Copy + Eq + fmt::Debug + fmt::Display + 'static {
    /// The name of the enum in the schema, e.g. `"ModifyRequestType"`.
    const SCHEMA_NAME: &'static str;
    /// Every value, in schema order.
    const ALL: &'static [Self];
    /// The exact JSON spelling of the value.
    fn as_str(self) -> &'static str;
    /// The value spelled exactly (case-sensitively) `name`, if any.
    fn from_name(name: &str) -> Option<Self>;
}

/// A schema object type (HCS-SCHEMA.md section 2).
pub trait SchemaObject {
    /// The name of the type in the schema, e.g. `"VirtualMachine_Memory"`.
    const SCHEMA_NAME: &'static str;
    /// The JSON property names the type knows (schema fields and section 3 extensions).
    const FIELDS: &'static [&'static str];
    /// Appends an error for every present `Guid`-typed value (fields, array items, map keys
    /// of `Map<Guid, _>`), at any depth, that does not match the schema's Guid pattern.
    /// `path` is the JSONPath of `self`, e.g. `$` for a document root.
    fn check_guids(&self, path: &str, errors: &mut Vec<DocumentError>);
}

/// Builds an object from the entries of a JSON object (implemented by the generated code
/// through a private serde mirror of each type).
pub(crate) trait FromMap<'de>: Sized {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// Accepts a JSON object only, and hands its entries to `T::from_map`.
pub(crate) struct ObjectVisitor<T>(PhantomData<T>);

impl<T> ObjectVisitor<T> {
    pub(crate) fn new() -> Self {
        ObjectVisitor(PhantomData)
    }
}

impl<'de, T: FromMap<'de> + SchemaObject> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object ({})", T::SCHEMA_NAME)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map)
    }
}

/// Accepts exactly one of the spellings of `T`.
pub(crate) struct EnumVisitor<T>(PhantomData<T>);

impl<T> EnumVisitor<T> {
    pub(crate) fn new() -> Self {
        EnumVisitor(PhantomData)
    }
}

/// The message for a string that is not a value of `T`.
fn unknown_value<T: SchemaEnum>(value: &str) -> String {
    let expected: Vec<String> = T::ALL
        .iter()
        .map(|v| format!("\"{}\"", v.as_str()))
        .collect();
    format!(
        "unknown {} value \"{}\"; expected one of {}",
        T::SCHEMA_NAME,
        value.escape_debug(),
        expected.join(", ")
    )
}

impl<'de, T: SchemaEnum> Visitor<'de> for EnumVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} string", T::SCHEMA_NAME)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        T::from_name(value).ok_or_else(|| E::custom(unknown_value::<T>(value)))
    }
}

/// `SignalProcessOptions.Signal`: a `ProcessSignal` string or an `int32`.
pub(crate) struct SignalVisitor;

impl<'de> Visitor<'de> for SignalVisitor {
    type Value = SignalValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ProcessSignal string or a signal number")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<SignalValue, E> {
        ProcessSignal::from_name(value)
            .map(SignalValue::Named)
            .ok_or_else(|| E::custom(unknown_value::<ProcessSignal>(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<SignalValue, E> {
        i32::try_from(value)
            .map(SignalValue::Number)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<SignalValue, E> {
        i32::try_from(value)
            .map(SignalValue::Number)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
    }
}
