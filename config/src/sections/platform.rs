//! `platform`: which chat service the bot joins, how it logs in, and the bot's timing.

use serde::{Deserialize, Serialize};

use crate::error::Problem;
use crate::seconds::Seconds;
use crate::secret::Secret;
use crate::sections::proxy::SocksProxy;
use crate::sections::{positive, require_non_empty, secret_non_empty};

/// Default `platform.max_users`: far above any real channel (the busiest cytu.be channels show
/// hundreds of users in chat, not thousands).
pub const DEFAULT_MAX_USERS: usize = 10_000;
/// Smallest `platform.max_users` (the bot itself and one other).
pub const MIN_MAX_USERS: usize = 2;
/// Largest `platform.max_users`.
pub const MAX_MAX_USERS: usize = 1_000_000;
/// Default `platform.max_frame_bytes`: room for a playlist of tens of thousands of items.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 << 20;
/// Smallest `platform.max_frame_bytes`.
pub const MIN_FRAME_BYTES: usize = 64 << 10;
/// Largest `platform.max_frame_bytes`.
pub const MAX_FRAME_BYTES: usize = 256 << 20;
/// Default `platform.max_line_bytes`: CyTube cuts a line at 1,000 characters before its filters
/// escape and decorate it; 64 KiB of HTML leaves room for entities, links and emote images.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 10;
/// Smallest `platform.max_line_bytes`.
pub const MIN_LINE_BYTES: usize = 1 << 10;
/// Largest `platform.max_line_bytes`: what rosey-db accepts as one chat line.
pub const MAX_LINE_BYTES: usize = 256 << 10;

/// Default `platform.db_write_backlog`: ten seconds of NATS's pace, minutes of a busy channel.
pub const DEFAULT_DB_WRITE_BACKLOG: usize = 100_000;
/// Smallest `platform.db_write_backlog`.
pub const MIN_DB_WRITE_BACKLOG: usize = 10;
/// Largest `platform.db_write_backlog` (the backlog is also held under 64 MiB of payload).
pub const MAX_DB_WRITE_BACKLOG: usize = 10_000_000;

/// The chat service the bot talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlatformKind {
    /// A CyTube channel over socket.io.
    Cytube,
    /// Standard input and output, for trying the bot without a server.
    #[default]
    Console,
}

