//! What the bot answers and reports about itself beyond the normalized events
//! (`rosey.bot.*`): its live state on request, and the chat lines it sent.

use crate::events::{Media, PlaylistItem};
use crate::user::UserData;
use serde::{Deserialize, Serialize};

/// Request for the bot's live state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// The channel whose bot should answer; every bot answers when left out (one channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// The bot's live state: everything a page needs to be complete when opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The platform.
    pub platform: String,
    /// The channel.
    pub channel: String,
    /// The bot's name in the channel.
    pub bot_name: String,
    /// The bot's rank.
    pub bot_rank: f64,
    /// Whether the bot is in the channel now.
    pub connected: bool,
    /// When the bot joined, while connected.
    pub connected_since: Option<i64>,
    /// When the bot process started.
    pub started_at: i64,
    /// Users in the channel now, with rank and AFK.
    pub users: Vec<UserData>,
    /// Users in chat.
    pub chat_count: u64,
    /// Connections, guests included, when the platform said.
    pub connected_count: Option<u64>,
    /// What is playing.
    pub media: Option<Media>,
    /// The playlist, in order.
    pub playlist: Vec<PlaylistItem>,
}

/// A chat line the bot sent (`rosey.bot.said`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Said {
    /// The platform.
    pub platform: String,
    /// The channel.
    pub channel: String,
    /// When the platform showed it.
    pub timestamp: i64,
    /// The bot's name.
    pub user: String,
    /// The text as the channel shows it.
    pub content: String,
}
