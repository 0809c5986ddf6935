//! `llm`: LLM chat, the original's keys typed. The provider part ([`LlmConfig::gateway`] and
//! the provider sub-sections) is read by `rosey-llm`; the rest ([`LlmConfig::plugin_settings`])
//! is what the `llm` plugin receives.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Problem;
use crate::seconds::Seconds;
use crate::secret::Secret;
use crate::sections::{positive, require_non_empty, resolve_opt, secret_non_empty};

/// Which provider `rosey-llm` talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmProvider {
    /// Ollama's native `/api/chat`.
    #[default]
    Ollama,
    /// Any OpenAI-compatible chat-completions endpoint (OpenAI, llama.cpp, vLLM, LM Studio).
    Openai,
    /// OpenRouter's OpenAI-compatible endpoint, with its site headers.
    Openrouter,
}

impl LlmProvider {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            LlmProvider::Ollama => "ollama",
            LlmProvider::Openai => "openai",
            LlmProvider::Openrouter => "openrouter",
        }
    }
}

/// The `llm` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct LlmConfig {
    /// The one switch: `rosey up` starts `rosey-llm` and the runtime loads the plugin.
    pub enabled: bool,
    /// The provider `rosey-llm` uses.
    pub provider: LlmProvider,
    /// File holding the system prompt; the loader reads it into [`LlmConfig::system_prompt`].
    #[serde(serialize_with = "super::ser_opt_path")]
    pub system_prompt_file: Option<PathBuf>,
    /// The text of `system_prompt_file`, read when the section is enabled.
    #[serde(skip)]
    pub system_prompt: Option<String>,
    /// Messages of history kept per (channel, user).
    pub max_context_messages: u32,
    /// Sampling temperature sent with each chat.
    pub temperature: f64,
    /// Cap on the tokens of one answer.
    pub max_tokens: u32,
    /// Log what would be said and send nothing.
    pub log_only: bool,
    /// An OpenAI-compatible endpoint.
    pub openai: OpenAiConfig,
    /// An Ollama server.
    pub ollama: OllamaConfig,
    /// OpenRouter.
    pub openrouter: OpenRouterConfig,
    /// When the plugin answers.
    pub triggers: TriggersConfig,
    /// Limits of `rosey-llm` itself (not in the original).
    pub gateway: GatewayConfig,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            provider: LlmProvider::Ollama,
            system_prompt_file: None,
            system_prompt: None,
            max_context_messages: 10,
            temperature: 0.7,
            max_tokens: 500,
            log_only: false,
            openai: OpenAiConfig::default(),
            ollama: OllamaConfig::default(),
            openrouter: OpenRouterConfig::default(),
            triggers: TriggersConfig::default(),
            gateway: GatewayConfig::default(),
        }
    }
}

/// `llm.openai`: any OpenAI-compatible chat-completions endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct OpenAiConfig {
    /// Bearer key; optional because local servers (llama.cpp, vLLM, LM Studio) need none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// The model asked for when a request names none.
    pub model: String,
    /// Base URL up to `/v1`; `/chat/completions` is appended.
    pub base_url: String,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            model: "gpt-4o-mini".to_owned(),
            base_url: "https://api.openai.com/v1".to_owned(),
        }
    }
}

/// `llm.ollama`: an Ollama server's native chat API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct OllamaConfig {
    /// Server URL; `/api/chat` is appended.
    pub base_url: String,
    /// The model asked for when a request names none.
    pub model: String,
}

impl Default for OllamaConfig {
    fn default() -> Self {
        Self {
            base_url: "http://localhost:11434".to_owned(),
            model: "llama3".to_owned(),
        }
    }
}

/// `llm.openrouter`: OpenRouter, OpenAI-compatible with site headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct OpenRouterConfig {
    /// Bearer key (required when this provider is used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// The model asked for when a request names none.
    pub model: String,
    /// Sent as `HTTP-Referer`, which OpenRouter shows in its rankings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_url: Option<String>,
    /// Sent as `X-Title`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_name: Option<String>,
    /// Base URL up to `/api/v1`; changeable for tests and proxies.
    pub base_url: String,
}

