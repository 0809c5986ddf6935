//! What rosey-web knows, kept current from NATS so that no page or `/api/current` request waits
//! for the database: per channel the bot's snapshot, recent chat, outbound queue, stats and
//! user-count history, plus plugins and services.

use rosey_plugin_api::admin::PluginInfo;
use rosey_plugin_api::bot::Snapshot;
use rosey_plugin_api::db::{ChannelStats, ChatLine, OutboundReportRow, UserCountSample};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::broadcast;

/// One line of the recent chat, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// When it was said.
    pub timestamp: i64,
    /// Who said it.
    pub username: String,
    /// What was said.
    pub message: String,
    /// Whether the bot said it.
    pub own: bool,
}

impl From<ChatLine> for Line {
    fn from(c: ChatLine) -> Self {
        Line {
            timestamp: c.timestamp,
            username: c.username,
            message: c.message,
            own: false,
        }
    }
}

/// One channel's view: the bot's state and the chat.
#[derive(Debug, Clone, Default)]
pub struct ChannelView {
    /// The bot's last snapshot, kept current from events.
    pub bot: Option<Snapshot>,
    /// When the bot was last heard from (unix seconds).
    pub last_heard: i64,
    /// Recent chat, oldest first.
    pub chat: VecDeque<Line>,
    /// The channel's newest outbound messages, newest first.
    pub outbound: Vec<OutboundReportRow>,
    /// The channel's high-water marks and top chatters.
    pub stats: Option<ChannelStats>,
    /// The channel's user counts of the last 7 days.
    pub history: Vec<UserCountSample>,
}

/// One Rosey process found through `$SRV.STATS`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceEntry {
    /// Service name.
    pub name: String,
    /// Instance id.
    pub id: String,
    /// Version.
    pub version: String,
    /// Metadata (a bot's platform and channel).
    pub metadata: BTreeMap<String, String>,
    /// Requests answered (summed over endpoints).
    pub requests: u64,
    /// Errors answered.
    pub errors: u64,
    /// The service's own data (rosey-db's ingest counters, the runtime's plugins).
    pub data: serde_json::Value,
}

/// The database side's health as rosey-web last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DbHealth {
    /// Whether rosey-db answered the last request.
    pub reachable: bool,
    /// Why not, when not.
    pub problem: Option<String>,
    /// Durable writes waiting for rosey-db (the stream consumer's backlog).
    pub backlog: Option<u64>,
    /// Writes rosey-db could not apply (dead letters).
    pub dead_letters: Option<u64>,
}

/// Everything the page shows.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Per channel.
    pub channels: BTreeMap<String, ChannelView>,
    /// Plugins by name, from the runtime.
    pub plugins: BTreeMap<String, PluginInfo>,
    /// Whether the runtime answered last time.
    pub runtime_reachable: bool,
    /// Processes found through `$SRV`.
    pub services: Vec<ServiceEntry>,
    /// The database.
    pub db: DbHealth,
    /// Whether NATS is connected.
    pub nats_connected: bool,
    /// When rosey-web started.
    pub started_at: i64,
}

impl Live {
    /// The view of `channel`, created on first sight.
    pub fn channel_mut(&mut self, channel: &str) -> &mut ChannelView {
        self.channels.entry(channel.to_owned()).or_default()
    }

    /// Replaces a channel's chat with `stored` (rosey-db's recent chat), keeping the live lines
    /// rosey-db had not stored yet when it answered (its writes trail the live events), and
    /// showing a line both have once; at most `keep` lines.
    pub fn replace_chat(&mut self, channel: &str, stored: Vec<Line>, keep: usize) {
        let view = self.channel_mut(channel);
        let newest_stored = stored.last().map(|l| l.timestamp);
        let mut merged: VecDeque<Line> = stored.into();
        for line in std::mem::take(&mut view.chat) {
            let is_newer = newest_stored.is_none_or(|t| line.timestamp >= t);
            let already = merged.iter().any(|m| {
                m.timestamp == line.timestamp
                    && m.username == line.username
                    && m.message == line.message
            });
            if is_newer && !already {
                merged.push_back(line);
            }
        }
        while merged.len() > keep {
            merged.pop_front();
        }
        view.chat = merged;
    }

    /// Adds a chat line, keeping at most `keep`.
    pub fn push_line(&mut self, channel: &str, line: Line, keep: usize) {
        let view = self.channel_mut(channel);
        view.chat.push_back(line);
        while view.chat.len() > keep {
            view.chat.pop_front();
        }
    }
}

