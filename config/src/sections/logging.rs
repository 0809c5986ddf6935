//! `logging`: diagnostics level and format, and the chat, media and LLM log files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Problem;
use crate::sections::{require_non_empty, resolve_opt};

/// How diagnostics are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The `logging` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct LoggingConfig {
    /// Filter directives (`info`, `debug,async_nats=warn`); `RUST_LOG` overrides it.
    pub level: String,
    /// Output format of diagnostics.
    pub format: LogFormat,
    /// File that receives a copy of the channel's chat.
    #[serde(serialize_with = "super::ser_opt_path")]
    pub chat_log_file: Option<PathBuf>,
    /// File that receives the channel's media changes.
    #[serde(serialize_with = "super::ser_opt_path")]
    pub media_log_file: Option<PathBuf>,
    /// File that receives LLM prompts and replies.
    #[serde(serialize_with = "super::ser_opt_path")]
    pub llm_log_file: Option<PathBuf>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
            chat_log_file: None,
            media_log_file: None,
            llm_log_file: None,
        }
    }
}

impl LoggingConfig {
    /// Checks the rules serde cannot express.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        require_non_empty("logging.level", &self.level)
    }

    /// Makes relative log files relative to the configuration file's folder.
    pub(crate) fn resolve_paths(&mut self, base_dir: &Path) {
        resolve_opt(base_dir, &mut self.chat_log_file);
        resolve_opt(base_dir, &mut self.media_log_file);
        resolve_opt(base_dir, &mut self.llm_log_file);
    }
}