impl Default for OpenRouterConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            model: "openai/gpt-4o-mini".to_owned(),
            site_url: None,
            site_name: None,
            base_url: "https://openrouter.ai/api/v1".to_owned(),
        }
    }
}

/// `llm.gateway`: timeouts and limits of `rosey-llm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct GatewayConfig {
    /// How long one HTTP attempt may take before it is abandoned.
    pub request_timeout: Seconds,
    /// Attempts after the first on 429, 5xx and connection failures.
    pub max_retries: u32,
    /// First backoff pause (doubled per attempt) when the provider gives no `Retry-After`.
    pub retry_backoff: Seconds,
    /// Longest pause honoured from a `Retry-After`; a longer one fails as rate limited.
    pub max_retry_wait: Seconds,
    /// Chats sent to the provider at once; more wait their turn.
    pub concurrency: usize,
    /// Chats one plugin may send per minute (by the runtime's source header).
    pub plugin_requests_per_minute: u32,
    /// Cap on the total bytes of a chat's messages.
    pub max_prompt_bytes: usize,
    /// Cap on the bytes of a provider's answer body.
    pub max_response_bytes: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            request_timeout: Seconds::from_secs(60),
            max_retries: 2,
            retry_backoff: Seconds::from_millis(500),
            max_retry_wait: Seconds::from_secs(30),
            concurrency: 16,
            plugin_requests_per_minute: 30,
            max_prompt_bytes: 64 * 1024,
            max_response_bytes: 1 << 20,
        }
    }
}

/// `llm.triggers`: the serde types live in the contract (`rosey_plugin_api::llm`), shared with
/// the plugin; this section validates them ([`LlmConfig::validate`]).
pub use rosey_plugin_api::llm::{
    AmbientChat, Greetings, KeywordTrigger, OnJoin, OnStatusChange, SpecificUser,
    Triggers as TriggersConfig,
};

/// What the `llm` plugin receives: everything but the provider part and its secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmPluginSettings {
    /// The text of `system_prompt_file`, if one is set.
    pub system_prompt: Option<String>,
    /// Messages of history kept per (channel, user).
    pub max_context_messages: u32,
    /// Sampling temperature sent with each chat.
    pub temperature: f64,
    /// Cap on the tokens of one answer.
    pub max_tokens: u32,
    /// Log what would be said and send nothing.
    pub log_only: bool,
    /// When the plugin answers.
    pub triggers: TriggersConfig,
}

fn probability(key_path: &str, p: f64) -> Result<(), Problem> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Problem::new(
            key_path,
            format!("{p} is not between 0 and 1"),
        ));
    }
    Ok(())
}

