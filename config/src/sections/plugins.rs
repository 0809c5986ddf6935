//! `plugins`: which plugins the runtime loads, their settings, and the runtime's timing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{join_key, Problem};
use crate::seconds::Seconds;
use crate::sections::positive;
use crate::verbatim::Verbatim;

/// The `plugins` section, read by the plugin runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct PluginsConfig {
    /// Folder holding the plugin libraries.
    #[serde(serialize_with = "super::ser_path")]
    pub directory: PathBuf,
    /// Folder under which the runtime keeps the per-run copies of the libraries it loads;
    /// absent means the first of the temporary folder, `$XDG_RUNTIME_DIR` and
    /// `~/.cache/rosey` that allows running code (a `noexec` mount cannot load libraries).
    #[serde(serialize_with = "super::ser_opt_path")]
    pub copy_directory: Option<PathBuf>,
    /// Names of the plugins to load (by default the two that ship with Rosey).
    pub enabled: Vec<String>,
    /// Whether a rebuilt plugin library is reloaded without a restart.
    pub hot_reload: bool,
    /// Per-plugin settings, by plugin name.
    pub config: BTreeMap<String, PluginSettings>,
    /// Where plugins run unless their own settings say otherwise.
    pub isolation: Isolation,
    /// Resource limits of a plugin's host process unless its own settings say otherwise.
    pub limits: PluginLimits,
    /// How often plugins get their tick.
    pub tick_interval: Seconds,
    /// How often, at the most, a plugin's state is saved after a tick (a checkpoint a crashed
    /// plugin restarts from; reloads and shutdowns always save). Ticks bound it from below.
    pub checkpoint_interval: Seconds,
    /// How long one plugin call may run before it is deemed stuck.
    pub watchdog_timeout: Seconds,
    /// Events queued for one plugin before new ones are dropped.
    pub queue_capacity: usize,
    /// Quiet time after a library changes before it is reloaded.
    pub reload_debounce: Seconds,
    /// Largest pause before restarting a failed plugin.
    pub restart_backoff_max: Seconds,
    /// Failures in a row after which a plugin is disabled.
    pub max_failures: u32,
    /// Loaded library copies after which reloading logs a warning (copies cannot be unloaded).
    pub reload_copies_warn: u32,
    /// How long an admin reload or enable waits for the plugin's worker to load it.
    pub admin_timeout: Seconds,
    /// Cap on the timeout a plugin may give its own NATS requests.
    pub max_request_timeout: Seconds,
    /// How long the runtime waits at exit for threads still in plugin code (0: not at all).
    pub shutdown_timeout: Seconds,
    /// How long a runtime's claim on a plugin lasts without renewal: when several runtimes
    /// share one NATS, one serves each plugin and the others take over within this time of its
    /// death (at once when it stops cleanly). Renewed every third of it.
    pub lease_ttl: Seconds,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("./plugins"),
            copy_directory: None,
            enabled: vec!["markov".to_owned(), "quotes".to_owned(), "llm".to_owned()],
            hot_reload: true,
            config: BTreeMap::new(),
            isolation: Isolation::default(),
            limits: PluginLimits::default(),
            tick_interval: Seconds::from_secs(1),
            checkpoint_interval: Seconds::from_secs(1),
            watchdog_timeout: Seconds::from_secs(10),
            queue_capacity: 1024,
            reload_debounce: Seconds::from_millis(150),
            restart_backoff_max: Seconds::from_secs(30),
            max_failures: 5,
            reload_copies_warn: 50,
            admin_timeout: Seconds::from_secs(30),
            max_request_timeout: Seconds::from_secs(60),
            shutdown_timeout: Seconds::from_secs(1),
            lease_ttl: Seconds::from_secs(10),
        }
    }
}

impl PluginsConfig {
    /// The settings of one plugin, if the file has any.
    pub fn settings(&self, plugin: &str) -> Option<&PluginSettings> {
        self.config.get(plugin)
    }

    /// Where `plugin` runs: its own `isolation`, else `plugins.isolation`.
    pub fn isolation_of(&self, plugin: &str) -> Isolation {
        self.settings(plugin)
            .and_then(|s| s.isolation)
            .unwrap_or(self.isolation)
    }

