//! The bot core: applies each platform event once to the channel state, publishes the
//! normalized events, commands and durable database writes, and serves the actions other
//! processes send to the platform.

use crate::chat_queue::{ChatError, ChatQueue, Destination, TokenBucket, REFUSAL_PAUSE};
use crate::db_writer::{DbTiming, DbWriter};
use crate::flood::{FloodGuard, FloodVerdict};
use crate::logfiles::LogFiles;
use crate::platform::{
    ActionError, ActionRequest, ChatOrigin, Meta, Platform, PlatformAction, PlatformEvent,
};
use crate::rules::{self, Performed};
use crate::shell;
use crate::state::ChannelState;
use anyhow::Context as _;
use bytes::Bytes;
use rosey_config::Config;
use rosey_plugin_api::actions::{
    Ok as OkReply, PlatformError, QueuePosition, SendAfk, SendChannelAction, SendChat, SendKick,
    SendPlaylistAdd, SendPlaylistEntry, SendPlaylistMove, SendPm,
};
use rosey_plugin_api::commands::{parse_command_line, Command};
use rosey_plugin_api::db::{
    MessageLog, OutboundGet, OutboundMarkFailed, OutboundMarkSent, OutboundMessage, StatsHighWater,
    StatsUserCount, StatusUpdate, UserJoined, UserLeft, UserSessions, MAX_SESSION_NAMES,
};
use rosey_plugin_api::events::{
    self as ev, BotStatus, Event, MediaChange, PlaylistRemove, PollClose, UserCount,
};
use rosey_plugin_api::reply::{error_reply, request_json, RequestError};
use rosey_plugin_api::stream::StreamLimits;
use rosey_plugin_api::subjects::{self, platform as psub};
use rosey_plugin_api::{ErrorBody, ErrorCode, Timestamp, UserData};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// The core's settings, taken from the configuration once.
#[derive(Debug, Clone)]
pub struct Settings {
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
}

