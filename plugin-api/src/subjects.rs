//! Every NATS subject of the contract, as constants (fixed subjects) and typed builders
//! (subjects with a platform, a command or a plugin name in them).
//!
//! Builders validate the name they insert, so a hostile username or plugin name can never add
//! tokens or wildcards to a subject.

use thiserror::Error;

/// The root of every subject Rosey uses.
pub const ROOT: &str = "rosey";

/// A name that cannot be placed in a subject.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{what} {name:?} is not valid in a subject: {rule}")]
pub struct InvalidName {
    /// What kind of name it was (command, platform, plugin).
    pub what: &'static str,
    /// The rejected name.
    pub name: String,
    /// The rule it broke.
    pub rule: &'static str,
}

/// The rule for command names, platform names and plugin names.
const NAME_RULE: &str = "1 to 32 characters of a-z, 0-9, '_' or '-'";

fn check_name(what: &'static str, name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            what,
            name: name.to_owned(),
            rule: NAME_RULE,
        })
    }
}

/// True when `word` (already lower-cased) can be a command: `^[a-z0-9_-]{1,32}$`.
pub fn is_command_name(word: &str) -> bool {
    check_name("command", word).is_ok()
}

/// The rule for channel names in subjects (`rosey.db.channel.<channel>.…`).
const CHANNEL_RULE: &str = "1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'";

/// True when `name` can be a channel's token in a subject (and part of its database file's
/// name): `^[A-Za-z0-9_-]{1,64}$`, which every CyTube channel name is.
pub fn is_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_channel(name: &str) -> Result<(), InvalidName> {
    if is_channel_name(name) {
        Ok(())
    } else {
        Err(InvalidName {
            what: "channel",
            name: name.to_owned(),
            rule: CHANNEL_RULE,
        })
    }
}

/// True when `name` can be a plugin's or a platform's name in a subject.
pub fn is_plugin_name(name: &str) -> bool {
    check_name("plugin", name).is_ok()
}

/// Normalized platform events, published live by the bot on core NATS.
pub mod events {
    /// Everything under `rosey.events`.
    pub const ALL: &str = "rosey.events.>";
    /// A chat line from another user (commands included, with `is_command`).
    pub const MESSAGE: &str = "rosey.events.message";
    /// A user joined the channel.
    pub const USER_JOIN: &str = "rosey.events.user.join";
    /// A user left the channel.
    pub const USER_LEAVE: &str = "rosey.events.user.leave";
    /// The full user list (on join and on reconnect).
    pub const USER_LIST: &str = "rosey.events.user.list";
    /// A user's afk, rank, mute or profile changed.
    pub const USER_UPDATE: &str = "rosey.events.user.update";
    /// The channel's chat and connected counts changed.
    pub const USER_COUNT: &str = "rosey.events.user.count";
    /// A private message to the bot.
    pub const PM: &str = "rosey.events.pm";
    /// The playing media changed.
    pub const MEDIA_CHANGE: &str = "rosey.events.media.change";
    /// An item was queued.
    pub const PLAYLIST_ADD: &str = "rosey.events.playlist.add";
    /// An item was removed from the playlist.
    pub const PLAYLIST_REMOVE: &str = "rosey.events.playlist.remove";
    /// An item was moved in the playlist.
    pub const PLAYLIST_MOVE: &str = "rosey.events.playlist.move";
    /// A poll was opened.
    pub const POLL_OPEN: &str = "rosey.events.poll.open";
    /// A poll's counts changed.
    pub const POLL_UPDATE: &str = "rosey.events.poll.update";
    /// The poll was closed.
    pub const POLL_CLOSE: &str = "rosey.events.poll.close";
    /// The bot's own connection and rank.
    pub const BOT_STATUS: &str = "rosey.events.bot.status";
}

/// Chat commands: `rosey.commands.<name>`.
pub mod commands {
    use super::{check_name, InvalidName};

    /// Every command.
    pub const ALL: &str = "rosey.commands.>";
    /// The prefix before the command name.
    pub const PREFIX: &str = "rosey.commands.";

    /// `rosey.commands.<name>` for a lower-case command word.
    pub fn command(name: &str) -> Result<String, InvalidName> {
        check_name("command", name)?;
        Ok(format!("{PREFIX}{name}"))
    }

    /// The command name of a `rosey.commands.<name>` subject.
    pub fn name_of(subject: &str) -> Option<&str> {
        subject
            .strip_prefix(PREFIX)
            .filter(|n| super::is_command_name(n))
    }
}

