//! Keeps [`Shared`] current from NATS: loads everything through requests at start and after
//! every reconnect, follows the bot's and the runtime's events, and refreshes what only
//! rosey-db knows (outbound queue, stats, history) and the `$SRV` services on a timer, never
//! per page request.

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
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a request to another service may take before the page says it is slow.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long answers to a scatter request (`$SRV`, snapshots from every bot) are gathered.
pub const GATHER_WINDOW: Duration = Duration::from_millis(400);

/// Talks to the other services for the page.
#[derive(Clone)]
pub struct Follower {
    /// The NATS client.
    pub client: async_nats::Client,
    /// The state it keeps.
    pub shared: Shared,
    /// Chat lines kept per channel.
    pub chat_lines: usize,
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
        let changed = self.shared.read().db.reachable != reachable;
        self.shared.update(&[], |live| {
            live.db.reachable = reachable;
            live.db.problem = problem;
        });
        if changed {
            self.shared.notify(Section::Services);
        }
        result
    }

    /// Everything, as after a start or a reconnect.
    pub async fn load_all(&self) {
        self.load_snapshots().await;
        self.load_chat().await;
        self.load_plugins().await;
        self.load_outbound().await;
        self.load_stats().await;
        self.load_services().await;
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
    /// heard from, the channel rosey-db's status row names.
    async fn db_channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = self.shared.read().channels.keys().cloned().collect();
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

    /// Each channel's outbound report.
    pub async fn load_outbound(&self) {
        for channel in self.db_channels().await {
            let q = OutboundRecent {
                limit: 20,
                channel: Some(channel.clone()),
            };
            let Ok(rows) = self
                .ask_db::<_, Vec<OutboundReportRow>>(subjects::db::OUTBOUND_RECENT, &q)
                .await
            else {
                continue;
            };
            let changed = self
                .shared
                .read()
                .channels
                .get(&channel)
                .is_none_or(|v| v.outbound != rows);
            if changed {
                self.shared
                    .update(&[Change::Section(Section::Outbound)], |live| {
                        live.channel_mut(&channel).outbound = rows
                    });
            }
        }
    }

    /// Each channel's high-water marks and 7-day history.
    pub async fn load_stats(&self) {
        for channel in self.db_channels().await {
            let stats = self
                .ask_db::<_, ChannelStats>(
                    subjects::db::QUERY_CHANNEL_STATS,
                    &ChannelStatsQuery {
                        channel: Some(channel.clone()),
                    },
                )
                .await;
            let history = self
                .ask_db::<_, Vec<UserCountSample>>(
                    subjects::db::USER_COUNT_HISTORY_GET,
                    &UserCountHistoryGet {
                        channel: Some(channel.clone()),
                        hours: 168,
                    },
                )
                .await;
            self.shared
                .update(&[Change::Section(Section::Stats)], |live| {
                    let view = live.channel_mut(&channel);
                    if let Ok(stats) = stats {
                        view.stats = Some(stats);
                    }
                    if let Ok(history) = history {
                        view.history = history;
                    }
                });
        }
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
                    if ticks % 3 == 0 {
                        self.load_outbound().await;
                        self.load_services().await;
                    }
                    if ticks % 30 == 0 {
                        self.load_stats().await;
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
