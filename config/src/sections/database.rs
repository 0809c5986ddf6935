//! `database`: the SQLite file, the database service's stream and its timing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rosey_plugin_api::subjects::db;
use serde::{Deserialize, Serialize};

use crate::error::{join_key, Problem};
use crate::seconds::Seconds;
use crate::sections::positive;

/// The database subjects the file may list, by name; the values are fixed by the wire contract.
///
/// The PRD's example lists these under `database.nats_subjects`; Rosey does not let them be
/// renamed, so a listed subject must equal its built-in value.
pub const DB_SUBJECTS: [(&str, &str); 11] = [
    ("user_joined", db::USER_JOINED),
    ("user_left", db::USER_LEFT),
    ("message_log", db::MESSAGE_LOG),
    ("user_count", db::STATS_USER_COUNT),
    ("high_water", db::STATS_HIGH_WATER),
    ("status_update", db::STATUS_UPDATE),
    ("mark_sent", db::OUTBOUND_MARK_SENT),
    ("mark_failed", db::OUTBOUND_MARK_FAILED),
    ("pm_command", db::ACTION_PM_COMMAND),
    ("outbound_get", db::OUTBOUND_GET),
    ("recent_chat", db::RECENT_CHAT_GET),
];

/// The built-in subject for a `database.nats_subjects` name.
pub fn db_subject(name: &str) -> Option<&'static str> {
    DB_SUBJECTS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, subject)| *subject)
}

/// The `database` section, read by the database service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct DatabaseConfig {
    /// The SQLite file.
    #[serde(serialize_with = "super::ser_path")]
    pub path: PathBuf,
    /// Whether the database service is meant to run (the launcher skips it when false).
    pub service_enabled: bool,
    /// Subjects listed for documentation; each must equal its built-in value.
    pub nats_subjects: BTreeMap<String, String>,
    /// The JetStream stream that carries durable database writes.
    pub stream: StreamConfig,
    /// Most writes committed in one SQLite transaction.
    pub batch_size: usize,
    /// How long a batch waits for more writes before committing.
    pub batch_wait: Seconds,
    /// Times applying one write may end the service before it is given up on.
    pub max_redeliveries: u32,
    /// How often old rows of the recent-chat table are pruned.
    pub recent_chat_prune_interval: Seconds,
    /// How often routine maintenance (pruning, optimize) runs.
    pub maintenance_interval: Seconds,
    /// How long recent chat is kept.
    pub recent_chat_retention_hours: u32,
    /// How long JetStream waits for a batch's acknowledgement before redelivering it.
    pub ack_wait: Seconds,
    /// The pull stream's idle heartbeat, so a dead connection is noticed.
    pub pull_heartbeat: Seconds,
    /// How long one pull request stays open on the server before it is renewed.
    pub pull_expiry: Seconds,
    /// How long a SQLite connection waits for another writer before reporting the file busy.
    pub busy_timeout: Seconds,
    /// Read-only SQLite connections that serve queries at once.
    pub read_connections: usize,
    /// Requests handled at once; more wait in their subscription.
    pub request_concurrency: usize,
    /// How long shutdown waits to send buffered acknowledgements and replies.
    pub shutdown_flush_timeout: Seconds,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("bot_data.db"),
            service_enabled: true,
            nats_subjects: BTreeMap::new(),
            stream: StreamConfig::default(),
            batch_size: 500,
            batch_wait: Seconds::from_millis(5),
            max_redeliveries: 5,
            recent_chat_prune_interval: Seconds::from_secs(600),
            maintenance_interval: Seconds::from_secs(86_400),
            recent_chat_retention_hours: 150,
            ack_wait: Seconds::from_secs(60),
            pull_heartbeat: Seconds::from_secs(5),
            pull_expiry: Seconds::from_secs(30),
            busy_timeout: Seconds::from_secs(5),
            read_connections: 2,
            request_concurrency: 64,
            shutdown_flush_timeout: Seconds::from_secs(5),
        }
    }
}

