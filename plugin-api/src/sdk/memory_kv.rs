//! An in-memory [`KeyValue`] for plugin authors' unit tests: a [`Context`](super::Context)
//! needs the runtime, but storage code written against [`KeyValue`] can be tested with this.

use super::error::{Error, ErrorKind, Result};
use super::key_value::KeyValue;
use crate::error::ErrorCode;
use crate::kv;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The page size of `list` when the request names none (the database service's default).
const DEFAULT_LIST_LIMIT: u32 = 100;

/// Key-value storage in memory that answers like the database service, for unit tests.
///
/// - Keys must be 1 to [`kv::MAX_KEY_BYTES`] bytes and values at most [`kv::MAX_VALUE_BYTES`]
///   bytes of JSON; longer ones fail with [`ErrorKind::Service`]`(`[`ErrorCode::TooLarge`]`)`,
///   other refusals (empty key, `incr` of a non-integer or past `i64`) with
///   `Service(InvalidJson)`, as the service's error replies do through [`super::Kv`].
/// - `list` pages in byte order with `prefix`, `after`, `limit` (default 100, clamped to
///   1..=[`kv::MAX_LIST_LIMIT`]) and `values`, and sets `next` only when more keys follow.
/// - `incr` counts a missing key as 0 and keeps the key's expiry.
/// - Time stands still: keys set with a TTL expire only when the test moves the store's clock
///   with [`MemoryKv::advance`], so expiry is tested without sleeping.
/// - [`MemoryKv::set_failing`] makes every call fail with [`ErrorKind::Timeout`], as requests
///   do while the database service is down, to test that an outage loses nothing.
/// - [`MemoryKv::writes`] counts successful `set`, `incr` and `delete` calls, to test that
///   code writes only what changed.
#[derive(Debug, Default)]
pub struct MemoryKv {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<String, Entry>,
    /// Seconds the clock was advanced.
    now: u64,
    failing: bool,
    writes: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    /// The clock reading at which the key expires.
    expires_at: Option<u64>,
}

impl State {
    fn live(&self, key: &str) -> Option<&Entry> {
        self.entries
            .get(key)
            .filter(|e| e.expires_at.is_none_or(|at| at > self.now))
    }
}

fn refused(code: ErrorCode, message: String) -> Error {
    Error::new(ErrorKind::Service(code), message)
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(refused(
            ErrorCode::InvalidJson,
            "key must not be empty".to_owned(),
        ));
    }
    if key.len() > kv::MAX_KEY_BYTES {
        return Err(refused(
            ErrorCode::TooLarge,
            format!(
                "key is {} bytes; the limit is {}",
                key.len(),
                kv::MAX_KEY_BYTES
            ),
        ));
    }
    Ok(())
}

impl MemoryKv {
    /// An empty store that works.
    pub fn new() -> Self {
        MemoryKv::default()
    }

    // A test that panicked while holding the lock leaves usable data behind.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state for a call, or the outage error when the store is set to fail.
    fn serving(&self, op: &str) -> Result<MutexGuard<'_, State>> {
        let state = self.state();
        if state.failing {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("key-value {op}: storage unavailable (MemoryKv set to fail)"),
            ));
        }
        Ok(state)
    }

    /// Makes every call fail (`true`) or work again (`false`), to simulate an outage.
    pub fn set_failing(&self, failing: bool) {
        self.state().failing = failing;
    }

    /// How many `set`, `incr` and `delete` calls succeeded so far.
    pub fn writes(&self) -> usize {
        self.state().writes
    }

    /// Moves the store's clock forward, expiring keys whose TTL has passed.
    pub fn advance(&self, by: Duration) {
        let mut state = self.state();
        state.now = state.now.saturating_add(by.as_secs());
    }

    /// Every live key in byte order, even while failing, for assertions on what was stored.
    pub fn keys(&self) -> Vec<String> {
        let state = self.state();
        state
            .entries
            .keys()
            .filter(|k| state.live(k).is_some())
            .cloned()
            .collect()
    }
}