/// Platform subjects: raw events, actions to a platform and its error reports.
pub mod platform {
    use super::{check_name, InvalidName};

    /// The action (`send.*`) subjects a bot serves, by their suffix after `rosey.platform.<p>.`.
    pub mod action {
        /// Say something in the channel's chat.
        pub const CHAT: &str = "send.chat";
        /// Send a private message.
        pub const PM: &str = "send.pm";
        /// Queue a media link.
        pub const PLAYLIST_ADD: &str = "send.playlist.add";
        /// Remove a playlist item.
        pub const PLAYLIST_REMOVE: &str = "send.playlist.remove";
        /// Play a playlist item now.
        pub const PLAYLIST_JUMP: &str = "send.playlist.jump";
        /// Move a playlist item.
        pub const PLAYLIST_MOVE: &str = "send.playlist.move";
        /// Skip to the next item.
        pub const PLAYLIST_NEXT: &str = "send.playlist.next";
        /// Kick a user.
        pub const KICK: &str = "send.kick";
        /// Clear the chat.
        pub const CLEAR: &str = "send.clear";
        /// Set the bot's afk flag.
        pub const AFK: &str = "send.afk";
        /// Every action suffix, so a bot can subscribe to them all and the docs can list them.
        pub const ALL: [&str; 10] = [
            CHAT,
            PM,
            PLAYLIST_ADD,
            PLAYLIST_REMOVE,
            PLAYLIST_JUMP,
            PLAYLIST_MOVE,
            PLAYLIST_NEXT,
            KICK,
            CLEAR,
            AFK,
        ];
    }

    /// The suffix of the error report subject.
    pub const ERROR: &str = "error";

    /// `rosey.platform.<platform>.<event>`: a raw platform event, forwarded unchanged.
    ///
    /// The event name is the platform's own (`chatMsg`, `addUser`), so it is only checked for
    /// characters NATS forbids, not lower-cased.
    pub fn raw(platform: &str, event: &str) -> Result<String, InvalidName> {
        check_name("platform", platform)?;
        let ok = !event.is_empty()
            && event.len() <= 64
            && event
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(InvalidName {
                what: "platform event",
                name: event.to_owned(),
                rule: "1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'",
            });
        }
        Ok(format!("rosey.platform.{platform}.{event}"))
    }

    /// `rosey.platform.<platform>.<action>` for one of [`action`]'s suffixes.
    pub fn send(platform: &str, action: &str) -> Result<String, InvalidName> {
        check_name("platform", platform)?;
        Ok(format!("rosey.platform.{platform}.{action}"))
    }

    /// `rosey.platform.*.<action>`: one action on every platform, for permission grants.
    pub fn send_any_platform(action: &str) -> String {
        format!("rosey.platform.*.{action}")
    }

    /// `rosey.platform.<platform>.send.>`: every action to one platform.
    pub fn send_all(platform: &str) -> Result<String, InvalidName> {
        check_name("platform", platform)?;
        Ok(format!("rosey.platform.{platform}.send.>"))
    }

    /// `rosey.platform.<platform>.error`: action failures, for whoever watches.
    pub fn error(platform: &str) -> Result<String, InvalidName> {
        check_name("platform", platform)?;
        Ok(format!("rosey.platform.{platform}.{ERROR}"))
    }

    /// The action suffix of a `rosey.platform.<platform>.send.*` subject.
    pub fn action_of<'a>(platform: &str, subject: &'a str) -> Option<&'a str> {
        let rest = subject
            .strip_prefix("rosey.platform.")?
            .strip_prefix(platform)?
            .strip_prefix('.')?;
        rest.starts_with("send.").then_some(rest)
    }
}