impl DatabaseConfig {
    /// Checks the rules serde cannot express.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        if self.path.as_os_str().is_empty() {
            return Err(Problem::new("database.path", "must not be empty"));
        }
        for (name, subject) in &self.nats_subjects {
            let key_path = join_key("database.nats_subjects", name);
            match db_subject(name) {
                None => {
                    let known: Vec<&str> = DB_SUBJECTS.iter().map(|(n, _)| *n).collect();
                    return Err(Problem::new(
                        key_path,
                        format!("unknown subject name; known names: {}", known.join(", ")),
                    ));
                }
                Some(expected) if expected != subject => {
                    return Err(Problem::new(
                        key_path,
                        format!(
                            "subjects cannot be renamed: expected {expected:?}, found {subject:?}"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if self.stream.max_age_days == 0 {
            return Err(Problem::new(
                "database.stream.max_age_days",
                "must be at least 1",
            ));
        }
        if !(1..=5).contains(&self.stream.replicas) {
            return Err(Problem::new(
                "database.stream.replicas",
                "must be 1 to 5 (JetStream keeps at most five copies)",
            ));
        }
        if self.stream.max_bytes == 0 {
            return Err(Problem::new(
                "database.stream.max_bytes",
                "must be at least 1",
            ));
        }
        if self.batch_size == 0 {
            return Err(Problem::new("database.batch_size", "must be at least 1"));
        }
        if self.max_redeliveries == 0 {
            return Err(Problem::new(
                "database.max_redeliveries",
                "must be at least 1",
            ));
        }
        positive(
            "database.recent_chat_prune_interval",
            self.recent_chat_prune_interval,
        )?;
        positive("database.maintenance_interval", self.maintenance_interval)?;
        positive("database.ack_wait", self.ack_wait)?;
        positive("database.pull_heartbeat", self.pull_heartbeat)?;
        positive("database.pull_expiry", self.pull_expiry)?;
        // The server refuses a pull request whose heartbeat exceeds half its expiry.
        if self.pull_heartbeat.as_duration() * 2 > self.pull_expiry.as_duration() {
            return Err(Problem::new(
                "database.pull_heartbeat",
                format!(
                    "must be at most half of database.pull_expiry ({})",
                    self.pull_expiry
                ),
            ));
        }
        // Zero turns SQLite's busy handler off: every overlap with another writer would fail.
        positive("database.busy_timeout", self.busy_timeout)?;
        if self.read_connections == 0 {
            return Err(Problem::new(
                "database.read_connections",
                "must be at least 1",
            ));
        }
        if self.request_concurrency == 0 {
            return Err(Problem::new(
                "database.request_concurrency",
                "must be at least 1",
            ));
        }
        positive(
            "database.shutdown_flush_timeout",
            self.shutdown_flush_timeout,
        )?;
        Ok(())
    }

    /// Makes a relative database path relative to the configuration file's folder.
    pub(crate) fn resolve_paths(&mut self, base_dir: &Path) {
        crate::sections::resolve_in_place(base_dir, &mut self.path);
    }
}

/// Limits of the JetStream stream that holds durable database writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct StreamConfig {
    /// Writes older than this are dropped from the stream.
    pub max_age_days: u32,
    /// Size cap of the stream.
    pub max_bytes: u64,
    /// Window in which a repeated message ID is dropped as a duplicate.
    pub duplicate_window: Seconds,
    /// How many JetStream servers keep a copy of Rosey's streams (1 to 5; 3 on a three-node
    /// cluster survives the loss of one node). An existing stream is brought to it at start.
    pub replicas: u8,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            max_age_days: 7,
            max_bytes: 1 << 30,
            duplicate_window: Seconds::from_secs(120),
            replicas: 1,
        }
    }
}

impl StreamConfig {
    /// `max_age_days` as a duration, which is what the stream definition wants.
    pub fn max_age(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.max_age_days) * 86_400)
    }

    /// The stream's limits as the contract's stream definition takes them; the bot and rosey-db
    /// both create the stream, so they must build it from the same numbers.
    #[cfg(feature = "cli")]
    pub fn limits(&self) -> rosey_plugin_api::stream::StreamLimits {
        rosey_plugin_api::stream::StreamLimits {
            max_age: self.max_age(),
            max_bytes: i64::try_from(self.max_bytes).unwrap_or(i64::MAX),
            duplicate_window: self.duplicate_window.as_duration(),
            replicas: usize::from(self.replicas),
        }
    }
}
