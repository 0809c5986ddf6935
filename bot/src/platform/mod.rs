//! The boundary between a chat service and the bot core.
//!
//! A [`Platform`] knows how to talk to one chat service and nothing about NATS: it turns what
//! the service says into [`PlatformEvent`]s (already normalized, plus the raw event for the
//! `rosey.platform.<p>.<event>` subject) and carries out [`PlatformAction`]s. The core decides
//! what gets published, logged, rate-limited and permitted.

pub mod console;
pub mod cytube;

use rosey_plugin_api::events::{
    Media, PlaylistAdd, PlaylistAfter, PlaylistItem, PlaylistMove, Poll,
};
use rosey_plugin_api::{Timestamp, UserData};
use serde_json::Value;
use std::future::Future;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// When an event happened and what the platform originally sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    /// The server's time where it sends one, else the time of receipt.
    pub timestamp: Timestamp,
    /// The original platform event, for `platform_data`.
    pub platform_data: Value,
}

/// Whose chat line this is, which decides where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatOrigin {
    /// A live line from another user: published, parsed for commands, logged.
    Live,
    /// The bot's own line echoed back: logged only.
    Own,
    /// Replayed history sent before the first user list: raw subject only.
    History,
    /// A shadow-muted user's line that only moderators see: raw subject only.
    Shadow,
    /// A server pseudo-user (`[server]`, `[voteskip]`): raw subject only.
    Server,
}

/// A partial change to a user, as a platform reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserPatch {
    /// New afk flag.
    pub afk: Option<bool>,
    /// New rank.
    pub rank: Option<f64>,
    /// New mute state (shadow-mute included).
    pub muted: Option<bool>,
    /// New profile.
    pub profile: Option<Value>,
}

/// Everything a platform reports, in platform-neutral terms.
#[derive(Debug, Clone, PartialEq)]
pub enum PlatformEvent {
    /// The unchanged platform event, for `rosey.platform.<p>.<event>`.
    Raw {
        /// The platform's event name.
        event: String,
        /// Its payload.
        data: Value,
    },
    /// The connection is up and the bot is in the channel as `bot_name`.
    Joined {
        /// The name the bot logged in with.
        bot_name: String,
    },
    /// The connection ended; the platform reconnects by itself.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A chat line, already decoded to plain text.
    Chat {
        /// The author.
        user: String,
        /// The plain text.
        content: String,
        /// Whose line it is.
        origin: ChatOrigin,
        /// Time and original event.
        meta: Meta,
    },
    /// A private message to or from the bot.
    Pm {
        /// The sender.
        user: String,
        /// The recipient.
        recipient: String,
        /// The plain text.
        content: String,
        /// Time and original event.
        meta: Meta,
    },
    /// The whole user list.
    UserList {
        /// Every user in chat.
        users: Vec<UserData>,
        /// Time and original event.
        meta: Meta,
    },
    /// A user joined.
    UserJoin {
        /// The user.
        user: UserData,
        /// Time and original event.
        meta: Meta,
    },
    /// A user left.
    UserLeave {
        /// The user's name.
        user: String,
        /// Time and original event.
        meta: Meta,
    },
    /// Some of a user's fields changed.
    UserUpdate {
        /// The user's name.
        user: String,
        /// What the platform reported.
        patch: UserPatch,
        /// Time and original event.
        meta: Meta,
    },
    /// Connections to the channel, anonymous viewers included.
    ConnectedCount {
        /// The count.
        count: u64,
        /// Time and original event.
        meta: Meta,
    },
    /// The bot's own effective rank.
    OwnRank(f64),
    /// The login failed; the platform retries slowly.
    LoginFailed {
        /// The server's reason.
        error: String,
    },
    /// What the channel lets each rank do (CyTube's `setPermissions`).
    Permissions(serde_json::Map<String, Value>),
    /// Whether the playlist is locked (CyTube's `setPlaylistLocked`); open, the `oplaylist*`
    /// permissions apply too.
    PlaylistLocked(bool),
    /// The playing item's uid.
    SetCurrent(u64),
    /// The playing media changed.
    MediaChange {
        /// The media.
        media: Media,
        /// Time and original event.
        meta: Meta,
    },
    /// Playback position.
    MediaUpdate {
        /// Seconds into the media.
        current_time: f64,
        /// Whether it is paused.
        paused: bool,
    },
    /// The whole playlist.
    Playlist {
        /// Every item in order.
        items: Vec<PlaylistItem>,
    },
    /// An item was queued.
    PlaylistAdd {
        /// The item and its position.
        add: PlaylistAdd,
        /// Time and original event.
        meta: Meta,
    },
    /// An item was removed.
    PlaylistRemove {
        /// Its uid.
        uid: u64,
        /// Time and original event.
        meta: Meta,
    },
    /// An item moved.
    PlaylistMove {
        /// The move.
        moved: PlaylistMove,
        /// Time and original event.
        meta: Meta,
    },
    /// An item's temporary flag changed.
    SetTemp {
        /// Its uid.
        uid: u64,
        /// The new flag.
        temporary: bool,
    },
    /// A poll opened.
    PollOpen {
        /// The poll.
        poll: Poll,
        /// Time and original event.
        meta: Meta,
    },
    /// A poll's counts changed.
    PollUpdate {
        /// The poll.
        poll: Poll,
        /// Time and original event.
        meta: Meta,
    },
    /// The poll closed.
    PollClose {
        /// Time and original event.
        meta: Meta,
    },
    /// The channel's leader (empty for none).
    Leader(String),
    /// Voteskip progress.
    Voteskip {
        /// Votes so far.
        count: u64,
        /// Votes needed.
        need: u64,
    },
    /// The server dropped our chat line: wait this long before sending again.
    Cooldown(Duration),
    /// The server refuses our chat (muted or flooding).
    ChatRefused(String),
    /// An error the server reported about something we sent.
    ServerError(String),
}

