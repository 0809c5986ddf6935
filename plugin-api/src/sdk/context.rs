//! The plugin's handle on the outside world: NATS through the runtime, and typed helpers over
//! the contract (replying to a command, key-value storage, subscribing to a command).

use super::error::{Error, ErrorKind, Result};
use super::glue::{from_ffi_message, to_ffi_message};
use super::message::Message;
use super::ChannelInfo;
use crate::actions::{SendChat, SendPm};
use crate::commands::Command;
use crate::ffi::{HostBox, LogLevel};
use crate::kv;
use crate::subjects;
use crate::subjects::kv::Op;
use abi_stable::std_types::{RNone, RSome, RString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits when the plugin does not say.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest token a deferred request may carry, in bytes.
pub const MAX_ANSWER_TOKEN_LEN: usize = 256;

/// Identifies a subscription made with [`Context::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub u64);

/// What the runtime lends a plugin: NATS (checked against its permissions), logging, and the
/// channels it serves with the bot's name in each. Cheap to clone; a plugin may keep one.
#[derive(Clone)]
pub struct Context {
    host: Arc<HostBox>,
    name: Arc<str>,
    command_prefix: Arc<str>,
    channels: Arc<[ChannelInfo]>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .field("command_prefix", &self.command_prefix)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(
        host: HostBox,
        name: &str,
        command_prefix: &str,
        channels: Vec<ChannelInfo>,
    ) -> Self {
        Context {
            host: Arc::new(host),
            name: name.into(),
            command_prefix: command_prefix.into(),
            channels: channels.into(),
        }
    }

    /// The plugin's configured name.
    pub fn plugin_name(&self) -> &str {
        &self.name
    }

    /// What starts a chat command (`!` by default), so a plugin can skip command lines.
    pub fn command_prefix(&self) -> &str {
        &self.command_prefix
    }

    /// Every channel the plugin serves, with the bot's name in each.
    pub fn channels(&self) -> &[ChannelInfo] {
        &self.channels
    }

    /// The bot's user name in a channel the plugin serves.
    pub fn bot_name_in(&self, platform: &str, channel: &str) -> Option<&str> {
        super::bot_name_in(&self.channels, platform, channel)
    }

    /// Whether `user` is the bot itself in that channel (names compare without case), so a
    /// plugin can ignore its own lines.
    pub fn is_bot(&self, platform: &str, channel: &str, user: &str) -> bool {
        self.bot_name_in(platform, channel)
            .is_some_and(|bot| bot.eq_ignore_ascii_case(user))
    }

    /// Publishes raw bytes.
    pub fn publish(&self, subject: &str, payload: impl Into<Vec<u8>>) -> Result<()> {
        self.publish_message(Message::new(subject, payload))
    }

    /// Publishes a value as JSON.
    pub fn publish_json<T: Serialize>(&self, subject: &str, value: &T) -> Result<()> {
        self.publish(subject, serde_json::to_vec(value)?)
    }

    /// Publishes a message with headers or a reply subject.
    pub fn publish_message(&self, message: Message) -> Result<()> {
        self.host.publish(to_ffi_message(message)).into_result()?;
        Ok(())
    }

    /// Answers a request message (one with a reply subject) with JSON.
    pub fn respond_json<T: Serialize>(&self, request: &Message, value: &T) -> Result<()> {
        let reply = request.reply.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                format!("{} has no reply subject", request.subject),
            )
        })?;
        self.publish_json(reply, value)
    }

    /// Sends a request and waits for the answer (the reply is returned as is, error replies
    /// included; see [`Context::request_json`] for the typed form).
    pub fn request(
        &self,
        subject: &str,
        payload: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Message> {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let answer = self
            .host
            .request(to_ffi_message(Message::new(subject, payload)), millis)
            .into_result()?;
        Ok(from_ffi_message(answer))
    }

    /// Sends a JSON request and decodes the JSON answer; an error reply becomes
    /// [`ErrorKind::Service`].
    pub fn request_json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        subject: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        let mut answer = self.request(subject, serde_json::to_vec(request)?, timeout)?;
        answer.subject = subject.to_owned();
        answer.reply_json()
    }

    /// Sends a request without waiting: returns at once, and the answer comes back later to
    /// [`super::Plugin::on_message`] as a message whose [`Message::answer_token`] is `token`
    /// (read it with [`Message::answer_json`]). Exactly one answer comes for each request
    /// accepted here: the reply, or the failure once `timeout` has passed. It goes to the
    /// generation serving when it arrives, so a plugin keeps what it needs to finish the job
    /// (keyed by `token`, at most [`MAX_ANSWER_TOKEN_LEN`] bytes) in its saved state.
    ///
    /// A slow service then never stalls the plugin's worker: other messages are handled
    /// while the request is pending. The runtime caps the requests pending per plugin
    /// (`plugins.queue_capacity`); past it this fails with [`ErrorKind::Invalid`].
    pub fn request_later(
        &self,
        token: &str,
        subject: &str,
        payload: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<()> {
        if token.len() > MAX_ANSWER_TOKEN_LEN {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("an answer token is at most {MAX_ANSWER_TOKEN_LEN} bytes"),
            ));
        }
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.host
            .request_deferred(
                to_ffi_message(Message::new(subject, payload)),
                millis,
                RString::from(token),
            )
            .into_result()?;
        Ok(())
    }

    /// [`Context::request_later`] with a JSON request.
    pub fn request_json_later<Req: Serialize>(
        &self,
        token: &str,
        subject: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<()> {
        self.request_later(token, subject, serde_json::to_vec(request)?, timeout)
    }

    /// Subscribes to a subject (wildcards allowed); messages arrive in `on_message`.
    /// Subscriptions belong to the runtime and survive reloads of the plugin.
    pub fn subscribe(&self, subject: &str) -> Result<SubscriptionId> {
        let id = self
            .host
            .subscribe(RString::from(subject), RNone)
            .into_result()?;
        Ok(SubscriptionId(id))
    }

    /// Subscribes in a queue group, so only one member of the group gets each message.
    pub fn subscribe_queue(&self, subject: &str, group: &str) -> Result<SubscriptionId> {
        let id = self
            .host
            .subscribe(RString::from(subject), RSome(RString::from(group)))
            .into_result()?;
        Ok(SubscriptionId(id))
    }

    /// Subscribes to `rosey.commands.<name>` (commands a plugin declares in
    /// [`super::Plugin::commands`] are delivered without this).
    pub fn subscribe_command(&self, name: &str) -> Result<SubscriptionId> {
        self.subscribe(&subjects::commands::command(name)?)
    }

    /// Drops a subscription.
    pub fn unsubscribe(&self, id: SubscriptionId) -> Result<()> {
        self.host.unsubscribe(id.0).into_result()?;
        Ok(())
    }

    /// Answers a command where it came from: by PM to its user when it came by PM, else in
    /// the channel's chat.
    pub fn reply(&self, command: &Command, text: impl Into<String>) -> Result<()> {
        let content = text.into();
        if command.is_pm {
            let subject =
                subjects::platform::send(&command.platform, subjects::platform::action::PM)?;
            self.publish_json(
                &subject,
                &SendPm {
                    channel: command.channel.clone(),
                    to: command.user.clone(),
                    content,
                },
            )
        } else {
            let subject =
                subjects::platform::send(&command.platform, subjects::platform::action::CHAT)?;
            self.publish_json(
                &subject,
                &SendChat {
                    channel: command.channel.clone(),
                    content,
                },
            )
        }
    }

    /// The plugin's key-value storage, served by the database service.
    pub fn kv(&self) -> Kv<'_> {
        Kv {
            ctx: self,
            timeout: DEFAULT_REQUEST_TIMEOUT,
            channel: None,
        }
    }

    /// Writes a line to the runtime's log.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        self.host.log(level, RString::from(message.into()));
    }

    /// Logs at info level.
    pub fn info(&self, message: impl Into<String>) {
        self.log(LogLevel::Info, message);
    }

    /// Logs at warn level.
    pub fn warn(&self, message: impl Into<String>) {
        self.log(LogLevel::Warn, message);
    }

    /// Logs at error level.
    pub fn error(&self, message: impl Into<String>) {
        self.log(LogLevel::Error, message);
    }
}

