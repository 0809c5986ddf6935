//! Keeps [`Shared`] current from NATS: loads everything through requests at start and after
//! every reconnect, follows the bot's and the runtime's events, and refreshes the `$SRV`
//! services on a timer.
//!
//! What only rosey-db knows about a channel (outbound queue, stats, history) is refreshed for
//! the channels someone is looking at ([`Demand`]): an open page keeps its channel's figures
//! current on the timer, and a read of a channel nobody watched first brings its stale figures
//! up to date. A deployment of a hundred channels with one page open asks rosey-db about one
//! channel, not a hundred, per tick.

use crate::state::{Change, ChannelView, DbHealth, Line, Section, ServiceEntry, Shared};
use bytes::Bytes;
use futures::StreamExt;
use rosey_plugin_api::admin::{PluginsList, PluginsListRequest};
use rosey_plugin_api::bot::{Said, Snapshot, SnapshotRequest};
use rosey_plugin_api::db::{
    ChannelStats, ChannelStatsQuery, ChatLine, CurrentStatus, CurrentStatusQuery, OutboundRecent,
    OutboundReportRow, UserCountHistoryGet, UserCountSample,
};
use rosey_plugin_api::events::{self as ev, Event};
use rosey_plugin_api::reply::{request_json, RequestError};
use rosey_plugin_api::{stream, subjects, Timestamp};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a request to another service may take before the page says it is slow.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long answers to a scatter request (`$SRV`, snapshots from every bot) are gathered.
pub const GATHER_WINDOW: Duration = Duration::from_millis(400);

/// How often an open page's outbound queue is refreshed.
pub const OUTBOUND_EVERY: Duration = Duration::from_secs(3);
/// How often an open page's stats and history are refreshed.
pub const STATS_EVERY: Duration = Duration::from_secs(30);
/// The longest a read waits for its channel's stale figures before answering from the state.
pub const FRESH_WAIT: Duration = Duration::from_secs(2);
/// How long after a read a channel's figures keep being refreshed (a dashboard polling the API).
pub const WATCHED_AFTER_READ: Duration = Duration::from_secs(60);

/// A channel's figures that come from rosey-db.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figures {
    /// The outbound queue.
    Outbound,
    /// High-water marks, top chatters and the 7-day history.
    Stats,
}

impl Figures {
    fn every(self) -> Duration {
        match self {
            Figures::Outbound => OUTBOUND_EVERY,
            Figures::Stats => STATS_EVERY,
        }
    }
}

/// Who is looking at which channel, and when each channel's figures were last loaded.
#[derive(Debug, Default)]
pub struct Demand {
    channels: Mutex<HashMap<String, Interest>>,
}

#[derive(Debug, Default)]
struct Interest {
    read_at: Option<Instant>,
    open_pages: usize,
    outbound_at: Option<Instant>,
    stats_at: Option<Instant>,
}

impl Interest {
    fn loaded_at(&mut self, figures: Figures) -> &mut Option<Instant> {
        match figures {
            Figures::Outbound => &mut self.outbound_at,
            Figures::Stats => &mut self.stats_at,
        }
    }

    fn watched(&self, now: Instant) -> bool {
        self.open_pages > 0
            || self
                .read_at
                .is_some_and(|t| now.duration_since(t) < WATCHED_AFTER_READ)
    }
}

impl Demand {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Interest>> {
        // Every change under the lock is one assignment; a poisoned map is still whole.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims the load of `channel`'s `figures` when they are older than their period (or
    /// `force`): marks them loaded now, so concurrent readers answer from the state instead of
    /// asking rosey-db again. Returns the previous mark to restore if the load fails.
    fn claim(
        &self,
        channel: &str,
        figures: Figures,
        now: Instant,
        force: bool,
    ) -> Option<Option<Instant>> {
        let mut map = self.lock();
        let slot = map
            .entry(channel.to_owned())
            .or_default()
            .loaded_at(figures);
        let stale = slot.is_none_or(|t| now.duration_since(t) >= figures.every());
        (stale || force).then(|| slot.replace(now))
    }

