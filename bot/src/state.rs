//! What the bot knows about its channel: users, its own rank, the playlist and the media.
//!
//! Only the core's event loop changes it (each platform event is applied exactly once); the
//! action server, the outbound poller and the PM shell read it.

use crate::platform::UserPatch;
use rosey_plugin_api::events::{Media, PlaylistAfter, PlaylistItem, UserChange};
use rosey_plugin_api::user::MODERATOR_RANK;
use rosey_plugin_api::{Timestamp, UserData};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The channel as the bot sees it.
#[derive(Debug, Clone)]
pub struct ChannelState {
    /// The platform's name.
    pub platform: String,
    /// The channel's name.
    pub channel: String,
    /// The name the bot is logged in as.
    pub bot_name: String,
    /// The bot's effective rank (-1 until known).
    pub own_rank: f64,
    /// Whether the bot is joined and may chat.
    pub joined: bool,
    /// Users in chat, by lower-cased name.
    pub users: BTreeMap<String, UserData>,
    /// Connections to the channel (anonymous viewers included), when the platform says.
    pub connected_count: Option<u64>,
    /// The playlist in order.
    pub playlist: Vec<PlaylistItem>,
    /// The playing item's uid.
    pub current_uid: Option<u64>,
    /// The playing media.
    pub media: Option<Media>,
    /// Seconds into the media.
    pub media_time: f64,
    /// Whether playback is paused.
    pub paused: bool,
    /// The channel's leader, if any.
    pub leader: Option<String>,
    /// Voteskip progress `(count, need)`.
    pub voteskip: Option<(u64, u64)>,
    /// What each rank may do.
    pub permissions: Map<String, Value>,
    /// Whether the playlist is locked; until the server says, assume it is (the stricter).
    pub playlist_locked: bool,
    /// When the bot started.
    pub start_time: Timestamp,
    /// When the bot last joined.
    pub connect_time: Option<Timestamp>,
    /// Where the platform connection goes (shown by the shell).
    pub server: String,
}

impl ChannelState {
    /// The state of a bot that has not joined yet.
    pub fn new(platform: &str, channel: &str, bot_name: &str, server: &str) -> Self {
        ChannelState {
            platform: platform.to_owned(),
            channel: channel.to_owned(),
            bot_name: bot_name.to_owned(),
            own_rank: -1.0,
            joined: false,
            users: BTreeMap::new(),
            connected_count: None,
            playlist: Vec::new(),
            current_uid: None,
            media: None,
            media_time: 0.0,
            paused: false,
            leader: None,
            voteskip: None,
            permissions: Map::new(),
            playlist_locked: true,
            start_time: Timestamp::now(),
            connect_time: None,
            server: server.to_owned(),
        }
    }

    /// A user by name (case-insensitive).
    pub fn user(&self, name: &str) -> Option<&UserData> {
        self.users.get(&name.to_lowercase())
    }

    /// The bot's own entry in the user list.
    pub fn own_user(&self) -> Option<&UserData> {
        self.user(&self.bot_name)
    }

    /// Whether `name` is a moderator in this channel.
    pub fn is_moderator(&self, name: &str) -> bool {
        self.user(name).is_some_and(|u| u.rank >= MODERATOR_RANK)
    }

    /// Users in the chat list.
    pub fn chat_count(&self) -> u64 {
        self.users.len() as u64
    }

    /// Replaces the user list.
    pub fn set_users(&mut self, users: &[UserData]) {
        self.users = users
            .iter()
            .map(|u| (u.username.to_lowercase(), u.clone()))
            .collect();
    }

    /// Adds (or replaces) a user; a new user is refused (false) once `max_users` are known.
    pub fn add_user(&mut self, user: &UserData, max_users: usize) -> bool {
        let key = user.username.to_lowercase();
        if self.users.len() >= max_users && !self.users.contains_key(&key) {
            return false;
        }
        self.users.insert(key, user.clone());
        true
    }

    /// Removes a user, returning them as last known.
    pub fn remove_user(&mut self, name: &str) -> Option<UserData> {
        self.users.remove(&name.to_lowercase())
    }

    /// Applies a patch; returns the user and what actually changed (nothing when unknown).
    pub fn update_user(
        &mut self,
        name: &str,
        patch: &UserPatch,
    ) -> Option<(UserData, Vec<UserChange>)> {
        let user = self.users.get_mut(&name.to_lowercase())?;
        let mut changed = Vec::new();
        if let Some(afk) = patch.afk.filter(|a| *a != user.is_afk) {
            user.is_afk = afk;
            changed.push(UserChange::Afk);
        }
        if let Some(rank) = patch.rank.filter(|r| *r != user.rank) {
            user.rank = rank;
            user.is_moderator = rank >= MODERATOR_RANK;
            changed.push(UserChange::Rank);
        }
        if let Some(muted) = patch.muted.filter(|m| *m != user.is_muted) {
            user.is_muted = muted;
            changed.push(UserChange::Mute);
        }
        if let Some(profile) = patch
            .profile
            .as_ref()
            .filter(|p| user.profile.as_ref() != Some(*p))
        {
            user.profile = Some(profile.clone());
            changed.push(UserChange::Profile);
        }
        Some((user.clone(), changed))
    }

    /// Whether the bot is muted (shadow-muted included).
    pub fn bot_muted(&self) -> bool {
        self.own_user().is_some_and(|u| u.is_muted)
    }