impl KeyValue for MemoryKv {
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let state = self.serving("get")?;
        check_key(key)?;
        match state.live(key) {
            Some(entry) => Ok(Some(serde_json::from_value(entry.value.clone())?)),
            None => Ok(None),
        }
    }

    fn set<T: Serialize>(&self, key: &str, value: &T, ttl: Option<Duration>) -> Result<()> {
        let mut state = self.serving("set")?;
        check_key(key)?;
        let value = serde_json::to_value(value)?;
        let bytes = value.to_string().len();
        if bytes > kv::MAX_VALUE_BYTES {
            return Err(refused(
                ErrorCode::TooLarge,
                format!(
                    "value is {bytes} bytes of JSON; the limit is {}",
                    kv::MAX_VALUE_BYTES
                ),
            ));
        }
        // As `Kv` sends it: whole seconds, at least one.
        let expires_at = ttl.map(|t| state.now.saturating_add(t.as_secs().max(1)));
        state
            .entries
            .insert(key.to_owned(), Entry { value, expires_at });
        state.writes += 1;
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<bool> {
        let mut state = self.serving("delete")?;
        check_key(key)?;
        let live = state.live(key).is_some();
        state.entries.remove(key);
        state.writes += 1;
        Ok(live)
    }

    fn incr(&self, key: &str, by: i64) -> Result<i64> {
        let mut state = self.serving("incr")?;
        check_key(key)?;
        let (base, expires_at) = match state.live(key) {
            None => (0, None),
            Some(entry) => {
                let n = entry.value.as_i64().ok_or_else(|| {
                    refused(
                        ErrorCode::InvalidJson,
                        format!("key {key:?} holds {}, not an integer", entry.value),
                    )
                })?;
                (n, entry.expires_at)
            }
        };
        let sum = base.checked_add(by).ok_or_else(|| {
            refused(
                ErrorCode::InvalidJson,
                format!("{base} + {by} overflows a 64-bit integer"),
            )
        })?;
        state.entries.insert(
            key.to_owned(),
            Entry {
                value: Value::from(sum),
                expires_at,
            },
        );
        state.writes += 1;
        Ok(sum)
    }

    fn list(&self, request: &kv::List) -> Result<kv::ListReply> {
        let state = self.serving("list")?;
        let limit = request
            .limit
            .unwrap_or(DEFAULT_LIST_LIMIT)
            .clamp(1, kv::MAX_LIST_LIMIT) as usize;
        let prefix = request.prefix.as_deref().unwrap_or("");
        let after = request.after.as_deref();
        let mut live = state
            .entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
            .filter(|(k, _)| state.live(k).is_some());
        let items: Vec<kv::ListItem> = live
            .by_ref()
            .take(limit)
            .map(|(k, e)| kv::ListItem {
                key: k.clone(),
                value: request.values.then(|| e.value.clone()),
            })
            .collect();
        let next = if live.next().is_some() {
            items.last().map(|i| i.key.clone())
        } else {
            None
        };
        Ok(kv::ListReply { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(store: &MemoryKv, prefix: &str, after: Option<&str>, limit: u32) -> kv::ListReply {
        store
            .list(&kv::List {
                channel: None,
                prefix: Some(prefix.to_owned()),
                after: after.map(str::to_owned),
                limit: Some(limit),
                values: true,
            })
            .unwrap()
    }

    fn code(e: &Error) -> Option<ErrorCode> {
        match e.kind() {
            ErrorKind::Service(code) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn get_set_delete_round_trip_typed_values() {
        let store = MemoryKv::new();
        assert_eq!(store.get::<String>("a").unwrap(), None);
        store.set("a", &vec![1, 2, 3], None).unwrap();
        assert_eq!(store.get::<Vec<u32>>("a").unwrap(), Some(vec![1, 2, 3]));
        let wrong = store.get::<String>("a").unwrap_err();
        assert_eq!(wrong.kind(), ErrorKind::Json);
        store.set("a", &"replaced", None).unwrap();
        assert_eq!(
            store.get::<String>("a").unwrap().as_deref(),
            Some("replaced")
        );
        assert!(store.delete("a").unwrap());
        assert!(!store.delete("a").unwrap(), "already gone");
        assert_eq!(store.get::<Value>("a").unwrap(), None);
        assert_eq!(store.writes(), 4, "two sets and two deletes");
    }

    #[test]
    fn limits_are_the_services() {
        let store = MemoryKv::new();
        // A string of N characters is N + 2 bytes of JSON.
        let fits = "x".repeat(kv::MAX_VALUE_BYTES - 2);
        store.set("fits", &fits, None).unwrap();
        let e = store.set("big", &format!("{fits}x"), None).unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::TooLarge), "{e}");
        assert_eq!(store.get::<Value>("big").unwrap(), None, "nothing stored");
        let long_key = "k".repeat(kv::MAX_KEY_BYTES + 1);
        let e = store.set(&long_key, &1, None).unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::TooLarge));
        let e = store.get::<Value>("").unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::InvalidJson));
        store.set(&"k".repeat(kv::MAX_KEY_BYTES), &1, None).unwrap();
        assert_eq!(store.writes(), 2, "refused writes are not counted");
    }

    #[test]
    fn incr_starts_at_zero_and_refuses_non_integers_and_overflow() {
        let store = MemoryKv::new();
        assert_eq!(store.incr("n", 1).unwrap(), 1);
        assert_eq!(store.incr("n", 41).unwrap(), 42);
        assert_eq!(store.incr("n", -50).unwrap(), -8);
        assert_eq!(store.get::<i64>("n").unwrap(), Some(-8));
        store.set("text", &"a", None).unwrap();
        let e = store.incr("text", 1).unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::InvalidJson), "{e}");
        store.set("max", &i64::MAX, None).unwrap();
        let e = store.incr("max", 1).unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::InvalidJson), "{e}");
        assert_eq!(store.get::<i64>("max").unwrap(), Some(i64::MAX));
    }

    #[test]
    fn ttl_expires_when_the_clock_moves_and_incr_keeps_it() {
        let store = MemoryKv::new();
        store.set("t", &1, Some(Duration::from_secs(10))).unwrap();
        store.set("forever", &1, None).unwrap();
        assert_eq!(store.incr("t", 1).unwrap(), 2);
        store.advance(Duration::from_secs(9));
        assert_eq!(store.get::<i64>("t").unwrap(), Some(2));
        store.advance(Duration::from_secs(1));
        assert_eq!(store.get::<i64>("t").unwrap(), None, "expired at 10 s");
        assert!(!store.delete("t").unwrap(), "an expired key does not count");
        assert_eq!(store.keys(), ["forever"]);
        assert_eq!(store.incr("t", 5).unwrap(), 5, "expired counts as 0");
        store.advance(Duration::from_secs(1_000));
        assert_eq!(
            store.get::<i64>("t").unwrap(),
            Some(5),
            "no expiry any more"
        );
    }

    #[test]
    fn list_pages_by_prefix_in_byte_order() {
        let store = MemoryKv::new();
        for i in 0..25 {
            store.set(&format!("k{i:02}"), &i, None).unwrap();
        }
        store.set("other", &0, None).unwrap();
        store.set("k", &"bare prefix", None).unwrap();
        store.set("k99", &0, Some(Duration::from_secs(1))).unwrap();
        store.advance(Duration::from_secs(1));
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = list(&store, "k", after.as_deref(), 10);
            pages += 1;
            assert!(page.items.len() <= 10);
            seen.extend(page.items.into_iter().map(|i| (i.key, i.value.unwrap())));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 3, "26 keys in pages of 10");
        let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
        let mut expected = vec!["k".to_owned()];
        expected.extend((0..25).map(|i| format!("k{i:02}")));
        assert_eq!(keys, expected, "in order, expired k99 and other left out");
        assert_eq!(seen[1].1, json!(0));

        // Exactly a page's worth: no `next`.
        let page = list(&store, "k0", None, 10);
        assert_eq!(page.items.len(), 10);
        assert_eq!(page.next, None);
        // Without values, default limit, limit 0 clamped to 1.
        let page = store.list(&kv::List::default()).unwrap();
        assert_eq!(page.items.len(), 27);
        assert!(page.items.iter().all(|i| i.value.is_none()));
        let page = list(&store, "", None, 0);
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.next.as_deref(), Some("k"));
    }

    #[test]
    fn list_default_limit_is_one_hundred() {
        let store = MemoryKv::new();
        for i in 0..(DEFAULT_LIST_LIMIT + 1) {
            store.set(&format!("{i:04}"), &i, None).unwrap();
        }
        let page = store.list(&kv::List::default()).unwrap();
        assert_eq!(page.items.len(), DEFAULT_LIST_LIMIT as usize);
        assert_eq!(page.next.as_deref(), Some("0099"));
    }

    #[test]
    fn failing_refuses_every_call_and_keeps_the_data() {
        let store = MemoryKv::new();
        store.set("kept", &1, None).unwrap();
        store.set_failing(true);
        let e = store.get::<i64>("kept").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(store.set("new", &1, None).is_err());
        assert!(store.delete("kept").is_err());
        assert!(store.incr("n", 1).is_err());
        assert!(store.list(&kv::List::default()).is_err());
        assert_eq!(store.keys(), ["kept"], "inspection still works");
        assert_eq!(store.writes(), 1);
        store.set_failing(false);
        assert_eq!(store.get::<i64>("kept").unwrap(), Some(1));
    }

    #[test]
    fn works_through_a_reference_as_code_under_test_takes_it() {
        fn bump(storage: &impl KeyValue) -> Result<i64> {
            storage.incr("hits", 1)
        }
        let store = MemoryKv::new();
        bump(&store).unwrap();
        assert_eq!(bump(&&store).unwrap(), 2);
    }
}
