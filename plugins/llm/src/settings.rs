//! The plugin's configuration: `LlmConfig::plugin_settings()` from the `llm` section, with
//! `enabled` added by the runtime and any `plugins.config.llm` keys laid over it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// `llm.triggers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Triggers {
    /// Off: only commands are answered.
    pub enabled: bool,
    /// Answer lines that name the bot.
    pub direct_mention: bool,
    /// Chat commands, with the command prefix (`!ai`, `!ask`).
    pub commands: Vec<String>,
    /// Unprompted replies every ~N messages.
    pub ambient_chat: Ambient,
    /// Replies to lines containing a phrase.
    pub keywords: Vec<Keyword>,
    /// Greetings on join.
    pub greetings: Greetings,
}

impl Default for Triggers {
    fn default() -> Self {
        Self {
            enabled: true,
            direct_mention: true,
            commands: vec!["!ai".to_owned(), "!ask".to_owned()],
            ambient_chat: Ambient::default(),
            keywords: Vec::new(),
            greetings: Greetings::default(),
        }
    }
}

/// `llm.triggers.ambient_chat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ambient {
    /// On or off.
    pub enabled: bool,
    /// Mean number of chat lines between two ambient replies.
    pub every_n_messages: u32,
    /// Spread of that number, as a fraction of it (0: exactly every N).
    pub randomness: f64,
}

impl Default for Ambient {
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
#[serde(default, deny_unknown_fields)]
pub struct Keyword {
    /// Phrases matched case-insensitively anywhere in a line.
    pub phrases: Vec<String>,
    /// Chance of answering a matching line.
    pub probability: f64,
    /// Seconds before the same phrase may fire again in a channel.
    pub cooldown_seconds: f64,
}

impl Default for Keyword {
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
#[serde(default, deny_unknown_fields)]
pub struct Greetings {
    /// On or off.
    pub enabled: bool,
    /// Greeting users who join.
    pub on_join: OnJoin,
    /// Accepted for compatibility; status changes are not greeted yet.
    pub on_status_change: OnStatusChange,
}

/// `llm.triggers.greetings.on_join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnJoin {
    /// On or off.
    pub enabled: bool,
    /// Chance of greeting a joining user.
    pub probability: f64,
    /// Users seen less than this many minutes ago are not greeted again.
    pub idle_threshold_minutes: f64,
    /// Greet only moderators.
    pub moderators_only: bool,
    /// Per-user probability, or a fixed greeting said as is.
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

/// A per-user greeting rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SpecificUser {
    /// This user's chance of being greeted.
    Probability(f64),
    /// A fixed greeting, said as is every time the user is greeted.
    Greeting(String),
}

/// `llm.triggers.greetings.on_status_change` (accepted, not acted on).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnStatusChange {
    /// On or off.
    pub enabled: bool,
    /// Chance of a greeting.
    pub probability: f64,
}