    /// The limits of `plugin`'s host process: each of its own `limits` keys, else the one in
    /// `plugins.limits`.
    pub fn limits_of(&self, plugin: &str) -> PluginLimits {
        match self.settings(plugin).and_then(|s| s.limits.as_ref()) {
            Some(own) => own.over(&self.limits),
            None => self.limits,
        }
    }

    /// Whether a plugin is listed in `enabled`.
    pub fn is_enabled(&self, plugin: &str) -> bool {
        self.enabled.iter().any(|name| name == plugin)
    }

    /// Checks the rules serde cannot express.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        let mut seen = BTreeSet::new();
        for (index, name) in self.enabled.iter().enumerate() {
            let key_path = format!("plugins.enabled[{index}]");
            if name.trim().is_empty() {
                return Err(Problem::new(key_path, "plugin names must not be empty"));
            }
            if !seen.insert(name.as_str()) {
                return Err(Problem::new(key_path, format!("{name:?} is listed twice")));
            }
        }
        for (name, settings) in &self.config {
            settings.validate(&join_key("plugins.config", name))?;
        }
        self.limits.validate("plugins.limits")?;
        positive("plugins.tick_interval", self.tick_interval)?;
        positive("plugins.checkpoint_interval", self.checkpoint_interval)?;
        positive("plugins.watchdog_timeout", self.watchdog_timeout)?;
        if self.queue_capacity == 0 {
            return Err(Problem::new("plugins.queue_capacity", "must be at least 1"));
        }
        if self.max_failures == 0 {
            return Err(Problem::new("plugins.max_failures", "must be at least 1"));
        }
        positive("plugins.admin_timeout", self.admin_timeout)?;
        positive("plugins.max_request_timeout", self.max_request_timeout)?;
        if self.lease_ttl.as_duration() < std::time::Duration::from_secs(1) {
            return Err(Problem::new(
                "plugins.lease_ttl",
                "must be at least 1 second (it is renewed every third of it)",
            ));
        }
        Ok(())
    }

    /// Makes relative plugin folders relative to the configuration file's folder.
    pub(crate) fn resolve_paths(&mut self, base_dir: &Path) {
        crate::sections::resolve_in_place(base_dir, &mut self.directory);
        crate::sections::resolve_opt(base_dir, &mut self.copy_directory);
    }
}

/// One plugin's settings: the keys the runtime reads ([`PluginSettings::RUNTIME_KEYS`], each
/// a field here), and every other key for the plugin itself.
///
/// This struct is the one place that says which keys are the runtime's: serde takes each
/// field's key out before the rest is collected into [`PluginSettings::other`], which is all
/// the plugin receives. A key added for the runtime is a field here and a name in
/// `RUNTIME_KEYS` (a test keeps the two in step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, expecting = "an object")]
pub struct PluginSettings {
    /// Channels the plugin serves; absent means every channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// Channels the plugin must ignore.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_channels: Vec<String>,
    /// Subjects the plugin may use; absent means the runtime's default grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<PluginPermissions>,
    /// Rank and cooldown overrides of the plugin's commands, by command name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub commands: BTreeMap<String, CommandOverride>,
    /// Where this plugin runs, instead of `plugins.isolation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// This plugin's host process limits, each key instead of the one in `plugins.limits`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<PluginLimits>,
    /// Every other key, kept as written for the plugin (always a JSON object).
    #[serde(flatten)]
    pub other: Verbatim,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            channels: None,
            exclude_channels: Vec::new(),
            permissions: None,
            commands: BTreeMap::new(),
            isolation: None,
            limits: None,
            other: Verbatim::new(serde_json::Value::Object(serde_json::Map::new())),
        }
    }
}

impl PluginSettings {
    /// The keys the runtime reads out of `plugins.config.<name>`; the plugin never sees them.
    pub const RUNTIME_KEYS: [&'static str; 6] = [
        "channels",
        "exclude_channels",
        "permissions",
        "commands",
        "isolation",
        "limits",
    ];