/// Durable database writes, carried by the JetStream stream.
pub mod db {
    /// A user joined: opens a session.
    pub const USER_JOINED: &str = "rosey.db.user.joined";
    /// A user left: closes the session and credits its time.
    pub const USER_LEFT: &str = "rosey.db.user.left";
    /// Many sessions closed and opened at one time (a user list replacing the last, the
    /// connection's end): one write instead of one per user.
    pub const USER_SESSIONS: &str = "rosey.db.user.sessions";
    /// A chat line: counts it and keeps it in the recent chat.
    pub const MESSAGE_LOG: &str = "rosey.db.message.log";
    /// A user-count sample for the history graph.
    pub const STATS_USER_COUNT: &str = "rosey.db.stats.user_count";
    /// Counts to compare against the high-water marks.
    pub const STATS_HIGH_WATER: &str = "rosey.db.stats.high_water";
    /// Live status columns.
    pub const STATUS_UPDATE: &str = "rosey.db.status.update";
    /// An outbound message was sent.
    pub const OUTBOUND_MARK_SENT: &str = "rosey.db.messages.outbound.mark_sent";
    /// An outbound message failed to send.
    pub const OUTBOUND_MARK_FAILED: &str = "rosey.db.messages.outbound.mark_failed";
    /// A PM shell command, for the audit log.
    pub const ACTION_PM_COMMAND: &str = "rosey.db.action.pm_command";

    /// Exactly the subjects the database stream captures (never a request subject: a stream on
    /// a request subject would answer every request with a publish ack).
    pub const WRITE_SUBJECTS: [&str; 10] = [
        USER_JOINED,
        USER_LEFT,
        USER_SESSIONS,
        MESSAGE_LOG,
        STATS_USER_COUNT,
        STATS_HIGH_WATER,
        STATUS_UPDATE,
        OUTBOUND_MARK_SENT,
        OUTBOUND_MARK_FAILED,
        ACTION_PM_COMMAND,
    ];

    /// Where poison write events go, in a stream of their own.
    pub const DLQ: &str = "rosey.db.dlq";

    /// The prefix of a write that names its channel: `rosey.db.channel.<channel>.<write>`,
    /// where `<write>` is one of [`WRITE_SUBJECTS`] without its `rosey.db.` (so
    /// `rosey.db.channel.lobby.message.log`). Every channel but the deployment's first writes
    /// so; its channel token lets each channel have a consumer of its own.
    pub const CHANNEL_PREFIX: &str = "rosey.db.channel.";
    /// Every write that names its channel.
    pub const CHANNEL_WRITES: &str = "rosey.db.channel.*.>";
    /// How every channel-named write subject is written in the contract's table.
    pub const CHANNEL_WRITE_PATTERN: &str = "rosey.db.channel.<channel>.<write>";

    /// `write` (one of [`WRITE_SUBJECTS`]) as channel `channel` names it.
    pub fn channel_write(channel: &str, write: &str) -> Result<String, super::InvalidName> {
        super::check_channel(channel)?;
        let Some(rest) = write
            .strip_prefix("rosey.db.")
            .filter(|_| WRITE_SUBJECTS.contains(&write))
        else {
            return Err(super::InvalidName {
                what: "write subject",
                name: write.to_owned(),
                rule: "one of the contract's write subjects",
            });
        };
        Ok(format!("{CHANNEL_PREFIX}{channel}.{rest}"))
    }

    /// Every write of `channel`: the subjects of its stream.
    pub fn channel_writes(channel: &str) -> Result<String, super::InvalidName> {
        super::check_channel(channel)?;
        Ok(format!("{CHANNEL_PREFIX}{channel}.>"))
    }

    /// The channel a write names and the write's own subject ([`WRITE_SUBJECTS`]); `None`
    /// for a write without a channel (the PRD's names) or a subject that is not a write.
    pub fn split_channel_write(subject: &str) -> Option<(&str, &'static str)> {
        let rest = subject.strip_prefix(CHANNEL_PREFIX)?;
        let (channel, write) = rest.split_once('.')?;
        if !super::is_channel_name(channel) {
            return None;
        }
        let write = WRITE_SUBJECTS
            .iter()
            .find(|w| w.strip_prefix("rosey.db.") == Some(write))?;
        Some((channel, write))
    }

