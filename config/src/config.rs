//! The whole configuration: one value every process reads its sections from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Problem;
use crate::sections::database::DatabaseConfig;
use crate::sections::llm::LlmConfig;
use crate::sections::logging::{LogFormat, LoggingConfig};
use crate::sections::nats::NatsConfig;
use crate::sections::platform::PlatformConfig;
use crate::sections::plugins::PluginsConfig;
use crate::sections::shell::ShellConfig;
use crate::sections::web::WebConfig;
use crate::verbatim::Verbatim;

/// The only configuration format version this build reads.
pub const CURRENT_VERSION: &str = "2.0";

/// Rosey's configuration: every section, with defaults filled in and relative paths resolved.
///
/// `Debug` and `Serialize` never show a secret; see [`Config::to_redacted_json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct Config {
    /// Format version; always [`CURRENT_VERSION`] once loaded.
    pub version: String,
    /// The chat connection (read by the bot).
    pub platform: PlatformConfig,
    /// The message bus (read by every process).
    pub nats: NatsConfig,
    /// The database service.
    pub database: DatabaseConfig,
    /// The plugin runtime.
    pub plugins: PluginsConfig,
    /// The PM command shell.
    pub shell: ShellConfig,
    /// Diagnostics and chat log files.
    pub logging: LoggingConfig,
    /// LLM chat: the provider part for `rosey-llm`, the rest for the `llm` plugin.
    pub llm: LlmConfig,
    /// rosey-web: the status page and HTTP API.
    pub web: WebConfig,
    /// The original's metrics exporter settings, kept as written and unused: rosey-web serves
    /// `/metrics` and `/health` itself.
    #[serde(skip_serializing_if = "Verbatim::is_absent")]
    pub metrics: Verbatim,
    /// Non-fatal remarks made while loading (ignored keys and the like).
    #[serde(skip)]
    warnings: Vec<String>,
}

impl Default for Config {
    /// The embedded defaults: a console bot talking to NATS on localhost.
    fn default() -> Self {
        Self {
            version: CURRENT_VERSION.to_owned(),
            platform: PlatformConfig::default(),
            nats: NatsConfig::default(),
            database: DatabaseConfig::default(),
            plugins: PluginsConfig::default(),
            shell: ShellConfig::default(),
            logging: LoggingConfig::default(),
            llm: LlmConfig::default(),
            web: WebConfig::default(),
            metrics: Verbatim::default(),
            warnings: Vec::new(),
        }
    }
}

/// The name of the plugin that holds the LLM chat behaviour.
pub const LLM_PLUGIN: &str = "llm";

