//! The database service's payloads: durable writes (through the stream) and requests.
//!
//! Write payloads keep the original Rosey's keys, plus an optional `timestamp` (defaulting to
//! the time of receipt) so that events applied after an outage are accounted at their own time.

use crate::time::Timestamp;
use crate::user::UserData;
use serde::{Deserialize, Serialize};

/// `rosey.db.user.joined`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserJoined {
    /// The user's name.
    pub username: String,
    /// When the user joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// The user, for consumers that want rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<UserData>,
}

/// `rosey.db.user.left`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserLeft {
    /// The user's name.
    pub username: String,
    /// When the user left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// The user as last known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<UserData>,
}

/// The most names one [`UserSessions`] write carries (`left` and `joined` together), so a
/// write stays far below NATS's `max_payload` with CyTube's 20-character names; a larger
/// change is split into several writes.
pub const MAX_SESSION_NAMES: usize = 2_000;

/// `rosey.db.user.sessions`: sessions closed (`left`) then opened (`joined`) at `timestamp`,
/// in one write; what a user list replacing the last one, or a lost connection, changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSessions {
    /// Users whose sessions end (applied first).
    #[serde(default)]
    pub left: Vec<String>,
    /// Users whose sessions start.
    #[serde(default)]
    pub joined: Vec<String>,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

/// `rosey.db.message.log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageLog {
    /// The author.
    pub username: String,
    /// The decoded chat line.
    pub message: String,
    /// When it was said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// The author, with rank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<UserData>,
}

/// `rosey.db.stats.user_count`: a sample for the user-count history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsUserCount {
    /// Users in the chat list.
    #[serde(default)]
    pub chat_count: u64,
    /// Connections, anonymous included.
    #[serde(default)]
    pub connected_count: u64,
    /// When it was sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

/// `rosey.db.stats.high_water`: counts to compare against the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsHighWater {
    /// Users in the chat list.
    #[serde(default)]
    pub chat_count: u64,
    /// Connections; absent when unknown (the connected record is then left alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_count: Option<u64>,
    /// When the counts were seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

/// `rosey.db.status.update`: some of the live status columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// Column name to value; only the status columns are applied, others are reported.
    pub status_data: serde_json::Map<String, serde_json::Value>,
    /// When the status was true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

/// The columns of `current_status` that [`StatusUpdate`] may set (the original's whitelist).
pub const STATUS_COLUMNS: [&str; 11] = [
    "bot_name",
    "bot_rank",
    "bot_afk",
    "channel_name",
    "current_chat_users",
    "current_connected_users",
    "playlist_items",
    "current_media_title",
    "current_media_duration",
    "bot_start_time",
    "bot_connected",
];

/// `rosey.db.messages.outbound.mark_sent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMarkSent {
    /// The outbound message's id.
    pub message_id: i64,
    /// When it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

/// `rosey.db.messages.outbound.mark_failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMarkFailed {
    /// The outbound message's id.
    pub message_id: i64,
    /// Why it failed.
    pub error: String,
    /// True when retrying cannot help (the message is given up).
    #[serde(default)]
    pub permanent: bool,
    /// When it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

/// The stage of a PM shell command in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PmCommandResult {
    /// Received, not yet run.
    Pending,
    /// Ran and answered.
    Success,
    /// Failed.
    Error,
}

/// `rosey.db.action.pm_command`: one PM shell command, for the `user_actions` audit table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmCommand {
    /// Who sent it.
    pub username: String,
    /// The command word.
    pub command: String,
    /// The rest of the line.
    #[serde(default)]
    pub args: String,
    /// The stage.
    pub result: PmCommandResult,
    /// What went wrong, with `result: error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

fn default_limit() -> u32 {
    50
}

fn default_max_retries() -> u32 {
    3
}

/// Request `rosey.db.messages.outbound.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundGet {
    /// The channel asked about; may be left out when rosey-db serves one channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// At most this many messages.
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// Messages retried this often are given up.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

impl Default for OutboundGet {
    fn default() -> Self {
        OutboundGet {
            channel: None,
            limit: default_limit(),
            max_retries: default_max_retries(),
        }
    }
}

/// One element of the `outbound.get` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// The id to mark it with.
    pub id: i64,
    /// When it was queued.
    pub timestamp: i64,
    /// The text to send.
    pub message: String,
    /// How often sending has failed.
    pub retry_count: i64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Request `rosey.db.messages.outbound.enqueue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundEnqueue {
    /// The channel asked about; may be left out when rosey-db serves one channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The text the bot should say.
    pub message: String,
}

/// Reply to `outbound.enqueue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The new message's id.
    pub id: i64,
}

/// Request `rosey.db.stats.recent_chat.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentChatGet {
    /// The channel asked about; may be left out when rosey-db serves one channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// At most this many lines (the newest ones).
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// Only this user's lines (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Only lines at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}