/// The `platform` section: the chat connection and the bot's own timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct PlatformConfig {
    /// `type`: which chat service to join.
    #[serde(rename = "type")]
    pub kind: PlatformKind,
    /// CyTube server URL with scheme (`https://cytu.be`); required for CyTube.
    pub domain: Option<String>,
    /// CyTube channel name; required for CyTube unless `channels` lists them.
    pub channel: Option<String>,
    /// `channels`: several channels served by one deployment (a `rosey-bot` each), instead of
    /// `channel`. The first is the one whose data is in `database.path` (see
    /// [`PlatformConfig::served_channels`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<ChannelEntry>,
    /// Password of a password-protected channel.
    pub channel_password: Option<Secret>,
    /// The bot's account.
    pub credentials: Credentials,
    /// The name the console platform gives the person typing.
    pub console_user: String,
    /// What starts a chat command (`!`).
    pub command_prefix: String,
    /// How fast the bot may send chat messages.
    pub chat_rate: ChatRate,
    /// How long to wait for the server to answer an emit (the original's `response_timeout`).
    pub response_timeout: Seconds,
    /// Pause before reconnecting after the connection ends (the original's `restart_delay`).
    pub restart_delay: Seconds,
    /// The SOCKS5 proxy both legs of the CyTube connection (`/socketconfig` and the websocket)
    /// go through: the original's `host[:port]` (port 1080 when absent, names resolved by the
    /// proxy) or a `socks5h://[user@]host[:port]` / `socks5://...` URL. See [`SocksProxy`].
    pub proxy: Option<String>,
    /// The password for the proxy's user/password authentication (the user is named in
    /// `proxy`).
    pub proxy_password: Option<Secret>,
    /// Number of connection retries; kept for a feature to come.
    pub retry: Option<u32>,
    /// Pause between connection retries; kept for a feature to come.
    pub retry_delay: Option<Seconds>,
    /// How often the bot polls the database for queued outbound messages.
    pub outbound_poll_interval: Seconds,
    /// Timeout of the bot's request for queued outbound messages.
    pub outbound_request_timeout: Seconds,
    /// How often the bot publishes its status.
    pub status_interval: Seconds,
    /// How often the bot records the channel's user count.
    pub user_count_interval: Seconds,
    /// Liveness watchdog: reconnect when the server has been silent this long.
    pub ping_timeout: Seconds,
    /// First reconnect back-off step.
    pub reconnect_min_delay: Seconds,
    /// Largest reconnect back-off step.
    pub reconnect_max_delay: Seconds,
    /// How long one connection attempt (discovery, websocket, handshake) may take.
    pub connect_timeout: Seconds,
    /// How long a live event's publish waits for room in the NATS client's buffer before the
    /// event is dropped, so a NATS outage never stalls the event loop.
    pub live_publish_timeout: Seconds,
    /// How long a sent (or given-up) outbound message is remembered, so a database listing
    /// that predates its mark does not send it twice.
    pub outbound_duplicate_window: Seconds,
    /// Pause before an outbound message that failed for a passing reason is tried again;
    /// absent means five outbound poll intervals, at least 5 s (see [`Self::outbound_retry_pause`]).
    #[serde(rename = "outbound_retry_pause")]
    pub outbound_retry_pause_override: Option<Seconds>,
    /// How long one attempt to set up the database stream may take.
    pub stream_setup_timeout: Seconds,
    /// Largest pause between attempts to set up the database stream.
    pub stream_setup_max_delay: Seconds,
    /// Largest pause between attempts to publish one database write.
    pub db_write_retry_max_delay: Seconds,
    /// How long shutdown waits for queued database writes and publishes to reach NATS.
    pub shutdown_flush_timeout: Seconds,
    /// Per-user command flood protection.
    pub flood: FloodConfig,
    /// Longest chat message the bot sends in one piece (longer ones are split).
    pub max_message_len: usize,
    /// Most users the bot keeps for one channel; a user list or join beyond it is cut (with a
    /// warning) so a hostile server cannot grow the bot's memory without bound.
    pub max_users: usize,
    /// Largest websocket message accepted from the server, in bytes; a larger one ends the
    /// connection before it is buffered or parsed.
    pub max_frame_bytes: usize,
    /// Largest chat or PM line (as the server's HTML) accepted, in bytes; a longer one is
    /// rejected before it is decoded.
    pub max_line_bytes: usize,
    /// Most database writes held in memory while NATS has not stored them; when full, the bot
    /// stops reading the chat instead of dropping a write.
    pub db_write_backlog: usize,
    /// How many channels of `channels` `rosey up` puts in one `rosey-bot` process (1: a
    /// process per channel, each restarted alone; more: fewer processes for many channels,
    /// each channel still a session of its own in its process).
    pub channels_per_bot: usize,
}

/// Largest `platform.channels_per_bot`.
pub const MAX_CHANNELS_PER_BOT: usize = 1000;

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            kind: PlatformKind::Console,
            domain: None,
            channel: None,
            channels: Vec::new(),
            channel_password: None,
            credentials: Credentials::default(),
            console_user: "console".to_owned(),
            command_prefix: "!".to_owned(),
            chat_rate: ChatRate::default(),
            response_timeout: Seconds::from_millis(100),
            restart_delay: Seconds::from_secs(5),
            proxy: None,
            proxy_password: None,
            retry: None,
            retry_delay: None,
            outbound_poll_interval: Seconds::from_secs(2),
            outbound_request_timeout: Seconds::from_secs(2),
            status_interval: Seconds::from_secs(30),
            user_count_interval: Seconds::from_secs(60),
            ping_timeout: Seconds::from_secs(60),
            reconnect_min_delay: Seconds::from_secs(1),
            reconnect_max_delay: Seconds::from_secs(60),
            connect_timeout: Seconds::from_secs(20),
            live_publish_timeout: Seconds::from_secs(1),
            outbound_duplicate_window: Seconds::from_secs(600),
            outbound_retry_pause_override: None,
            stream_setup_timeout: Seconds::from_secs(5),
            stream_setup_max_delay: Seconds::from_secs(5),
            db_write_retry_max_delay: Seconds::from_secs(2),
            shutdown_flush_timeout: Seconds::from_secs(5),
            flood: FloodConfig::default(),
            max_message_len: 320,
            max_users: DEFAULT_MAX_USERS,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            db_write_backlog: DEFAULT_DB_WRITE_BACKLOG,
            channels_per_bot: 1,
        }
    }
}