    /// The write's own subject ([`WRITE_SUBJECTS`]) whether or not it names a channel.
    pub fn write_of(subject: &str) -> Option<&'static str> {
        match split_channel_write(subject) {
            Some((_, write)) => Some(write),
            None => WRITE_SUBJECTS.iter().find(|w| **w == subject).copied(),
        }
    }

    /// Request: unsent outbound messages due for a (re)try.
    pub const OUTBOUND_GET: &str = "rosey.db.messages.outbound.get";
    /// Request: queue an outbound message.
    pub const OUTBOUND_ENQUEUE: &str = "rosey.db.messages.outbound.enqueue";
    /// Request: recent chat lines, oldest first.
    pub const RECENT_CHAT_GET: &str = "rosey.db.stats.recent_chat.get";
    /// Request: the user-count samples of the last hours, oldest first.
    pub const USER_COUNT_HISTORY_GET: &str = "rosey.db.stats.user_count_history.get";
    /// Request: the channel's high-water marks, top chatters and users seen.
    pub const QUERY_CHANNEL_STATS: &str = "rosey.db.query.channel_stats";
    /// Request: one user's statistics.
    pub const QUERY_USER_STATS: &str = "rosey.db.query.user_stats";
    /// Request: run the daily maintenance now.
    pub const MAINTENANCE_RUN: &str = "rosey.db.maintenance.run";
    /// Request: the newest outbound messages with their derived state, for the operator.
    pub const OUTBOUND_RECENT: &str = "rosey.db.messages.outbound.recent";
    /// Request: the live status row the bot keeps up to date.
    pub const QUERY_CURRENT_STATUS: &str = "rosey.db.query.current_status";
    /// Request: create an API token (its text is answered once and never stored).
    pub const TOKENS_CREATE: &str = "rosey.db.tokens.create";
    /// Request: list API tokens by preview.
    pub const TOKENS_LIST: &str = "rosey.db.tokens.list";
    /// Request: revoke API tokens by prefix.
    pub const TOKENS_REVOKE: &str = "rosey.db.tokens.revoke";
    /// Request: check an API token (and note its use).
    pub const TOKENS_VERIFY: &str = "rosey.db.tokens.verify";

    /// Every fixed request subject the database service serves (the key-value subjects are per
    /// plugin, see [`super::kv`]).
    pub const REQUEST_SUBJECTS: [&str; 13] = [
        OUTBOUND_GET,
        OUTBOUND_ENQUEUE,
        RECENT_CHAT_GET,
        USER_COUNT_HISTORY_GET,
        QUERY_CHANNEL_STATS,
        QUERY_USER_STATS,
        MAINTENANCE_RUN,
        OUTBOUND_RECENT,
        QUERY_CURRENT_STATUS,
        TOKENS_CREATE,
        TOKENS_LIST,
        TOKENS_REVOKE,
        TOKENS_VERIFY,
    ];
}

/// Plugin key-value storage served by the database service: `rosey.db.kv.<plugin>.<op>`.
pub mod kv {
    use super::{check_name, InvalidName};

    /// Every key-value request, for the service's subscription.
    pub const ALL: &str = "rosey.db.kv.>";
    /// The prefix before the plugin name.
    pub const PREFIX: &str = "rosey.db.kv.";

    /// The key-value operations.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Op {
        /// Read one key.
        Get,
        /// Write one key.
        Set,
        /// Delete one key.
        Delete,
        /// Page through keys.
        List,
        /// Add to an integer atomically.
        Incr,
    }

    impl Op {
        /// Every operation, in documentation order.
        pub const ALL: [Op; 5] = [Op::Get, Op::Set, Op::Delete, Op::List, Op::Incr];

        /// The subject token of the operation.
        pub fn as_str(self) -> &'static str {
            match self {
                Op::Get => "get",
                Op::Set => "set",
                Op::Delete => "delete",
                Op::List => "list",
                Op::Incr => "incr",
            }
        }

        /// The operation named by a subject token.
        pub fn parse(token: &str) -> Option<Op> {
            Op::ALL.into_iter().find(|op| op.as_str() == token)
        }
    }

    /// `rosey.db.kv.<plugin>.<op>`.
    pub fn subject(plugin: &str, op: Op) -> Result<String, InvalidName> {
        check_name("plugin", plugin)?;
        Ok(format!("{PREFIX}{plugin}.{}", op.as_str()))
    }

    /// `rosey.db.kv.<plugin>.>`: every operation on one plugin's storage.
    pub fn plugin_all(plugin: &str) -> Result<String, InvalidName> {
        check_name("plugin", plugin)?;
        Ok(format!("{PREFIX}{plugin}.>"))
    }

    /// The plugin name and operation of a key-value subject.
    pub fn parse(subject: &str) -> Option<(&str, Op)> {
        let rest = subject.strip_prefix(PREFIX)?;
        let (plugin, op) = rest.split_once('.')?;
        if !super::is_plugin_name(plugin) {
            return None;
        }
        Some((plugin, Op::parse(op)?))
    }
}