    fn restore(&self, channel: &str, figures: Figures, previous: Option<Instant>) {
        if let Some(i) = self.lock().get_mut(channel) {
            *i.loaded_at(figures) = previous;
        }
    }

    fn read(&self, channel: &str, now: Instant) {
        self.lock().entry(channel.to_owned()).or_default().read_at = Some(now);
    }

    /// The channels someone looks at now.
    pub fn watched(&self, now: Instant) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, i)| i.watched(now))
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Forgets every load (after a reconnect, everything is reloaded on the next look).
    fn forget_loads(&self) {
        for i in self.lock().values_mut() {
            i.outbound_at = None;
            i.stats_at = None;
        }
    }
}

/// An open page on a channel; while it lives, the channel counts as watched.
pub struct Watching {
    demand: Arc<Demand>,
    channel: String,
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(i) = self.demand.lock().get_mut(&self.channel) {
            i.open_pages = i.open_pages.saturating_sub(1);
            i.read_at = Some(Instant::now());
        }
    }
}

/// Talks to the other services for the page.
#[derive(Clone)]
pub struct Follower {
    /// The NATS client.
    pub client: async_nats::Client,
    /// The state it keeps.
    pub shared: Shared,
    /// Chat lines kept per channel.
    pub chat_lines: usize,
    /// Which channels' figures to keep current.
    pub demand: Arc<Demand>,
    /// The channels the configuration names, for loading before any bot is heard from: with
    /// several, rosey-db refuses a read that names none.
    pub configured: Vec<String>,
}

/// Sends `payload` to `subject` and gathers every answer that arrives within `window`.
pub async fn gather<T: Serialize>(
    client: &async_nats::Client,
    subject: &str,
    payload: &T,
    window: Duration,
) -> Result<Vec<async_nats::Message>, async_nats::Error> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    let body = Bytes::from(serde_json::to_vec(payload)?);
    client
        .publish_with_reply(subject.to_owned(), inbox, body)
        .await?;
    client.flush().await?;
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        answers.push(msg);
    }
    let _ = sub.unsubscribe().await;
    Ok(answers)
}

impl Follower {
    /// A request with the standard timeout.
    pub async fn ask<Q: Serialize, A: DeserializeOwned>(
        &self,
        subject: &str,
        q: &Q,
    ) -> Result<A, RequestError> {
        request_json(&self.client, subject, q, REQUEST_TIMEOUT).await
    }

    /// A request to rosey-db; its outcome updates the database health.
    pub async fn ask_db<Q: Serialize, A: DeserializeOwned>(
        &self,
        subject: &str,
        q: &Q,
    ) -> Result<A, RequestError> {
        let result = self.ask(subject, q).await;
        let (reachable, problem) = match &result {
            Ok(_) | Err(RequestError::Service(..)) => (true, None),
            Err(e) => (false, Some(e.to_string())),
        };
        let (changed, same) = {
            let live = self.shared.read();
            (
                live.db.reachable != reachable,
                live.db.reachable == reachable && live.db.problem == problem,
            )
        };
        // Most answers change nothing: no update, so cached answers built from the state stay.
        if !same {
            self.shared.update(&[], |live| {
                live.db.reachable = reachable;
                live.db.problem = problem;
            });
        }
        if changed {
            self.shared.notify(Section::Services);
        }
        result
    }

    /// Everything, as after a start or a reconnect: rosey-db's figures for the channels
    /// someone looks at now, the others' on their next look.
    pub async fn load_all(&self) {
        self.load_snapshots().await;
        self.load_chat().await;
        self.load_plugins().await;
        self.demand.forget_loads();
        self.refresh_watched().await;
        self.load_services().await;
    }

