//! When each user (or phrase, or channel) last did something, for a bounded number of them: a
//! busy channel's passers-by must not grow the plugin's memory for ever.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::time::Instant;

/// How many keys a [`Recent`] keeps by default; past it the oldest tenth goes.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A map from key to the instant it was last seen, holding at most `capacity` keys: when full,
/// the oldest ones (a tenth, so trimming is rare) are dropped.
#[derive(Debug, Clone)]
pub struct Recent<K: Ord + Clone> {
    at: BTreeMap<K, Instant>,
    capacity: usize,
}

impl<K: Ord + Clone> Default for Recent<K> {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl<K: Ord + Clone> Recent<K> {
    /// An empty map keeping at most `capacity` keys (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            at: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// When `key` was last seen, if it is still remembered.
    pub fn get<Q>(&self, key: &Q) -> Option<Instant>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.at.get(key).copied()
    }

    /// Records `key` as seen `at`, returning when it was seen before; trims the oldest keys
    /// when there are more than the capacity.
    pub fn insert(&mut self, key: K, at: Instant) -> Option<Instant> {
        let before = self.at.insert(key, at);
        if self.at.len() > self.capacity {
            self.trim();
        }
        before
    }

    /// Every remembered key with when it was last seen.
    pub fn iter(&self) -> impl Iterator<Item = (&K, Instant)> {
        self.at.iter().map(|(key, at)| (key, *at))
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Drops the oldest keys down to nine tenths of the capacity.
    fn trim(&mut self) {
        let keep = self.capacity - self.capacity / 10;
        let mut by_age: Vec<(Instant, K)> =
            self.at.iter().map(|(k, at)| (*at, k.clone())).collect();
        by_age.sort_by_key(|(at, _)| *at);
        let excess = by_age.len().saturating_sub(keep);
        for (_, key) in by_age.into_iter().take(excess) {
            self.at.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_oldest_keys_go_when_full() {
        let start = Instant::now();
        let at = |n: u64| start + Duration::from_secs(n);
        let mut recent = Recent::with_capacity(10);
        for n in 0..10 {
            recent.insert(n, at(n));
        }
        assert_eq!(recent.len(), 10);
        // Key 0 is seen again: it is now among the newest and survives the trim.
        assert_eq!(recent.insert(0, at(100)), Some(at(0)));
        recent.insert(10, at(101));
        assert_eq!(recent.len(), 9, "trimmed to nine tenths");
        assert_eq!(recent.get(&0), Some(at(100)));
        assert_eq!(recent.get(&10), Some(at(101)));
        for gone in 1..=2 {
            assert_eq!(recent.get(&gone), None, "{gone} was among the oldest");
        }
        for kept in 3..10 {
            assert_eq!(recent.get(&kept), Some(at(kept)));
        }
        // However many keys pass, the map stays bounded.
        for n in 1000..5000 {
            recent.insert(n, at(n));
            assert!(recent.len() <= 10);
        }
        assert_eq!(recent.get(&4999), Some(at(4999)));
    }
}
