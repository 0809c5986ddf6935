//! Counters the service exposes through `$SRV.STATS` (request error replies by code, events
//! applied, skipped and dead-lettered), and "log once per kind" for bad input.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Shared counters; cheap enough to bump on every event.
#[derive(Debug, Default)]
pub struct Stats {
    counters: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    /// Adds `n` to the counter `name`.
    pub fn add(&self, name: &str, n: u64) {
        if n == 0 {
            return;
        }
        if let Ok(mut c) = self.counters.lock() {
            match c.get_mut(name) {
                Some(v) => *v = v.saturating_add(n),
                None => {
                    c.insert(name.to_owned(), n);
                }
            }
        }
    }

    /// Counts one occurrence of a kind of bad input; returns true the first time, so the caller
    /// logs each kind once instead of flooding the log.
    pub fn first_of_kind(&self, kind: &str) -> bool {
        let Ok(mut c) = self.counters.lock() else {
            return false;
        };
        let v = c.entry(kind.to_owned()).or_insert(0);
        *v = v.saturating_add(1);
        *v == 1
    }

    /// One counter's value.
    pub fn get(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .ok()
            .and_then(|c| c.get(name).copied())
            .unwrap_or(0)
    }

    /// Every counter whose name starts with `prefix`, with the prefix removed.
    pub fn with_prefix(&self, prefix: &str) -> BTreeMap<String, u64> {
        self.counters
            .lock()
            .map(|c| {
                c.iter()
                    .filter_map(|(k, v)| k.strip_prefix(prefix).map(|rest| (rest.to_owned(), *v)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every counter, as JSON.
    pub fn snapshot(&self) -> serde_json::Value {
        let map = self.with_prefix("");
        serde_json::to_value(map).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reports_first_of_kind_once() {
        let s = Stats::default();
        assert!(s.first_of_kind("bad.invalid_json"));
        assert!(!s.first_of_kind("bad.invalid_json"));
        s.add("applied", 3);
        s.add("applied", 2);
        assert_eq!(s.get("applied"), 5);
        assert_eq!(s.get("bad.invalid_json"), 2);
        assert_eq!(s.with_prefix("bad.").get("invalid_json"), Some(&2));
    }
}