impl PlatformKind {
    /// The platform's name as events, commands and action subjects spell it.
    pub fn name(self) -> &'static str {
        match self {
            PlatformKind::Cytube => "cytube",
            PlatformKind::Console => "console",
        }
    }
}

/// One channel the deployment serves, with the bot's name there: what plugins learn about
/// where they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedChannel {
    /// The platform's name ([`PlatformKind::name`]).
    pub platform: String,
    /// The channel's name.
    pub channel: String,
    /// The bot's user name in that channel.
    pub bot_name: String,
}

/// One entry of `platform.channels`: a channel and what differs there from the `platform`
/// section's own values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object with a \"name\"")]
pub struct ChannelEntry {
    /// The channel's name: 1 to 64 characters of `A-Z a-z 0-9 _ -` (CyTube's own rule is
    /// narrower), so it can name a subject token and a database file.
    pub name: String,
    /// The channel's server when not `platform.domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Password of a password-protected channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_password: Option<Secret>,
    /// The bot's account there when not `platform.credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

/// True when `name` can be a channel of `platform.channels`: it becomes a subject token and part
/// of a file name, so only `A-Z a-z 0-9 _ -`, 1 to 64 of them.
pub fn is_channel_token(name: &str) -> bool {
    rosey_plugin_api::subjects::is_channel_name(name)
}

impl PlatformConfig {
    /// Every channel the deployment serves, in order, with the account's name there: the
    /// entries of `channels`, or else the one `channel` (the console's is `console` when
    /// unnamed, as the bot calls it). The first is the deployment's first channel: its data is
    /// in `database.path` and its bot writes on the PRD's subjects.
    pub fn served_channels(&self) -> Vec<ServedChannel> {
        if !self.channels.is_empty() {
            return self
                .channels
                .iter()
                .map(|entry| ServedChannel {
                    platform: self.kind.name().to_owned(),
                    channel: entry.name.clone(),
                    bot_name: entry
                        .credentials
                        .as_ref()
                        .unwrap_or(&self.credentials)
                        .username
                        .clone(),
                })
                .collect();
        }
        let channel = match (self.kind, &self.channel) {
            (_, Some(channel)) => channel.clone(),
            (PlatformKind::Console, None) => "console".to_owned(),
            (PlatformKind::Cytube, None) => return Vec::new(),
        };
        vec![ServedChannel {
            platform: self.kind.name().to_owned(),
            channel,
            bot_name: self.credentials.username.clone(),
        }]
    }

    /// The names of [`Self::served_channels`].
    pub fn channel_names(&self) -> Vec<String> {
        self.served_channels()
            .into_iter()
            .map(|served| served.channel)
            .collect()
    }

    /// This section as one channel's bot sees it: `channel`, its password, server and account
    /// taken from its entry of `channels`, and no list. `None` names the only channel; with
    /// several, a bot must be told which (`rosey-bot --channel NAME`).
    pub fn for_channel(&self, name: Option<&str>) -> Result<PlatformConfig, String> {
        if self.channels.is_empty() {
            return match name {
                Some(name)
                    if Some(name) != self.channel.as_deref()
                        && !(self.channel.is_none()
                            && self.kind == PlatformKind::Console
                            && name == "console") =>
                {
                    Err(format!(
                        "channel {name:?} is not configured (platform.channel is {:?})",
                        self.channel.as_deref().unwrap_or("console")
                    ))
                }
                _ => Ok(self.clone()),
            };
        }
        let entry = match name {
            Some(name) => self
                .channels
                .iter()
                .find(|entry| entry.name == name)
                .ok_or_else(|| {
                    format!(
                        "channel {name:?} is not in platform.channels ({})",
                        self.channel_names().join(", ")
                    )
                })?,
            None if self.channels.len() == 1 => &self.channels[0],
            None => {
                return Err(format!(
                    "platform.channels names {} channels ({}): say which one this bot serves                      (--channel NAME)",
                    self.channels.len(),
                    self.channel_names().join(", ")
                ))
            }
        };
        let mut one = self.clone();
        one.channels = Vec::new();
        one.channel = Some(entry.name.clone());
        if let Some(domain) = &entry.domain {
            one.domain = Some(domain.clone());
        }
        if entry.channel_password.is_some() {
            one.channel_password = entry.channel_password.clone();
        }
        if let Some(credentials) = &entry.credentials {
            one.credentials = credentials.clone();
        }
        Ok(one)
    }

