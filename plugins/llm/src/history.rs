//! Conversation histories per (platform, channel, user), bounded to `max_context_messages`
//! each and to [`MAX_CONVERSATIONS`] in all (the least recently used go first).

use rosey_plugin_api::llm::{ChatMessage, Role};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Conversations kept at most; past it the least recently used tenth goes.
pub const MAX_CONVERSATIONS: usize = 5_000;

/// Every conversation the plugin is having, carried across reloads in the saved state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histories {
    by_key: BTreeMap<String, VecDeque<ChatMessage>>,
    /// When each conversation was last used, as a count of exchanges (saved with it, so the
    /// order survives reloads; absent from states saved before it existed).
    #[serde(default)]
    used: BTreeMap<String, u64>,
    #[serde(default)]
    clock: u64,
    #[serde(skip, default = "max_conversations")]
    capacity: usize,
}

fn max_conversations() -> usize {
    MAX_CONVERSATIONS
}

impl Default for Histories {
    fn default() -> Self {
        Self::with_capacity(MAX_CONVERSATIONS)
    }
}

/// The key of one conversation.
pub fn key(platform: &str, channel: &str, user: &str) -> String {
    format!("{platform}/{channel}/{}", user.to_lowercase())
}

impl Histories {
    /// No conversation yet, keeping at most `capacity` of them (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            by_key: BTreeMap::new(),
            used: BTreeMap::new(),
            clock: 0,
            capacity: capacity.max(1),
        }
    }

    /// How many conversations are kept.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no conversation is kept.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The messages of one conversation, oldest first.
    pub fn get(&self, key: &str) -> Vec<ChatMessage> {
        self.by_key
            .get(key)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records an exchange, dropping the oldest messages beyond `max` (0 keeps nothing).
    pub fn record(&mut self, key: &str, prompt: &str, answer: &str, max: usize) {
        if max == 0 {
            self.by_key.remove(key);
            self.used.remove(key);
            return;
        }
        self.clock += 1;
        self.used.insert(key.to_owned(), self.clock);
        let history = self.by_key.entry(key.to_owned()).or_default();
        history.push_back(message(Role::User, prompt));
        history.push_back(message(Role::Assistant, answer));
        while history.len() > max {
            history.pop_front();
        }
        if self.by_key.len() > self.capacity {
            self.trim();
        }
    }

    /// Drops the least recently used conversations down to nine tenths of the capacity.
    fn trim(&mut self) {
        let keep = self.capacity - self.capacity / 10;
        let mut by_use: Vec<(u64, String)> = self
            .by_key
            .keys()
            .map(|k| (self.used.get(k).copied().unwrap_or(0), k.clone()))
            .collect();
        by_use.sort();
        let excess = by_use.len().saturating_sub(keep);
        for (_, key) in by_use.into_iter().take(excess) {
            self.by_key.remove(&key);
            self.used.remove(&key);
        }
    }

    /// The request messages: the system prompt, the history, then the new prompt.
    pub fn request_messages(
        &self,
        key: &str,
        system: Option<&str>,
        prompt: &str,
    ) -> Vec<ChatMessage> {
        let mut messages = Vec::new();
        if let Some(system) = system.filter(|s| !s.trim().is_empty()) {
            messages.push(message(Role::System, system));
        }
        messages.extend(self.get(key));
        messages.push(message(Role::User, prompt));
        messages
    }
}

fn message(role: Role, content: &str) -> ChatMessage {
    ChatMessage {
        role,
        content: content.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(messages: &[ChatMessage]) -> Vec<(Role, &str)> {
        messages
            .iter()
            .map(|m| (m.role, m.content.as_str()))
            .collect()
    }

    #[test]
    fn history_is_bounded_and_in_order() {
        let mut h = Histories::default();
        let k = key("cytube", "lobby", "Ann");
        h.record(&k, "q1", "a1", 3);
        h.record(&k, "q2", "a2", 3);
        assert_eq!(
            contents(&h.request_messages(&k, Some("be nice"), "q3")),
            [
                (Role::System, "be nice"),
                (Role::Assistant, "a1"),
                (Role::User, "q2"),
                (Role::Assistant, "a2"),
                (Role::User, "q3"),
            ]
        );
        assert_eq!(k, key("cytube", "lobby", "ann"));
        assert!(h.get(&key("cytube", "lobby", "bob")).is_empty());
        h.record(&k, "q", "a", 0);
        assert!(h.get(&k).is_empty());
        assert_eq!(
            contents(&h.request_messages(&k, None, "x")),
            [(Role::User, "x")]
        );
    }

    #[test]
    fn the_least_recently_used_conversations_go_when_full() {
        let mut h = Histories::with_capacity(10);
        let k = |n: usize| key("cytube", "lobby", &format!("user{n}"));
        for n in 0..10 {
            h.record(&k(n), "q", "a", 4);
        }
        assert_eq!(h.len(), 10);
        // user0 talks again, then an eleventh user: the two least recently used go.
        h.record(&k(0), "q2", "a2", 4);
        h.record(&k(10), "q", "a", 4);
        assert_eq!(h.len(), 9);
        assert_eq!(h.get(&k(0)).len(), 4, "user0 was used recently");
        assert!(h.get(&k(1)).is_empty() && h.get(&k(2)).is_empty());
        for n in 3..=10 {
            assert_eq!(h.get(&k(n)).len(), 2, "user{n} kept");
        }
        for n in 100..1000 {
            h.record(&k(n), "q", "a", 4);
            assert!(h.len() <= 10);
        }
        // The order survives a reload (the saved state), and so does the bound.
        let saved = serde_json::to_string(&h).unwrap();
        let mut back: Histories = serde_json::from_str(&saved).unwrap();
        assert_eq!(back.get(&k(999)), h.get(&k(999)));
        back.record(&k(5000), "q", "a", 4);
        assert!(back.len() <= MAX_CONVERSATIONS);
        // A state saved before the recency existed still loads.
        let old: Histories = serde_json::from_str(r#"{"by_key": {}}"#).unwrap();
        assert!(old.is_empty());
    }
}