impl Settings {
    /// The settings a configuration asks for.
    pub fn from_config(config: &Config) -> Self {
        let p = &config.platform;
        Settings {
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
    /// Settings.
    pub settings: Settings,
    /// The channel state (changed only by the event loop).
    pub state: Mutex<ChannelState>,
    /// Outgoing chat and PMs.
    pub chat: ChatQueue,
    /// Durable database writes.
    pub db: DbWriter,
    /// Direct actions to the platform (everything but chat and PMs).
    pub actions: mpsc::Sender<ActionRequest>,
    /// Chat and media log files.
    pub logs: LogFiles,
    /// The platform's rank for an action its channel's permissions do not name.
    default_rank: fn(&str) -> f64,
    flood: Mutex<FloodGuard>,
    /// Joins ignored because the channel already had `max_users` users.
    joins_over_cap: AtomicU64,
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
    /// [`DbWriter`], which keeps them).
    async fn publish_bytes(&self, subject: String, bytes: Bytes) {
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
    fn required_rank(&self, state: &ChannelState, action: &str) -> f64 {
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

    async fn publish_status(&self) {
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

    async fn write_status(&self) {
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
    fn refresh_chat_gate(&self) {
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

/// Runs the bot on `platform` until the platform stops or `shutdown` resolves.
pub async fn run<P: Platform>(
    platform: P,
    nats: async_nats::Client,
    settings: Settings,
    bot_name: &str,
    server: &str,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let name = platform.name();
    let channel = platform.channel().to_owned();
    let (events_tx, mut events_rx) = mpsc::channel::<PlatformEvent>(1024);
    let (actions_tx, actions_rx) = mpsc::channel::<ActionRequest>(64);
    let db = DbWriter::start(nats.clone(), settings.stream_limits, settings.db_timing);
    let chat = ChatQueue::new(settings.max_message_len);
    let ctx = Arc::new(Ctx {
        nats: nats.clone(),
        platform: name,
        channel: channel.clone(),
        state: Mutex::new(ChannelState::new(name, &channel, bot_name, server)),
        chat: chat.clone(),
        db,
        actions: actions_tx.clone(),
        logs: LogFiles::open(
            settings.chat_log_file.as_deref(),
            settings.media_log_file.as_deref(),
        ),
        flood: Mutex::new(FloodGuard::new(
            settings.flood_per_minute,
            settings.flood_block,
        )),
        joins_over_cap: AtomicU64::new(0),
        default_rank: P::default_rank,
        settings,
    });

    let send_subject = psub::send_all(name).context("platform name")?;
    let actions_sub = nats
        .subscribe(send_subject.clone())
        .await
        .with_context(|| format!("cannot subscribe to {send_subject}"))?;
    // Make sure the subscription is registered before anyone is told we are up.
    nats.flush().await.context("NATS flush")?;

    let platform_task = tokio::spawn(platform.run(events_tx, actions_rx));
    let worker = tokio::spawn(chat.clone().run_worker(
        TokenBucket::new(ctx.settings.chat_burst, ctx.settings.chat_per_second),
        actions_tx,
    ));
    let serve = tokio::spawn(serve_actions(ctx.clone(), actions_sub));
    let outbound = tokio::spawn(poll_outbound(ctx.clone()));
    let timers = tokio::spawn(periodic(ctx.clone()));
    tracing::info!(platform = name, channel, "rosey-bot running");

    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            event = events_rx.recv() => match event {
                Some(event) => handle_event(&ctx, event).await,
                None => break Ok(()),
            },
            () = &mut shutdown => {
                tracing::info!("shutting down");
                break Ok(());
            }
        }
    };
    chat.close();
    for task in [serve, outbound, timers] {
        task.abort();
    }
    worker.abort();
    leave_platform(&ctx, &mut events_rx, platform_task).await;
    ctx.state().joined = false;
    // As the original's close(): whoever is present stops being counted when the bot stops.
    close_sessions(&ctx, Timestamp::now()).await;
    ctx.publish_status().await;
    ctx.write_status().await;
    // Queued durable writes are stored, and the last publishes sent, before we go; one
    // deadline bounds both, since NATS may be down.
    let deadline = tokio::time::Instant::now() + ctx.settings.shutdown_flush_timeout;
    if tokio::time::timeout_at(deadline, ctx.db.flush())
        .await
        .is_err()
    {
        let lost = ctx.db.pending();
        tracing::error!(
            lost_writes = lost.writes,
            lost_chat_lines = lost.chat_lines,
            lost_bytes = lost.bytes,
            "NATS did not store every database write before shutdown; these are lost"
        );
    }
    if !matches!(
        tokio::time::timeout_at(deadline, nats.flush()).await,
        Ok(Ok(()))
    ) {
        tracing::warn!("the last publishes may not have reached NATS before shutdown");
    }
    result
}

/// How long the platform may take to leave the channel at shutdown.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(4);

/// Asks the platform to leave cleanly (CyTube: a websocket close frame) and applies what it
/// still reports meanwhile, within [`LEAVE_TIMEOUT`].
async fn leave_platform(
    ctx: &Arc<Ctx>,
    events_rx: &mut mpsc::Receiver<PlatformEvent>,
    mut task: tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let deadline = tokio::time::Instant::now() + LEAVE_TIMEOUT;
    let (done, _answer) = tokio::sync::oneshot::channel();
    let request = ctx.actions.send((PlatformAction::Disconnect, done));
    tokio::pin!(request);
    let mut requested = false;
    loop {
        tokio::select! {
            sent = &mut request, if !requested => {
                requested = true;
                if sent.is_err() {
                    break;
                }
            }
            // The request may queue behind events the platform is handing over.
            event = events_rx.recv() => match event {
                Some(event) => handle_event(ctx, event).await,
                None => break,
            },
            _ = &mut task => return,
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!("the platform did not leave in time; closing without a goodbye");
                break;
            }
        }
    }
    task.abort();
}

/// Ends every open session at `at` and forgets the user list.
async fn close_sessions(ctx: &Ctx, at: Timestamp) {
    let users = std::mem::take(&mut ctx.state().users);
    let left = users.into_values().map(|u| u.username).collect();
    write_sessions(ctx, left, Vec::new(), at).await;
}

/// Sessions closed and opened at `at`, coalesced: one durable write per
/// [`MAX_SESSION_NAMES`] names instead of one per user (a user list of tens of thousands
/// would otherwise flood the backlog).
async fn write_sessions(ctx: &Ctx, left: Vec<String>, joined: Vec<String>, at: Timestamp) {
    let mut left = left.into_iter().peekable();
    let mut joined = joined.into_iter().peekable();
    while left.peek().is_some() || joined.peek().is_some() {
        let left_part: Vec<String> = left.by_ref().take(MAX_SESSION_NAMES).collect();
        let room = MAX_SESSION_NAMES - left_part.len();
        let joined_part: Vec<String> = joined.by_ref().take(room).collect();
        ctx.db
            .write(
                subjects::db::USER_SESSIONS,
                &UserSessions {
                    left: left_part,
                    joined: joined_part,
                    timestamp: Some(at),
                },
            )
            .await;
    }
}

/// What a user list changes: who left and who arrived since `known`, by hashing (linear in
/// both lists); each name once, as the list spells it.
pub fn user_list_diff(
    known: &BTreeMap<String, UserData>,
    users: &[UserData],
) -> (Vec<String>, Vec<String>) {
    let mut listed: HashSet<String> = HashSet::with_capacity(users.len());
    let mut arrived = Vec::new();
    for u in users {
        let key = u.username.to_lowercase();
        if !known.contains_key(&key) && !listed.contains(&key) {
            arrived.push(u.username.clone());
        }
        listed.insert(key);
    }
    let departed = known
        .iter()
        .filter(|(key, _)| !listed.contains(*key))
        .map(|(_, u)| u.username.clone())
        .collect();
    (departed, arrived)
}

/// Applies one platform event: state first, then what gets published.
pub async fn handle_event(ctx: &Arc<Ctx>, event: PlatformEvent) {
    match event {
        PlatformEvent::Raw { event, data } => match psub::raw(ctx.platform, &event) {
            Ok(subject) => ctx.publish_json(subject, &data).await,
            Err(e) => tracing::debug!(error = %e, "raw event not forwarded"),
        },
        PlatformEvent::Joined { bot_name } => {
            {
                let mut s = ctx.state();
                s.bot_name = bot_name.clone();
                s.joined = true;
                s.connect_time = Some(Timestamp::now());
            }
            tracing::info!(bot_name, channel = ctx.channel, "joined the channel");
            ctx.refresh_chat_gate();
            ctx.publish_status().await;
            ctx.write_status().await;
        }
        PlatformEvent::Disconnected { reason } => {
            ctx.state().joined = false;
            tracing::warn!(reason, "disconnected from the platform");
            // Nobody is seen while we are away: sessions end now, and the next user list
            // opens them again (else the outage would be credited to everyone present).
            close_sessions(ctx, Timestamp::now()).await;
            ctx.refresh_chat_gate();
            ctx.publish_status().await;
            ctx.write_status().await;
        }
        PlatformEvent::Chat {
            user,
            content,
            origin,
            meta,
        } => {
            handle_chat(ctx, user, content, origin, meta).await;
        }
        PlatformEvent::Pm {
            user,
            recipient,
            content,
            meta,
        } => {
            handle_pm(ctx, user, recipient, content, meta).await;
        }
        PlatformEvent::UserList { users, meta } => {
            let count = users.len();
            let (chat_count, connected, departed, arrived) = {
                let mut s = ctx.state();
                // The list replaces what we knew: whoever appeared or vanished meanwhile (at
                // start-up, everyone present) opens or closes a session, so their time and
                // lines are counted, as if they had joined or left in front of us.
                let (departed, arrived) = user_list_diff(&s.users, &users);
                s.set_users(&users);
                (s.chat_count(), s.connected_count, departed, arrived)
            };
            write_sessions(ctx, departed, arrived, meta.timestamp).await;
            ctx.refresh_chat_gate();
            ctx.publish_event(
                subjects::events::USER_LIST,
                ev::UserList { users, count },
                &meta,
            )
            .await;
            publish_count(ctx, &meta).await;
            ctx.db
                .write(
                    subjects::db::STATS_HIGH_WATER,
                    &StatsHighWater {
                        chat_count,
                        connected_count: connected,
                        timestamp: Some(meta.timestamp),
                    },
                )
                .await;
        }
        PlatformEvent::UserJoin { user, meta } => {
            let (added, chat_count, connected) = {
                let mut s = ctx.state();
                let added = s.add_user(&user, ctx.settings.max_users);
                (added, s.chat_count(), s.connected_count)
            };
            if !added {
                let n = ctx.joins_over_cap.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        user = user.username,
                        max_users = ctx.settings.max_users,
                        refused_so_far = n,
                        "a join past platform.max_users is ignored"
                    );
                }
                return;
            }
            let name = user.username.clone();
            ctx.publish_event(
                subjects::events::USER_JOIN,
                ev::UserJoin {
                    user: name.clone(),
                    user_data: user.clone(),
                },
                &meta,
            )
            .await;
            publish_count(ctx, &meta).await;
            ctx.db
                .write(
                    subjects::db::USER_JOINED,
                    &UserJoined {
                        username: name,
                        timestamp: Some(meta.timestamp),
                        user_data: Some(user),
                    },
                )
                .await;
            ctx.db
                .write(
                    subjects::db::STATS_HIGH_WATER,
                    &StatsHighWater {
                        chat_count,
                        connected_count: connected,
                        timestamp: Some(meta.timestamp),
                    },
                )
                .await;
            ctx.refresh_chat_gate();
        }
        PlatformEvent::UserLeave { user, meta } => {
            let last = ctx.state().remove_user(&user);
            ctx.publish_event(
                subjects::events::USER_LEAVE,
                ev::UserLeave {
                    user: user.clone(),
                    user_data: last.clone(),
                },
                &meta,
            )
            .await;
            publish_count(ctx, &meta).await;
            ctx.db
                .write(
                    subjects::db::USER_LEFT,
                    &UserLeft {
                        username: user,
                        timestamp: Some(meta.timestamp),
                        user_data: last,
                    },
                )
                .await;
        }
        PlatformEvent::UserUpdate { user, patch, meta } => {
            let updated = ctx.state().update_user(&user, &patch);
            match updated {
                Some((user_data, changed)) if !changed.is_empty() => {
                    ctx.refresh_chat_gate();
                    ctx.publish_event(
                        subjects::events::USER_UPDATE,
                        ev::UserUpdate {
                            user: user_data.username.clone(),
                            user_data,
                            changed,
                        },
                        &meta,
                    )
                    .await;
                }
                Some(_) => {}
                None => tracing::debug!(user, "update for an unknown user ignored"),
            }
        }
        PlatformEvent::ConnectedCount { count, meta } => {
            let chat_count = {
                let mut s = ctx.state();
                s.connected_count = Some(count);
                s.chat_count()
            };
            ctx.publish_event(
                subjects::events::USER_COUNT,
                UserCount {
                    chat_count,
                    connected_count: count,
                },
                &meta,
            )
            .await;
            ctx.db
                .write(
                    subjects::db::STATS_HIGH_WATER,
                    &StatsHighWater {
                        chat_count,
                        connected_count: Some(count),
                        timestamp: Some(meta.timestamp),
                    },
                )
                .await;
        }
        PlatformEvent::OwnRank(rank) => {
            let changed = {
                let mut s = ctx.state();
                let changed = s.own_rank != rank;
                s.own_rank = rank;
                changed
            };
            if changed {
                ctx.refresh_chat_gate();
                ctx.publish_status().await;
            }
        }
        PlatformEvent::LoginFailed { error } => {
            tracing::error!(error, "login failed");
            // Whoever watches the platform's errors learns why the bot is not in the channel.
            report_error(ctx, "login", &error).await;
        }
        PlatformEvent::Permissions(map) => {
            ctx.state().permissions = map;
            ctx.refresh_chat_gate();
        }
        PlatformEvent::PlaylistLocked(locked) => ctx.state().playlist_locked = locked,
        PlatformEvent::SetCurrent(uid) => ctx.state().current_uid = Some(uid),
        PlatformEvent::MediaChange { media, meta } => {
            let queued_by = {
                let mut s = ctx.state();
                s.media = Some(media.clone());
                s.media_time = 0.0;
                s.current_item()
                    .filter(|i| i.media.id == media.id)
                    .and_then(|i| i.queued_by.clone())
            };
            ctx.logs
                .media(meta.timestamp, &media.kind, &media.id, &media.title);
            ctx.publish_event(
                subjects::events::MEDIA_CHANGE,
                MediaChange { media, queued_by },
                &meta,
            )
            .await;
        }
        PlatformEvent::MediaUpdate {
            current_time,
            paused,
        } => {
            let mut s = ctx.state();
            s.media_time = current_time;
            s.paused = paused;
        }
        PlatformEvent::Playlist { items } => ctx.state().playlist = items,
        PlatformEvent::PlaylistAdd { add, meta } => {
            ctx.state().playlist_add(&add.item, add.after);
            ctx.publish_event(subjects::events::PLAYLIST_ADD, add, &meta)
                .await;
        }
        PlatformEvent::PlaylistRemove { uid, meta } => {
            ctx.state().playlist_remove(uid);
            ctx.publish_event(
                subjects::events::PLAYLIST_REMOVE,
                PlaylistRemove { uid },
                &meta,
            )
            .await;
        }
        PlatformEvent::PlaylistMove { moved, meta } => {
            ctx.state().playlist_move(moved.uid, moved.after);
            ctx.publish_event(subjects::events::PLAYLIST_MOVE, moved, &meta)
                .await;
        }
        PlatformEvent::SetTemp { uid, temporary } => {
            let mut s = ctx.state();
            if let Some(p) = s.position(uid) {
                s.playlist[p].temporary = temporary;
            }
        }
        PlatformEvent::PollOpen { poll, meta } => {
            ctx.publish_event(subjects::events::POLL_OPEN, poll, &meta)
                .await;
        }
        PlatformEvent::PollUpdate { poll, meta } => {
            ctx.publish_event(subjects::events::POLL_UPDATE, poll, &meta)
                .await;
        }
        PlatformEvent::PollClose { meta } => {
            ctx.publish_event(subjects::events::POLL_CLOSE, PollClose {}, &meta)
                .await;
        }
        PlatformEvent::Leader(name) => {
            ctx.state().leader = (!name.is_empty()).then_some(name);
        }
        PlatformEvent::Voteskip { count, need } => ctx.state().voteskip = Some((count, need)),
        PlatformEvent::Cooldown(pause) => {
            tracing::warn!(
                ?pause,
                "the server dropped a chat line (cooldown); pausing chat"
            );
            ctx.chat.cooldown(pause);
        }
        PlatformEvent::ChatRefused(msg) => {
            tracing::warn!(msg, "the server refuses the bot's chat");
            ctx.chat.pause(REFUSAL_PAUSE);
            report_error(ctx, psub::action::CHAT, &msg).await;
        }
        PlatformEvent::ServerError(msg) => tracing::warn!(msg, "server error"),
    }
}

async fn handle_chat(
    ctx: &Arc<Ctx>,
    user: String,
    content: String,
    origin: ChatOrigin,
    meta: Meta,
) {
    match origin {
        ChatOrigin::History | ChatOrigin::Shadow | ChatOrigin::Server => return,
        ChatOrigin::Own => {
            ctx.logs.chat(meta.timestamp, &user, &content);
            ctx.db
                .write(
                    subjects::db::MESSAGE_LOG,
                    &MessageLog {
                        username: user,
                        message: content,
                        timestamp: Some(meta.timestamp),
                        user_data: None,
                    },
                )
                .await;
            return;
        }
        ChatOrigin::Live => {}
    }
    let user_data = ctx.state().user(&user).cloned();
    let parsed = parse_command_line(&content, &ctx.settings.command_prefix);
    ctx.logs.chat(meta.timestamp, &user, &content);
    ctx.publish_event(
        subjects::events::MESSAGE,
        ev::Message {
            user: user.clone(),
            user_data: user_data.clone(),
            content: content.clone(),
            is_command: parsed.is_some(),
        },
        &meta,
    )
    .await;
    ctx.db
        .write(
            subjects::db::MESSAGE_LOG,
            &MessageLog {
                username: user.clone(),
                message: content.clone(),
                timestamp: Some(meta.timestamp),
                user_data: user_data.clone(),
            },
        )
        .await;
    if let Some(parsed) = parsed {
        publish_command(ctx, parsed, content, user, user_data, false, meta.timestamp).await;
    }
}

async fn handle_pm(ctx: &Arc<Ctx>, user: String, recipient: String, content: String, meta: Meta) {
    ctx.logs.pm(meta.timestamp, &user, &recipient, &content);
    ctx.publish_event(
        subjects::events::PM,
        ev::Pm {
            user: user.clone(),
            recipient,
            content: content.clone(),
        },
        &meta,
    )
    .await;
    let user_data = ctx.state().user(&user).cloned();
    if let Some(parsed) = parse_command_line(&content, &ctx.settings.command_prefix) {
        publish_command(ctx, parsed, content, user, user_data, true, meta.timestamp).await;
        return;
    }
    let is_mod = user_data.as_ref().is_some_and(|u| u.is_moderator);
    if ctx.settings.shell_enabled && is_mod {
        let ctx = ctx.clone();
        tokio::spawn(async move { shell::run_command(&ctx, &user, &content).await });
    } else if ctx.settings.shell_enabled {
        tracing::info!(
            user,
            "PM from a non-moderator is not a shell command; ignored"
        );
    }
}

async fn publish_command(
    ctx: &Arc<Ctx>,
    parsed: rosey_plugin_api::commands::ParsedCommand,
    raw: String,
    user: String,
    user_data: Option<UserData>,
    is_pm: bool,
    timestamp: Timestamp,
) {
    let user_data = user_data.unwrap_or_else(|| UserData::new(user.clone(), 0.0));
    if !user_data.is_moderator {
        let verdict = ctx
            .flood
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(&user, tokio::time::Instant::now());
        match verdict {
            FloodVerdict::Allow => {}
            FloodVerdict::Block => return,
            FloodVerdict::BlockAndWarn => {
                tracing::warn!(user, "command flood: ignoring the user for a while");
                let minutes = ctx.settings.flood_block.as_secs().div_ceil(60).max(1);
                let text = format!(
                    "{user}: too many commands; I will ignore yours for {minutes} minute(s)."
                );
                let dest = if is_pm {
                    Destination::Pm(user.clone())
                } else {
                    Destination::Chat
                };
                if let Err(e) = ctx.chat.enqueue("core", dest, &text) {
                    tracing::warn!(error = %e, "cannot send the flood warning");
                }
                return;
            }
        }
    }
    let Ok(subject) = subjects::commands::command(&parsed.command) else {
        return;
    };
    let command = Command {
        command: parsed.command,
        args: parsed.args,
        text: parsed.text,
        raw,
        user,
        user_data,
        is_pm,
        platform: ctx.platform.to_owned(),
        channel: ctx.channel.clone(),
        timestamp,
    };
    ctx.publish_json(subject, &command).await;
}

/// Publishes `rosey.events.user.count` from the state, once the connected count is known.
async fn publish_count(ctx: &Ctx, meta: &Meta) {
    let counts = {
        let s = ctx.state();
        s.connected_count.map(|connected| UserCount {
            chat_count: s.chat_count(),
            connected_count: connected,
        })
    };
    if let Some(counts) = counts {
        ctx.publish_event(subjects::events::USER_COUNT, counts, meta)
            .await;
    }
}

/// Publishes an action failure on `rosey.platform.<p>.error`.
pub async fn report_error(ctx: &Ctx, action: &str, error: &str) {
    let Ok(subject) = psub::error(ctx.platform) else {
        return;
    };
    ctx.publish_json(
        subject,
        &PlatformError {
            action: action.to_owned(),
            error: error.to_owned(),
            channel: ctx.channel.clone(),
        },
    )
    .await;
}

/// The largest action payload accepted.
const MAX_ACTION_BYTES: usize = 64 * 1024;

async fn serve_actions(ctx: Arc<Ctx>, mut sub: async_nats::Subscriber) {
    use futures::StreamExt;
    // One at a time, in arrival order: two `send.chat` (or two `playlist.add`) from one
    // publisher must reach the channel in the order they were sent. Every action is quick
    // (chat is only queued; platform actions are one websocket write).
    while let Some(msg) = sub.next().await {
        serve_action(&ctx, msg).await;
    }
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ErrorBody> {
    rosey_plugin_api::payload::decode(payload)
}

fn channel_of(payload: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get("channel")?.as_str().map(str::to_owned)
}

async fn serve_action(ctx: &Arc<Ctx>, msg: async_nats::Message) {
    let Some(action) = psub::action_of(ctx.platform, &msg.subject).map(str::to_owned) else {
        return;
    };
    let result = if msg.payload.len() > MAX_ACTION_BYTES {
        Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!(
                "action payload is {} bytes; the limit is {MAX_ACTION_BYTES}",
                msg.payload.len()
            ),
        ))
    } else {
        match channel_of(&msg.payload) {
            // Another channel's bot answers it.
            Some(channel) if channel != ctx.channel => return,
            _ => {
                let source = action_source(msg.headers.as_ref());
                run_action(ctx, &action, &source, &msg.payload).await
            }
        }
    };
    if let Err(body) = &result {
        tracing::warn!(action, error = %body, "action failed");
        report_error(ctx, &action, &body.error.message).await;
    }
    if let Some(reply) = msg.reply {
        let sent = match result {
            Ok(()) => match serde_json::to_vec(&OkReply::YES) {
                Ok(b) => ctx.nats.publish(reply, Bytes::from(b)).await,
                Err(_) => return,
            },
            Err(body) => {
                let (headers, payload) = error_reply(&body);
                ctx.nats.publish_with_headers(reply, headers, payload).await
            }
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot send the action reply");
        }
    }
}

/// The outgoing-queue source of an action: `send:<name>` from the sender's
/// [`HEADER_SOURCE`](rosey_plugin_api::actions::HEADER_SOURCE) header (the runtime sets it to
/// the plugin's name), or plain `send` for senders that give none. The prefix keeps senders
/// apart from the bot's own sources (`shell`, `outbound`).
fn action_source(headers: Option<&async_nats::HeaderMap>) -> String {
    use rosey_plugin_api::actions::{HEADER_SOURCE, MAX_SOURCE_LEN};
    match headers.and_then(|h| h.get(HEADER_SOURCE)) {
        Some(name) if !name.as_str().trim().is_empty() => {
            let name: String = name.as_str().trim().chars().take(MAX_SOURCE_LEN).collect();
            format!("send:{name}")
        }
        _ => "send".to_owned(),
    }
}

async fn run_action(
    ctx: &Arc<Ctx>,
    action: &str,
    source: &str,
    payload: &[u8],
) -> Result<(), ErrorBody> {
    match rules::perform(ctx, source, decode_action(action, payload)?).await? {
        Performed::Done => {}
        Performed::Queued(done) => {
            let ctx = ctx.clone();
            let action = action.to_owned();
            // The reply means "accepted"; a later send failure is still reported.
            tokio::spawn(async move {
                if let Ok(Err(e)) = done.await {
                    report_error(&ctx, &action, &e.to_string()).await;
                }
            });
        }
    }
    Ok(())
}

/// Reads an action request (the last token of its subject, and its payload) as the platform
/// action it asks for; what it may do is the rule book's ([`rules`]) to decide.
fn decode_action(action: &str, payload: &[u8]) -> Result<PlatformAction, ErrorBody> {
    use psub::action as a;
    Ok(match action {
        a::CHAT => PlatformAction::Chat(decode::<SendChat>(payload)?.content),
        a::PM => {
            let req: SendPm = decode(payload)?;
            PlatformAction::Pm {
                to: req.to,
                content: req.content,
            }
        }
        a::PLAYLIST_ADD => {
            let req: SendPlaylistAdd = decode(payload)?;
            PlatformAction::PlaylistAdd {
                url: req.url,
                next: req.position == QueuePosition::Next,
                temporary: req.temporary,
            }
        }
        a::PLAYLIST_REMOVE => {
            PlatformAction::PlaylistRemove(decode::<SendPlaylistEntry>(payload)?.uid)
        }
        a::PLAYLIST_JUMP => PlatformAction::PlaylistJump(decode::<SendPlaylistEntry>(payload)?.uid),
        a::PLAYLIST_MOVE => {
            let req: SendPlaylistMove = decode(payload)?;
            PlatformAction::PlaylistMove {
                uid: req.uid,
                after: req.after,
            }
        }
        a::PLAYLIST_NEXT => {
            decode::<SendChannelAction>(payload)?;
            PlatformAction::PlaylistNext
        }
        a::KICK => {
            let req: SendKick = decode(payload)?;
            PlatformAction::Kick {
                user: req.user,
                reason: req.reason,
            }
        }
        a::CLEAR => {
            decode::<SendChannelAction>(payload)?;
            PlatformAction::Clear
        }
        a::AFK => PlatformAction::Afk(decode::<SendAfk>(payload)?.afk),
        other => {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("unknown action {other}"),
            ))
        }
    })
}