    fn validate_channels(&self) -> Result<(), Problem> {
        if self.channels.is_empty() {
            return Ok(());
        }
        if self.channel.is_some() {
            return Err(Problem::new(
                "platform.channels",
                "give either platform.channel or platform.channels, not both",
            ));
        }
        for (i, entry) in self.channels.iter().enumerate() {
            let path = format!("platform.channels[{i}]");
            if !is_channel_token(&entry.name) {
                return Err(Problem::new(
                    format!("{path}.name"),
                    format!(
                        "{:?} is not a channel name: 1 to 64 characters of A-Z, a-z, 0-9, '_' \
                         or '-'",
                        entry.name
                    ),
                ));
            }
            if self.channels[..i].iter().any(|e| e.name == entry.name) {
                return Err(Problem::new(
                    format!("{path}.name"),
                    format!("channel {:?} is listed twice", entry.name),
                ));
            }
            if let Some(domain) = &entry.domain {
                validate_domain(domain).map_err(|m| Problem::new(format!("{path}.domain"), m))?;
            }
            secret_non_empty(
                &format!("{path}.channel_password"),
                entry.channel_password.as_ref(),
            )?;
            if let Some(credentials) = &entry.credentials {
                require_non_empty(
                    &format!("{path}.credentials.username"),
                    &credentials.username,
                )?;
                secret_non_empty(
                    &format!("{path}.credentials.password"),
                    credentials.password.as_ref(),
                )?;
            }
        }
        Ok(())
    }

    /// The pause before retrying an outbound message that failed for a passing reason:
    /// `outbound_retry_pause` when given, else five poll intervals and at least 5 s.
    pub fn outbound_retry_pause(&self) -> std::time::Duration {
        match self.outbound_retry_pause_override {
            Some(pause) => pause.as_duration(),
            None => (self.outbound_poll_interval.as_duration() * 5)
                .max(std::time::Duration::from_secs(5)),
        }
    }

    /// The proxy `platform.proxy` names, read; `None` without one. A loaded configuration has
    /// been checked already, so only a hand-built one can fail here.
    pub fn socks_proxy(&self) -> Result<Option<SocksProxy>, String> {
        self.proxy.as_deref().map(SocksProxy::parse).transpose()
    }

