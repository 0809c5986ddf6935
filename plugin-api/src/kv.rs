//! Plugin key-value storage payloads (`rosey.db.kv.<plugin>.<op>`), served by the database
//! service so plugins keep data without touching SQLite.

use serde::{Deserialize, Serialize};

/// The largest value a key may hold, in bytes of its JSON text.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// The most items one `list` page returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Request `get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Get {
    /// The channel whose storage this is, for a plugin that keeps data per channel; left out,
    /// the deployment's own storage (in its first channel's file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The key.
    pub key: String,
}

/// Reply to `get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetReply {
    /// Whether the key exists (and has not expired).
    pub found: bool,
    /// The value, when found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

/// Request `set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Set {
    /// The channel whose storage this is, for a plugin that keeps data per channel; left out,
    /// the deployment's own storage (in its first channel's file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The key.
    pub key: String,
    /// Any JSON value up to [`MAX_VALUE_BYTES`].
    pub value: serde_json::Value,
    /// Seconds until the key expires; none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// Request `delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delete {
    /// The channel whose storage this is, for a plugin that keeps data per channel; left out,
    /// the deployment's own storage (in its first channel's file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The key.
    pub key: String,
}

/// Reply to `delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteReply {
    /// Whether a key was deleted.
    pub deleted: bool,
}

/// Request `list`: keys in order, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct List {
    /// The channel whose storage this is, for a plugin that keeps data per channel; left out,
    /// the deployment's own storage (in its first channel's file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Only keys starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Only keys after this one (the previous page's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many items (default 100, at most [`MAX_LIST_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Whether to include the values.
    #[serde(default)]
    pub values: bool,
}

/// One key of a `list` page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListItem {
    /// The key.
    pub key: String,
    /// The value, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

/// Reply to `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListReply {
    /// The page.
    pub items: Vec<ListItem>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

fn one() -> i64 {
    1
}

/// Request `incr`: add to an integer value atomically (a missing key counts as 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incr {
    /// The channel whose storage this is, for a plugin that keeps data per channel; left out,
    /// the deployment's own storage (in its first channel's file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The key.
    pub key: String,
    /// How much to add (may be negative).
    #[serde(default = "one")]
    pub by: i64,
}

/// Reply to `incr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrReply {
    /// The value after adding.
    pub value: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn incr_defaults_to_one() {
        let i: Incr = serde_json::from_value(json!({"key": "k"})).unwrap();
        assert_eq!(i.by, 1);
    }
}