    /// A page or API read of `channel` is about to show `figures`: notes the interest and,
    /// when they are older than their period, loads them first, so a read is never staler
    /// than an open page would be.
    pub async fn fresh(&self, channel: &str, figures: &[Figures]) {
        let now = Instant::now();
        self.demand.read(channel, now);
        let me = self.clone();
        let channel = channel.to_owned();
        let figures = figures.to_vec();
        let load = tokio::spawn(async move {
            let loads = figures
                .iter()
                .map(|f| me.load_if_stale(&channel, *f, now, false));
            futures::future::join_all(loads).await;
        });
        // A slow or absent rosey-db must not hold the page: past this the answer is drawn from
        // the state, and the figures reach an open page on its live feed when they come.
        let _ = tokio::time::timeout(FRESH_WAIT, load).await;
    }

    /// Counts an open page on `channel` until the guard drops.
    pub fn watch(&self, channel: &str) -> Watching {
        let mut map = self.demand.lock();
        map.entry(channel.to_owned()).or_default().open_pages += 1;
        Watching {
            demand: self.demand.clone(),
            channel: channel.to_owned(),
        }
    }

    /// Loads `channel`'s outbound queue now (after a say, say).
    pub async fn reload_outbound(&self, channel: &str) {
        self.load_if_stale(channel, Figures::Outbound, Instant::now(), true)
            .await;
    }

    async fn load_if_stale(&self, channel: &str, figures: Figures, now: Instant, force: bool) {
        let Some(previous) = self.demand.claim(channel, figures, now, force) else {
            return;
        };
        let loaded = match figures {
            Figures::Outbound => self.load_outbound_of(channel).await,
            Figures::Stats => self.load_stats_of(channel).await,
        };
        if !loaded {
            self.demand.restore(channel, figures, previous);
        }
    }

    /// Refreshes the stale figures of every watched channel (the timer's work).
    pub async fn refresh_watched(&self) {
        let now = Instant::now();
        for channel in self.demand.watched(now) {
            for f in [Figures::Outbound, Figures::Stats] {
                self.load_if_stale(&channel, f, now, false).await;
            }
        }
    }