/// Typed access to the plugin's own keys on `rosey.db.kv.<name>.*`.
#[derive(Debug, Clone, Copy)]
pub struct Kv<'a> {
    ctx: &'a Context,
    timeout: Duration,
    channel: Option<&'a str>,
}

impl<'a> Kv<'a> {
    /// The plugin's keys kept for one channel (in that channel's database file, apart from
    /// every other channel's); without this, the plugin's keys for the whole deployment.
    pub fn in_channel(mut self, channel: &'a str) -> Self {
        self.channel = Some(channel);
        self
    }

    fn channel(&self) -> Option<String> {
        self.channel.map(str::to_owned)
    }

    /// Uses another timeout for each request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn call<Req: Serialize, Resp: DeserializeOwned>(&self, op: Op, req: &Req) -> Result<Resp> {
        let subject = subjects::kv::subject(self.ctx.plugin_name(), op)?;
        self.ctx.request_json(&subject, req, self.timeout)
    }

    /// Reads a key; `None` when it does not exist.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let reply: kv::GetReply = self.call(
            Op::Get,
            &kv::Get {
                channel: self.channel(),
                key: key.to_owned(),
            },
        )?;
        match reply.value {
            Some(value) if reply.found => Ok(Some(serde_json::from_value(value)?)),
            _ => Ok(None),
        }
    }

    /// Writes a key, optionally expiring after `ttl`.
    pub fn set<T: Serialize>(&self, key: &str, value: &T, ttl: Option<Duration>) -> Result<()> {
        let request = kv::Set {
            channel: self.channel(),
            key: key.to_owned(),
            value: serde_json::to_value(value)?,
            ttl_seconds: ttl.map(|t| t.as_secs().max(1)),
        };
        let _: crate::actions::Ok = self.call(Op::Set, &request)?;
        Ok(())
    }

    /// Deletes a key; whether it existed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let reply: kv::DeleteReply = self.call(
            Op::Delete,
            &kv::Delete {
                channel: self.channel(),
                key: key.to_owned(),
            },
        )?;
        Ok(reply.deleted)
    }

    /// Adds `by` to an integer key and returns the new value.
    pub fn incr(&self, key: &str, by: i64) -> Result<i64> {
        let reply: kv::IncrReply = self.call(
            Op::Incr,
            &kv::Incr {
                channel: self.channel(),
                key: key.to_owned(),
                by,
            },
        )?;
        Ok(reply.value)
    }

    /// One page of keys.
    pub fn list(&self, request: &kv::List) -> Result<kv::ListReply> {
        if request.channel.is_none() && self.channel.is_some() {
            let mut request = request.clone();
            request.channel = self.channel();
            return self.call(Op::List, &request);
        }
        self.call(Op::List, request)
    }
}