    /// Checks the rules serde cannot express.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        if let Some(domain) = &self.domain {
            validate_domain(domain).map_err(|m| Problem::new("platform.domain", m))?;
        }
        if let Some(channel) = &self.channel {
            require_non_empty("platform.channel", channel)?;
        }
        self.validate_channels()?;
        if self.kind == PlatformKind::Cytube {
            if self.domain.is_none()
                && (self.channels.is_empty() || self.channels.iter().any(|e| e.domain.is_none()))
            {
                return Err(Problem::new(
                    "platform.domain",
                    "required when platform.type is \"cytube\" (e.g. \"https://cytu.be\")",
                ));
            }
            if self.channel.is_none() && self.channels.is_empty() {
                return Err(Problem::new(
                    "platform.channel",
                    "required when platform.type is \"cytube\" (or list several in \
                     platform.channels)",
                ));
            }
        }
        require_non_empty("platform.credentials.username", &self.credentials.username)?;
        secret_non_empty(
            "platform.credentials.password",
            self.credentials.password.as_ref(),
        )?;
        secret_non_empty("platform.channel_password", self.channel_password.as_ref())?;
        secret_non_empty("platform.proxy_password", self.proxy_password.as_ref())?;
        let proxy = self
            .socks_proxy()
            .map_err(|m| Problem::new("platform.proxy", m))?;
        if self.proxy_password.is_some() && proxy.as_ref().is_none_or(|p| p.username.is_none()) {
            return Err(Problem::new(
                "platform.proxy_password",
                "needs a user name in platform.proxy (socks5h://USER@host:port)",
            ));
        }
        require_non_empty("platform.console_user", &self.console_user)?;
        require_non_empty("platform.command_prefix", &self.command_prefix)?;
        if self.chat_rate.burst == 0 {
            return Err(Problem::new(
                "platform.chat_rate.burst",
                "must be at least 1",
            ));
        }
        if !(self.chat_rate.per_second.is_finite() && self.chat_rate.per_second > 0.0) {
            return Err(Problem::new(
                "platform.chat_rate.per_second",
                "must be a number greater than 0",
            ));
        }
        positive(
            "platform.outbound_poll_interval",
            self.outbound_poll_interval,
        )?;
        positive(
            "platform.outbound_request_timeout",
            self.outbound_request_timeout,
        )?;
        positive("platform.status_interval", self.status_interval)?;
        positive("platform.user_count_interval", self.user_count_interval)?;
        positive("platform.ping_timeout", self.ping_timeout)?;
        if self.reconnect_min_delay > self.reconnect_max_delay {
            return Err(Problem::new(
                "platform.reconnect_min_delay",
                format!(
                    "must not exceed platform.reconnect_max_delay ({})",
                    self.reconnect_max_delay
                ),
            ));
        }
        positive("platform.connect_timeout", self.connect_timeout)?;
        positive("platform.live_publish_timeout", self.live_publish_timeout)?;
        positive(
            "platform.outbound_duplicate_window",
            self.outbound_duplicate_window,
        )?;
        if let Some(pause) = self.outbound_retry_pause_override {
            positive("platform.outbound_retry_pause", pause)?;
        }
        positive("platform.stream_setup_timeout", self.stream_setup_timeout)?;
        positive(
            "platform.stream_setup_max_delay",
            self.stream_setup_max_delay,
        )?;
        positive(
            "platform.db_write_retry_max_delay",
            self.db_write_retry_max_delay,
        )?;
        positive(
            "platform.shutdown_flush_timeout",
            self.shutdown_flush_timeout,
        )?;
        if self.max_message_len == 0 {
            return Err(Problem::new(
                "platform.max_message_len",
                "must be at least 1",
            ));
        }
        if !(1..=MAX_CHANNELS_PER_BOT).contains(&self.channels_per_bot) {
            return Err(Problem::new(
                "platform.channels_per_bot",
                format!("must be between 1 and {MAX_CHANNELS_PER_BOT}"),
            ));
        }
        if !(MIN_MAX_USERS..=MAX_MAX_USERS).contains(&self.max_users) {
            return Err(Problem::new(
                "platform.max_users",
                format!("must be between {MIN_MAX_USERS} and {MAX_MAX_USERS}"),
            ));
        }
        if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&self.max_frame_bytes) {
            return Err(Problem::new(
                "platform.max_frame_bytes",
                format!("must be between {MIN_FRAME_BYTES} and {MAX_FRAME_BYTES}"),
            ));
        }
        if !(MIN_LINE_BYTES..=MAX_LINE_BYTES).contains(&self.max_line_bytes) {
            return Err(Problem::new(
                "platform.max_line_bytes",
                format!("must be between {MIN_LINE_BYTES} and {MAX_LINE_BYTES}"),
            ));
        }
        if !(MIN_DB_WRITE_BACKLOG..=MAX_DB_WRITE_BACKLOG).contains(&self.db_write_backlog) {
            return Err(Problem::new(
                "platform.db_write_backlog",
                format!("must be between {MIN_DB_WRITE_BACKLOG} and {MAX_DB_WRITE_BACKLOG}"),
            ));
        }
        if self.max_line_bytes > self.max_frame_bytes {
            return Err(Problem::new(
                "platform.max_line_bytes",
                format!(
                    "must not exceed platform.max_frame_bytes ({})",
                    self.max_frame_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// Checks that a domain is an http(s) URL with a host.
fn validate_domain(domain: &str) -> Result<(), String> {
    let rest = domain
        .strip_prefix("https://")
        .or_else(|| domain.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("expected a URL starting with http:// or https://, found {domain:?}")
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || domain.chars().any(char::is_whitespace) {
        return Err(format!("{domain:?} is not a URL with a host name"));
    }
    Ok(())
}

/// The bot's CyTube account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct Credentials {
    /// Account (or guest) name.
    pub username: String,
    /// Account password; absent means a guest login.
    pub password: Option<Secret>,
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            username: "rosey".to_owned(),
            password: None,
        }
    }
}

/// A token bucket for outgoing chat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct ChatRate {
    /// Messages that may go out back to back.
    pub burst: u32,
    /// Steady rate after the burst is spent.
    pub per_second: f64,
}

impl Default for ChatRate {
    fn default() -> Self {
        Self {
            burst: 4,
            per_second: 1.0,
        }
    }
}

/// Per-user limits on chat commands.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct FloodConfig {
    /// Commands one user may give per minute before being blocked.
    pub commands_per_minute: u32,
    /// How long a flooding user's commands are ignored.
    pub block_seconds: Seconds,
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self {
            commands_per_minute: 12,
            block_seconds: Seconds::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert!(validate_domain("https://cytu.be").is_ok());
        assert!(validate_domain("http://localhost:8080/").is_ok());
        assert!(validate_domain("cytu.be").is_err());
        assert!(validate_domain("https://").is_err());
        assert!(validate_domain("https:// cytu.be").is_err());
        assert!(validate_domain("ftp://cytu.be").is_err());
    }

    fn channels(list: serde_json::Value) -> Result<PlatformConfig, Problem> {
        let platform: PlatformConfig = serde_json::from_value(serde_json::json!({
            "type": "cytube", "domain": "https://cytu.be", "channels": list,
            "credentials": {"username": "bot"},
        }))
        .map_err(|e| Problem::new("platform", e.to_string()))?;
        platform.validate()?;
        Ok(platform)
    }

    #[test]
    fn several_channels_each_with_their_own_account() {
        let p = channels(serde_json::json!([
            {"name": "first"},
            {"name": "Second-2", "domain": "https://other.example",
             "credentials": {"username": "other"}, "channel_password": "pw"},
        ]))
        .unwrap();
        let served = p.served_channels();
        assert_eq!(served.len(), 2);
        assert_eq!(
            (served[0].channel.as_str(), served[0].bot_name.as_str()),
            ("first", "bot")
        );
        assert_eq!(
            (served[1].channel.as_str(), served[1].bot_name.as_str()),
            ("Second-2", "other")
        );
        let second = p.for_channel(Some("Second-2")).unwrap();
        assert_eq!(second.channel.as_deref(), Some("Second-2"));
        assert_eq!(second.domain.as_deref(), Some("https://other.example"));
        assert_eq!(second.credentials.username, "other");
        assert!(second.channel_password.is_some());
        assert!(second.channels.is_empty());
        assert_eq!(
            p.for_channel(Some("first")).unwrap().credentials.username,
            "bot"
        );
        let err = p.for_channel(None).unwrap_err();
        assert!(err.contains("--channel"), "{err}");
        assert!(p.for_channel(Some("third")).is_err());
    }

    #[test]
    fn channel_lists_are_checked() {
        for (list, path) in [
            (
                serde_json::json!([{"name": "a.b"}]),
                "platform.channels[0].name",
            ),
            (
                serde_json::json!([{"name": "a"}, {"name": "a"}]),
                "platform.channels[1].name",
            ),
            (
                serde_json::json!([{"name": "a", "domain": "nope"}]),
                "platform.channels[0].domain",
            ),
        ] {
            let problem = channels(list).unwrap_err();
            assert_eq!(problem.key_path, path, "{problem:?}");
        }
        assert!(channels(serde_json::json!([{"nome": "a"}])).is_err());
        for bad in [0, MAX_CHANNELS_PER_BOT + 1] {
            let platform: PlatformConfig = serde_json::from_value(serde_json::json!({
                "type": "cytube", "domain": "https://cytu.be", "channel": "a",
                "credentials": {"username": "bot"}, "channels_per_bot": bad,
            }))
            .unwrap();
            let problem = platform.validate().unwrap_err();
            assert_eq!(problem.key_path, "platform.channels_per_bot", "{problem:?}");
        }
    }

    #[test]
    fn one_channel_is_served_as_before() {
        let p: PlatformConfig = serde_json::from_value(serde_json::json!({
            "type": "cytube", "domain": "https://cytu.be", "channel": "only",
        }))
        .unwrap();
        assert_eq!(p.for_channel(None).unwrap(), p);
        assert_eq!(p.for_channel(Some("only")).unwrap(), p);
        assert!(p.for_channel(Some("other")).is_err());
    }
}