impl Default for RecentChatGet {
    fn default() -> Self {
        RecentChatGet {
            channel: None,
            limit: default_limit(),
            username: None,
            since: None,
        }
    }
}

/// Request `rosey.db.stats.user_count_history.get` (the original's
/// `get_user_count_history(hours)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCountHistoryGet {
    /// The channel asked about; may be left out when rosey-db serves one channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// How many hours back, up to the 30 days the history keeps (default 24).
    #[serde(default = "default_history_hours")]
    pub hours: u32,
}

impl Default for UserCountHistoryGet {
    fn default() -> Self {
        UserCountHistoryGet {
            channel: None,
            hours: default_history_hours(),
        }
    }
}

fn default_history_hours() -> u32 {
    24
}

/// One element of the `user_count_history.get` reply (oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCountSample {
    /// When it was taken.
    pub timestamp: i64,
    /// Users in chat.
    pub chat_users: u64,
    /// Connections, anonymous viewers included.
    pub connected_users: u64,
}

/// One element of the `recent_chat.get` reply (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLine {
    /// When it was said.
    pub timestamp: i64,
    /// Who said it.
    pub username: String,
    /// What was said.
    pub message: String,
}

/// Request `rosey.db.query.channel_stats` (no fields).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChannelStatsQuery {
    /// The channel asked about; may be left out when rosey-db serves one channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// A high-water mark: the record and when it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HighWaterMark {
    /// The record count.
    pub users: i64,
    /// When it was set; `None` before any record.
    pub timestamp: Option<i64>,
}

/// One row of the top chatters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopChatter {
    /// The user.
    pub username: String,
    /// Lines said.
    pub chat_lines: i64,
}

/// Reply to `query.channel_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// The chat-user record.
    pub high_water_mark: HighWaterMark,
    /// The connected record.
    pub high_water_connected: HighWaterMark,
    /// The ten most talkative users.
    pub top_chatters: Vec<TopChatter>,
    /// How many distinct users were ever seen.
    pub total_users_seen: i64,
}

/// Request `rosey.db.query.user_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStatsQuery {
    /// The channel asked about; may be left out when rosey-db serves one channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The user to look up.
    pub username: String,
}

/// Reply to `query.user_stats`: `found` and, when found, the `user_stats` columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStats {
    /// Whether the user was ever seen.
    pub found: bool,
    /// The user's name as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// First seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<i64>,
    /// Last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    /// Lines said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_chat_lines: Option<i64>,
    /// Seconds connected over all closed sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_time_connected: Option<i64>,
    /// Start of the open session; `None` when offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_session_start: Option<i64>,
}

/// Request `rosey.db.maintenance.run` (no fields).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MaintenanceRun {
    /// The channel asked about; may be left out when rosey-db serves one channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// Reply to `maintenance.run`: what the maintenance did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MaintenanceReport {
    /// User-count history rows older than 30 days, deleted.
    pub history_deleted: u64,
    /// Sent outbound messages older than 7 days, deleted.
    pub outbound_deleted: u64,
    /// Revoked API tokens older than 90 days, deleted.
    pub tokens_deleted: u64,
    /// Expired plugin key-value entries, deleted.
    pub kv_expired_deleted: u64,
    /// Recent chat older than its retention, deleted.
    pub recent_chat_deleted: u64,
    /// One line per step, as the original logged them.
    pub log: Vec<String>,
}

/// The channel a request is about: the only channel when the service keeps one, else the one
/// named (see `docs/SUBJECTS.md`, "Channels").
pub type ChannelName = Option<String>;

fn default_recent_outbound() -> u32 {
    20
}

/// Request for the outbound report: the newest messages first, whatever their state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundRecent {
    /// How many messages (default 20, at most 500).
    #[serde(default = "default_recent_outbound")]
    pub limit: u32,
    /// The channel whose queue to report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: ChannelName,
}

/// The state the original's web page derived for an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundState {
    /// Sent to the channel.
    Sent,
    /// Given up with an error (sent flag set, with `last_error`).
    Failed,
    /// Waiting for its first try.
    Queued,
    /// Failed at least once, will be tried again.
    Retrying,
    /// Failed as many times as the bot tries.
    Abandoned,
}

/// How many tries the bot makes before an outbound message is abandoned.
pub const OUTBOUND_MAX_RETRIES: i64 = 3;

impl OutboundState {
    /// The state of a row, exactly as the original's `/api/outbound/recent` derived it.
    pub fn derive(sent: bool, retry_count: i64, last_error: Option<&str>) -> Self {
        match (sent, last_error.is_some_and(|e| !e.is_empty())) {
            (true, true) => OutboundState::Failed,
            (true, false) => OutboundState::Sent,
            (false, _) if retry_count >= OUTBOUND_MAX_RETRIES => OutboundState::Abandoned,
            (false, _) if retry_count > 0 => OutboundState::Retrying,
            (false, _) => OutboundState::Queued,
        }
    }
}

