//! Actions to a platform: `rosey.platform.<platform>.send.*`, served by the bot for that
//! platform and channel, and the failure reports it publishes.

use crate::events::PlaylistAfter;
use serde::{Deserialize, Serialize};

/// The header naming who sent an action (the plugin runtime sets it to the plugin's name), so
/// the bot can queue each source's chat fairly: one chatty plugin cannot starve the others.
/// Actions without it share one queue.
pub const HEADER_SOURCE: &str = "Rosey-Source";

/// The longest source name the bot keeps apart; longer ones are cut.
pub const MAX_SOURCE_LEN: usize = 64;

/// `send.chat`: say something in the channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendChat {
    /// The channel that should act (other channels' bots ignore it).
    pub channel: String,
    /// Plain text; the bot splits long text into several messages.
    pub content: String,
}

/// `send.pm`: a private message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendPm {
    /// The channel whose bot sends it.
    pub channel: String,
    /// The recipient's name.
    pub to: String,
    /// Plain text.
    pub content: String,
}

/// Where `send.playlist.add` queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueuePosition {
    /// At the end of the playlist.
    #[default]
    End,
    /// After the playing item.
    Next,
}

/// `send.playlist.add`: queue a media link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendPlaylistAdd {
    /// The channel.
    pub channel: String,
    /// A media URL the platform understands.
    pub url: String,
    /// Where to queue it.
    #[serde(default)]
    pub position: QueuePosition,
    /// Whether it is removed after it plays.
    #[serde(default)]
    pub temporary: bool,
}

/// `send.playlist.remove` and `send.playlist.jump`: act on one playlist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendPlaylistEntry {
    /// The channel.
    pub channel: String,
    /// The entry's uid.
    pub uid: u64,
}

/// `send.playlist.move`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendPlaylistMove {
    /// The channel.
    pub channel: String,
    /// The entry to move.
    pub uid: u64,
    /// Where it goes.
    pub after: PlaylistAfter,
}

/// `send.playlist.next` and `send.clear`: an action that needs only the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendChannelAction {
    /// The channel.
    pub channel: String,
}

/// `send.kick`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendKick {
    /// The channel.
    pub channel: String,
    /// Whom to kick.
    pub user: String,
    /// Shown to the kicked user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `send.afk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAfk {
    /// The channel.
    pub channel: String,
    /// The wanted afk state.
    pub afk: bool,
}

/// The success reply to an action (and to other requests that return nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ok {
    /// Always `true`.
    pub ok: bool,
}

impl Ok {
    /// The one value of this type.
    pub const YES: Ok = Ok { ok: true };
}

/// `rosey.platform.<platform>.error`: an action that failed, for whoever watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformError {
    /// The action's suffix (`send.chat`).
    pub action: String,
    /// What went wrong.
    pub error: String,
    /// The channel.
    pub channel: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn playlist_add_defaults() {
        let a: SendPlaylistAdd =
            serde_json::from_value(json!({"channel": "c", "url": "https://youtu.be/x"})).unwrap();
        assert_eq!(a.position, QueuePosition::End);
        assert!(!a.temporary);
        assert!(serde_json::from_value::<SendPlaylistAdd>(
            json!({"channel": "c", "url": "u", "position": "middle"})
        )
        .is_err());
    }
}