/// What the core asks a platform to do. Chat text arrives already split and rate-limited.
#[derive(Debug, Clone, PartialEq)]
pub enum PlatformAction {
    /// Say one line in chat.
    Chat(String),
    /// Send one private message.
    Pm {
        /// Recipient.
        to: String,
        /// Text.
        content: String,
    },
    /// Queue a media link.
    PlaylistAdd {
        /// The link.
        url: String,
        /// Play next rather than at the end.
        next: bool,
        /// Remove after playing.
        temporary: bool,
    },
    /// Remove an item.
    PlaylistRemove(u64),
    /// Play an item now.
    PlaylistJump(u64),
    /// Move an item after another, to the start or to the end.
    PlaylistMove {
        /// The item.
        uid: u64,
        /// Where it goes.
        after: PlaylistAfter,
    },
    /// Skip to the next item.
    PlaylistNext,
    /// Kick a user.
    Kick {
        /// Whom.
        user: String,
        /// Why.
        reason: Option<String>,
    },
    /// Clear the chat.
    Clear,
    /// Set the bot's afk flag.
    Afk(bool),
    /// Pause the playing media (the bot must be the leader).
    Pause {
        /// The media's id.
        media_id: String,
        /// The media's type.
        kind: String,
        /// Where to pause, in seconds.
        current_time: f64,
    },
    /// Leave the channel cleanly (a websocket close frame) and stop: the bot is shutting down.
    Disconnect,
}

/// Why a platform could not carry out an action.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ActionError {
    /// The connection is down; retrying later may work.
    #[error("not connected to the platform")]
    NotConnected,
    /// The action cannot be expressed on this platform (a bad URL, say).
    #[error("invalid action: {0}")]
    Invalid(String),
    /// The connection failed while sending.
    #[error("send failed: {0}")]
    Transport(String),
}

/// An action with the channel its result goes back on.
pub type ActionRequest = (PlatformAction, oneshot::Sender<Result<(), ActionError>>);

/// A chat service connector.
pub trait Platform: Send + 'static {
    /// The platform's name in subjects (`cytube`, `console`).
    fn name(&self) -> &'static str;

    /// The channel this connector serves.
    fn channel(&self) -> &str;

    /// The rank an action (`chat`, `kick`, `playlistadd`, ...) needs when the channel's
    /// [`PlatformEvent::Permissions`] do not name it: the platform's own defaults, which the
    /// core's rule book falls back on.
    fn default_rank(action: &str) -> f64
    where
        Self: Sized;

    /// Connects (and reconnects) until `actions` closes, sending what happens to `events`.
    fn run(
        self,
        events: mpsc::Sender<PlatformEvent>,
        actions: mpsc::Receiver<ActionRequest>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}