/// The plugin runtime's administration and lifecycle subjects.
pub mod runtime {
    /// Request: list the plugins and their state.
    pub const PLUGINS_LIST: &str = "rosey.runtime.plugins.list";
    /// Request: reload one plugin now.
    pub const PLUGINS_RELOAD: &str = "rosey.runtime.plugins.reload";
    /// Request: enable one plugin (runtime state only).
    pub const PLUGINS_ENABLE: &str = "rosey.runtime.plugins.enable";
    /// Request: disable one plugin (runtime state only).
    pub const PLUGINS_DISABLE: &str = "rosey.runtime.plugins.disable";
    /// Event: a plugin's first generation is serving.
    pub const PLUGIN_LOADED: &str = "rosey.runtime.plugin.loaded";
    /// Event: a new generation replaced the old one.
    pub const PLUGIN_RELOADED: &str = "rosey.runtime.plugin.reloaded";
    /// Event: a load or reload failed; the old generation, if any, keeps serving.
    pub const PLUGIN_FAILED: &str = "rosey.runtime.plugin.failed";
    /// Event: a plugin was unloaded.
    pub const PLUGIN_UNLOADED: &str = "rosey.runtime.plugin.unloaded";
    /// Every lifecycle event.
    pub const PLUGIN_ALL: &str = "rosey.runtime.plugin.>";
}

/// What the bot answers and reports about itself, beyond the normalized events.
pub mod bot {
    /// Request: the bot's live state (users, media, playlist, connection), for a page opened
    /// at any time.
    pub const SNAPSHOT: &str = "rosey.bot.snapshot";
    /// Event: a chat line the bot itself sent, on a subject of its own so that nothing that
    /// learns from `rosey.events.message` learns from the bot.
    pub const SAID: &str = "rosey.bot.said";
}

/// LLM chat, served by `rosey-llm` in a queue group.
pub mod llm {
    /// Request: answer a conversation.
    pub const CHAT: &str = "rosey.llm.chat";
    /// Request: the provider, the default model and how busy the gateway is.
    pub const STATUS: &str = "rosey.llm.status";
    /// Request: counters of answered and refused chats and tokens, per sender.
    pub const USAGE: &str = "rosey.llm.usage";
    /// Every request subject of the gateway.
    pub const REQUEST_SUBJECTS: [&str; 3] = [CHAT, STATUS, USAGE];
}

/// The NATS service-discovery subjects (`$SRV.*`) that every Rosey service answers (`rosey-db`
/// through async-nats's service API, the others with [`crate::discovery`]); `rosey status` and
/// `rosey-web` ask them.
pub mod service {
    /// Every service answers with its identity.
    pub const PING: &str = "$SRV.PING";
    /// Every service answers with its endpoints and metadata.
    pub const INFO: &str = "$SRV.INFO";
    /// Every service answers with its request and error counts.
    pub const STATS: &str = "$SRV.STATS";
    /// Every discovery request, for a service that answers them itself.
    pub const ALL: &str = "$SRV.>";
}

/// The names of the JetStream streams, consumer and bucket of the contract, defined here (not
/// behind the `nats` feature) because the permissions of each role name their API subjects.
pub mod jetstream {
    /// The stream holding every durable database write until the database service applies it.
    pub const DB_STREAM: &str = "ROSEY_DB";
    /// The stream holding write events the database service could not apply.
    pub const DLQ_STREAM: &str = "ROSEY_DB_DLQ";
    /// The key-value bucket where each plugin's key names the runtime serving it (a lease), so
    /// several runtimes on one NATS never serve one plugin together.
    pub const LEASE_BUCKET: &str = "rosey_runtime_leases";

    /// The database service's durable consumer on [`DB_STREAM`].
    pub const DB_CONSUMER: &str = "rosey-db";

    /// The prefix of each named channel's own stream (`ROSEY_DB_CH_<channel>`), holding that
    /// channel's durable writes (`rosey.db.channel.<channel>.>`): every channel but the
    /// deployment's first, whose writes are in [`DB_STREAM`]. A stream per channel keeps each
    /// channel's sequence dense (so the database service's position, duplicate and gap rules hold
    /// per channel unchanged), lets a burst or a poison event in one channel never delay another,
    /// and lets a channel's stream and its consumer move to another server alone.
    pub const CHANNEL_STREAM_PREFIX: &str = "ROSEY_DB_CH_";