/// What changed, for the live page.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A chat line arrived in a channel.
    Chat(String, Line),
    /// A section of the page changed.
    Section(Section),
}

/// The page's sections that are redrawn whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    /// Bot, connection, counts, media.
    Bot,
    /// Users in the channel.
    Users,
    /// The outbound queue.
    Outbound,
    /// Plugins.
    Plugins,
    /// Services and the database.
    Services,
    /// Stats and the chart.
    Stats,
    /// The whole recent chat (after a reload; new lines come as [`Change::Chat`]).
    Chat,
    /// What needs attention (as `/health` names it); redrawn with the bot and the services.
    Health,
}

impl Section {
    /// Every section.
    pub const ALL: [Section; 8] = [
        Section::Bot,
        Section::Users,
        Section::Outbound,
        Section::Plugins,
        Section::Services,
        Section::Stats,
        Section::Chat,
        Section::Health,
    ];

    /// Its element id and template name.
    pub fn id(self) -> &'static str {
        match self {
            Section::Bot => "bot",
            Section::Users => "users",
            Section::Outbound => "outbound",
            Section::Plugins => "plugins",
            Section::Services => "services",
            Section::Stats => "stats",
            Section::Chat => "chat",
            Section::Health => "health",
        }
    }
}

/// The shared state and the change feed.
#[derive(Clone)]
pub struct Shared {
    live: Arc<RwLock<Live>>,
    /// Counts the updates, so an answer built from the state can be reused until the next one.
    revision: Arc<AtomicU64>,
    changes: broadcast::Sender<Change>,
}

impl Shared {
    /// Empty state.
    pub fn new(started_at: i64) -> Self {
        let (changes, _) = broadcast::channel(1024);
        Shared {
            live: Arc::new(RwLock::new(Live {
                started_at,
                ..Live::default()
            })),
            revision: Arc::new(AtomicU64::new(0)),
            changes,
        }
    }

    /// The number of updates so far; read it under [`Shared::read`]'s guard, it then names the
    /// state that guard shows.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Reads the state.
    pub fn read(&self) -> RwLockReadGuard<'_, Live> {
        // Every update is one step under the lock; a poisoned lock still holds whole data.
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and tells the page what changed.
    pub fn update<R>(&self, changes: &[Change], f: impl FnOnce(&mut Live) -> R) -> R {
        let result = {
            let mut live: RwLockWriteGuard<'_, Live> =
                self.live.write().unwrap_or_else(|e| e.into_inner());
            let result = f(&mut live);
            self.revision.fetch_add(1, Ordering::AcqRel);
            result
        };
        for change in changes {
            // No page open: nobody to tell.
            let _ = self.changes.send(change.clone());
        }
        result
    }

    /// Tells the page a section changed.
    pub fn notify(&self, section: Section) {
        let _ = self.changes.send(Change::Section(section));
    }

    /// Follows the changes (for one open page).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(timestamp: i64, username: &str, message: &str) -> Line {
        Line {
            timestamp,
            username: username.into(),
            message: message.into(),
            own: false,
        }
    }

    #[test]
    fn a_chat_reload_keeps_unstored_live_lines_and_shows_each_line_once() {
        let mut live = Live::default();
        live.push_line("c", line(10, "a", "old live"), 10);
        live.push_line("c", line(20, "b", "stored and live"), 10);
        live.push_line("c", line(30, "c", "not stored yet"), 10);
        let stored = vec![
            line(5, "z", "from the database"),
            line(20, "b", "stored and live"),
        ];
        live.replace_chat("c", stored, 10);
        let got: Vec<&str> = live.channels["c"]
            .chat
            .iter()
            .map(|l| l.message.as_str())
            .collect();
        assert_eq!(
            got,
            ["from the database", "stored and live", "not stored yet"]
        );
        // The cap keeps the newest.
        live.replace_chat("c", vec![line(40, "d", "x"), line(41, "d", "y")], 2);
        let got: Vec<&str> = live.channels["c"]
            .chat
            .iter()
            .map(|l| l.message.as_str())
            .collect();
        assert_eq!(got, ["x", "y"]);
    }

    #[test]
    fn chat_keeps_the_newest_lines() {
        let mut live = Live::default();
        for i in 0..5 {
            live.push_line(
                "c",
                Line {
                    timestamp: i,
                    username: "a".into(),
                    message: i.to_string(),
                    own: false,
                },
                3,
            );
        }
        let kept: Vec<_> = live.channels["c"]
            .chat
            .iter()
            .map(|l| l.timestamp)
            .collect();
        assert_eq!(kept, [2, 3, 4]);
    }
}