impl Config {
    /// The `plugins` section as the runtime applies it: with `llm.enabled`, the `llm` plugin is
    /// enabled even when `plugins.enabled` omits it, and in every case its configuration is
    /// [`LlmConfig::plugin_settings`] (plus `enabled`) with the operator's
    /// `plugins.config.llm` keys laid over it.
    pub fn runtime_plugins(&self) -> PluginsConfig {
        let mut plugins = self.plugins.clone();
        if self.llm.enabled && !plugins.is_enabled(LLM_PLUGIN) {
            plugins.enabled.push(LLM_PLUGIN.to_owned());
        }
        let mut base = serde_json::to_value(self.llm.plugin_settings())
            .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new()));
        if let serde_json::Value::Object(map) = &mut base {
            map.insert(
                "enabled".to_owned(),
                serde_json::Value::Bool(self.llm.enabled),
            );
        }
        let settings = plugins.config.entry(LLM_PLUGIN.to_owned()).or_default();
        merge_json(&mut base, settings.other.value());
        settings.other = Verbatim::new(base);
        plugins
    }

    /// Non-fatal remarks made while loading, for the caller to log once logging is up.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The effective configuration as JSON with every secret shown as `***`, for
    /// `rosey config check`.
    pub fn to_redacted_json(&self) -> serde_json::Value {
        // Serialization of this tree cannot fail: keys are strings and paths go through
        // `to_string_lossy`; keep a readable fallback anyway rather than panic.
        serde_json::to_value(self).unwrap_or_else(|e| {
            serde_json::Value::String(format!("unprintable configuration: {e}"))
        })
    }

    /// Each served channel with the SQLite file holding its data, in
    /// [`PlatformConfig::served_channels`]'s order: the first channel's is `database.path`
    /// itself (the file a single-channel deployment has always had), each other's sits next to
    /// it with the channel's name before the extension (`bot_data.db` -> `bot_data.lobby.db`).
    pub fn channel_databases(&self) -> Vec<(String, PathBuf)> {
        let path = &self.database.path;
        self.platform
            .channel_names()
            .into_iter()
            .enumerate()
            .map(|(i, channel)| {
                if i == 0 {
                    return (channel, path.clone());
                }
                let stem = path.file_stem().map_or_else(
                    || "bot_data".to_owned(),
                    |s| s.to_string_lossy().into_owned(),
                );
                let name = match path.extension() {
                    Some(ext) => format!("{stem}.{channel}.{}", ext.to_string_lossy()),
                    None => format!("{stem}.{channel}"),
                };
                let file = path.with_file_name(name);
                (channel, file)
            })
            .collect()
    }

    /// Channel files next to `database.path` that no configured channel uses: a channel removed
    /// from `platform.channels` keeps its file (data is never deleted automatically), and
    /// `rosey config check` / `rosey status` name it so the operator can keep, move or delete
    /// it. Each is `(channel, path)`, sorted; a directory that cannot be read gives none.
    pub fn unclaimed_channel_databases(&self) -> Vec<(String, PathBuf)> {
        let path = &self.database.path;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let stem = path.file_stem().map_or_else(
            || "bot_data".to_owned(),
            |s| s.to_string_lossy().into_owned(),
        );
        let ext = path.extension().map(|e| e.to_string_lossy().into_owned());
        let claimed = self.channel_databases();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut found: Vec<(String, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix(&stem)?.strip_prefix('.')?;
                let channel = match &ext {
                    Some(ext) => rest.strip_suffix(ext.as_str())?.strip_suffix('.')?,
                    None => rest,
                };
                rosey_plugin_api::subjects::is_channel_name(channel)
                    .then(|| (channel.to_owned(), dir.join(&name)))
            })
            .filter(|(channel, file)| {
                !claimed
                    .iter()
                    .any(|(c, f)| c == channel || f.file_name() == file.file_name())
            })
            .collect();
        found.sort();
        found
    }

    /// Narrows the configuration to the one channel a `rosey-bot` serves (`--channel NAME`, or
    /// the only one): see [`PlatformConfig::for_channel`].
    pub fn select_channel(&mut self, name: Option<&str>) -> Result<(), String> {
        self.platform = self.platform.for_channel(name)?;
        Ok(())
    }

    /// Overrides `database.path`, e.g. from a `--db` flag (relative to the current directory).
    pub fn set_database_path(&mut self, path: impl Into<PathBuf>) {
        self.database.path = path.into();
    }

    /// Overrides `plugins.directory`, e.g. from a `--plugins-dir` flag.
    pub fn set_plugins_dir(&mut self, dir: impl Into<PathBuf>) {
        self.plugins.directory = dir.into();
    }

    /// Overrides `nats.server`, e.g. from a `--nats` flag.
    pub fn set_nats_server(&mut self, url: impl Into<String>) {
        self.nats.server = url.into();
    }

    /// Overrides `logging.format`, e.g. from a `--log-format` flag.
    pub fn set_log_format(&mut self, format: LogFormat) {
        self.logging.format = format;
    }

    /// Checks every section's rules.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        self.platform.validate()?;
        self.nats.validate()?;
        self.database.validate()?;
        self.plugins.validate()?;
        self.llm.validate()?;
        self.web.validate()?;
        self.logging.validate()
    }

    /// Makes every relative path relative to `base_dir`.
    pub(crate) fn resolve_paths(&mut self, base_dir: &std::path::Path) {
        self.nats.resolve_paths(base_dir);
        self.database.resolve_paths(base_dir);
        self.plugins.resolve_paths(base_dir);
        self.logging.resolve_paths(base_dir);
        self.llm.resolve_paths(base_dir);
    }

    /// Records remarks about keys that are accepted but have no effect.
    pub(crate) fn collect_warnings(&mut self) {
        if self.nats.cluster_id.is_some() {
            self.warnings.push(
                "nats.cluster_id is ignored: it belongs to NATS Streaming, which Rosey does not use"
                    .to_owned(),
            );
        }
    }
}

/// Lays `over` onto `base`: objects merge key by key, anything else replaces.
fn merge_json(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(slot) => merge_json(slot, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}