    /// The playlist position (0-based) of an item.
    pub fn position(&self, uid: u64) -> Option<usize> {
        self.playlist.iter().position(|i| i.uid == uid)
    }

    /// Inserts a queued item where the platform put it.
    pub fn playlist_add(&mut self, item: &PlaylistItem, after: PlaylistAfter) {
        self.playlist.retain(|i| i.uid != item.uid);
        let at = match after {
            PlaylistAfter::Uid(uid) => self.position(uid).map_or(self.playlist.len(), |p| p + 1),
            PlaylistAfter::Start(_) => 0,
            PlaylistAfter::End(_) => self.playlist.len(),
        };
        self.playlist.insert(at, item.clone());
    }

    /// Removes an item.
    pub fn playlist_remove(&mut self, uid: u64) {
        self.playlist.retain(|i| i.uid != uid);
    }

    /// Moves an item after another.
    pub fn playlist_move(&mut self, uid: u64, after: PlaylistAfter) {
        let Some(from) = self.position(uid) else {
            return;
        };
        let item = self.playlist.remove(from);
        self.playlist_add(&item, after);
    }

    /// The playing playlist item.
    pub fn current_item(&self) -> Option<&PlaylistItem> {
        self.current_uid
            .and_then(|uid| self.position(uid))
            .map(|p| &self.playlist[p])
    }

    /// The columns of the database's live status row.
    pub fn status_data(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("bot_name".into(), self.bot_name.clone().into());
        m.insert("bot_rank".into(), self.own_rank.into());
        m.insert(
            "bot_afk".into(),
            self.own_user().is_some_and(|u| u.is_afk).into(),
        );
        m.insert("channel_name".into(), self.channel.clone().into());
        m.insert("current_chat_users".into(), self.chat_count().into());
        m.insert(
            "current_connected_users".into(),
            self.connected_count
                .unwrap_or_else(|| self.chat_count())
                .into(),
        );
        m.insert("playlist_items".into(), (self.playlist.len() as u64).into());
        m.insert(
            "current_media_title".into(),
            self.media.as_ref().map(|m| m.title.clone()).into(),
        );
        m.insert(
            "current_media_duration".into(),
            self.media.as_ref().map(|m| m.duration_s).into(),
        );
        m.insert("bot_start_time".into(), self.start_time.secs().into());
        m.insert("bot_connected".into(), self.joined.into());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosey_plugin_api::events::Prepend;

    fn item(uid: u64) -> PlaylistItem {
        PlaylistItem {
            uid,
            media: Media {
                id: format!("m{uid}"),
                kind: "yt".into(),
                title: format!("t{uid}"),
                duration_s: 1.0,
            },
            temporary: false,
            queued_by: None,
        }
    }

    #[test]
    fn playlist_follows_queue_move_delete() {
        let mut s = ChannelState::new("cytube", "c", "bot", "");
        s.playlist_add(&item(1), PlaylistAfter::Uid(99));
        s.playlist_add(&item(2), PlaylistAfter::Uid(1));
        s.playlist_add(&item(3), PlaylistAfter::Start(Prepend::Prepend));
        let uids = |s: &ChannelState| s.playlist.iter().map(|i| i.uid).collect::<Vec<_>>();
        assert_eq!(uids(&s), [3, 1, 2]);
        s.playlist_move(3, PlaylistAfter::Uid(2));
        assert_eq!(uids(&s), [1, 2, 3]);
        s.playlist_move(
            1,
            PlaylistAfter::End(rosey_plugin_api::events::Append::Append),
        );
        assert_eq!(uids(&s), [2, 3, 1]);
        s.playlist_move(1, PlaylistAfter::Uid(2));
        assert_eq!(uids(&s), [2, 1, 3]);
        s.playlist_remove(2);
        assert_eq!(uids(&s), [1, 3]);
        s.current_uid = Some(3);
        assert_eq!(s.current_item().unwrap().uid, 3);
    }

    #[test]
    fn joins_past_the_cap_are_refused_but_known_users_update() {
        let mut s = ChannelState::new("cytube", "c", "bot", "");
        assert!(s.add_user(&UserData::new("a", 0.0), 2));
        assert!(s.add_user(&UserData::new("b", 0.0), 2));
        assert!(!s.add_user(&UserData::new("c", 0.0), 2));
        assert!(
            s.add_user(&UserData::new("A", 2.0), 2),
            "a known user is replaced"
        );
        assert_eq!(s.chat_count(), 2);
        assert!(s.is_moderator("a"));
    }

    #[test]
    fn updates_report_only_real_changes() {
        let mut s = ChannelState::new("cytube", "c", "bot", "");
        s.set_users(&[UserData::new("Alice", 1.0)]);
        let patch = UserPatch {
            afk: Some(true),
            rank: Some(1.0),
            ..Default::default()
        };
        let (u, changed) = s.update_user("alice", &patch).unwrap();
        assert!(u.is_afk);
        assert_eq!(changed, [UserChange::Afk]);
        let (_, changed) = s.update_user("ALICE", &patch).unwrap();
        assert!(changed.is_empty());
        let (u, changed) = s
            .update_user(
                "alice",
                &UserPatch {
                    rank: Some(2.0),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(u.is_moderator && s.is_moderator("alice"));
        assert_eq!(changed, [UserChange::Rank]);
        assert!(s.update_user("nobody", &patch).is_none());
    }
}
