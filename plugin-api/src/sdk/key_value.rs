//! The key-value operations as a trait, so plugin code written against it runs on the real
//! storage ([`Kv`]) and, in unit tests, on [`super::MemoryKv`].

use super::context::Kv;
use super::error::Result;
use crate::kv;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// The plugin's key-value storage, whatever serves it: write storage code against
/// `&impl KeyValue` and test it with [`super::MemoryKv`] instead of a running database service.
pub trait KeyValue {
    /// Reads a key; `None` when it does not exist (or has expired).
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>>;

    /// Writes a key, optionally expiring after `ttl` (whole seconds, at least one).
    fn set<T: Serialize>(&self, key: &str, value: &T, ttl: Option<Duration>) -> Result<()>;

    /// Deletes a key; whether it existed.
    fn delete(&self, key: &str) -> Result<bool>;

    /// Adds `by` to an integer key (a missing key counts as 0) and returns the new value.
    fn incr(&self, key: &str, by: i64) -> Result<i64>;

    /// One page of keys in byte order; pass the reply's `next` as `after` for the next page.
    fn list(&self, request: &kv::List) -> Result<kv::ListReply>;
}

// Inherent methods win method resolution, so these calls reach `Kv`'s own requests.
impl KeyValue for Kv<'_> {
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        Kv::get(self, key)
    }

    fn set<T: Serialize>(&self, key: &str, value: &T, ttl: Option<Duration>) -> Result<()> {
        Kv::set(self, key, value, ttl)
    }

    fn delete(&self, key: &str) -> Result<bool> {
        Kv::delete(self, key)
    }

    fn incr(&self, key: &str, by: i64) -> Result<i64> {
        Kv::incr(self, key, by)
    }

    fn list(&self, request: &kv::List) -> Result<kv::ListReply> {
        Kv::list(self, request)
    }
}

impl<S: KeyValue + ?Sized> KeyValue for &S {
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        (**self).get(key)
    }

    fn set<T: Serialize>(&self, key: &str, value: &T, ttl: Option<Duration>) -> Result<()> {
        (**self).set(key, value, ttl)
    }

    fn delete(&self, key: &str) -> Result<bool> {
        (**self).delete(key)
    }

    fn incr(&self, key: &str, by: i64) -> Result<i64> {
        (**self).incr(key, by)
    }

    fn list(&self, request: &kv::List) -> Result<kv::ListReply> {
        (**self).list(request)
    }
}

/// A name (a channel, a user) made safe as one part of a storage key, so keys built from
/// names with `/`, spaces or any Unicode stay unambiguous: ASCII letters, digits, `_` and `-`
/// are kept, every other byte becomes `%XX`, and at most the first 100 bytes are used.
pub fn key_segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes().take(100) {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod key_segment_tests {
    use super::key_segment;

    #[test]
    fn names_are_escaped_and_bounded() {
        assert_eq!(key_segment("my-chan_1"), "my-chan_1");
        assert_eq!(key_segment("a b/é"), "a%20b%2F%C3%A9");
        assert!(key_segment(&"z".repeat(1000)).len() <= 100);
    }
}
