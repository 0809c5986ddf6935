//! The last chat line of each recent speaker per channel, so `!quote grab` needs no database
//! request for anyone who spoke since the plugin started.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A remembered chat line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The speaker's name as they spelled it.
    pub user: String,
    /// What they said.
    pub text: String,
    /// Which remembered line this was, to forget the least recent speakers first.
    seq: u64,
}

/// The last line of up to `capacity` speakers per channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentLines {
    capacity: usize,
    seq: u64,
    /// Channel -> lower-cased user -> line.
    channels: BTreeMap<String, HashMap<String, Line>>,
}

impl RecentLines {
    /// Remembers up to `capacity` speakers (at least one) per channel.
    pub fn new(capacity: usize) -> RecentLines {
        RecentLines {
            capacity: capacity.max(1),
            ..RecentLines::default()
        }
    }

    /// The same memory with another capacity (a configuration change).
    pub fn with_capacity(mut self, capacity: usize) -> RecentLines {
        self.capacity = capacity.max(1);
        self
    }

    /// Remembers `text` as `user`'s last line in `channel`.
    pub fn remember(&mut self, channel: &str, user: &str, text: &str) {
        self.seq += 1;
        let lines = self.channels.entry(channel.to_owned()).or_default();
        lines.insert(
            user.to_lowercase(),
            Line {
                user: user.to_owned(),
                text: text.to_owned(),
                seq: self.seq,
            },
        );
        while lines.len() > self.capacity {
            let oldest = lines
                .iter()
                .min_by_key(|(_, l)| l.seq)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => lines.remove(&key),
                None => break,
            };
        }
    }

    /// `user`'s last line in `channel` (ignoring case), if remembered.
    pub fn last(&self, channel: &str, user: &str) -> Option<&Line> {
        self.channels.get(channel)?.get(&user.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_line_per_user_and_channel() {
        let mut r = RecentLines::new(10);
        r.remember("a", "Bob", "one");
        r.remember("a", "bob", "two");
        r.remember("b", "Bob", "elsewhere");
        assert_eq!(r.last("a", "BOB").unwrap().text, "two");
        assert_eq!(r.last("b", "bob").unwrap().text, "elsewhere");
        assert!(r.last("c", "bob").is_none());
    }

    #[test]
    fn forgets_the_least_recent_speaker() {
        let mut r = RecentLines::new(2);
        r.remember("a", "x", "1");
        r.remember("a", "y", "2");
        r.remember("a", "x", "3");
        r.remember("a", "z", "4");
        assert!(r.last("a", "y").is_none());
        assert_eq!(r.last("a", "x").unwrap().text, "3");
        assert_eq!(r.last("a", "z").unwrap().text, "4");
    }
}
