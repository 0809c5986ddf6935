//! Conversation histories per (platform, channel, user), bounded to `max_context_messages`.

use rosey_plugin_api::llm::{ChatMessage, Role};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Every conversation the plugin is having, carried across reloads in the saved state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histories {
    by_key: BTreeMap<String, VecDeque<ChatMessage>>,
}

/// The key of one conversation.
pub fn key(platform: &str, channel: &str, user: &str) -> String {
    format!("{platform}/{channel}/{}", user.to_lowercase())
}

impl Histories {
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
            return;
        }
        let history = self.by_key.entry(key.to_owned()).or_default();
        history.push_back(message(Role::User, prompt));
        history.push_back(message(Role::Assistant, answer));
        while history.len() > max {
            history.pop_front();
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
}