    /// Whether the plugin should see events of `channel`.
    pub fn serves_channel(&self, channel: &str) -> bool {
        let included = self
            .channels
            .as_ref()
            .is_none_or(|list| list.iter().any(|c| c == channel));
        included && !self.exclude_channels.iter().any(|c| c == channel)
    }

    /// The plugin's own settings (every key but [`PluginSettings::RUNTIME_KEYS`]), secrets
    /// included.
    pub fn plugin_json(&self) -> &serde_json::Value {
        self.other.value()
    }

    /// Checks subject patterns and limits for obvious mistakes.
    fn validate(&self, key_path: &str) -> Result<(), Problem> {
        if let Some(limits) = &self.limits {
            limits.validate(&format!("{key_path}.limits"))?;
        }
        let Some(permissions) = &self.permissions else {
            return Ok(());
        };
        for (kind, list) in [
            ("publish", &permissions.publish),
            ("subscribe", &permissions.subscribe),
            ("request", &permissions.request),
        ] {
            for (index, subject) in list.iter().enumerate() {
                if subject.is_empty() || subject.chars().any(char::is_whitespace) {
                    return Err(Problem::new(
                        format!("{key_path}.permissions.{kind}[{index}]"),
                        format!("{subject:?} is not a NATS subject"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where a plugin's code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// In a sandboxed host process of its own, supervised by the runtime: a crash or a runaway
    /// plugin takes down only itself. The default: it costs about 50 µs per command (see
    /// BENCHMARKS.md), far below anything a chat channel notices.
    #[default]
    Process,
    /// Inside the runtime's process (fastest; a crash there ends every plugin, and nothing
    /// stops a plugin from reading files or opening sockets).
    InProcess,
}

/// Resource limits of one plugin's host process (`isolation: process`), applied with
/// rlimits before the plugin runs; a host that exceeds one is killed and restarted from the
/// plugin's last saved state. An absent key takes `plugins.limits`' value, else the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct PluginLimits {
    /// Address space of the host process, in MiB (`RLIMIT_AS`): an allocation past it fails,
    /// which aborts the plugin. Default [`PluginLimits::DEFAULT_MEMORY_MIB`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// CPU time the host process may use, in seconds (`RLIMIT_CPU`, counted over the host's
    /// life); an endless loop in one call is caught sooner by `plugins.watchdog_timeout`.
    /// Default [`PluginLimits::DEFAULT_CPU_SECONDS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`). Default [`PluginLimits::DEFAULT_OPEN_FILES`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// Share of one CPU, in percent, that the plugin's own threads (every thread of the host
    /// process but the two serving the runtime's deliveries) may use on average over
    /// `cpu_window`; above it the runtime kills the host, which restarts from its last saved
    /// state. Handlers run on the host's serving thread and are not counted (a stuck call is
    /// `plugins.watchdog_timeout`'s), so a plugin busy with many messages is never stopped by
    /// it. Default [`PluginLimits::DEFAULT_CPU_SHARE`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<u32>,
    /// The window `cpu_share` is averaged over. Default [`PluginLimits::DEFAULT_CPU_WINDOW`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_window: Option<Seconds>,
}

impl PluginLimits {
    /// Address space when nothing is configured: far above what a plugin needs, and reached
    /// by a runaway allocation within a second on a small machine.
    pub const DEFAULT_MEMORY_MIB: u64 = 1024;
    /// CPU seconds when nothing is configured.
    pub const DEFAULT_CPU_SECONDS: u64 = 3600;
    /// Open files when nothing is configured.
    pub const DEFAULT_OPEN_FILES: u64 = 64;
    /// Share of one CPU (percent) a plugin's own threads may use over `cpu_window` when
    /// nothing is configured: a thread spinning outside any call is stopped within seconds.
    pub const DEFAULT_CPU_SHARE: u32 = 50;
    /// The window `cpu_share` is averaged over when nothing is configured.
    pub const DEFAULT_CPU_WINDOW: Seconds = Seconds::from_secs(5);
    /// Smallest address space a host can load a plugin in.
    pub const MIN_MEMORY_MIB: u64 = 64;
    /// Largest `cpu_share`: every core of a big machine, fully.
    pub const MAX_CPU_SHARE: u32 = 100 * 256;

    /// The address space limit in MiB.
    pub fn memory_mib(&self) -> u64 {
        self.memory_mib.unwrap_or(Self::DEFAULT_MEMORY_MIB)
    }

    /// The CPU time limit in seconds.
    pub fn cpu_seconds(&self) -> u64 {
        self.cpu_seconds.unwrap_or(Self::DEFAULT_CPU_SECONDS)
    }

    /// The open files limit.
    pub fn open_files(&self) -> u64 {
        self.open_files.unwrap_or(Self::DEFAULT_OPEN_FILES)
    }

    /// The share of one CPU (percent) the plugin's own threads may use over
    /// [`PluginLimits::cpu_window`].
    pub fn cpu_share(&self) -> u32 {
        self.cpu_share.unwrap_or(Self::DEFAULT_CPU_SHARE)
    }

    /// The window [`PluginLimits::cpu_share`] is averaged over.
    pub fn cpu_window(&self) -> std::time::Duration {
        self.cpu_window
            .unwrap_or(Self::DEFAULT_CPU_WINDOW)
            .as_duration()
    }

    /// These limits where written, `base`'s elsewhere.
    fn over(&self, base: &PluginLimits) -> PluginLimits {
        PluginLimits {
            memory_mib: self.memory_mib.or(base.memory_mib),
            cpu_seconds: self.cpu_seconds.or(base.cpu_seconds),
            open_files: self.open_files.or(base.open_files),
            cpu_share: self.cpu_share.or(base.cpu_share),
            cpu_window: self.cpu_window.or(base.cpu_window),
        }
    }

    fn validate(&self, key_path: &str) -> Result<(), Problem> {
        if self.memory_mib() < Self::MIN_MEMORY_MIB {
            return Err(Problem::new(
                format!("{key_path}.memory_mib"),
                format!("must be at least {}", Self::MIN_MEMORY_MIB),
            ));
        }
        if self.cpu_seconds() == 0 {
            return Err(Problem::new(
                format!("{key_path}.cpu_seconds"),
                "must be at least 1",
            ));
        }
        if self.open_files() < 8 {
            return Err(Problem::new(
                format!("{key_path}.open_files"),
                "must be at least 8",
            ));
        }
        if !(1..=Self::MAX_CPU_SHARE).contains(&self.cpu_share()) {
            return Err(Problem::new(
                format!("{key_path}.cpu_share"),
                format!(
                    "must be a percentage of one CPU from 1 to {}",
                    Self::MAX_CPU_SHARE
                ),
            ));
        }
        if self.cpu_window() < std::time::Duration::from_secs(1) {
            return Err(Problem::new(
                format!("{key_path}.cpu_window"),
                "must be at least 1 second (the runtime samples CPU time twice a second)",
            ));
        }
        Ok(())
    }
}

/// An operator's change to one command's limits (`plugins.config.<name>.commands.<command>`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct CommandOverride {
    /// The lowest rank allowed to use the command, instead of the plugin's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_rank: Option<f64>,
    /// Per-user pause between two uses, instead of the plugin's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Seconds>,
}

/// NATS subjects (wildcards allowed) a plugin may publish to, subscribe to and request on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct PluginPermissions {
    /// Subjects the plugin may publish to.
    pub publish: Vec<String>,
    /// Subjects the plugin may subscribe to.
    pub subscribe: Vec<String>,
    /// Subjects the plugin may send requests on.
    pub request: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runtime_key_is_taken_out_before_the_plugin_sees_its_settings() {
        let mut written = serde_json::json!({"mine": 1, "deny": {"x": true}});
        let example = serde_json::json!({
            "channels": ["a"],
            "exclude_channels": ["b"],
            "permissions": {"publish": ["x.y"]},
            "commands": {"quote": {"min_rank": 2, "cooldown": 1.5}},
            "isolation": "process",
            "limits": {"memory_mib": 256},
        });
        // The example must cover the list, so a key added to one and not the other fails.
        let keys: BTreeSet<&str> = example
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            PluginSettings::RUNTIME_KEYS
                .into_iter()
                .collect::<BTreeSet<_>>()
        );
        for (k, v) in example.as_object().unwrap() {
            written[k] = v.clone();
        }
        let settings: PluginSettings = serde_json::from_value(written).unwrap();
        assert_eq!(
            settings.plugin_json(),
            &serde_json::json!({"mine": 1, "deny": {"x": true}})
        );
        assert_eq!(
            settings.commands["quote"],
            CommandOverride {
                min_rank: Some(2.0),
                cooldown: Some(Seconds::from_millis(1500)),
            }
        );
        // Every field is a runtime key: serializing the settings without `other` gives them all.
        let runtime_only = PluginSettings {
            other: Verbatim::new(serde_json::json!({})),
            ..settings
        };
        let back = serde_json::to_value(&runtime_only).unwrap();
        let back_keys: BTreeSet<&str> = back
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(back_keys, keys);
    }

    #[test]
    fn isolation_and_limits_come_from_the_plugin_else_the_section() {
        let plugins: PluginsConfig = serde_json::from_value(serde_json::json!({
            "isolation": "process",
            "limits": {"cpu_seconds": 60, "cpu_share": 30},
            "config": {
                "quotes": {"isolation": "in_process"},
                "markov": {"limits": {"memory_mib": 256, "cpu_window": 2}},
            },
        }))
        .unwrap();
        plugins.validate().unwrap();
        assert_eq!(plugins.isolation_of("quotes"), Isolation::InProcess);
        assert_eq!(plugins.isolation_of("markov"), Isolation::Process);
        assert_eq!(plugins.isolation_of("other"), Isolation::Process);
        let markov = plugins.limits_of("markov");
        assert_eq!((markov.memory_mib(), markov.cpu_seconds()), (256, 60));
        assert_eq!(
            (markov.cpu_share(), markov.cpu_window()),
            (30, std::time::Duration::from_secs(2))
        );
        let quotes = plugins.limits_of("quotes");
        assert_eq!(
            (quotes.cpu_share(), quotes.cpu_window()),
            (30, PluginLimits::DEFAULT_CPU_WINDOW.as_duration())
        );
        let defaults = PluginLimits::default();
        assert_eq!(
            (defaults.cpu_share(), defaults.cpu_window()),
            (50, std::time::Duration::from_secs(5))
        );
        assert_eq!(
            plugins.limits_of("other").memory_mib(),
            PluginLimits::DEFAULT_MEMORY_MIB
        );
        assert_eq!(
            PluginsConfig::default().isolation_of("quotes"),
            Isolation::Process
        );
        for bad in [
            serde_json::json!({"isolation": "thread"}),
            serde_json::json!({"limits": {"memory": 5}}),
        ] {
            assert!(
                serde_json::from_value::<PluginsConfig>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        for (bad, key) in [
            (
                serde_json::json!({"limits": {"memory_mib": 1}}),
                "plugins.limits.memory_mib",
            ),
            (
                serde_json::json!({"config": {"x": {"limits": {"cpu_seconds": 0}}}}),
                "plugins.config.x.limits.cpu_seconds",
            ),
            (
                serde_json::json!({"limits": {"cpu_share": 0}}),
                "plugins.limits.cpu_share",
            ),
            (
                serde_json::json!({"config": {"x": {"limits": {"cpu_window": 0.5}}}}),
                "plugins.config.x.limits.cpu_window",
            ),
        ] {
            let plugins: PluginsConfig = serde_json::from_value(bad).unwrap();
            let problem = plugins.validate().unwrap_err();
            assert!(format!("{problem:?}").contains(key), "{problem:?}");
        }
    }

    #[test]
    fn command_overrides_are_checked() {
        for bad in [
            serde_json::json!({"commands": {"quote": {"cooldwon": 1}}}),
            serde_json::json!({"commands": {"quote": {"cooldown": -1}}}),
            serde_json::json!({"commands": {"quote": {"min_rank": "high"}}}),
            serde_json::json!({"commands": ["quote"]}),
        ] {
            assert!(
                serde_json::from_value::<PluginSettings>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
