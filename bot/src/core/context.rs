//! What the core's tasks share: the bot's settings (from the configuration) and the context
//! ([`Ctx`]) every task holds: NATS, the channel state, the chat queue, the database writer.

use crate::chat_queue::{ChatError, ChatQueue, Destination};
use crate::db_publisher::{DbPublisher, DbTiming};
use crate::flood::FloodGuard;
use crate::logfiles::LogFiles;
use crate::platform::{ActionError, ActionRequest, Meta, PlatformAction};
use crate::state::ChannelState;
use bytes::Bytes;
use rosey_config::Config;
use rosey_plugin_api::db::StatusUpdate;
use rosey_plugin_api::events::{BotStatus, Event};
use rosey_plugin_api::stream::StreamLimits;
use rosey_plugin_api::subjects;
use rosey_plugin_api::{ErrorBody, ErrorCode, Timestamp};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// The core's settings, taken from the configuration once.
#[derive(Debug, Clone)]
pub struct BotSettings {
    /// What starts a command.
    pub command_prefix: String,
    /// Commands per minute before a user is ignored.
    pub flood_per_minute: u32,
    /// How long a flooding user is ignored.
    pub flood_block: Duration,
    /// Whether moderators' PMs run shell commands.
    pub shell_enabled: bool,
    /// Outgoing chat burst.
    pub chat_burst: u32,
    /// Outgoing chat rate after the burst.
    pub chat_per_second: f64,
    /// Longest chat piece.
    pub max_message_len: usize,
    /// Outbound poll period.
    pub outbound_poll_interval: Duration,
    /// Outbound request timeout.
    pub outbound_request_timeout: Duration,
    /// Timeout of database queries made by the shell.
    pub request_timeout: Duration,
    /// Status publish period.
    pub status_interval: Duration,
    /// User-count sample period.
    pub user_count_interval: Duration,
    /// The database stream's limits.
    pub stream_limits: StreamLimits,
    /// Timing of the durable database writes.
    pub db_timing: DbTiming,
    /// How long a live publish may wait for room in the NATS client's buffer.
    pub live_publish_timeout: Duration,
    /// How long a sent (or given-up) outbound message id is remembered.
    pub outbound_duplicate_window: Duration,
    /// Pause before an outbound message that failed for a passing reason is tried again.
    pub outbound_retry_pause: Duration,
    /// How long shutdown waits for queued database writes and publishes to reach NATS.
    pub shutdown_flush_timeout: Duration,
    /// Chat log file.
    pub chat_log_file: Option<PathBuf>,
    /// Media log file.
    pub media_log_file: Option<PathBuf>,
    /// Most users kept for the channel (`platform.max_users`).
    pub max_users: usize,
    /// The channel named in database writes; `None` for the deployment's first channel, which
    /// writes on the PRD's subjects.
    pub db_channel: Option<String>,
    /// The channel named in database requests; `None` only when the deployment serves one
    /// channel (rosey-db refuses an unnamed read when it serves several).
    pub request_channel: Option<String>,
    /// Every channel of the process (comma-separated) when it serves several, for `$SRV`.
    pub process_channels: Option<String>,
}