/// One row of the outbound report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundReportRow {
    /// Row id.
    pub id: i64,
    /// When it was queued.
    pub timestamp: i64,
    /// The text.
    pub message: String,
    /// Whether the bot is done with it (sent or given up).
    pub sent: bool,
    /// When it was sent or given up.
    pub sent_timestamp: Option<i64>,
    /// Failed tries.
    pub retry_count: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// The derived state.
    pub status: OutboundState,
}

/// Request for the live status row.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CurrentStatusQuery {
    /// The channel whose status to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: ChannelName,
}

/// The original's `current_status` row, as the bot last wrote it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CurrentStatus {
    /// The bot's name.
    pub bot_name: Option<String>,
    /// The bot's rank.
    pub bot_rank: Option<f64>,
    /// Whether the bot is AFK.
    pub bot_afk: bool,
    /// The channel.
    pub channel_name: Option<String>,
    /// Users in chat.
    pub current_chat_users: i64,
    /// Connections, guests included.
    pub current_connected_users: i64,
    /// Playlist length.
    pub playlist_items: i64,
    /// What is playing.
    pub current_media_title: Option<String>,
    /// Its length in seconds.
    pub current_media_duration: Option<i64>,
    /// When the bot started.
    pub bot_start_time: Option<i64>,
    /// Whether the bot is in the channel.
    pub bot_connected: bool,
    /// When the row was last written.
    pub last_updated: Option<i64>,
}

/// Characters of a token shown in lists (the original's `token_preview` without its "...").
pub const TOKEN_PREVIEW_CHARS: usize = 8;
/// The shortest prefix that revokes by prefix; anything shorter must match a whole token.
pub const TOKEN_PREFIX_MIN: usize = 8;

/// Request: create an API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreate {
    /// What the token is for.
    #[serde(default)]
    pub description: String,
    /// A channel rosey-db serves, checked; tokens are deployment-wide and speak in every channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: ChannelName,
}

/// A new token: the only time its text leaves rosey-db.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The token itself.
    pub token: String,
    /// Its first characters, as lists show it.
    pub token_preview: String,
    /// What it is for.
    pub description: String,
    /// When it was made.
    pub created_at: i64,
}

/// Request: list tokens.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenList {
    /// Include revoked tokens.
    #[serde(default)]
    pub include_revoked: bool,
    /// A channel rosey-db serves, checked; the list is the deployment's, whatever it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: ChannelName,
}

/// One token in a list, without its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The first characters and "..." (the original's shape).
    pub token_preview: String,
    /// What it is for.
    pub description: Option<String>,
    /// When it was made.
    pub created_at: i64,
    /// When it was last accepted.
    pub last_used: Option<i64>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// The list of tokens, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenListReply {
    /// The tokens.
    pub tokens: Vec<TokenInfo>,
}

/// Request: revoke every token starting with `prefix` (at least [`TOKEN_PREFIX_MIN`] characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoke {
    /// The token's first characters.
    pub prefix: String,
    /// A channel rosey-db serves, checked; a revoke reaches the token in every channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: ChannelName,
}

/// How many tokens a revoke reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensRevoked {
    /// Tokens now revoked.
    pub revoked: u64,
}

/// Request: is this token valid? A valid token's last use is noted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenVerify {
    /// The token's text.
    pub token: String,
    /// The channel the token is used for (checked to be served; the token table is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: ChannelName,
}

/// The answer to a token check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenVerdict {
    /// Whether the token exists and is not revoked.
    pub valid: bool,
    /// The token's preview when valid (a key for per-token limits that is not the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_preview: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_defaults_match_the_original() {
        let g: OutboundGet = serde_json::from_value(json!({})).unwrap();
        assert_eq!((g.limit, g.max_retries), (50, 3));
        let r: RecentChatGet = serde_json::from_value(json!({})).unwrap();
        assert_eq!(r.limit, 50);
    }

    #[test]
    fn user_count_defaults_to_zero_and_high_water_connected_is_optional() {
        let c: StatsUserCount = serde_json::from_value(json!({})).unwrap();
        assert_eq!((c.chat_count, c.connected_count), (0, 0));
        let h: StatsHighWater = serde_json::from_value(json!({"chat_count": 3})).unwrap();
        assert_eq!(h.connected_count, None);
    }

    #[test]
    fn wrong_types_are_rejected() {
        assert!(serde_json::from_value::<UserJoined>(json!({"username": 5})).is_err());
        assert!(serde_json::from_value::<OutboundMarkSent>(json!({"message_id": "x"})).is_err());
        assert!(serde_json::from_value::<OutboundGet>(json!({"limit": -1})).is_err());
    }
}

/// A write event the database service could not apply, as kept in the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The subject it was published on.
    pub subject: String,
    /// Its payload, as text (lossy where it was not UTF-8).
    pub payload: String,
    /// Why it could not be applied.
    pub error: String,
    /// Its sequence in the database stream.
    pub stream_sequence: u64,
    /// How often it was delivered before it was given up.
    pub deliveries: u64,
}
