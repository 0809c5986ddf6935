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

/// `llm.triggers` of the configuration: when the `llm` plugin speaks. Defined here once, so the
/// configuration loader (which validates it) and the plugin (which acts on it) read one type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct Triggers {
    /// Master switch of every trigger but the commands.
    pub enabled: bool,
    /// Answer a line naming the bot.
    pub direct_mention: bool,
    /// Chat commands, with the command prefix (`!ai`, `!ask`); they always get an answer.
    pub commands: Vec<String>,
    /// Unprompted replies every ~N messages.
    pub ambient_chat: AmbientChat,
    /// Phrases that may get a reply.
    pub keywords: Vec<KeywordTrigger>,
    /// Greetings.
    pub greetings: Greetings,
}

impl Default for Triggers {
    fn default() -> Self {
        Self {
            enabled: true,
            direct_mention: true,
            commands: vec!["!ai".to_owned(), "!ask".to_owned()],
            ambient_chat: AmbientChat::default(),
            keywords: Vec::new(),
            greetings: Greetings::default(),
        }
    }
}

/// `llm.triggers.ambient_chat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct AmbientChat {
    /// Whether ambient replies happen.
    pub enabled: bool,
    /// Roughly how many channel messages between two replies.
    pub every_n_messages: u32,
    /// Fraction (0 to 1) by which the interval varies (0: exactly every N).
    pub randomness: f64,
}

impl Default for AmbientChat {
    fn default() -> Self {
        Self {
            enabled: false,
            every_n_messages: 20,
            randomness: 0.5,
        }
    }
}

/// One entry of `llm.triggers.keywords`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct KeywordTrigger {
    /// Phrases that fire this trigger, matched case-insensitively anywhere in a line.
    pub phrases: Vec<String>,
    /// Chance (0 to 1) of answering when a phrase appears.
    pub probability: f64,
    /// Seconds before the same phrase may fire again in a channel.
    pub cooldown_seconds: f64,
}

impl Default for KeywordTrigger {
    fn default() -> Self {
        Self {
            phrases: Vec::new(),
            probability: 1.0,
            cooldown_seconds: 300.0,
        }
    }
}

/// `llm.triggers.greetings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct Greetings {
    /// Whether greetings happen at all.
    pub enabled: bool,
    /// Greeting users who join.
    pub on_join: OnJoin,
    /// Greeting users who come back from AFK.
    pub on_status_change: OnStatusChange,
}

/// `llm.triggers.greetings.on_join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct OnJoin {
    /// Whether joins are greeted.
    pub enabled: bool,
    /// Chance (0 to 1) of greeting a join.
    pub probability: f64,
    /// Only users away at least this many minutes are greeted.
    pub idle_threshold_minutes: f64,
    /// Greet only moderators.
    pub moderators_only: bool,
    /// Per-user overrides of `probability`: a chance, or a greeting said as is every time.
    pub specific_users: BTreeMap<String, SpecificUser>,
}

impl Default for OnJoin {
    fn default() -> Self {
        Self {
            enabled: true,
            probability: 0.2,
            idle_threshold_minutes: 60.0,
            moderators_only: false,
            specific_users: BTreeMap::new(),
        }
    }
}

/// One entry of `llm.triggers.greetings.on_join.specific_users`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "a probability between 0 and 1 or a greeting text"
)]
pub enum SpecificUser {
    /// The chance (0 to 1) of greeting this user.
    Probability(f64),
    /// Greet this user every time, with this text.
    Greeting(String),
}

/// `llm.triggers.greetings.on_status_change`: greeting a user whose AFK flag goes off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct OnStatusChange {
    /// Whether returns from AFK are greeted.
    pub enabled: bool,
    /// Chance (0 to 1) of greeting one.
    pub probability: f64,
}

impl Default for OnStatusChange {
    fn default() -> Self {
        Self {
            enabled: false,
            probability: 0.1,
        }
    }
}
