//! LLM chat payloads (`rosey.llm.*`), served by `rosey-llm`, the one process that holds the
//! provider's URL and key; plugins ask it for answers over NATS.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who said a message of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model (the system prompt).
    System,
    /// A person's line.
    User,
    /// The model's earlier answer.
    Assistant,
}

impl Role {
    /// The role's wire spelling, which both provider APIs share.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

/// Request `rosey.llm.chat`: a conversation, oldest message first, to be answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation; at least one message.
    pub messages: Vec<ChatMessage>,
    /// A model other than the configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampling temperature (0 to 2); the provider's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Cap on the answer's tokens; the provider's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// Token counts the provider reported (zero when it reported none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    pub completion_tokens: u64,
}

/// Reply to `rosey.llm.chat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatReply {
    /// The answer.
    pub text: String,
    /// The model that answered, as the provider names it.
    pub model: String,
    /// Tokens used.
    pub usage: TokenUsage,
    /// Time spent in `rosey-llm` for this request, retries and waits included, in milliseconds.
    pub latency_ms: u64,
}

/// Request `rosey.llm.status` (no fields).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusRequest {}

/// Reply to `rosey.llm.status`: whether LLM chat is usable and how busy it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `ollama`, `openai` or `openrouter`.
    pub provider: String,
    /// The model used when a request names none.
    pub default_model: String,
    /// Chats being sent to the provider now.
    pub in_flight: u64,
    /// Chats waiting for a free slot.
    pub queued: u64,
    /// The concurrency limit.
    pub concurrency: u64,
    /// The last provider failure, if the last chat failed (never a key or a URL with one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Request `rosey.llm.usage` (no fields).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageRequest {}

/// Counters of one sender (a plugin, or `-` for requests without a source header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SenderUsage {
    /// Chats answered.
    pub answered: u64,
    /// Chats that failed (provider errors, timeouts, bad requests).
    pub failed: u64,
    /// Chats refused by the per-plugin budget.
    pub over_budget: u64,
    /// Tokens of the prompts answered.
    pub prompt_tokens: u64,
    /// Tokens of the answers.
    pub completion_tokens: u64,
}

/// Reply to `rosey.llm.usage`: counters since this instance started.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageReport {
    /// Totals over every sender.
    pub total: SenderUsage,
    /// Per sender, by the `Rosey-Source` header.
    pub by_source: BTreeMap<String, SenderUsage>,
}