/// Sends the database's queued outbound messages and marks each sent or failed.
async fn poll_outbound(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(ctx.settings.outbound_poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Marks travel through the stream, so the database may list a message again before it
    // applied our mark: remember what we just handled, so nothing is sent twice.
    let mut handled: HashMap<i64, tokio::time::Instant> = HashMap::new();
    let retry_pause = ctx.settings.outbound_retry_pause;
    loop {
        tick.tick().await;
        let now = tokio::time::Instant::now();
        handled.retain(|_, until| *until > now);
        if !ctx.state().joined {
            continue;
        }
        let request = OutboundGet {
            limit: 20,
            max_retries: 3,
        };
        let messages: Vec<OutboundMessage> = match request_json(
            &ctx.nats,
            subjects::db::OUTBOUND_GET,
            &request,
            ctx.settings.outbound_request_timeout,
        )
        .await
        {
            Ok(m) => m,
            Err(RequestError::Timeout { .. }) => continue,
            Err(RequestError::Nats { source, .. })
                if source.kind() == async_nats::RequestErrorKind::NoResponders =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbound message poll failed");
                continue;
            }
        };
        for m in messages {
            if handled.contains_key(&m.id) {
                continue;
            }
            let result = ctx.say("outbound", Destination::Chat, &m.message).await;
            let pause = match &result {
                Err(e) if !e.is_permanent() => retry_pause,
                _ => ctx.settings.outbound_duplicate_window,
            };
            handled.insert(m.id, tokio::time::Instant::now() + pause);
            let now = Some(Timestamp::now());
            match result {
                Ok(()) => {
                    ctx.db
                        .write(
                            subjects::db::OUTBOUND_MARK_SENT,
                            &OutboundMarkSent {
                                message_id: m.id,
                                timestamp: now,
                            },
                        )
                        .await
                }
                Err(e) => {
                    tracing::warn!(id = m.id, error = %e, "outbound message not sent");
                    ctx.db
                        .write(
                            subjects::db::OUTBOUND_MARK_FAILED,
                            &OutboundMarkFailed {
                                message_id: m.id,
                                error: e.to_string(),
                                permanent: e.is_permanent(),
                                timestamp: now,
                            },
                        )
                        .await;
                }
            }
        }
    }
}