    /// Every bot's snapshot.
    pub async fn load_snapshots(&self) {
        let answers = match gather(
            &self.client,
            subjects::bot::SNAPSHOT,
            &SnapshotRequest::default(),
            GATHER_WINDOW,
        )
        .await
        {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the bots for their state");
                return;
            }
        };
        let now = Timestamp::now().secs();
        let snapshots: Vec<Snapshot> = answers
            .iter()
            .filter_map(|m| serde_json::from_slice(&m.payload).ok())
            .collect();
        self.shared.update(
            &[
                Change::Section(Section::Bot),
                Change::Section(Section::Users),
            ],
            |live| {
                for snap in snapshots {
                    let view = live.channel_mut(&snap.channel);
                    view.bot = Some(snap);
                    view.last_heard = now;
                }
            },
        );
    }

    /// One channel's snapshot (after an event we do not apply ourselves).
    async fn load_snapshot(&self, channel: &str) {
        let req = SnapshotRequest {
            channel: Some(channel.to_owned()),
        };
        match self.ask::<_, Snapshot>(subjects::bot::SNAPSHOT, &req).await {
            Ok(snap) => self.shared.update(
                &[
                    Change::Section(Section::Bot),
                    Change::Section(Section::Users),
                ],
                |live| {
                    let view = live.channel_mut(channel);
                    view.bot = Some(snap);
                    view.last_heard = Timestamp::now().secs();
                },
            ),
            Err(e) => tracing::debug!(channel, error = %e, "no snapshot"),
        }
    }

    /// The channels to load rosey-db's figures for: every channel seen, or, before any bot was
    /// heard from, the configured channels when there are several, else the channel rosey-db's
    /// status row names (a single-channel deployment's row may name a channel the configuration
    /// spells differently, as the original's database does).
    async fn db_channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = self.shared.read().channels.keys().cloned().collect();
        if channels.is_empty() && self.configured.len() > 1 {
            channels.clone_from(&self.configured);
        }
        if channels.is_empty() {
            if let Ok(status) = self
                .ask_db::<_, CurrentStatus>(
                    subjects::db::QUERY_CURRENT_STATUS,
                    &CurrentStatusQuery::default(),
                )
                .await
            {
                if let Some(name) = status.channel_name.filter(|n| !n.is_empty()) {
                    channels.push(name);
                }
            }
        }
        channels
    }

    /// The recent chat of every channel known (and the status row's channel).
    pub async fn load_chat(&self) {
        for channel in self.db_channels().await {
            let q = json!({"limit": self.chat_lines, "channel": channel});
            let lines: Vec<ChatLine> = match self.ask_db(subjects::db::RECENT_CHAT_GET, &q).await {
                Ok(lines) => lines,
                Err(e) => {
                    tracing::warn!(channel, error = %e, "cannot load the recent chat");
                    continue;
                }
            };
            let keep = self.chat_lines;
            self.shared.update(&[], |live| {
                let view = live.channel_mut(&channel);
                let bot = view.bot.as_ref().map(|b| b.bot_name.clone());
                let stored = lines
                    .into_iter()
                    .map(|c| {
                        let own = bot.as_deref() == Some(c.username.as_str());
                        Line {
                            own,
                            ..Line::from(c)
                        }
                    })
                    .collect();
                live.replace_chat(&channel, stored, keep);
            });
        }
        self.shared.notify(Section::Chat);
    }

    /// The runtime's plugins.
    pub async fn load_plugins(&self) {
        let result = self
            .ask::<_, PluginsList>(subjects::runtime::PLUGINS_LIST, &PluginsListRequest {})
            .await;
        self.shared
            .update(&[Change::Section(Section::Plugins)], |live| match result {
                Ok(list) => {
                    live.runtime_reachable = true;
                    live.plugins = list
                        .plugins
                        .into_iter()
                        .map(|p| (p.name.clone(), p))
                        .collect();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "runtime did not answer");
                    live.runtime_reachable = false;
                }
            });
    }

    /// One channel's outbound report; whether rosey-db answered.
    async fn load_outbound_of(&self, channel: &str) -> bool {
        let q = OutboundRecent {
            limit: 20,
            channel: Some(channel.to_owned()),
        };
        let Ok(rows) = self
            .ask_db::<_, Vec<OutboundReportRow>>(subjects::db::OUTBOUND_RECENT, &q)
            .await
        else {
            return false;
        };
        let changed = self
            .shared
            .read()
            .channels
            .get(channel)
            .is_none_or(|v| v.outbound != rows);
        if changed {
            self.shared
                .update(&[Change::Section(Section::Outbound)], |live| {
                    live.channel_mut(channel).outbound = rows
                });
        }
        true
    }

    /// One channel's high-water marks and 7-day history; whether rosey-db answered both.
    async fn load_stats_of(&self, channel: &str) -> bool {
        let stats = self
            .ask_db::<_, ChannelStats>(
                subjects::db::QUERY_CHANNEL_STATS,
                &ChannelStatsQuery {
                    channel: Some(channel.to_owned()),
                },
            )
            .await;
        let history = self
            .ask_db::<_, Vec<UserCountSample>>(
                subjects::db::USER_COUNT_HISTORY_GET,
                &UserCountHistoryGet {
                    channel: Some(channel.to_owned()),
                    hours: 168,
                },
            )
            .await;
        let answered = stats.is_ok() && history.is_ok();
        let changed = {
            let live = self.shared.read();
            let view = live.channels.get(channel);
            let stats_changed = stats
                .as_ref()
                .is_ok_and(|s| view.is_none_or(|v| v.stats.as_ref() != Some(s)));
            let history_changed = history
                .as_ref()
                .is_ok_and(|h| view.is_none_or(|v| &v.history != h));
            stats_changed || history_changed
        };
        if changed {
            self.shared
                .update(&[Change::Section(Section::Stats)], |live| {
                    let view = live.channel_mut(channel);
                    if let Ok(stats) = stats {
                        view.stats = Some(stats);
                    }
                    if let Ok(history) = history {
                        view.history = history;
                    }
                });
        }
        answered
    }

    /// Every process answering `$SRV.STATS`, and the database stream's backlog.
    pub async fn load_services(&self) {
        let answers = gather(
            &self.client,
            subjects::service::STATS,
            &json!({}),
            GATHER_WINDOW,
        )
        .await
        .unwrap_or_default();
        let mut services: Vec<ServiceEntry> = answers
            .iter()
            .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok())
            .filter_map(|v| service_entry(&v))
            .collect();
        services.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        let (backlog, dead_letters) = stream_figures(&self.client).await;
        let has_db = services.iter().any(|s| s.name == "rosey-db");
        self.shared
            .update(&[Change::Section(Section::Services)], |live| {
                live.services = services;
                live.db = DbHealth {
                    reachable: live.db.reachable && has_db,
                    problem: if has_db {
                        live.db.problem.take()
                    } else {
                        Some("rosey-db does not answer $SRV".to_owned())
                    },
                    backlog,
                    dead_letters,
                };
            });
    }

    /// Applies one event from NATS.
    pub async fn on_message(&self, msg: async_nats::Message) {
        let subject = msg.subject.as_str();
        let now = Timestamp::now().secs();
        if subject == subjects::bot::SAID {
            if let Ok(said) = serde_json::from_slice::<Said>(&msg.payload) {
                let line = Line {
                    timestamp: said.timestamp,
                    username: said.user,
                    message: said.content,
                    own: true,
                };
                self.shared.update(
                    &[Change::Chat(said.channel.clone(), line.clone())],
                    |live| live.push_line(&said.channel, line, self.chat_lines),
                );
            }
            return;
        }
        if subject.starts_with("rosey.runtime.plugin.") {
            self.load_plugins().await;
            return;
        }
        let Ok(envelope) = serde_json::from_slice::<Event<serde_json::Value>>(&msg.payload) else {
            return;
        };
        let channel = envelope.channel.clone();
        let body = envelope.body;
        let known = self
            .shared
            .read()
            .channels
            .get(&channel)
            .is_some_and(|v| v.bot.is_some());
        match subject {
            subjects::events::MESSAGE => {
                if let Ok(m) = serde_json::from_value::<ev::Message>(body) {
                    let line = Line {
                        timestamp: envelope.timestamp.secs(),
                        username: m.user,
                        message: m.content,
                        own: false,
                    };
                    self.shared
                        .update(&[Change::Chat(channel.clone(), line.clone())], |live| {
                            live.push_line(&channel, line, self.chat_lines);
                            live.channel_mut(&channel).last_heard = now;
                        });
                }
            }
            _ if !known => self.load_snapshot(&channel).await,
            subjects::events::USER_JOIN => {
                if let Ok(j) = serde_json::from_value::<ev::UserJoin>(body) {
                    self.edit_bot(&channel, |bot| {
                        bot.users.retain(|u| u.username != j.user);
                        bot.users.push(j.user_data);
                        bot.chat_count = bot.users.len() as u64;
                    });
                }
            }
            subjects::events::USER_LEAVE => {
                if let Ok(l) = serde_json::from_value::<ev::UserLeave>(body) {
                    self.edit_bot(&channel, |bot| {
                        bot.users.retain(|u| u.username != l.user);
                        bot.chat_count = bot.users.len() as u64;
                    });
                }
            }
            subjects::events::USER_LIST => {
                if let Ok(l) = serde_json::from_value::<ev::UserList>(body) {
                    self.edit_bot(&channel, |bot| {
                        bot.chat_count = l.users.len() as u64;
                        bot.users = l.users;
                    });
                }
            }
            subjects::events::USER_UPDATE => {
                if let Ok(u) = serde_json::from_value::<ev::UserUpdate>(body) {
                    self.edit_bot(&channel, |bot| {
                        for user in bot.users.iter_mut().filter(|x| x.username == u.user) {
                            *user = u.user_data.clone();
                        }
                    });
                }
            }
            subjects::events::USER_COUNT => {
                if let Ok(c) = serde_json::from_value::<ev::UserCount>(body) {
                    self.edit_bot(&channel, |bot| {
                        bot.chat_count = c.chat_count;
                        bot.connected_count = Some(c.connected_count);
                    });
                }
            }
            subjects::events::MEDIA_CHANGE => {
                if let Ok(m) = serde_json::from_value::<ev::MediaChange>(body) {
                    self.edit_bot(&channel, |bot| bot.media = Some(m.media));
                }
            }
            subjects::events::BOT_STATUS => {
                if let Ok(s) = serde_json::from_value::<ev::BotStatus>(body) {
                    let since = envelope.timestamp.secs();
                    self.edit_bot(&channel, |bot| {
                        if s.connected && !bot.connected {
                            bot.connected_since = Some(since);
                        }
                        if !s.connected {
                            bot.connected_since = None;
                        }
                        bot.connected = s.connected;
                        bot.bot_name = s.bot_name;
                        bot.bot_rank = s.rank;
                    });
                }
            }
            s if s.starts_with("rosey.events.playlist.") => self.load_snapshot(&channel).await,
            _ => {}
        }
    }

    fn edit_bot(&self, channel: &str, f: impl FnOnce(&mut Snapshot)) {
        self.shared.update(
            &[
                Change::Section(Section::Bot),
                Change::Section(Section::Users),
            ],
            |live| {
                let view: &mut ChannelView = live.channel_mut(channel);
                view.last_heard = Timestamp::now().secs();
                if let Some(bot) = view.bot.as_mut() {
                    f(bot);
                }
            },
        );
    }

    /// Follows events and keeps the slow parts fresh until the connection closes for good.
    pub async fn run(self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let mut events = self
            .client
            .subscribe(subjects::events::ALL)
            .await
            .context("cannot subscribe to the bot's events")?;
        let mut said = self
            .client
            .subscribe(subjects::bot::SAID)
            .await
            .context("cannot subscribe to the bot's own lines")?;
        let mut lifecycle = self
            .client
            .subscribe(subjects::runtime::PLUGIN_ALL)
            .await
            .context("cannot subscribe to the plugin lifecycle")?;
        self.client.flush().await.context("NATS flush")?;
        self.load_all().await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let mut was_connected = true;
        loop {
            tokio::select! {
                Some(msg) = events.next() => self.on_message(msg).await,
                Some(msg) = said.next() => self.on_message(msg).await,
                Some(msg) = lifecycle.next() => self.on_message(msg).await,
                _ = tick.tick() => {
                    ticks += 1;
                    let connected = matches!(
                        self.client.connection_state(),
                        async_nats::connection::State::Connected
                    );
                    if connected != self.shared.read().nats_connected {
                        self.shared.update(&[Change::Section(Section::Services)], |live| {
                            live.nats_connected = connected
                        });
                    }
                    if connected && !was_connected {
                        tracing::info!("NATS is back; loading the state again");
                        self.load_all().await;
                    }
                    was_connected = connected;
                    if !connected {
                        continue;
                    }
                    self.refresh_watched().await;
                    if ticks % 3 == 0 {
                        self.load_services().await;
                    }
                    if ticks % 30 == 0 {
                        self.load_plugins().await;
                    }
                }
            }
        }
    }
}

