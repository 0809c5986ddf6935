//! The table of every subject of the contract, with its payload and reply types and an example
//! of each, from which `docs/SUBJECTS.md` is checked (and can be regenerated).

use crate::{actions, admin, bot, commands, db, events, kv, llm, subjects};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// How a subject is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Core NATS publish, live, no reply.
    Event,
    /// A durable write through the JetStream stream.
    Write,
    /// A request that gets a reply (or an error reply).
    Request,
    /// A publish that may carry a reply subject (the bot answers when it has one).
    Action,
}

impl Kind {
    /// The spelling used in the docs table.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Write => "durable write",
            Kind::Request => "request",
            Kind::Action => "action",
        }
    }
}

/// Decodes an example into `T` and encodes it again, to prove the type reads and writes it.
pub type RoundTrip = fn(&Value) -> Result<Value, String>;

/// One row of the contract.
pub struct SubjectSpec {
    /// The subject spelled in full, with `<placeholders>` for names.
    pub subject: &'static str,
    /// How it is used.
    pub kind: Kind,
    /// Who publishes it and who consumes it.
    pub flow: &'static str,
    /// The payload's Rust type.
    pub payload: &'static str,
    /// The payload's fields (`?` marks optional ones); empty for non-object payloads.
    pub fields: &'static str,
    /// The reply's Rust type, for requests and actions.
    pub reply: Option<&'static str>,
    /// A complete example payload, with every optional field present.
    pub example: fn() -> Value,
    /// Decodes and re-encodes a payload through its type.
    pub roundtrip: RoundTrip,
    /// A complete example reply.
    pub reply_example: Option<fn() -> Value>,
    /// Decodes and re-encodes a reply through its type.
    pub reply_roundtrip: Option<RoundTrip>,
}

