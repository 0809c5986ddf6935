//! `shell`: the operator's PM command shell.

use serde::{Deserialize, Serialize};

/// The `shell` section; `host` and `port` are accepted from the original's format and unused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct ShellConfig {
    /// Whether moderators may run shell commands by private message.
    pub enabled: bool,
    /// The original's TCP shell host; unused.
    pub host: Option<String>,
    /// The original's TCP shell port; unused.
    pub port: Option<u16>,
}

impl Default for ShellConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            host: None,
            port: None,
        }
    }
}