    /// The stream of `channel`'s writes ([`CHANNEL_STREAM_PREFIX`]); `None` for a name that cannot
    /// be a channel in a subject.
    pub fn channel_stream(channel: &str) -> Option<String> {
        crate::subjects::is_channel_name(channel)
            .then(|| format!("{CHANNEL_STREAM_PREFIX}{channel}"))
    }
}

/// Subject matching with NATS semantics (`*` one token, `>` one or more trailing tokens), for
/// permission checks that must agree with the server.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut pat = pattern.split('.');
    let mut sub = subject.split('.');
    loop {
        match (pat.next(), sub.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(s)) if !s.is_empty() => {}
            (Some(p), Some(s)) if p == s && !s.is_empty() => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_follow_the_rule() {
        assert_eq!(commands::command("quote").unwrap(), "rosey.commands.quote");
        assert!(commands::command("a-b_9").is_ok());
        for bad in ["", "Quote", "a.b", "a>", "a*", "a b", &"x".repeat(33), "é"] {
            assert!(commands::command(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(commands::name_of("rosey.commands.quote"), Some("quote"));
        assert_eq!(commands::name_of("rosey.commands.a.b"), None);
    }

    #[test]
    fn platform_builders_reject_wildcards() {
        assert_eq!(
            platform::raw("cytube", "chatMsg").unwrap(),
            "rosey.platform.cytube.chatMsg"
        );
        assert!(platform::raw("cytube", "a.b").is_err());
        assert!(platform::raw("cy*", "x").is_err());
        assert_eq!(
            platform::send("cytube", platform::action::CHAT).unwrap(),
            "rosey.platform.cytube.send.chat"
        );
        assert_eq!(
            platform::action_of("cytube", "rosey.platform.cytube.send.playlist.add"),
            Some("send.playlist.add")
        );
        assert_eq!(
            platform::action_of("cytube", "rosey.platform.console.send.chat"),
            None
        );
    }

    #[test]
    fn kv_subjects_round_trip() {
        for op in kv::Op::ALL {
            let s = kv::subject("quotes", op).unwrap();
            assert_eq!(kv::parse(&s), Some(("quotes", op)));
        }
        assert_eq!(kv::parse("rosey.db.kv.quotes.drop"), None);
        assert!(kv::subject("../etc", kv::Op::Get).is_err());
    }

    #[test]
    fn matching_follows_nats() {
        assert!(matches("rosey.events.>", "rosey.events.message"));
        assert!(matches("rosey.events.>", "rosey.events.user.join"));
        assert!(!matches("rosey.events.>", "rosey.events"));
        assert!(matches("rosey.*.message", "rosey.events.message"));
        assert!(!matches("rosey.*", "rosey.events.message"));
        assert!(matches("rosey.db.kv.quotes.>", "rosey.db.kv.quotes.get"));
        assert!(!matches("rosey.db.kv.quotes.>", "rosey.db.kv.markov.get"));
        assert!(!matches("a.b", "a.b.c"));
    }

    #[test]
    fn channel_writes_round_trip() {
        for w in db::WRITE_SUBJECTS {
            let named = db::channel_write("Lobby_2", w).unwrap();
            assert!(matches(db::CHANNEL_WRITES, &named), "{named}");
            assert!(matches(&db::channel_writes("Lobby_2").unwrap(), &named));
            assert!(!matches(&db::channel_writes("Lobby").unwrap(), &named));
            assert_eq!(db::split_channel_write(&named), Some(("Lobby_2", w)));
            assert_eq!(db::write_of(&named), Some(w));
            assert_eq!(db::write_of(w), Some(w));
            assert!(!matches(db::CHANNEL_WRITES, w));
        }
        assert!(db::channel_write("a.b", db::MESSAGE_LOG).is_err());
        assert!(db::channel_write("a*", db::MESSAGE_LOG).is_err());
        assert!(db::channel_write("", db::MESSAGE_LOG).is_err());
        assert!(db::channel_write("ok", db::OUTBOUND_GET).is_err());
        assert!(db::channel_writes("a>").is_err());
        assert_eq!(db::split_channel_write("rosey.db.channel.x.no.such"), None);
        assert_eq!(db::split_channel_write(db::MESSAGE_LOG), None);
    }

    #[test]
    fn write_subjects_exclude_requests() {
        for w in db::WRITE_SUBJECTS {
            assert!(!db::REQUEST_SUBJECTS.contains(&w));
            assert!(!w.ends_with(".get"));
        }
    }
}