/// Decodes `value` as `T` and encodes it again.
/// Decodes a payload as `T` the way services do ([`crate::payload`]: objects only) and encodes
/// it again.
pub fn roundtrip<T: Serialize + DeserializeOwned>(value: &Value) -> Result<Value, String> {
    let decoded: T = crate::payload::decode_value(value.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(decoded).map_err(|e| e.to_string())
}

/// Decodes a reply (which may be a list) as `T` and encodes it again.
pub fn roundtrip_reply<T: Serialize + DeserializeOwned>(value: &Value) -> Result<Value, String> {
    let decoded: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(decoded).map_err(|e| e.to_string())
}

fn envelope(body: Value) -> Value {
    let mut v = json!({
        "platform": "cytube",
        "channel": "lounge",
        "timestamp": 1_700_000_000,
        "platform_data": {"original": true},
    });
    if let (Some(map), Value::Object(extra)) = (v.as_object_mut(), body) {
        map.extend(extra);
    }
    v
}

fn user() -> Value {
    json!({"username": "alice", "rank": 2.0, "is_afk": false, "is_moderator": true,
           "is_muted": false, "profile": {"image": "", "text": "hi"}})
}

fn media() -> Value {
    json!({"id": "dQw4w9WgXcQ", "type": "yt", "title": "Song", "duration_s": 212.0})
}

fn poll() -> Value {
    envelope(
        json!({"title": "Best?", "options": ["a", "b"], "counts": [1, null], "initiator": "alice"}),
    )
}

fn ok() -> Value {
    json!({"ok": true})
}

fn lifecycle() -> Value {
    json!({"name": "quotes", "version": "0.1.0", "generation": 2, "error": "bad library"})
}

macro_rules! spec {
    ($subject:expr, $kind:ident, $flow:expr, $ty:ty, $fields:expr, $example:expr) => {
        SubjectSpec {
            subject: $subject,
            kind: Kind::$kind,
            flow: $flow,
            payload: stringify!($ty),
            fields: $fields,
            reply: None,
            example: || $example,
            roundtrip: roundtrip::<$ty>,
            reply_example: None,
            reply_roundtrip: None,
        }
    };
    ($subject:expr, $kind:ident, $flow:expr, $ty:ty, $fields:expr, $example:expr,
     $reply:ty, $reply_example:expr) => {
        SubjectSpec {
            subject: $subject,
            kind: Kind::$kind,
            flow: $flow,
            payload: stringify!($ty),
            fields: $fields,
            reply: Some(stringify!($reply)),
            example: || $example,
            roundtrip: roundtrip::<$ty>,
            reply_example: Some(|| $reply_example),
            reply_roundtrip: Some(roundtrip_reply::<$reply>),
        }
    };
}

const ENV: &str = "platform, channel, timestamp, platform_data";

/// Every subject of the contract, in the order of `docs/SUBJECTS.md`.
pub fn all() -> Vec<SubjectSpec> {
    use subjects::{db as db_subject, events as event_subject, runtime as runtime_subject};
    vec![
        spec!(
            event_subject::MESSAGE,
            Event,
            "bot → runtime, web",
            events::Event<events::Message>,
            "platform, channel, timestamp, platform_data, user, user_data?, content, is_command",
            envelope(
                json!({"user": "alice", "user_data": user(), "content": "hi & bye", "is_command": false})
            )
        ),
        spec!(
            event_subject::USER_JOIN,
            Event,
            "bot → runtime, web",
            events::Event<events::UserJoin>,
            "platform, channel, timestamp, platform_data, user, user_data",
            envelope(json!({"user": "alice", "user_data": user()}))
        ),
        spec!(
            event_subject::USER_LEAVE,
            Event,
            "bot → runtime, web",
            events::Event<events::UserLeave>,
            "platform, channel, timestamp, platform_data, user, user_data?",
            envelope(json!({"user": "alice", "user_data": user()}))
        ),
        spec!(
            event_subject::USER_LIST,
            Event,
            "bot → runtime, web",
            events::Event<events::UserList>,
            "platform, channel, timestamp, platform_data, users, count",
            envelope(json!({"users": [user()], "count": 1}))
        ),
        spec!(
            event_subject::USER_UPDATE,
            Event,
            "bot → runtime, web",
            events::Event<events::UserUpdate>,
            "platform, channel, timestamp, platform_data, user, user_data, changed",
            envelope(
                json!({"user": "alice", "user_data": user(), "changed": ["afk", "rank", "mute", "profile"]})
            )
        ),
        spec!(
            event_subject::USER_COUNT,
            Event,
            "bot → runtime, web",
            events::Event<events::UserCount>,
            "platform, channel, timestamp, platform_data, chat_count, connected_count",
            envelope(json!({"chat_count": 3, "connected_count": 5}))
        ),
        spec!(
            event_subject::PM,
            Event,
            "bot → runtime, web",
            events::Event<events::Pm>,
            "platform, channel, timestamp, platform_data, user, recipient, content",
            envelope(json!({"user": "alice", "recipient": "rosey", "content": "help"}))
        ),
        spec!(
            event_subject::MEDIA_CHANGE,
            Event,
            "bot → runtime, web",
            events::Event<events::MediaChange>,
            "platform, channel, timestamp, platform_data, media, queued_by?",
            envelope(json!({"media": media(), "queued_by": "alice"}))
        ),
        spec!(
            event_subject::PLAYLIST_ADD,
            Event,
            "bot → runtime, web",
            events::Event<events::PlaylistAdd>,
            "platform, channel, timestamp, platform_data, item, after",
            envelope(
                json!({"item": {"uid": 7, "media": media(), "temporary": true, "queued_by": "alice"}, "after": "prepend"})
            )
        ),
        spec!(
            event_subject::PLAYLIST_REMOVE,
            Event,
            "bot → runtime, web",
            events::Event<events::PlaylistRemove>,
            "platform, channel, timestamp, platform_data, uid",
            envelope(json!({"uid": 7}))
        ),
        spec!(
            event_subject::PLAYLIST_MOVE,
            Event,
            "bot → runtime, web",
            events::Event<events::PlaylistMove>,
            "platform, channel, timestamp, platform_data, uid, after",
            envelope(json!({"uid": 7, "after": 3}))
        ),
        spec!(
            event_subject::POLL_OPEN,
            Event,
            "bot → runtime, web",
            events::Event<events::Poll>,
            "platform, channel, timestamp, platform_data, title, options, counts, initiator?",
            poll()
        ),
        spec!(
            event_subject::POLL_UPDATE,
            Event,
            "bot → runtime, web",
            events::Event<events::Poll>,
            "platform, channel, timestamp, platform_data, title, options, counts, initiator?",
            poll()
        ),
        spec!(
            event_subject::POLL_CLOSE,
            Event,
            "bot → runtime, web",
            events::Event<events::PollClose>,
            ENV,
            envelope(json!({}))
        ),
        spec!(
            event_subject::BOT_STATUS,
            Event,
            "bot → runtime, web",
            events::Event<events::BotStatus>,
            "platform, channel, timestamp, platform_data, bot_name, rank, connected",
            envelope(json!({"bot_name": "rosey", "rank": 2.0, "connected": true}))
        ),
        spec!(
            subjects::bot::SAID,
            Event,
            "bot → web",
            bot::Said,
            "platform, channel, timestamp, user, content",
            json!({"platform": "cytube", "channel": "lounge", "timestamp": 1_700_000_000,
                   "user": "rosey", "content": "hello & welcome"})
        ),
        spec!(
            subjects::bot::SNAPSHOT,
            Request,
            "web → bot",
            bot::SnapshotRequest,
            "channel?",
            json!({"channel": "lounge"}),
            bot::Snapshot,
            json!({"platform": "cytube", "channel": "lounge", "bot_name": "rosey", "bot_rank": 2.0,
                   "connected": true, "connected_since": 1_700_000_000, "started_at": 1_699_999_000,
                   "users": [user()], "chat_count": 1, "connected_count": 4, "media": media(),
                   "playlist": [{"uid": 7, "media": media(), "temporary": false, "queued_by": "alice"}]})
        ),
        spec!(
            "rosey.platform.<platform>.<event>",
            Event,
            "bot → runtime",
            serde_json::Value,
            "",
            json!({"username": "alice", "msg": "hi &amp; bye", "time": 1_700_000_000_000_i64})
        ),
        spec!(
            "rosey.commands.<name>",
            Event,
            "bot → runtime",
            commands::Command,
            "command, args, text, raw, user, user_data, is_pm, platform, channel, timestamp",
            json!({"command": "quote", "args": ["add", "hi"], "text": "add hi", "raw": "!quote add hi",
                   "user": "alice", "user_data": user(), "is_pm": false, "platform": "cytube",
                   "channel": "lounge", "timestamp": 1_700_000_000})
        ),
        spec!(
            "rosey.platform.<platform>.send.chat",
            Action,
            "runtime → bot",
            actions::SendChat,
            "channel, content",
            json!({"channel": "lounge", "content": "hello"}),
            actions::Ok,
            ok()
        ),
        spec!(
            "rosey.platform.<platform>.send.pm",
            Action,
            "runtime → bot",
            actions::SendPm,
            "channel, to, content",
            json!({"channel": "lounge", "to": "alice", "content": "psst"}),
            actions::Ok,
            ok()
        ),
        spec!(
            "rosey.platform.<platform>.send.playlist.add",
            Action,
            "runtime → bot",
            actions::SendPlaylistAdd,
            "channel, url, position?, temporary?",
            json!({"channel": "lounge", "url": "https://youtu.be/dQw4w9WgXcQ", "position": "next", "temporary": true}),
            actions::Ok,
            ok()
        ),
        spec!(
            "rosey.platform.<platform>.send.playlist.remove",
            Action,
            "runtime → bot",
            actions::SendPlaylistEntry,
            "channel, uid",
            json!({"channel": "lounge", "uid": 7}),
            actions::Ok,
            ok()
        ),
        spec!(
            "rosey.platform.<platform>.send.playlist.jump",
            Action,
            "runtime → bot",
            actions::SendPlaylistEntry,
            "channel, uid",
            json!({"channel": "lounge", "uid": 7}),
            actions::Ok,
            ok()
        ),
        spec!(
            "rosey.platform.<platform>.send.playlist.move",
            Action,
            "runtime → bot",
            actions::SendPlaylistMove,
            "channel, uid, after",
            json!({"channel": "lounge", "uid": 7, "after": "prepend"}),
            actions::Ok,
            ok()
        ),
        spec!(
            "rosey.platform.<platform>.send.playlist.next",
            Action,
            "runtime → bot",
            actions::SendChannelAction,
            "channel",
            json!({"channel": "lounge"}),
            actions::Ok,
            ok()
        ),
        spec!(
            "rosey.platform.<platform>.send.kick",
            Action,
            "runtime → bot",
            actions::SendKick,
            "channel, user, reason?",
            json!({"channel": "lounge", "user": "troll", "reason": "bye"}),
            actions::Ok,
            ok()
        ),
        spec!(
            "rosey.platform.<platform>.send.clear",
            Action,
            "runtime → bot",
            actions::SendChannelAction,
            "channel",
            json!({"channel": "lounge"}),
            actions::Ok,
            ok()
        ),
        spec!(
            "rosey.platform.<platform>.send.afk",
            Action,
            "runtime → bot",
            actions::SendAfk,
            "channel, afk",
            json!({"channel": "lounge", "afk": true}),
            actions::Ok,
            ok()
        ),
        spec!(
            "rosey.platform.<platform>.error",
            Event,
            "bot → runtime, web",
            actions::PlatformError,
            "action, error, channel",
            json!({"action": "send.chat", "error": "the bot is muted", "channel": "lounge"})
        ),
        spec!(
            db_subject::USER_JOINED,
            Write,
            "bot → db",
            db::UserJoined,
            "username, timestamp?, user_data?",
            json!({"username": "alice", "timestamp": 1_700_000_000, "user_data": user()})
        ),
        spec!(
            db_subject::USER_LEFT,
            Write,
            "bot → db",
            db::UserLeft,
            "username, timestamp?, user_data?",
            json!({"username": "alice", "timestamp": 1_700_000_000, "user_data": user()})
        ),
        spec!(
            db_subject::USER_SESSIONS,
            Write,
            "bot → db",
            db::UserSessions,
            "left?, joined?, timestamp?",
            json!({"left": ["bob"], "joined": ["alice", "carol"], "timestamp": 1_700_000_000})
        ),
        spec!(
            db_subject::MESSAGE_LOG,
            Write,
            "bot → db",
            db::MessageLog,
            "username, message, timestamp?, user_data?",
            json!({"username": "alice", "message": "hi", "timestamp": 1_700_000_000, "user_data": user()})
        ),
        spec!(
            db_subject::STATS_USER_COUNT,
            Write,
            "bot → db",
            db::StatsUserCount,
            "chat_count?, connected_count?, timestamp?",
            json!({"chat_count": 3, "connected_count": 5, "timestamp": 1_700_000_000})
        ),
        spec!(
            db_subject::STATS_HIGH_WATER,
            Write,
            "bot → db",
            db::StatsHighWater,
            "chat_count?, connected_count?, timestamp?",
            json!({"chat_count": 3, "connected_count": 5, "timestamp": 1_700_000_000})
        ),
        spec!(
            db_subject::STATUS_UPDATE,
            Write,
            "bot → db",
            db::StatusUpdate,
            "status_data, timestamp?",
            json!({"status_data": {"bot_name": "rosey", "bot_connected": 1}, "timestamp": 1_700_000_000})
        ),
        spec!(
            db_subject::OUTBOUND_MARK_SENT,
            Write,
            "bot → db",
            db::OutboundMarkSent,
            "message_id, timestamp?",
            json!({"message_id": 4, "timestamp": 1_700_000_000})
        ),
        spec!(
            db_subject::OUTBOUND_MARK_FAILED,
            Write,
            "bot → db",
            db::OutboundMarkFailed,
            "message_id, error, permanent?, timestamp?",
            json!({"message_id": 4, "error": "muted", "permanent": false, "timestamp": 1_700_000_000})
        ),
        spec!(
            db_subject::ACTION_PM_COMMAND,
            Write,
            "bot → db",
            db::PmCommand,
            "username, command, args?, result, error?, timestamp?",
            json!({"username": "alice", "command": "stats", "args": "", "result": "error",
                   "error": "timeout", "timestamp": 1_700_000_000})
        ),
        spec!(
            db_subject::CHANNEL_WRITE_PATTERN,
            Write,
            "bot → db",
            serde_json::Value,
            "",
            json!({"username": "alice", "message": "hi", "timestamp": 1_700_000_000})
        ),
        spec!(
            db_subject::DLQ,
            Write,
            "db → operator",
            db::DeadLetter,
            "subject, payload, error, stream_sequence, deliveries",
            json!({"subject": "rosey.db.user.joined", "payload": "{nope", "error": "invalid JSON",
                   "stream_sequence": 12, "deliveries": 1})
        ),
        spec!(
            db_subject::OUTBOUND_GET,
            Request,
            "bot → db",
            db::OutboundGet,
            "channel?, limit?, max_retries?",
            json!({"channel": "lounge", "limit": 50, "max_retries": 3}),
            Vec<db::OutboundMessage>,
            json!([{"id": 1, "timestamp": 1_700_000_000, "message": "hi", "retry_count": 0, "last_error": null}])
        ),
        spec!(
            db_subject::OUTBOUND_ENQUEUE,
            Request,
            "web → db",
            db::OutboundEnqueue,
            "channel?, message",
            json!({"channel": "lounge", "message": "hello"}),
            db::Enqueued,
            json!({"id": 1})
        ),
        spec!(
            db_subject::RECENT_CHAT_GET,
            Request,
            "runtime, web → db",
            db::RecentChatGet,
            "channel?, limit?, username?, since?",
            json!({"channel": "lounge", "limit": 50, "username": "alice", "since": 1_700_000_000}),
            Vec<db::ChatLine>,
            json!([{"timestamp": 1_700_000_000, "username": "alice", "message": "hi"}])
        ),
        spec!(
            db_subject::USER_COUNT_HISTORY_GET,
            Request,
            "runtime, web → db",
            db::UserCountHistoryGet,
            "channel?, hours?",
            json!({"channel": "lounge", "hours": 24}),
            Vec<db::UserCountSample>,
            json!([{"timestamp": 1_700_000_000, "chat_users": 12, "connected_users": 30}])
        ),
        spec!(
            db_subject::QUERY_CHANNEL_STATS,
            Request,
            "bot, runtime, web → db",
            db::ChannelStatsQuery,
            "channel?",
            json!({"channel": "lounge"}),
            db::ChannelStats,
            json!({"high_water_mark": {"users": 9, "timestamp": 1_700_000_000},
                   "high_water_connected": {"users": 12, "timestamp": null},
                   "top_chatters": [{"username": "alice", "chat_lines": 40}], "total_users_seen": 17})
        ),
        spec!(
            db_subject::QUERY_USER_STATS,
            Request,
            "bot, runtime, web → db",
            db::UserStatsQuery,
            "channel?, username",
            json!({"channel": "lounge", "username": "alice"}),
            db::UserStats,
            json!({"found": true, "username": "alice", "first_seen": 1_600_000_000, "last_seen": 1_700_000_000,
                   "total_chat_lines": 40, "total_time_connected": 3600, "current_session_start": 1_700_000_000})
        ),
        spec!(
            db_subject::MAINTENANCE_RUN,
            Request,
            "operator → db",
            db::MaintenanceRun,
            "channel?",
            json!({"channel": "lounge"}),
            db::MaintenanceReport,
            json!({"history_deleted": 1, "outbound_deleted": 2, "tokens_deleted": 0, "kv_expired_deleted": 3,
                   "recent_chat_deleted": 4, "log": ["VACUUM done"]})
        ),
        spec!(
            db_subject::OUTBOUND_RECENT,
            Request,
            "web → db",
            db::OutboundRecent,
            "limit?, channel?",
            json!({"limit": 20, "channel": "lounge"}),
            Vec<db::OutboundReportRow>,
            json!([{"id": 3, "timestamp": 1_700_000_000, "message": "hi", "sent": false,
                    "sent_timestamp": null, "retry_count": 1, "last_error": "muted", "status": "retrying"}])
        ),
        spec!(
            db_subject::QUERY_CURRENT_STATUS,
            Request,
            "web → db",
            db::CurrentStatusQuery,
            "channel?",
            json!({"channel": "lounge"}),
            db::CurrentStatus,
            json!({"bot_name": "rosey", "bot_rank": 2.0, "bot_afk": false, "channel_name": "lounge",
                   "current_chat_users": 3, "current_connected_users": 5, "playlist_items": 2,
                   "current_media_title": "Song", "current_media_duration": 212,
                   "bot_start_time": 1_699_999_000, "bot_connected": true, "last_updated": 1_700_000_000})
        ),
        spec!(
            db_subject::TOKENS_CREATE,
            Request,
            "web → db",
            db::TokenCreate,
            "description?, channel?",
            json!({"description": "stream overlay", "channel": "lounge"}),
            db::TokenCreated,
            json!({"token": "MUYoaOQ8Nue6IkXeqgWC2mEqbMdQIvjfkaoTefZf9Vg", "token_preview": "MUYoaOQ8...",
                   "description": "stream overlay", "created_at": 1_700_000_000})
        ),
        spec!(
            db_subject::TOKENS_LIST,
            Request,
            "web → db",
            db::TokenList,
            "include_revoked?, channel?",
            json!({"include_revoked": true, "channel": "lounge"}),
            db::TokenListReply,
            json!({"tokens": [{"token_preview": "MUYoaOQ8...", "description": "stream overlay",
                               "created_at": 1_700_000_000, "last_used": null, "revoked": false}]})
        ),
        spec!(
            db_subject::TOKENS_REVOKE,
            Request,
            "web → db",
            db::TokenRevoke,
            "prefix, channel?",
            json!({"prefix": "MUYoaOQ8", "channel": "lounge"}),
            db::TokensRevoked,
            json!({"revoked": 1})
        ),
        spec!(
            db_subject::TOKENS_VERIFY,
            Request,
            "web → db",
            db::TokenVerify,
            "token, channel?",
            json!({"token": "MUYoaOQ8Nue6IkXeqgWC2mEqbMdQIvjfkaoTefZf9Vg", "channel": "lounge"}),
            db::TokenVerdict,
            json!({"valid": true, "token_preview": "MUYoaOQ8..."})
        ),
        spec!(
            "rosey.db.kv.<plugin>.get",
            Request,
            "runtime → db",
            kv::Get,
            "channel?, key",
            json!({"channel": "lounge", "key": "k"}),
            kv::GetReply,
            json!({"found": true, "value": {"any": "json"}})
        ),
        spec!(
            "rosey.db.kv.<plugin>.set",
            Request,
            "runtime → db",
            kv::Set,
            "channel?, key, value, ttl_seconds?",
            json!({"channel": "lounge", "key": "k", "value": [1, 2], "ttl_seconds": 60}),
            actions::Ok,
            ok()
        ),
        spec!(
            "rosey.db.kv.<plugin>.delete",
            Request,
            "runtime → db",
            kv::Delete,
            "channel?, key",
            json!({"channel": "lounge", "key": "k"}),
            kv::DeleteReply,
            json!({"deleted": true})
        ),
        spec!(
            "rosey.db.kv.<plugin>.list",
            Request,
            "runtime → db",
            kv::List,
            "channel?, prefix?, after?, limit?, values?",
            json!({"channel": "lounge", "prefix": "q:", "after": "q:1", "limit": 10, "values": true}),
            kv::ListReply,
            json!({"items": [{"key": "q:2", "value": "x"}], "next": "q:2"})
        ),
        spec!(
            "rosey.db.kv.<plugin>.incr",
            Request,
            "runtime → db",
            kv::Incr,
            "channel?, key, by?",
            json!({"channel": "lounge", "key": "n", "by": 2}),
            kv::IncrReply,
            json!({"value": 3})
        ),
        spec!(
            runtime_subject::PLUGINS_LIST,
            Request,
            "web, operator → runtime",
            admin::PluginsListRequest,
            "",
            json!({}),
            admin::PluginsList,
            json!({"plugins": [{"name": "quotes", "version": "0.1.0", "generation": 2, "state": "running",
                   "loaded_at": 1_700_000_000, "reloads": 1, "messages": 10, "errors": 0, "last_error": "x",
                   "host": {"pid": 4242, "restarts": 1, "rss_kib": 3500}}]})
        ),
        spec!(
            runtime_subject::PLUGINS_RELOAD,
            Request,
            "web, operator → runtime",
            admin::PluginName,
            "name",
            json!({"name": "quotes"}),
            actions::Ok,
            ok()
        ),
        spec!(
            runtime_subject::PLUGINS_ENABLE,
            Request,
            "web, operator → runtime",
            admin::PluginName,
            "name",
            json!({"name": "quotes"}),
            actions::Ok,
            ok()
        ),
        spec!(
            runtime_subject::PLUGINS_DISABLE,
            Request,
            "web, operator → runtime",
            admin::PluginName,
            "name",
            json!({"name": "quotes"}),
            actions::Ok,
            ok()
        ),
        spec!(
            runtime_subject::PLUGIN_LOADED,
            Event,
            "runtime → web",
            admin::PluginLifecycle,
            "name, version, generation, error?",
            lifecycle()
        ),
        spec!(
            runtime_subject::PLUGIN_RELOADED,
            Event,
            "runtime → web",
            admin::PluginLifecycle,
            "name, version, generation, error?",
            lifecycle()
        ),
        spec!(
            runtime_subject::PLUGIN_FAILED,
            Event,
            "runtime → web",
            admin::PluginLifecycle,
            "name, version, generation, error?",
            lifecycle()
        ),
        spec!(
            runtime_subject::PLUGIN_UNLOADED,
            Event,
            "runtime → web",
            admin::PluginLifecycle,
            "name, version, generation, error?",
            lifecycle()
        ),
        spec!(
            subjects::llm::CHAT,
            Request,
            "runtime → llm",
            llm::ChatRequest,
            "messages, model?, temperature?, max_tokens?",
            json!({"messages": [{"role": "system", "content": "You are Rosey."},
                                {"role": "user", "content": "hi"}],
                   "model": "llama3", "temperature": 0.7, "max_tokens": 200}),
            llm::ChatReply,
            json!({"text": "hello!", "model": "llama3",
                   "usage": {"prompt_tokens": 12, "completion_tokens": 3}, "latency_ms": 420})
        ),
        spec!(
            subjects::llm::STATUS,
            Request,
            "runtime, web, operator → llm",
            llm::StatusRequest,
            "",
            json!({}),
            llm::Status,
            json!({"provider": "ollama", "default_model": "llama3", "in_flight": 1, "queued": 0,
                   "concurrency": 16, "last_error": "provider unavailable: connection refused"})
        ),
        spec!(
            subjects::llm::USAGE,
            Request,
            "web, operator → llm",
            llm::UsageRequest,
            "",
            json!({}),
            llm::UsageReport,
            json!({"total": {"answered": 3, "failed": 1, "over_budget": 0, "prompt_tokens": 40, "completion_tokens": 9},
                   "by_source": {"llm": {"answered": 3, "failed": 1, "over_budget": 0, "prompt_tokens": 40, "completion_tokens": 9}}})
        ),
    ]
}

/// The markdown table of [`all`], exactly as `docs/SUBJECTS.md` must contain it.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Subject | Kind | Flow | Payload | Fields (`?` optional) | Reply |\n|---|---|---|---|---|---|\n",
    );
    for s in all() {
        let fields = if s.fields.is_empty() {
            "–".to_owned()
        } else {
            s.fields.to_owned()
        };
        let reply = s
            .reply
            .map(|r| format!("`{r}`"))
            .unwrap_or_else(|| "–".to_owned());
        out.push_str(&format!(
            "| `{}` | {} | {} | `{}` | {} | {} |\n",
            s.subject,
            s.kind.as_str(),
            s.flow,
            s.payload.replace(' ', ""),
            fields,
            reply.replace(' ', "")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixed_subject_constant_is_in_the_table() {
        let table: Vec<&str> = all().iter().map(|s| s.subject).collect();
        let mut fixed: Vec<&str> = vec![];
        fixed.extend(subjects::db::WRITE_SUBJECTS);
        fixed.extend(subjects::db::REQUEST_SUBJECTS);
        fixed.extend(subjects::llm::REQUEST_SUBJECTS);
        fixed.push(subjects::db::DLQ);
        fixed.extend([
            subjects::runtime::PLUGINS_LIST,
            subjects::runtime::PLUGIN_FAILED,
            subjects::events::MESSAGE,
            subjects::events::POLL_CLOSE,
            subjects::bot::SNAPSHOT,
            subjects::bot::SAID,
        ]);
        for action in subjects::platform::action::ALL {
            let full = format!("rosey.platform.<platform>.{action}");
            assert!(table.contains(&full.as_str()), "{full} missing");
        }
        for op in subjects::kv::Op::ALL {
            let full = format!("rosey.db.kv.<plugin>.{}", op.as_str());
            assert!(table.contains(&full.as_str()), "{full} missing");
        }
        for f in fixed {
            assert!(table.contains(&f), "{f} missing");
        }
        let mut sorted = table.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), table.len(), "a subject is listed twice");
    }
}
