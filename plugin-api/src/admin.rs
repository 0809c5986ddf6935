//! The plugin runtime's administration payloads (`rosey.runtime.*`).

use serde::{Deserialize, Serialize};

/// What a plugin is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Serving messages.
    Running,
    /// Being loaded or reloaded.
    Loading,
    /// Its last load or run failed.
    Failed,
    /// Stuck in one call past the watchdog limit.
    Stuck,
    /// Disabled by an operator or by repeated failures.
    Disabled,
}

/// One plugin in the `plugins.list` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The plugin's configured name.
    pub name: String,
    /// The version the plugin reports (its own `Cargo.toml` version).
    pub version: String,
    /// How many libraries have been loaded for it (1 for the first).
    pub generation: u64,
    /// What it is doing now.
    pub state: PluginState,
    /// When the serving generation was loaded (Unix seconds).
    pub loaded_at: i64,
    /// Reloads so far.
    pub reloads: u64,
    /// Messages handled.
    pub messages: u64,
    /// Errors returned or caught.
    pub errors: u64,
    /// The last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The plugin's host process, when it runs in one (`isolation: process`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostProcess>,
}

/// A plugin's host process (`plugins.isolation: process`), as `plugins.list` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostProcess {
    /// The serving host's process id.
    pub pid: u32,
    /// Hosts started again after one crashed, exceeded a limit or was stuck.
    pub restarts: u64,
    /// The serving host's resident memory in KiB, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_kib: Option<u64>,
}

/// Request `rosey.runtime.plugins.list` (no fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PluginsListRequest {}

/// Reply to `plugins.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginsList {
    /// Every configured plugin.
    pub plugins: Vec<PluginInfo>,
}

/// Request `plugins.reload`, `.enable` and `.disable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginName {
    /// The plugin's configured name.
    pub name: String,
}

/// `rosey.runtime.plugin.{loaded,reloaded,failed,unloaded}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginLifecycle {
    /// The plugin's name.
    pub name: String,
    /// Its version (empty when the library could not be read).
    pub version: String,
    /// The generation concerned.
    pub generation: u64,
    /// What failed, on `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