/// Publishes the bot's status and user-count samples periodically.
async fn periodic(ctx: Arc<Ctx>) {
    let mut status = tokio::time::interval(ctx.settings.status_interval);
    let mut counts = tokio::time::interval(ctx.settings.user_count_interval);
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    counts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first ticks fire at once; skip them (joining publishes the status).
    status.tick().await;
    counts.tick().await;
    loop {
        tokio::select! {
            _ = status.tick() => {
                ctx.publish_status().await;
                if ctx.state().joined {
                    ctx.write_status().await;
                }
            }
            _ = counts.tick() => {
                let sample = {
                    let s = ctx.state();
                    s.joined.then(|| StatsUserCount {
                        chat_count: s.chat_count(),
                        connected_count: s.connected_count.unwrap_or_else(|| s.chat_count()),
                        timestamp: Some(Timestamp::now()),
                    })
                };
                if let Some(sample) = sample {
                    ctx.db.write(subjects::db::STATS_USER_COUNT, &sample).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{action_source, user_list_diff};
    use rosey_plugin_api::UserData;
    use std::collections::BTreeMap;

    #[test]
    fn user_list_diffs_find_who_left_and_arrived() {
        let known: BTreeMap<String, UserData> = ["Alice", "bob", "carol"]
            .iter()
            .map(|n| (n.to_lowercase(), UserData::new(*n, 0.0)))
            .collect();
        let list: Vec<UserData> = ["alice", "Dave", "carol", "dave", "erin"]
            .iter()
            .map(|n| UserData::new(*n, 0.0))
            .collect();
        let (departed, arrived) = user_list_diff(&known, &list);
        assert_eq!(departed, ["bob"]);
        // Each new name once, spelled as the list first spells it.
        assert_eq!(arrived, ["Dave", "erin"]);
    }

    #[test]
    fn replacing_two_disjoint_50k_lists_is_a_full_diff() {
        let list = |prefix: &str| -> Vec<UserData> {
            (0..50_000)
                .map(|i| UserData::new(format!("{prefix}{i}"), 0.0))
                .collect()
        };
        let a = list("a");
        let known: BTreeMap<String, UserData> = a
            .iter()
            .map(|u| (u.username.to_lowercase(), u.clone()))
            .collect();
        let (departed, arrived) = user_list_diff(&known, &list("b"));
        assert_eq!((departed.len(), arrived.len()), (50_000, 50_000));
        let (departed, arrived) = user_list_diff(&known, &a);
        assert!(departed.is_empty() && arrived.is_empty());
    }
    use rosey_plugin_api::actions::HEADER_SOURCE;

    #[test]
    fn actions_are_queued_by_their_sender() {
        let mut h = async_nats::HeaderMap::new();
        assert_eq!(action_source(None), "send");
        assert_eq!(action_source(Some(&h)), "send");
        h.insert(HEADER_SOURCE, "quotes");
        assert_eq!(action_source(Some(&h)), "send:quotes");
        h.insert(HEADER_SOURCE, "x".repeat(500).as_str());
        assert_eq!(action_source(Some(&h)).len(), "send:".len() + 64);
        h.insert(HEADER_SOURCE, "  ");
        assert_eq!(action_source(Some(&h)), "send");
    }
}
