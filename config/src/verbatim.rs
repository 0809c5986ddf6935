//! Free-form JSON sections (`llm`, `web`, `metrics`, plugin settings) kept as written.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::secret::redact_value;

/// JSON kept verbatim for a consumer this crate does not know; prints with secrets as `***`.
///
/// `Debug` and `Serialize` redact every key that looks like a secret (`password`, `token`,
/// `api_key`, `*_secret`, ...); [`Verbatim::value`] gives the real content.
#[derive(Clone, PartialEq, Default)]
pub struct Verbatim(Value);

impl Verbatim {
    /// Wraps a JSON value, e.g. when building a configuration in code.
    pub fn new(value: Value) -> Self {
        Self(value)
    }

    /// The JSON as written, secrets included; hand it only to the section's consumer.
    pub fn value(&self) -> &Value {
        &self.0
    }

    /// Takes the JSON out, secrets included.
    pub fn into_value(self) -> Value {
        self.0
    }

    /// Whether the section was absent (or `null`), so consumers can tell "off" from "empty".
    pub fn is_absent(&self) -> bool {
        self.0.is_null()
    }

    /// A copy with secret-looking values replaced by `***`, for printing.
    pub fn redacted(&self) -> Value {
        redact_value(&self.0)
    }
}

impl From<Value> for Verbatim {
    fn from(value: Value) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Verbatim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl Serialize for Verbatim {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Verbatim {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self)
    }
}
