//! CyTube events to platform-neutral [`PlatformEvent`]s: HTML to plain text, CyTube users to
//! the contract's user object, and the chat intake rules (history replay, the bot's own lines,
//! shadow-muted lines and server pseudo-users are told apart here, once).

use crate::platform::{ChatOrigin, Meta, PlatformEvent, UserPatch};
use rosey_plugin_api::events::{
    Append, Media, PlaylistAdd, PlaylistAfter, PlaylistItem, PlaylistMove, Poll, Prepend,
};
use rosey_plugin_api::{Timestamp, UserData};
use serde_json::{Map, Value};
use std::time::Duration;

/// Chat HTML to plain text: strip the tags, then decode the entities.
///
/// The server escapes what users type (`<` arrives as `&lt;`), so every literal `<` starts a
/// tag its filters added (links, bold, spoilers); a link keeps its visible text.
pub fn html_to_text(html: &str) -> String {
    let mut stripped = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        stripped.push_str(&rest[..open]);
        match rest[open..].find('>') {
            Some(close) => rest = &rest[open + close + 1..],
            None => {
                // Not a tag after all: keep the text.
                stripped.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    stripped.push_str(rest);
    html_escape::decode_html_entities(&stripped).into_owned()
}

/// CyTube's rule for user names, guests included: `^[\w-]{1,20}$` (JavaScript's `\w`, so
/// ASCII letters, digits and `_`). A name the server should never send is not forwarded.
pub fn is_valid_username(name: &str) -> bool {
    (1..=20).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The largest profile (`{image, text}`, JSON-encoded) kept with a user; a larger one is
/// dropped (the user is kept). CyTube limits both fields to a few hundred characters.
pub const MAX_PROFILE_BYTES: usize = 4096;

/// Why a user object was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadUser {
    /// No `name` string.
    NoName,
    /// A name CyTube would never give a user.
    InvalidName,
}

/// A CyTube user object (`addUser`, `userlist` entries) as the contract's user object; the
/// name must follow [`is_valid_username`], and an oversized profile is left out.
pub fn user_data(user: &Value) -> Result<UserData, BadUser> {
    let name = user
        .get("name")
        .and_then(Value::as_str)
        .ok_or(BadUser::NoName)?;
    if !is_valid_username(name) {
        return Err(BadUser::InvalidName);
    }
    let rank = user
        .get("rank")
        .and_then(Value::as_f64)
        .filter(|r| r.is_finite())
        .unwrap_or(0.0);
    let meta = user.get("meta");
    let flag = |key: &str| {
        meta.and_then(|m| m.get(key))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let mut data = UserData::new(name, rank);
    data.is_afk = flag("afk");
    data.is_muted = flag("muted") || flag("smuted");
    data.profile = user.get("profile").filter(|p| profile_fits(p)).cloned();
    Ok(data)
}

/// Whether a profile value is an object small enough to keep.
fn profile_fits(profile: &Value) -> bool {
    let Some(map) = profile.as_object() else {
        return false;
    };
    let mut size = 0usize;
    for (k, v) in map {
        size += k.len()
            + match v {
                Value::String(s) => s.len(),
                Value::Array(_) | Value::Object(_) => MAX_PROFILE_BYTES + 1,
                _ => 8,
            };
    }
    size <= MAX_PROFILE_BYTES
}

/// A `userlist` frame over this size is read without a JSON tree
/// ([`CytubeNormalizer::big_user_list`]) and not forwarded raw (it exceeds NATS's default
/// `max_payload` anyway).
pub const BIG_FRAME_BYTES: usize = 1 << 20;

/// A user entry of a big `userlist`, typed; any other field (`aliases`, `ip`) is skipped.
#[derive(Debug, serde::Deserialize)]
struct WireUser {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rank: Option<f64>,
    #[serde(default)]
    profile: Option<Value>,
    #[serde(default)]
    meta: Option<WireMeta>,
}

/// The flags of a [`WireUser`].
#[derive(Debug, Default, serde::Deserialize)]
struct WireMeta {
    #[serde(default)]
    afk: Option<bool>,
    #[serde(default)]
    muted: Option<bool>,
    #[serde(default)]
    smuted: Option<bool>,
}

impl WireUser {
    /// The same user [`user_data`] makes of the JSON form, moving the strings (no copy).
    fn into_user(self) -> Result<UserData, BadUser> {
        let name = self.name.ok_or(BadUser::NoName)?;
        if !is_valid_username(&name) {
            return Err(BadUser::InvalidName);
        }
        let mut data = UserData::new(name, self.rank.filter(|r| r.is_finite()).unwrap_or(0.0));
        let meta = self.meta.unwrap_or_default();
        data.is_afk = meta.afk.unwrap_or(false);
        data.is_muted = meta.muted.unwrap_or(false) || meta.smuted.unwrap_or(false);
        data.profile = self.profile.filter(profile_fits);
        Ok(data)
    }
}

/// The limits applied at the edge, before a frame's content grows into events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Most users kept from one user list (`platform.max_users`).
    pub max_users: usize,
    /// Largest chat or PM line, as the server's HTML (`platform.max_line_bytes`).
    pub max_line_bytes: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            max_users: rosey_config::sections::platform::DEFAULT_MAX_USERS,
            max_line_bytes: rosey_config::sections::platform::DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// What the edge refused, counted by kind; each kind is logged when first seen, then only
/// counted (a hostile server must not flood the log either).
#[derive(Debug, Clone, Default)]
pub struct Rejections {
    counts: std::collections::BTreeMap<&'static str, u64>,
}

impl Rejections {
    /// Counts one refusal of `kind`, logging it the first time.
    pub fn count(&mut self, kind: &'static str, detail: &str) {
        let n = self.counts.entry(kind).or_insert(0);
        *n += 1;
        if *n == 1 {
            tracing::warn!(
                kind,
                detail,
                "frame content refused at the edge and not forwarded (later ones of this kind \
                 are only counted)"
            );
        }
    }

    /// How many of `kind` were refused.
    pub fn of(&self, kind: &str) -> u64 {
        self.counts.get(kind).copied().unwrap_or(0)
    }

    /// Every kind seen and its count.
    pub fn counts(&self) -> &std::collections::BTreeMap<&'static str, u64> {
        &self.counts
    }
}

/// Kinds of [`Rejections`].
pub mod refused {
    /// A user (list entry, join, leave, update, chat or PM author) with a name CyTube never
    /// gives.
    pub const INVALID_NAME: &str = "invalid user name";
    /// A user object without a name.
    pub const NO_NAME: &str = "user without a name";
    /// A chat line over `platform.max_line_bytes`.
    pub const LONG_CHAT: &str = "chat line over max_line_bytes";
    /// A PM over `platform.max_line_bytes`.
    pub const LONG_PM: &str = "pm over max_line_bytes";
    /// A user list over `platform.max_users` (cut to the limit).
    pub const USERLIST_OVER_CAP: &str = "user list over max_users";
    /// A profile too large to keep (the user is kept without it).
    pub const BIG_PROFILE: &str = "profile over 4 KiB";
    /// A chat line, PM or user event without the fields CyTube always sends, with their types.
    pub const MALFORMED: &str = "malformed chat or user event";
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A JSON id that may be a number or a string, as text.
fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// CyTube's media object (`changeMedia`, playlist items) as the contract's media.
pub fn media(v: &Value) -> Option<Media> {
    Some(Media {
        id: id_text(v.get("id"))?,
        kind: str_field(v, "type").unwrap_or_default().to_owned(),
        title: html_to_text(str_field(v, "title").unwrap_or_default()),
        duration_s: v.get("seconds").and_then(Value::as_f64).unwrap_or(0.0),
    })
}

/// A CyTube playlist item (`{media, uid, temp, queueby}`).
pub fn playlist_item(v: &Value) -> Option<PlaylistItem> {
    Some(PlaylistItem {
        uid: v.get("uid")?.as_u64()?,
        media: media(v.get("media")?)?,
        temporary: v.get("temp").and_then(Value::as_bool).unwrap_or(false),
        queued_by: str_field(v, "queueby")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    })
}

fn after(v: Option<&Value>) -> Option<PlaylistAfter> {
    match v? {
        Value::Number(n) => n.as_u64().map(PlaylistAfter::Uid),
        Value::String(s) if s == "prepend" => Some(PlaylistAfter::Start(Prepend::Prepend)),
        // A move may go to the end; CyTube broadcasts the request's `after` unchanged.
        Value::String(s) if s == "append" => Some(PlaylistAfter::End(Append::Append)),
        // CyTube sends uids as numbers, but accept digits in a string too.
        Value::String(s) => s.parse().ok().map(PlaylistAfter::Uid),
        _ => None,
    }
}

fn poll(v: &Value) -> Option<Poll> {
    let options = v
        .get("options")?
        .as_array()?
        .iter()
        .map(|o| html_to_text(o.as_str().unwrap_or_default()))
        .collect();
    let counts = v
        .get("counts")
        .and_then(Value::as_array)
        .map(|c| c.iter().map(Value::as_u64).collect())
        .unwrap_or_default();
    Some(Poll {
        title: html_to_text(str_field(v, "title").unwrap_or_default()),
        options,
        counts,
        initiator: str_field(v, "initiator").map(str::to_owned),
    })
}

/// Turns one channel connection's CyTube events into platform events.
///
/// It holds the little state the intake rules need: whether the first user list has arrived
/// (everything before it is history replay) and the bot's own name.
#[derive(Debug, Clone)]
pub struct CytubeNormalizer {
    bot_name: String,
    seen_userlist: bool,
    logged_in: bool,
    joined: bool,
    limits: EdgeLimits,
    rejections: Rejections,
    /// Whether the last frame normalized was refused (or cut) at the edge, so its raw form
    /// is not forwarded either.
    refused_last: bool,
}

impl CytubeNormalizer {
    /// A normalizer for a bot logging in as `bot_name`.
    pub fn new(bot_name: impl Into<String>) -> Self {
        Self::with_limits(bot_name, EdgeLimits::default())
    }

    /// A normalizer for `bot_name` applying `limits`.
    pub fn with_limits(bot_name: impl Into<String>, limits: EdgeLimits) -> Self {
        CytubeNormalizer {
            bot_name: bot_name.into(),
            seen_userlist: false,
            logged_in: false,
            joined: false,
            limits,
            rejections: Rejections::default(),
            refused_last: false,
        }
    }

    /// What the edge refused so far (over every connection).
    pub fn rejections(&self) -> &Rejections {
        &self.rejections
    }

    /// Whether the last [`Self::normalize`] call refused or cut its frame: its raw event must
    /// not be forwarded.
    pub fn refused_last(&self) -> bool {
        self.refused_last
    }

    fn refuse(&mut self, kind: &'static str, detail: &str) -> Vec<PlatformEvent> {
        self.refused_last = true;
        self.rejections.count(kind, detail);
        Vec::new()
    }

    /// A user name from `data[key]`: `None` when absent (a wrong shape), refused when invalid.
    fn checked_name<'a>(&mut self, data: &'a Value, key: &str) -> Option<&'a str> {
        let name = str_field(data, key)?;
        if is_valid_username(name) {
            Some(name)
        } else {
            let shown: String = name.chars().take(40).collect();
            self.refuse(refused::INVALID_NAME, &shown);
            None
        }
    }

    /// The users of a `userlist`, cut to [`EdgeLimits::max_users`] (the bot's own entry is
    /// always kept); linear in the list's length.
    fn user_list(&mut self, data: &Value) -> Vec<UserData> {
        let Some(entries) = data.as_array() else {
            self.refuse(refused::MALFORMED, "userlist");
            return Vec::new();
        };
        self.cut_users(
            entries.iter(),
            |e| e.get("name").and_then(Value::as_str),
            user_data,
            |e| e.get("profile").is_some(),
        )
    }

    /// The users of `entries`, cut to [`EdgeLimits::max_users`] keeping the bot's own entry,
    /// whatever form the entries have (a JSON tree, or [`WireUser`] for a big frame).
    fn cut_users<T>(
        &mut self,
        entries: impl ExactSizeIterator<Item = T>,
        name_of: impl Fn(&T) -> Option<&str>,
        build: impl Fn(T) -> Result<UserData, BadUser>,
        has_profile: impl Fn(&T) -> bool,
    ) -> Vec<UserData> {
        let cap = self.limits.max_users;
        let sent = entries.len();
        let mut users = Vec::with_capacity(sent.min(cap));
        let mut own_seen = false;
        let mut over = 0usize;
        for entry in entries {
            let is_own = name_of(&entry).is_some_and(|n| self.is_self(n));
            // Past the cap only the bot's own entry is still looked for.
            let wanted = is_own && !own_seen;
            if users.len() >= cap && !wanted {
                over += 1;
                continue;
            }
            let had_profile = has_profile(&entry);
            let shown: String = name_of(&entry)
                .filter(|n| !is_valid_username(n))
                .map(|n| n.chars().take(40).collect())
                .unwrap_or_default();
            match build(entry) {
                Ok(user) => {
                    if had_profile && user.profile.is_none() {
                        self.rejections.count(refused::BIG_PROFILE, &user.username);
                    }
                    if is_own {
                        own_seen = true;
                        if users.len() >= cap {
                            // Make room: the bot must know its own state.
                            users.pop();
                            over += 1;
                        }
                    }
                    users.push(user);
                }
                Err(BadUser::InvalidName) => {
                    self.refuse(refused::INVALID_NAME, &shown);
                }
                Err(BadUser::NoName) => {
                    self.refuse(refused::NO_NAME, "user list entry");
                }
            }
        }
        if over > 0 {
            self.refused_last = true;
            self.rejections
                .count(refused::USERLIST_OVER_CAP, &format!("{sent} users"));
            tracing::warn!(
                sent,
                kept = users.len(),
                max_users = cap,
                "the server sent more users than platform.max_users; the list is cut"
            );
        }
        users
    }

    /// A `userlist` frame larger than [`BIG_FRAME_BYTES`], read straight into users without
    /// the JSON tree (whose millions of small allocations would fragment the heap for good);
    /// `None` when `frame` is not such a frame or has an unusual shape (the caller then takes
    /// the general path). Its raw form is not forwarded: it would exceed NATS's `max_payload`.
    pub fn big_user_list(
        &mut self,
        frame: &str,
        received: Timestamp,
    ) -> Option<Vec<PlatformEvent>> {
        if frame.len() <= BIG_FRAME_BYTES {
            return None;
        }
        let array = frame.strip_prefix("42")?;
        if !array.trim_start().starts_with("[\"userlist\"") {
            return None;
        }
        let (_, entries): (String, Vec<WireUser>) = serde_json::from_str(array).ok()?;
        self.refused_last = true;
        let users = self.cut_users(
            entries.into_iter(),
            |w| w.name.as_deref(),
            WireUser::into_user,
            |w| w.profile.is_some(),
        );
        self.seen_userlist = true;
        let mut out = vec![PlatformEvent::UserList {
            users,
            meta: Meta {
                timestamp: received,
                platform_data: serde_json::json!({"truncated": true}),
            },
        }];
        self.maybe_joined(&mut out);
        Some(out)
    }

    /// Forgets the connection state; call it for every new connection, whose join replays
    /// history again.
    pub fn reset(&mut self) {
        self.seen_userlist = false;
        self.logged_in = false;
        self.joined = false;
        if !self.rejections.counts().is_empty() {
            tracing::warn!(
                refused = ?self.rejections.counts(),
                "frame content refused at the edge so far"
            );
        }
    }

    /// The bot's name as the server spells it.
    pub fn bot_name(&self) -> &str {
        &self.bot_name
    }

    fn is_self(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(&self.bot_name)
    }

    /// The platform events one CyTube event stands for (the raw event is not included).
    pub fn normalize(
        &mut self,
        event: &str,
        data: &Value,
        received: Timestamp,
    ) -> Vec<PlatformEvent> {
        let meta = |ts: Option<Timestamp>| Meta {
            timestamp: ts.unwrap_or(received),
            platform_data: data.clone(),
        };
        let server_time = data
            .get("time")
            .and_then(Value::as_i64)
            .and_then(Timestamp::from_millis);
        self.refused_last = false;
        let mut out = Vec::new();
        match event {
            "chatMsg" => {
                let (Some(user), Some(msg)) = (str_field(data, "username"), str_field(data, "msg"))
                else {
                    return self.refuse(refused::MALFORMED, "chatMsg");
                };
                if msg.len() > self.limits.max_line_bytes {
                    return self.refuse(refused::LONG_CHAT, &format!("{} bytes", msg.len()));
                }
                // Server pseudo-users (`[server]`, `[voteskip]`) are the only other names.
                let pseudo = user.starts_with('[') && user.ends_with(']') && user.len() <= 22;
                if !pseudo && self.checked_name(data, "username").is_none() {
                    return out;
                }
                let shadow = data
                    .get("meta")
                    .and_then(|m| m.get("shadow"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let origin = if !self.seen_userlist {
                    ChatOrigin::History
                } else if pseudo {
                    ChatOrigin::Server
                } else if shadow {
                    ChatOrigin::Shadow
                } else if self.is_self(user) {
                    ChatOrigin::Own
                } else {
                    ChatOrigin::Live
                };
                out.push(PlatformEvent::Chat {
                    user: user.to_owned(),
                    content: html_to_text(msg),
                    origin,
                    meta: meta(server_time),
                });
            }
            "pm" => {
                let (Some(user), Some(msg)) = (str_field(data, "username"), str_field(data, "msg"))
                else {
                    return self.refuse(refused::MALFORMED, "pm");
                };
                if msg.len() > self.limits.max_line_bytes {
                    return self.refuse(refused::LONG_PM, &format!("{} bytes", msg.len()));
                }
                if self.checked_name(data, "username").is_none() {
                    return out;
                }
                // The server echoes our own PMs back to us; they are not PMs *to* the bot.
                if self.is_self(user) {
                    return out;
                }
                out.push(PlatformEvent::Pm {
                    user: user.to_owned(),
                    recipient: str_field(data, "to").unwrap_or(&self.bot_name).to_owned(),
                    content: html_to_text(msg),
                    meta: meta(server_time),
                });
            }
            "userlist" => {
                // Not a list: nothing is replaced (an empty list would end every session).
                if !data.is_array() {
                    return self.refuse(refused::MALFORMED, "userlist");
                }
                let users = self.user_list(data);
                self.seen_userlist = true;
                // A cut list's original is not passed on (nor copied) whole.
                let meta = if self.refused_last {
                    Meta {
                        timestamp: received,
                        platform_data: serde_json::json!({"truncated": true}),
                    }
                } else {
                    meta(None)
                };
                out.push(PlatformEvent::UserList { users, meta });
                self.maybe_joined(&mut out);
            }
            "addUser" => match user_data(data) {
                Ok(user) => {
                    if data.get("profile").is_some() && user.profile.is_none() {
                        self.rejections.count(refused::BIG_PROFILE, &user.username);
                    }
                    out.push(PlatformEvent::UserJoin {
                        user,
                        meta: meta(None),
                    });
                }
                Err(BadUser::InvalidName) => {
                    self.checked_name(data, "name");
                }
                Err(BadUser::NoName) => {
                    self.refuse(refused::MALFORMED, "addUser");
                }
            },
            "userLeave" => {
                if str_field(data, "name").is_none() {
                    return self.refuse(refused::MALFORMED, "userLeave");
                }
                if let Some(name) = self.checked_name(data, "name") {
                    out.push(PlatformEvent::UserLeave {
                        user: name.to_owned(),
                        meta: meta(None),
                    });
                }
            }
            "usercount" => {
                if let Some(count) = data.as_u64() {
                    out.push(PlatformEvent::ConnectedCount {
                        count,
                        meta: meta(None),
                    });
                }
            }
            "setAFK" | "setUserMeta" | "setUserRank" | "setUserProfile" => {
                let Some(name) = self.checked_name(data, "name") else {
                    return out;
                };
                let mut patch = UserPatch::default();
                match event {
                    "setAFK" => patch.afk = data.get("afk").and_then(Value::as_bool),
                    "setUserMeta" => {
                        let m = data.get("meta");
                        let flag = |k: &str| m.and_then(|m| m.get(k)).and_then(Value::as_bool);
                        patch.afk = flag("afk");
                        patch.muted = match (flag("muted"), flag("smuted")) {
                            (None, None) => None,
                            (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
                        };
                    }
                    "setUserRank" => patch.rank = data.get("rank").and_then(Value::as_f64),
                    _ => patch.profile = data.get("profile").filter(|p| profile_fits(p)).cloned(),
                }
                if patch != UserPatch::default() {
                    out.push(PlatformEvent::UserUpdate {
                        user: name.to_owned(),
                        patch,
                        meta: meta(None),
                    });
                }
            }
            "rank" => {
                if let Some(rank) = data.as_f64() {
                    out.push(PlatformEvent::OwnRank(rank));
                }
            }
            "login" => {
                if data.get("success").and_then(Value::as_bool) == Some(true) {
                    if let Some(name) = str_field(data, "name") {
                        self.bot_name = name.to_owned();
                    }
                    self.logged_in = true;
                    self.maybe_joined(&mut out);
                } else {
                    let error = str_field(data, "error")
                        .unwrap_or("login refused")
                        .to_owned();
                    out.push(PlatformEvent::LoginFailed { error });
                }
            }
            "setPermissions" => {
                if let Some(map) = data.as_object() {
                    out.push(PlatformEvent::Permissions(map.clone()));
                }
            }
            "setPlaylistLocked" => {
                if let Some(locked) = data.as_bool() {
                    out.push(PlatformEvent::PlaylistLocked(locked));
                }
            }
            "setCurrent" => {
                if let Some(uid) = data.as_u64() {
                    out.push(PlatformEvent::SetCurrent(uid));
                }
            }
            "changeMedia" => {
                if let Some(media) = media(data) {
                    out.push(PlatformEvent::MediaChange {
                        media,
                        meta: meta(None),
                    });
                    // Joining mid-video, this is the only position the bot has until the next
                    // `mediaUpdate`; a pause sent meanwhile must not rewind everyone to 0.
                    if let Some(current_time) = data.get("currentTime").and_then(Value::as_f64) {
                        out.push(PlatformEvent::MediaUpdate {
                            current_time,
                            paused: data.get("paused").and_then(Value::as_bool).unwrap_or(false),
                        });
                    }
                }
            }
            "mediaUpdate" => out.push(PlatformEvent::MediaUpdate {
                current_time: data
                    .get("currentTime")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0),
                paused: data.get("paused").and_then(Value::as_bool).unwrap_or(false),
            }),
            "playlist" => {
                let items = data
                    .as_array()
                    .map(|a| a.iter().filter_map(playlist_item).collect())
                    .unwrap_or_default();
                out.push(PlatformEvent::Playlist { items });
            }
            "queue" => {
                let item = data.get("item").and_then(playlist_item);
                let position = after(data.get("after"));
                if let (Some(item), Some(after)) = (item, position) {
                    out.push(PlatformEvent::PlaylistAdd {
                        add: PlaylistAdd { item, after },
                        meta: meta(None),
                    });
                }
            }
            "delete" => {
                if let Some(uid) = data.get("uid").and_then(Value::as_u64) {
                    out.push(PlatformEvent::PlaylistRemove {
                        uid,
                        meta: meta(None),
                    });
                }
            }
            "moveVideo" => {
                let uid = data.get("from").and_then(Value::as_u64);
                if let (Some(uid), Some(after)) = (uid, after(data.get("after"))) {
                    out.push(PlatformEvent::PlaylistMove {
                        moved: PlaylistMove { uid, after },
                        meta: meta(None),
                    });
                }
            }
            "setTemp" => {
                let uid = data.get("uid").and_then(Value::as_u64);
                let temp = data.get("temp").and_then(Value::as_bool);
                if let (Some(uid), Some(temporary)) = (uid, temp) {
                    out.push(PlatformEvent::SetTemp { uid, temporary });
                }
            }
            "newPoll" | "updatePoll" => {
                if let Some(poll) = poll(data) {
                    let ts = data
                        .get("timestamp")
                        .and_then(Value::as_i64)
                        .and_then(Timestamp::from_millis);
                    let meta = meta(ts);
                    out.push(if event == "newPoll" {
                        PlatformEvent::PollOpen { poll, meta }
                    } else {
                        PlatformEvent::PollUpdate { poll, meta }
                    });
                }
            }
            "closePoll" => out.push(PlatformEvent::PollClose { meta: meta(None) }),
            "setLeader" => out.push(PlatformEvent::Leader(
                data.as_str().unwrap_or_default().to_owned(),
            )),
            "voteskip" => out.push(PlatformEvent::Voteskip {
                count: data.get("count").and_then(Value::as_u64).unwrap_or(0),
                need: data.get("need").and_then(Value::as_u64).unwrap_or(0),
            }),
            "cooldown" => {
                if let Some(ms) = data.as_f64().filter(|ms| ms.is_finite() && *ms >= 0.0) {
                    // Cap it: a hostile value must not silence the bot for days.
                    let ms = ms.min(600_000.0);
                    out.push(PlatformEvent::Cooldown(Duration::from_millis(ms as u64)));
                }
            }
            "noflood" => {
                let msg = str_field(data, "msg").unwrap_or("chat refused by the server");
                out.push(PlatformEvent::ChatRefused(msg.to_owned()));
            }
            "errorMsg" | "queueFail" | "costanza" | "channelRankFail" => {
                let msg = str_field(data, "msg").unwrap_or("server error");
                out.push(PlatformEvent::ServerError(html_to_text(msg)));
            }
            _ => {}
        }
        out
    }

    fn maybe_joined(&mut self, out: &mut Vec<PlatformEvent>) {
        if self.logged_in && self.seen_userlist && !self.joined {
            self.joined = true;
            out.push(PlatformEvent::Joined {
                bot_name: self.bot_name.clone(),
            });
        }
    }
}

/// The `setPermissions` value CyTube uses when the channel sends none (its defaults).
pub fn default_permission(action: &str) -> f64 {
    match action {
        "chat" => 0.0,
        "kick" | "mute" | "playlistmove" | "playlistjump" | "playlistnext" | "playlistadd" => 1.5,
        "chatclear" | "playlistdelete" | "addnontemp" | "oplaylistdelete" => 2.0,
        // CyTube's defaults for an open playlist: anyone may add.
        "oplaylistadd" => -1.0,
        _ => 1.5,
    }
}

/// The rank a channel's permission map asks for `action`.
pub fn required_rank(permissions: &Map<String, Value>, action: &str) -> f64 {
    permissions
        .get(action)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| default_permission(action))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::cytube::protocol::{parse, Frame};
    use serde_json::json;

    fn ts() -> Timestamp {
        Timestamp::from_secs(1_700_000_000).unwrap()
    }

    /// Feeds a verbatim frame through the codec and the normalizer.
    fn feed(n: &mut CytubeNormalizer, frame: &str) -> Vec<PlatformEvent> {
        match parse(frame).unwrap() {
            Frame::Event { name, data, .. } => n.normalize(&name, &data, ts()),
            other => panic!("not an event: {other:?}"),
        }
    }

    fn joined() -> CytubeNormalizer {
        let mut n = CytubeNormalizer::new("rawbot4");
        feed(
            &mut n,
            r#"42["login",{"success":true,"name":"rawbot4","guest":true}]"#,
        );
        feed(
            &mut n,
            r#"42["userlist",[{"name":"rawbot4","rank":0,"profile":{"image":"","text":""},"meta":{"afk":false,"muted":false}}]]"#,
        );
        n
    }

    #[test]
    fn html_is_stripped_then_decoded() {
        let received = r#"&lt;b&gt;hi&lt;/b&gt; (x) 'q' &amp; "dq" <a href="https://example.com/a?b=1" target="_blank" rel="noopener noreferrer">https://example.com/a?b=1</a> <strong>bold</strong> <em>it</em> <code>code</code> <s>strike</s> <span class="spoiler">spoil</span>"#;
        assert_eq!(
            html_to_text(received),
            r#"<b>hi</b> (x) 'q' & "dq" https://example.com/a?b=1 bold it code strike spoil"#
        );
        assert_eq!(html_to_text("&#39;&#40;&#41;&quot;&#x41;"), "'()\"A");
        assert_eq!(html_to_text("a < b"), "a < b");
        assert_eq!(html_to_text("!quote &lt;script&gt;"), "!quote <script>");
    }

    #[test]
    fn history_before_the_first_userlist_is_marked() {
        let mut n = CytubeNormalizer::new("rawbot4");
        let out = feed(
            &mut n,
            r#"42["chatMsg",{"username":"alice","msg":"old line","meta":{},"time":1795727000000}]"#,
        );
        assert!(matches!(
            &out[..],
            [PlatformEvent::Chat {
                origin: ChatOrigin::History,
                ..
            }]
        ));
        let out = feed(
            &mut n,
            r#"42["login",{"success":true,"name":"rawbot4","guest":true}]"#,
        );
        assert!(out.is_empty(), "joined only after the userlist too");
        let out = feed(
            &mut n,
            r#"42["userlist",[{"name":"rawbot4","rank":0,"profile":{"image":"","text":""},"meta":{"afk":false,"muted":false}}]]"#,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1],
            PlatformEvent::Joined {
                bot_name: "rawbot4".into()
            }
        );
        let out = feed(
            &mut n,
            r#"42["chatMsg",{"username":"alice","msg":"new &amp; live","meta":{},"time":1795727587322}]"#,
        );
        assert_eq!(
            out,
            vec![PlatformEvent::Chat {
                user: "alice".into(),
                content: "new & live".into(),
                origin: ChatOrigin::Live,
                meta: Meta {
                    timestamp: Timestamp::from_secs(1_795_727_587).unwrap(),
                    platform_data: json!({"username":"alice","msg":"new &amp; live","meta":{},"time":1795727587322_u64}),
                },
            }]
        );
        n.reset();
        let out = feed(
            &mut n,
            r#"42["chatMsg",{"username":"alice","msg":"replayed","meta":{},"time":1}]"#,
        );
        assert!(matches!(
            &out[..],
            [PlatformEvent::Chat {
                origin: ChatOrigin::History,
                ..
            }]
        ));
    }

    #[test]
    fn own_shadow_and_server_lines_are_marked() {
        let mut n = joined();
        let origin = |out: Vec<PlatformEvent>| match &out[..] {
            [PlatformEvent::Chat { origin, .. }] => *origin,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            origin(feed(
                &mut n,
                r#"42["chatMsg",{"username":"rawbot4","msg":"hello from rawbot4 (EIO=4)","meta":{},"time":1795727587322}]"#
            )),
            ChatOrigin::Own
        );
        assert_eq!(
            origin(feed(
                &mut n,
                r#"42["chatMsg",{"username":"eve","msg":"psst","meta":{"shadow":true},"time":1795727587322}]"#
            )),
            ChatOrigin::Shadow
        );
        assert_eq!(
            origin(feed(
                &mut n,
                r#"42["chatMsg",{"username":"[server]","msg":"guesty joined (aliases: guesty)","meta":{"addClass":"server-whisper"},"time":1795727587322}]"#
            )),
            ChatOrigin::Server
        );
        assert_eq!(
            origin(feed(
                &mut n,
                r#"42["chatMsg",{"username":"[voteskip]","msg":"Voteskip passed: 1/1","meta":{},"time":1795727587322}]"#
            )),
            ChatOrigin::Server
        );
        // No time field: the time of receipt.
        match &feed(
            &mut n,
            r#"42["chatMsg",{"username":"bob","msg":"x","meta":{}}]"#,
        )[..]
        {
            [PlatformEvent::Chat {
                meta,
                origin: ChatOrigin::Live,
                ..
            }] => assert_eq!(meta.timestamp, ts()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn users_are_normalized_with_every_field() {
        let mut n = joined();
        let out = feed(
            &mut n,
            r#"42["addUser",{"name":"modbob","rank":2,"profile":{"image":"i.png","text":"hi"},"meta":{"afk":true,"muted":false,"smuted":true,"aliases":["x"],"ip":"1.2.x.x"}}]"#,
        );
        let PlatformEvent::UserJoin { user, meta } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            *user,
            UserData {
                username: "modbob".into(),
                rank: 2.0,
                is_afk: true,
                is_moderator: true,
                is_muted: true,
                profile: Some(json!({"image":"i.png","text":"hi"})),
            }
        );
        assert_eq!(meta.timestamp, ts());
        assert_eq!(meta.platform_data["meta"]["ip"], "1.2.x.x");
        let leader = user_data(&json!({"name": "l", "rank": 1.5})).unwrap();
        assert_eq!(
            (
                leader.rank,
                leader.is_moderator,
                leader.is_afk,
                leader.is_muted
            ),
            (1.5, false, false, false)
        );
        assert_eq!(user_data(&json!({"rank": 1})), Err(BadUser::NoName));
        assert_eq!(user_data(&json!({"name": 5})), Err(BadUser::NoName));

        let out = feed(&mut n, r#"42["userLeave",{"name":"modbob"}]"#);
        assert!(matches!(&out[..], [PlatformEvent::UserLeave { user, .. }] if user == "modbob"));
        let out = feed(&mut n, r#"42["usercount",3]"#);
        assert!(matches!(
            &out[..],
            [PlatformEvent::ConnectedCount { count: 3, .. }]
        ));
    }

    #[test]
    fn user_updates_carry_only_what_was_sent() {
        let mut n = joined();
        let patch = |out: Vec<PlatformEvent>| match out.into_iter().next() {
            Some(PlatformEvent::UserUpdate { patch, .. }) => patch,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            patch(feed(&mut n, r#"42["setAFK",{"name":"a","afk":true}]"#)),
            UserPatch {
                afk: Some(true),
                ..Default::default()
            }
        );
        assert_eq!(
            patch(feed(
                &mut n,
                r#"42["setUserMeta",{"name":"a","meta":{"afk":false,"muted":false,"smuted":true}}]"#
            )),
            UserPatch {
                afk: Some(false),
                muted: Some(true),
                ..Default::default()
            }
        );
        assert_eq!(
            patch(feed(
                &mut n,
                r#"42["setUserRank",{"name":"botowner","rank":5}]"#
            )),
            UserPatch {
                rank: Some(5.0),
                ..Default::default()
            }
        );
        assert_eq!(
            patch(feed(
                &mut n,
                r#"42["setUserProfile",{"name":"a","profile":{"image":"","text":"t"}}]"#
            )),
            UserPatch {
                profile: Some(json!({"image":"","text":"t"})),
                ..Default::default()
            }
        );
        assert!(feed(&mut n, r#"42["setAFK",{"name":"","afk":true}]"#).is_empty());
        assert!(feed(&mut n, r#"42["setUserRank",{"name":"a","rank":"high"}]"#).is_empty());
    }

    #[test]
    fn pms_name_sender_and_recipient_and_skip_our_echo() {
        let mut n = joined();
        let out = feed(
            &mut n,
            r#"42["pm",{"username":"modbob","msg":"status &amp; more","meta":{},"time":1795727587322,"to":"rawbot4"}]"#,
        );
        let PlatformEvent::Pm {
            user,
            recipient,
            content,
            meta,
        } = &out[0]
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            (user.as_str(), recipient.as_str(), content.as_str()),
            ("modbob", "rawbot4", "status & more")
        );
        assert_eq!(meta.timestamp.secs(), 1_795_727_587);
        assert!(feed(
            &mut n,
            r#"42["pm",{"username":"rawbot4","msg":"reply","meta":{},"time":1,"to":"modbob"}]"#
        )
        .is_empty());
    }

    #[test]
    fn login_rank_and_failures() {
        let mut n = CytubeNormalizer::new("BotOwner");
        assert_eq!(
            feed(&mut n, r#"42["rank",-1]"#),
            vec![PlatformEvent::OwnRank(-1.0)]
        );
        assert_eq!(
            feed(&mut n, r#"42["rank",1.5]"#),
            vec![PlatformEvent::OwnRank(1.5)]
        );
        assert_eq!(
            feed(
                &mut n,
                r#"42["login",{"success":false,"error":"Invalid username/password combination"}]"#
            ),
            vec![PlatformEvent::LoginFailed {
                error: "Invalid username/password combination".into()
            }]
        );
        feed(&mut n, r#"42["userlist",[]]"#);
        let out = feed(&mut n, r#"42["login",{"success":true,"name":"botowner"}]"#);
        assert_eq!(
            out,
            vec![PlatformEvent::Joined {
                bot_name: "botowner".into()
            }]
        );
        assert_eq!(n.bot_name(), "botowner");
    }

    #[test]
    fn media_and_playlist_events() {
        let mut n = joined();
        let item = r#"{"media":{"id":"abc","title":"A &amp; B","seconds":212,"duration":"03:32","type":"yt","meta":{}},"uid":7,"temp":true,"queueby":"alice"}"#;
        let out = feed(
            &mut n,
            &format!(r#"42["queue",{{"item":{item},"after":3}}]"#),
        );
        let expected_item = PlaylistItem {
            uid: 7,
            media: Media {
                id: "abc".into(),
                kind: "yt".into(),
                title: "A & B".into(),
                duration_s: 212.0,
            },
            temporary: true,
            queued_by: Some("alice".into()),
        };
        match &out[..] {
            [PlatformEvent::PlaylistAdd { add, .. }] => {
                assert_eq!(add.item, expected_item);
                assert_eq!(add.after, PlaylistAfter::Uid(3));
            }
            other => panic!("{other:?}"),
        }
        let out = feed(
            &mut n,
            &format!(r#"42["queue",{{"item":{item},"after":"prepend"}}]"#),
        );
        assert!(matches!(
            &out[..],
            [PlatformEvent::PlaylistAdd {
                add: PlaylistAdd {
                    after: PlaylistAfter::Start(Prepend::Prepend),
                    ..
                },
                ..
            }]
        ));
        assert_eq!(
            feed(&mut n, &format!(r#"42["playlist",[{item}]]"#)),
            vec![PlatformEvent::Playlist {
                items: vec![expected_item]
            }]
        );
        assert!(matches!(
            &feed(&mut n, r#"42["delete",{"uid":7}]"#)[..],
            [PlatformEvent::PlaylistRemove { uid: 7, .. }]
        ));
        assert!(matches!(
            &feed(&mut n, r#"42["moveVideo",{"from":7,"after":9}]"#)[..],
            [PlatformEvent::PlaylistMove {
                moved: PlaylistMove {
                    uid: 7,
                    after: PlaylistAfter::Uid(9)
                },
                ..
            }]
        ));
        assert!(matches!(
            &feed(&mut n, r#"42["moveVideo",{"from":7,"after":"append"}]"#)[..],
            [PlatformEvent::PlaylistMove {
                moved: PlaylistMove {
                    uid: 7,
                    after: PlaylistAfter::End(Append::Append)
                },
                ..
            }]
        ));
        assert_eq!(
            feed(&mut n, r#"42["setCurrent",7]"#),
            vec![PlatformEvent::SetCurrent(7)]
        );
        assert_eq!(
            feed(&mut n, r#"42["setTemp",{"uid":7,"temp":false}]"#),
            vec![PlatformEvent::SetTemp {
                uid: 7,
                temporary: false
            }]
        );
        let out = feed(
            &mut n,
            r#"42["changeMedia",{"id":"abc","title":"Song","seconds":212,"duration":"03:32","type":"yt","meta":{},"currentTime":-3,"paused":true}]"#,
        );
        match &out[..] {
            [PlatformEvent::MediaChange { media, meta }, PlatformEvent::MediaUpdate {
                current_time,
                paused,
            }] => {
                assert_eq!((*current_time, *paused), (-3.0, true));
                assert_eq!(
                    *media,
                    Media {
                        id: "abc".into(),
                        kind: "yt".into(),
                        title: "Song".into(),
                        duration_s: 212.0
                    }
                );
                assert_eq!(meta.platform_data["currentTime"], -3);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            feed(
                &mut n,
                r#"42["mediaUpdate",{"currentTime":12.5,"paused":false}]"#
            ),
            vec![PlatformEvent::MediaUpdate {
                current_time: 12.5,
                paused: false
            }]
        );
    }

    #[test]
    fn polls_and_flood_signals() {
        let mut n = joined();
        let out = feed(
            &mut n,
            r#"42["newPoll",{"title":"Best &amp; worst","options":["a","<b>b</b>"],"counts":[1,"?"],"initiator":"modbob","timestamp":1795727587322}]"#,
        );
        match &out[..] {
            [PlatformEvent::PollOpen { poll, meta }] => {
                assert_eq!(poll.title, "Best & worst");
                assert_eq!(poll.options, ["a", "b"]);
                assert_eq!(poll.counts, [Some(1), None]);
                assert_eq!(poll.initiator.as_deref(), Some("modbob"));
                assert_eq!(meta.timestamp.secs(), 1_795_727_587);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &feed(&mut n, r#"42["closePoll",null]"#)[..],
            [PlatformEvent::PollClose { .. }]
        ));
        assert_eq!(
            feed(&mut n, r#"42["cooldown",100]"#),
            vec![PlatformEvent::Cooldown(Duration::from_millis(100))]
        );
        assert_eq!(
            feed(&mut n, r#"42["cooldown",1e300]"#),
            vec![PlatformEvent::Cooldown(Duration::from_secs(600))]
        );
        assert_eq!(
            feed(
                &mut n,
                r#"42["noflood",{"action":"chat","msg":"You have been muted on this channel."}]"#
            ),
            vec![PlatformEvent::ChatRefused(
                "You have been muted on this channel.".into()
            )]
        );
        assert_eq!(
            feed(
                &mut n,
                r#"42["errorMsg",{"msg":"PM failed: x isn't connected to this channel."}]"#
            ),
            vec![PlatformEvent::ServerError(
                "PM failed: x isn't connected to this channel.".into()
            )]
        );
        assert_eq!(
            feed(&mut n, r#"42["voteskip",{"count":1,"need":2}]"#),
            vec![PlatformEvent::Voteskip { count: 1, need: 2 }]
        );
        assert_eq!(
            feed(&mut n, r#"42["setLeader","alice"]"#),
            vec![PlatformEvent::Leader("alice".into())]
        );
    }

    #[test]
    fn names_follow_cytube_rules() {
        for good in ["a", "rawbot4", "Mod_Bob-2", &"x".repeat(20)] {
            assert!(is_valid_username(good), "{good:?}");
        }
        for bad in [
            "",
            &"x".repeat(21),
            &"x".repeat(100_000),
            "evil.user",
            "has space",
            "é",
            "nul\0",
            "\u{fffd}",
            "[server]",
            "a\nb",
        ] {
            assert!(!is_valid_username(bad), "{bad:?}");
        }
    }

    #[test]
    fn invalid_names_and_long_lines_are_refused_counted_and_marked() {
        let mut n = CytubeNormalizer::with_limits(
            "rawbot4",
            EdgeLimits {
                max_users: 10,
                max_line_bytes: 1024,
            },
        );
        feed(
            &mut n,
            r#"42["login",{"success":true,"name":"rawbot4","guest":true}]"#,
        );
        feed(&mut n, r#"42["userlist",[{"name":"rawbot4","rank":0}]]"#);
        let long = "y".repeat(1025);
        let refused_frames = [
            json!(["chatMsg", {"username": "", "msg": "hi", "time": 1}]),
            json!(["chatMsg", {"username": "x".repeat(100_000), "msg": "hi", "time": 1}]),
            json!(["chatMsg", {"username": "evil.user", "msg": "!cmd", "time": 1}]),
            json!(["chatMsg", {"username": "alice", "msg": long, "time": 1}]),
            json!(["pm", {"username": "alice", "msg": long, "to": "rawbot4"}]),
            json!(["pm", {"username": "a b", "msg": "hi", "to": "rawbot4"}]),
            json!(["addUser", {"name": "", "rank": 0}]),
            json!(["userLeave", {"name": "x".repeat(300)}]),
            json!(["setAFK", {"name": "", "afk": true}]),
        ];
        for frame in &refused_frames {
            let out = feed(&mut n, &format!("42{frame}"));
            assert!(out.is_empty(), "{frame}: {out:?}");
            assert!(n.refused_last(), "{frame}");
        }
        assert_eq!(n.rejections().of(refused::INVALID_NAME), 7);
        assert_eq!(n.rejections().of(refused::LONG_CHAT), 1);
        assert_eq!(n.rejections().of(refused::LONG_PM), 1);
        // A valid line right after is not marked, and server pseudo-users still pass.
        let out = feed(
            &mut n,
            r#"42["chatMsg",{"username":"alice","msg":"fine","time":1}]"#,
        );
        assert_eq!(out.len(), 1);
        assert!(!n.refused_last());
        let out = feed(
            &mut n,
            r#"42["chatMsg",{"username":"[server]","msg":"whisper","time":1}]"#,
        );
        assert!(matches!(
            &out[..],
            [PlatformEvent::Chat {
                origin: ChatOrigin::Server,
                ..
            }]
        ));
        // A user list keeps its valid users only.
        let out = feed(
            &mut n,
            &format!(
                "42{}",
                json!(["userlist", [{"name": "rawbot4"}, {"name": "ok"}, {"name": "bad name"}, {"rank": 1}]])
            ),
        );
        let PlatformEvent::UserList { users, .. } = &out[0] else {
            panic!("{out:?}")
        };
        let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["rawbot4", "ok"]);
        assert_eq!(n.rejections().of(refused::NO_NAME), 1);
    }

    #[test]
    fn a_user_list_over_the_cap_is_cut_keeping_the_bot() {
        let mut n = CytubeNormalizer::with_limits(
            "rawbot4",
            EdgeLimits {
                max_users: 3,
                max_line_bytes: 1024,
            },
        );
        let mut list: Vec<Value> = (0..10).map(|i| json!({"name": format!("u{i}")})).collect();
        list.push(json!({"name": "RawBot4", "rank": 2}));
        let out = n.normalize("userlist", &json!(list), ts());
        let PlatformEvent::UserList { users, meta } = &out[0] else {
            panic!("{out:?}")
        };
        let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["u0", "u1", "RawBot4"]);
        assert!(n.refused_last(), "the cut list's raw form is not forwarded");
        assert_eq!(meta.platform_data, json!({"truncated": true}));
        assert_eq!(n.rejections().of(refused::USERLIST_OVER_CAP), 1);
        // Under the cap nothing is cut.
        let out = n.normalize("userlist", &json!(list[..2]), ts());
        assert!(matches!(&out[0], PlatformEvent::UserList { users, .. } if users.len() == 2));
        assert!(!n.refused_last());
    }

    #[test]
    fn a_big_user_list_is_read_typed_like_the_json_form() {
        let mut list: Vec<Value> = (0..12_000)
            .map(|i| {
                json!({"name": format!("user{i}"), "rank": 1.5, "profile": {"image": "i", "text": "t"},
                       "meta": {"afk": i % 2 == 0, "muted": false, "smuted": i % 3 == 0, "aliases": [], "ip": "x"}})
            })
            .collect();
        list.push(json!({"name": "bad name"}));
        list.push(json!({"name": "rawbot4", "rank": 3}));
        let frame = format!("42{}", json!(["userlist", list]));
        assert!(frame.len() > BIG_FRAME_BYTES);
        let limits = EdgeLimits {
            max_users: 10_000,
            max_line_bytes: 1024,
        };
        let mut typed = CytubeNormalizer::with_limits("rawbot4", limits);
        let mut general = CytubeNormalizer::with_limits("rawbot4", limits);
        let fast = typed.big_user_list(&frame, ts()).expect("read typed");
        let slow = general.normalize("userlist", &json!(list), ts());
        let users = |out: &[PlatformEvent]| match &out[0] {
            PlatformEvent::UserList { users, .. } => users.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(users(&fast), users(&slow));
        assert_eq!(users(&fast).len(), 10_000);
        assert_eq!(users(&fast).last().unwrap().username, "rawbot4");
        assert!(typed.refused_last());
        // A small frame, another event or an unusual shape takes the general path.
        assert!(typed.big_user_list(r#"42["userlist",[]]"#, ts()).is_none());
        let other = format!(
            "42{}",
            json!(["chatMsg", {"msg": "x".repeat(BIG_FRAME_BYTES)}])
        );
        assert!(typed.big_user_list(&other, ts()).is_none());
        let odd = format!(
            "42{}",
            json!(["userlist", [{"name": "a", "rank": "x".repeat(BIG_FRAME_BYTES)}]])
        );
        assert!(typed.big_user_list(&odd, ts()).is_none());
    }

    #[test]
    fn oversized_profiles_are_left_out() {
        let big = json!({"name": "alice", "profile": {"image": "", "text": "x".repeat(5000)}});
        let user = user_data(&big).unwrap();
        assert_eq!(user.username, "alice");
        assert!(user.profile.is_none());
        let nested = json!({"name": "alice", "profile": {"text": {"deep": [1]}}});
        assert!(user_data(&nested).unwrap().profile.is_none());
    }

    #[test]
    fn wrong_shapes_produce_nothing() {
        let mut n = joined();
        for (event, data) in [
            ("chatMsg", json!("x")),
            ("chatMsg", json!({"username": 1, "msg": "x"})),
            ("pm", json!(null)),
            ("addUser", json!([])),
            ("usercount", json!("3")),
            ("queue", json!({"item": {"uid": "x"}})),
            ("delete", json!(7)),
            ("newPoll", json!({"title": "t"})),
            ("rank", json!({})),
            ("userlist", json!({"name": "x"})),
        ] {
            assert!(n.normalize(event, &data, ts()).is_empty(), "{event} {data}");
            if ["chatMsg", "pm", "addUser"].contains(&event) {
                assert!(
                    n.refused_last(),
                    "{event} {data} is not forwarded raw either"
                );
            }
        }
    }

    #[test]
    fn permissions_fall_back_to_cytube_defaults() {
        let mut map = Map::new();
        map.insert("chat".into(), json!(1));
        assert_eq!(required_rank(&map, "chat"), 1.0);
        assert_eq!(required_rank(&map, "kick"), 1.5);
        assert_eq!(required_rank(&map, "chatclear"), 2.0);
    }
}