impl BotSettings {
    /// The settings a configuration asks for.
    pub fn from_config(
        config: &Config,
        db_channel: Option<String>,
        request_channel: Option<String>,
    ) -> Self {
        let p = &config.platform;
        BotSettings {
            command_prefix: p.command_prefix.clone(),
            flood_per_minute: p.flood.commands_per_minute,
            flood_block: p.flood.block_seconds.as_duration(),
            shell_enabled: config.shell.enabled,
            chat_burst: p.chat_rate.burst,
            chat_per_second: p.chat_rate.per_second,
            max_message_len: p.max_message_len,
            outbound_poll_interval: p.outbound_poll_interval.as_duration(),
            outbound_request_timeout: p.outbound_request_timeout.as_duration(),
            request_timeout: config.nats.request_timeout.as_duration(),
            status_interval: p.status_interval.as_duration(),
            user_count_interval: p.user_count_interval.as_duration(),
            stream_limits: config.database.stream.limits(),
            db_timing: DbTiming {
                setup_timeout: p.stream_setup_timeout.as_duration(),
                setup_max_delay: p.stream_setup_max_delay.as_duration(),
                retry_max_delay: p.db_write_retry_max_delay.as_duration(),
                backlog: p.db_write_backlog,
            },
            live_publish_timeout: p.live_publish_timeout.as_duration(),
            outbound_duplicate_window: p.outbound_duplicate_window.as_duration(),
            outbound_retry_pause: p.outbound_retry_pause(),
            shutdown_flush_timeout: p.shutdown_flush_timeout.as_duration(),
            chat_log_file: config.logging.chat_log_file.clone(),
            media_log_file: config.logging.media_log_file.clone(),
            max_users: p.max_users,
            db_channel,
            request_channel,
            process_channels: None,
        }
    }
}

/// Everything the core's tasks share.
pub struct Ctx {
    /// The NATS connection.
    pub nats: async_nats::Client,
    /// The platform's name.
    pub platform: &'static str,
    /// The channel served.
    pub channel: String,
    /// What the configuration asks of the bot.
    pub settings: BotSettings,
    /// The channel state (changed only by the event loop).
    pub state: Mutex<ChannelState>,
    /// Outgoing chat and PMs.
    pub chat: ChatQueue,
    /// Durable database writes.
    pub db: DbPublisher,
    /// Direct actions to the platform (everything but chat and PMs).
    pub actions: mpsc::Sender<ActionRequest>,
    /// Chat and media log files.
    pub logs: LogFiles,
    /// The platform's rank for an action its channel's permissions do not name.
    pub(crate) default_rank: fn(&str) -> f64,
    pub(crate) flood: Mutex<FloodGuard>,
    /// Joins ignored because the channel already had `max_users` users.
    pub(crate) joins_over_cap: AtomicU64,
}

impl Ctx {
    /// Locks the channel state.
    pub fn state(&self) -> MutexGuard<'_, ChannelState> {
        // Every mutation is a single step, so a poisoned lock still holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a normalized event on core NATS.
    ///
    /// An event too large for the server (the original event doubles its size) is sent with
    /// `platform_data` replaced by `{"truncated": true}` rather than lost.
    pub async fn publish_event<T: Serialize>(&self, subject: &str, body: T, meta: &Meta) {
        let mut event = Event {
            platform: self.platform.to_owned(),
            channel: self.channel.clone(),
            timestamp: meta.timestamp,
            platform_data: meta.platform_data.clone(),
            body,
        };
        let Ok(bytes) = serde_json::to_vec(&event) else {
            tracing::error!(subject, "cannot encode event");
            return;
        };
        let limit = self.nats.server_info().max_payload;
        let truncated = serde_json::json!({"truncated": true});
        if limit > 0 && bytes.len() > limit && event.platform_data == truncated {
            // Without platform_data already (a huge user list): the body alone is too large.
            tracing::warn!(
                subject,
                size = bytes.len(),
                limit,
                "event too large for NATS even without platform_data; not published"
            );
            return;
        }
        let bytes = if limit > 0 && bytes.len() > limit {
            tracing::warn!(
                subject,
                size = bytes.len(),
                limit,
                "event too large; platform_data dropped"
            );
            event.platform_data = truncated;
            let Ok(bytes) = serde_json::to_vec(&event) else {
                tracing::error!(subject, "cannot encode event");
                return;
            };
            bytes
        } else {
            bytes
        };
        self.publish_bytes(subject.to_owned(), Bytes::from(bytes))
            .await;
    }

