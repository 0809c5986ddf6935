//! The plugin's configuration: `LlmConfig::plugin_settings()` from the `llm` section, with
//! `enabled` added by the runtime and any `plugins.config.llm` keys laid over it.

use serde::{Deserialize, Serialize};

/// The trigger types, shared with the configuration loader (which validates them).
pub use rosey_plugin_api::llm::{
    AmbientChat, Greetings, KeywordTrigger, OnJoin, OnStatusChange, SpecificUser, Triggers,
};

/// Everything the plugin reads from its configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `llm.enabled`: without it, commands say LLM chat is not configured and nothing else fires.
    pub enabled: bool,
    /// The system prompt (the text of `llm.system_prompt_file`).
    pub system_prompt: Option<String>,
    /// Messages of history kept per (channel, user) and sent with each request.
    pub max_context_messages: u32,
    /// Sampling temperature sent with each request.
    pub temperature: f64,
    /// Token cap sent with each request.
    pub max_tokens: u32,
    /// Log what would be said instead of saying it.
    pub log_only: bool,
    /// When the plugin speaks.
    pub triggers: Triggers,
    /// Seed of the randomness (probabilities, ambient spacing); for tests, absent in production.
    pub seed: Option<u64>,
    /// Pause, in seconds, between two answers to one user on the non-command triggers.
    pub user_cooldown_seconds: f64,
    /// Longest answer, in characters, before it is cut (the bot's chat queue splits long lines).
    pub max_reply_chars: usize,
    /// How long, in seconds, to wait for rosey-llm before apologizing.
    pub request_timeout_seconds: f64,
    /// Other bots' names, whose lines are never answered.
    pub ignore_users: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: false,
            system_prompt: None,
            max_context_messages: 10,
            temperature: 0.7,
            max_tokens: 500,
            log_only: false,
            triggers: Triggers::default(),
            seed: None,
            user_cooldown_seconds: 10.0,
            max_reply_chars: 1000,
            request_timeout_seconds: 60.0,
            ignore_users: Vec::new(),
        }
    }
}