fn http_url(key_path: &str, url: &str) -> Result<(), Problem> {
    require_non_empty(key_path, url)?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Problem::new(
            key_path,
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    Ok(())
}

impl LlmConfig {
    /// The part the `llm` plugin receives (never a key or a provider URL).
    pub fn plugin_settings(&self) -> LlmPluginSettings {
        LlmPluginSettings {
            system_prompt: self.system_prompt.clone(),
            max_context_messages: self.max_context_messages,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            log_only: self.log_only,
            triggers: self.triggers.clone(),
        }
    }

    /// The default model of the configured provider.
    pub fn default_model(&self) -> &str {
        match self.provider {
            LlmProvider::Ollama => &self.ollama.model,
            LlmProvider::Openai => &self.openai.model,
            LlmProvider::Openrouter => &self.openrouter.model,
        }
    }

    /// Checks the rules serde cannot express.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(Problem::new(
                "llm.temperature",
                format!("{} is not between 0 and 2", self.temperature),
            ));
        }
        if self.max_tokens == 0 {
            return Err(Problem::new("llm.max_tokens", "must be greater than 0"));
        }
        secret_non_empty("llm.openai.api_key", self.openai.api_key.as_ref())?;
        secret_non_empty("llm.openrouter.api_key", self.openrouter.api_key.as_ref())?;
        let g = &self.gateway;
        positive("llm.gateway.request_timeout", g.request_timeout)?;
        if g.concurrency == 0 {
            return Err(Problem::new(
                "llm.gateway.concurrency",
                "must be greater than 0",
            ));
        }
        if g.max_prompt_bytes == 0 {
            return Err(Problem::new(
                "llm.gateway.max_prompt_bytes",
                "must be greater than 0",
            ));
        }
        if g.max_response_bytes == 0 {
            return Err(Problem::new(
                "llm.gateway.max_response_bytes",
                "must be greater than 0",
            ));
        }
        let t = &self.triggers;
        probability(
            "llm.triggers.ambient_chat.randomness",
            t.ambient_chat.randomness,
        )?;
        if t.ambient_chat.enabled && t.ambient_chat.every_n_messages == 0 {
            return Err(Problem::new(
                "llm.triggers.ambient_chat.every_n_messages",
                "must be greater than 0",
            ));
        }
        for (i, k) in t.keywords.iter().enumerate() {
            probability(
                &format!("llm.triggers.keywords[{i}].probability"),
                k.probability,
            )?;
            if !k.cooldown_seconds.is_finite() || k.cooldown_seconds < 0.0 {
                return Err(Problem::new(
                    format!("llm.triggers.keywords[{i}].cooldown_seconds"),
                    "must be a non-negative number of seconds",
                ));
            }
            if k.phrases.iter().any(|p| p.trim().is_empty()) {
                return Err(Problem::new(
                    format!("llm.triggers.keywords[{i}].phrases"),
                    "a phrase must not be empty",
                ));
            }
        }
        for (i, c) in t.commands.iter().enumerate() {
            require_non_empty(&format!("llm.triggers.commands[{i}]"), c)?;
        }
        let g = &t.greetings;
        probability(
            "llm.triggers.greetings.on_join.probability",
            g.on_join.probability,
        )?;
        if !g.on_join.idle_threshold_minutes.is_finite() || g.on_join.idle_threshold_minutes < 0.0 {
            return Err(Problem::new(
                "llm.triggers.greetings.on_join.idle_threshold_minutes",
                "must be a non-negative number",
            ));
        }
        for (user, entry) in &g.on_join.specific_users {
            let key = format!("llm.triggers.greetings.on_join.specific_users.{user}");
            match entry {
                SpecificUser::Probability(p) => probability(&key, *p)?,
                SpecificUser::Greeting(text) => require_non_empty(&key, text)?,
            }
        }
        probability(
            "llm.triggers.greetings.on_status_change.probability",
            g.on_status_change.probability,
        )?;
        if !self.enabled {
            return Ok(());
        }
        // Only the provider in use must be complete.
        match self.provider {
            LlmProvider::Ollama => {
                http_url("llm.ollama.base_url", &self.ollama.base_url)?;
                require_non_empty("llm.ollama.model", &self.ollama.model)
            }
            LlmProvider::Openai => {
                http_url("llm.openai.base_url", &self.openai.base_url)?;
                require_non_empty("llm.openai.model", &self.openai.model)
            }
            LlmProvider::Openrouter => {
                http_url("llm.openrouter.base_url", &self.openrouter.base_url)?;
                require_non_empty("llm.openrouter.model", &self.openrouter.model)?;
                if self.openrouter.api_key.is_none() {
                    return Err(Problem::new(
                        "llm.openrouter.api_key",
                        "is required when llm.provider is \"openrouter\" \
                         (give api_key_env or api_key_file)",
                    ));
                }
                Ok(())
            }
        }
    }

    /// Makes a relative `system_prompt_file` relative to the configuration file's folder.
    pub(crate) fn resolve_paths(&mut self, base_dir: &Path) {
        resolve_opt(base_dir, &mut self.system_prompt_file);
    }

    /// Reads `system_prompt_file` into [`LlmConfig::system_prompt`] when the section is on.
    pub(crate) fn read_system_prompt(&mut self) -> Result<(), Problem> {
        let (true, Some(path)) = (self.enabled, &self.system_prompt_file) else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problem::new(
                "llm.system_prompt_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        self.system_prompt = Some(text.trim().to_owned());
        Ok(())
    }
}