    /// Publishes any serializable value on core NATS (a lost connection is logged).
    pub async fn publish_json<T: Serialize>(&self, subject: String, value: &T) {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.publish_bytes(subject, Bytes::from(bytes)).await,
            Err(e) => tracing::error!(subject, error = %e, "cannot encode event"),
        }
    }

    /// Publishes on core NATS without stalling the event loop: while NATS is away and the
    /// client's buffer is full, a live event is dropped (durable writes go through
    /// [`DbPublisher`], which keeps them).
    pub(crate) async fn publish_bytes(&self, subject: String, bytes: Bytes) {
        let publish = self.nats.publish(subject.clone(), bytes);
        match tokio::time::timeout(self.settings.live_publish_timeout, publish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(subject, error = %e, "publish failed"),
            Err(_) => tracing::warn!(subject, "NATS is not taking publishes; live event dropped"),
        }
    }

    /// Runs one platform action and waits for its result.
    pub async fn act(&self, action: PlatformAction) -> Result<(), ActionError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.actions
            .send((action, tx))
            .await
            .map_err(|_| ActionError::NotConnected)?;
        rx.await.map_err(|_| ActionError::NotConnected)?
    }

    /// Says `text` in chat (through the rate-limited queue) and waits until it is sent.
    pub async fn say(
        &self,
        source: &str,
        destination: Destination,
        text: &str,
    ) -> Result<(), ChatError> {
        let done = self.chat.enqueue(source, destination, text)?;
        done.await.unwrap_or(Err(ChatError::Closed))
    }

    /// The rank the channel asks for `action`: its permissions, else the platform's default.
    pub(crate) fn required_rank(&self, state: &ChannelState, action: &str) -> f64 {
        state
            .permissions
            .get(action)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| (self.default_rank)(action))
    }

    /// Fails unless the bot is joined with a rank the channel's `permission` requires.
    pub fn check_permission(&self, permission: &str) -> Result<(), ErrorBody> {
        let state = self.state();
        if !state.joined {
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                "the bot is not connected to the channel",
            ));
        }
        // An open playlist lets ranks at its `oplaylist*` level act too, as CyTube does.
        if permission.starts_with("playlist")
            && !state.playlist_locked
            && state.own_rank >= self.required_rank(&state, &format!("o{permission}"))
        {
            return Ok(());
        }
        let needed = self.required_rank(&state, permission);
        if state.own_rank < needed {
            return Err(ErrorBody::new(
                ErrorCode::Denied,
                format!(
                    "the bot's rank {} is below the {needed} the channel requires for {permission}",
                    state.own_rank
                ),
            ));
        }
        Ok(())
    }

    pub(crate) async fn publish_status(&self) {
        let (status, meta) = {
            let s = self.state();
            (
                BotStatus {
                    bot_name: s.bot_name.clone(),
                    rank: s.own_rank,
                    connected: s.joined,
                },
                Meta {
                    timestamp: Timestamp::now(),
                    platform_data: Value::Null,
                },
            )
        };
        self.publish_event(subjects::events::BOT_STATUS, status, &meta)
            .await;
    }

    pub(crate) async fn write_status(&self) {
        let status_data = self.state().status_data();
        self.db
            .write(
                subjects::db::STATUS_UPDATE,
                &StatusUpdate {
                    status_data,
                    timestamp: Some(Timestamp::now()),
                },
            )
            .await;
    }

    /// Recomputes whether the bot may chat at all, so the queue fails fast instead of
    /// dropping silently.
    pub(crate) fn refresh_chat_gate(&self) {
        let reason = {
            let s = self.state();
            if !s.joined {
                None
            } else if s.bot_muted() {
                Some(ChatError::Muted("the bot is muted in the channel".into()))
            } else if s.own_rank < self.required_rank(&s, "chat") {
                Some(ChatError::Denied(format!(
                    "the bot's rank {} may not chat in this channel",
                    s.own_rank
                )))
            } else {
                None
            }
        };
        self.chat.set_blocked(reason);
    }
}
