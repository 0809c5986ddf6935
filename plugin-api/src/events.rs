//! Normalized events: what the bot publishes under `rosey.events.*`.
//!
//! Every event is an [`Event`] envelope (platform, channel, timestamp, original platform event)
//! around one body type, so that handlers read the same fields on every platform.

use crate::time::Timestamp;
use crate::user::UserData;
use serde::{Deserialize, Serialize};

/// The fields every normalized event carries, flattened around its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<T> {
    /// The platform's name (`cytube`, `console`).
    pub platform: String,
    /// The channel the event happened in.
    pub channel: String,
    /// When it happened (the server's clock where it sends one).
    pub timestamp: Timestamp,
    /// The original platform event, for the rare consumer that needs more.
    pub platform_data: serde_json::Value,
    /// The event's own fields.
    #[serde(flatten)]
    pub body: T,
}

/// `rosey.events.message`: a chat line from another user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The author's name.
    pub user: String,
    /// The author, when the bot knows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<UserData>,
    /// The decoded plain text.
    pub content: String,
    /// Whether the line starts with the command prefix (it is also on `rosey.commands.*`).
    pub is_command: bool,
}

/// `rosey.events.user.join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserJoin {
    /// The user's name.
    pub user: String,
    /// The user.
    pub user_data: UserData,
}

/// `rosey.events.user.leave`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserLeave {
    /// The user's name.
    pub user: String,
    /// The user as last known, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<UserData>,
}

/// `rosey.events.user.list`: the whole user list, as full user objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserList {
    /// Everyone in the channel's chat.
    pub users: Vec<UserData>,
    /// `users.len()`, for consumers that only count.
    pub count: usize,
}

/// What changed in a [`UserUpdate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserChange {
    /// The afk flag.
    Afk,
    /// The rank.
    Rank,
    /// The mute state.
    Mute,
    /// The profile.
    Profile,
}

/// `rosey.events.user.update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUpdate {
    /// The user's name.
    pub user: String,
    /// The user after the change.
    pub user_data: UserData,
    /// Which fields changed.
    pub changed: Vec<UserChange>,
}

/// `rosey.events.user.count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCount {
    /// Users in the chat's user list.
    pub chat_count: u64,
    /// Connections to the channel, guests without a name included.
    pub connected_count: u64,
}

/// `rosey.events.pm`: a private message to (or echoed from) the bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pm {
    /// The sender's name.
    pub user: String,
    /// The recipient's name.
    pub recipient: String,
    /// The decoded plain text.
    pub content: String,
}

/// A media item as every platform describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Media {
    /// The platform's id for the media (a YouTube id, a URL).
    pub id: String,
    /// The media type (`yt`, `vi`, `fi`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The title.
    pub title: String,
    /// The length in seconds (0 for live streams).
    pub duration_s: f64,
}

/// `rosey.events.media.change`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaChange {
    /// What is playing now.
    pub media: Media,
    /// Who queued it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_by: Option<String>,
}

/// Where a playlist item goes: after the item with this uid, at the start, or at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlaylistAfter {
    /// After the item with this uid.
    Uid(u64),
    /// At the very start (CyTube's `"prepend"`).
    Start(Prepend),
    /// At the very end (CyTube's `"append"`, which a move may use).
    End(Append),
}

/// The literal `"append"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Append {
    /// `"append"`.
    Append,
}

/// The literal `"prepend"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prepend {
    /// At the start of the playlist.
    Prepend,
}

/// One playlist entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaylistItem {
    /// The entry's id in this playlist (not the media's id).
    pub uid: u64,
    /// The media.
    pub media: Media,
    /// Whether it is removed after it plays.
    #[serde(default)]
    pub temporary: bool,
    /// Who queued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_by: Option<String>,
}

/// `rosey.events.playlist.add`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaylistAdd {
    /// The new entry.
    pub item: PlaylistItem,
    /// Where it went.
    pub after: PlaylistAfter,
}

/// `rosey.events.playlist.remove`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaylistRemove {
    /// The removed entry.
    pub uid: u64,
}

/// `rosey.events.playlist.move`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaylistMove {
    /// The moved entry.
    pub uid: u64,
    /// Where it went.
    pub after: PlaylistAfter,
}

/// `rosey.events.poll.open` and `rosey.events.poll.update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Poll {
    /// The question.
    pub title: String,
    /// The options, decoded to plain text.
    pub options: Vec<String>,
    /// Votes per option; `None` where the poll hides them.
    pub counts: Vec<Option<u64>>,
    /// Who opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
}

/// `rosey.events.poll.close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PollClose {}

/// `rosey.events.bot.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotStatus {
    /// The bot's name.
    pub bot_name: String,
    /// The bot's rank in the channel.
    pub rank: f64,
    /// Whether the bot is connected and joined.
    pub connected: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_flattens_and_ignores_unknown_fields() {
        let value = json!({
            "platform": "cytube", "channel": "c", "timestamp": 1_700_000_000,
            "platform_data": {"username": "bob", "msg": "hi &amp; bye"},
            "user": "bob", "content": "hi & bye", "is_command": false, "extra": 1
        });
        let event: Event<Message> = serde_json::from_value(value).unwrap();
        assert_eq!(event.body.content, "hi & bye");
        assert_eq!(event.platform_data["msg"], "hi &amp; bye");
        let back = serde_json::to_value(&event).unwrap();
        assert_eq!(back["user"], "bob");
        assert!(back.get("extra").is_none());
    }

    #[test]
    fn playlist_after_is_uid_prepend_or_append() {
        let a: PlaylistAfter = serde_json::from_value(json!(7)).unwrap();
        assert_eq!(a, PlaylistAfter::Uid(7));
        let b: PlaylistAfter = serde_json::from_value(json!("prepend")).unwrap();
        assert_eq!(b, PlaylistAfter::Start(Prepend::Prepend));
        let c: PlaylistAfter = serde_json::from_value(json!("append")).unwrap();
        assert_eq!(c, PlaylistAfter::End(Append::Append));
        assert_eq!(serde_json::to_value(c).unwrap(), json!("append"));
        assert!(serde_json::from_value::<PlaylistAfter>(json!("middle")).is_err());
    }

    #[test]
    fn event_without_timestamp_is_rejected() {
        let value = json!({"platform": "cytube", "channel": "c", "user": "a", "content": "x"});
        assert!(serde_json::from_value::<Event<Message>>(value).is_err());
    }
}