/// A `$SRV.STATS` answer as a service row.
fn service_entry(v: &serde_json::Value) -> Option<ServiceEntry> {
    let name = v.get("name")?.as_str()?.to_owned();
    let id = v.get("id")?.as_str()?.to_owned();
    let version = v
        .get("version")
        .and_then(|x| x.as_str())
        .unwrap_or("")
        .to_owned();
    let metadata: BTreeMap<String, String> = v
        .get("metadata")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let endpoints = v.get("endpoints").and_then(|e| e.as_array());
    let sum = |key: &str| -> u64 {
        endpoints
            .map(|eps| {
                eps.iter()
                    .filter_map(|e| e.get(key).and_then(|n| n.as_u64()))
                    .sum()
            })
            .unwrap_or(0)
    };
    let mut data = v.get("data").cloned().unwrap_or(serde_json::Value::Null);
    if data.is_null() {
        if let Some(plugins) = v.get("plugins") {
            data = json!({ "plugins": plugins });
        }
    }
    Some(ServiceEntry {
        name,
        id,
        version,
        metadata,
        requests: sum("num_requests"),
        errors: sum("num_errors"),
        data,
    })
}

/// The database stream's unprocessed writes and the dead-letter stream's size.
async fn stream_figures(client: &async_nats::Client) -> (Option<u64>, Option<u64>) {
    let js = async_nats::jetstream::new(client.clone());
    let backlog = async {
        let mut s = js.get_stream(stream::DB_STREAM).await.ok()?;
        let info = s.consumer_info(stream::DB_CONSUMER).await.ok()?;
        let _ = &mut s;
        Some(info.num_pending + info.num_ack_pending as u64)
    };
    let dead = async {
        let mut s = js.get_stream(stream::DLQ_STREAM).await.ok()?;
        Some(s.info().await.ok()?.state.messages)
    };
    let timeout = REQUEST_TIMEOUT;
    let backlog = tokio::time::timeout(timeout, backlog).await.ok().flatten();
    let dead = tokio::time::timeout(timeout, dead).await.ok().flatten();
    (backlog, dead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_load_once_per_period_and_only_for_watched_channels() {
        let demand = Arc::new(Demand::default());
        let t0 = Instant::now();
        // Nobody has looked at anything: nothing is watched.
        assert!(demand.watched(t0).is_empty());
        // A first read claims the load; a concurrent read within the period does not.
        assert_eq!(demand.claim("a", Figures::Outbound, t0, false), Some(None));
        assert_eq!(demand.claim("a", Figures::Outbound, t0, false), None);
        let later = t0 + OUTBOUND_EVERY;
        assert_eq!(
            demand.claim("a", Figures::Outbound, later, false),
            Some(Some(t0))
        );
        // Stats have their own, longer period; a forced load always goes.
        assert!(demand.claim("a", Figures::Stats, t0, false).is_some());
        assert!(demand.claim("a", Figures::Stats, later, false).is_none());
        assert!(demand.claim("a", Figures::Stats, later, true).is_some());
        // A failed load gives the claim back, so the next read tries again.
        demand.restore("a", Figures::Stats, None);
        assert!(demand.claim("a", Figures::Stats, later, false).is_some());

        // A read keeps a channel watched for a while; an open page for as long as it is open.
        demand.read("b", t0);
        assert_eq!(demand.watched(t0), ["b"]);
        assert!(demand.watched(t0 + WATCHED_AFTER_READ).is_empty());
        let page = Watching {
            demand: demand.clone(),
            channel: "c".into(),
        };
        demand.lock().entry("c".into()).or_default().open_pages += 1;
        let far = t0 + WATCHED_AFTER_READ * 10;
        assert_eq!(demand.watched(far), ["c"]);
        drop(page);
        assert_eq!(demand.lock()["c"].open_pages, 0);
        // After a reconnect every figure is stale again.
        demand.forget_loads();
        assert!(demand.claim("a", Figures::Outbound, t0, false).is_some());
    }

    #[test]
    fn service_rows_read_micro_answers() {
        let v = json!({"name": "rosey-db", "id": "x", "version": "0.1.0",
            "metadata": {"k": "v"}, "endpoints": [{"num_requests": 3, "num_errors": 1},
            {"num_requests": 2, "num_errors": 0}]});
        let e = service_entry(&v).unwrap();
        assert_eq!((e.requests, e.errors), (5, 1));
        assert_eq!(e.metadata["k"], "v");
        assert!(service_entry(&json!({"id": "x"})).is_none());
    }
}
