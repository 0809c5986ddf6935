//! The plugin's handle on the outside world: NATS through the runtime, and typed helpers over
//! the contract (replying to a command, key-value storage, subscribing to a command).

use super::error::{Error, ErrorKind, Result};
use super::glue::{from_ffi_message, to_ffi_message};
use super::message::Message;
use crate::actions::{SendChat, SendPm};
use crate::commands::Command;
use crate::error::{ErrorBody, HEADER_CODE};
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

/// Identifies a subscription made with [`Context::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub u64);

/// What the runtime lends a plugin: NATS (checked against its permissions), logging, and who
/// the bot is. Cheap to clone; a plugin may keep one.
#[derive(Clone)]
pub struct Context {
    host: Arc<HostBox>,
    name: Arc<str>,
    bot_name: Arc<str>,
    channel: Arc<str>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .field("bot_name", &self.bot_name)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(host: HostBox, name: &str, bot_name: &str, channel: &str) -> Self {
        Context {
            host: Arc::new(host),
            name: name.into(),
            bot_name: bot_name.into(),
            channel: channel.into(),
        }
    }

    /// The plugin's configured name.
    pub fn plugin_name(&self) -> &str {
        &self.name
    }

    /// The bot's user name (so a plugin can ignore its own lines).
    pub fn bot_name(&self) -> &str {
        &self.bot_name
    }

    /// The configured channel (empty when none is configured).
    pub fn channel(&self) -> &str {
        &self.channel
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
        let answer = self.request(subject, serde_json::to_vec(request)?, timeout)?;
        let flagged = answer.headers.iter().any(|(k, _)| k == HEADER_CODE);
        if let Some(body) = ErrorBody::from_reply(flagged, &answer.payload) {
            return Err(Error::new(
                ErrorKind::Service(body.error.code),
                format!("{subject} answered {}", body.error.message),
            ));
        }
        answer.json()
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
}

impl Kv<'_> {
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
                key: key.to_owned(),
                by,
            },
        )?;
        Ok(reply.value)
    }

    /// One page of keys.
    pub fn list(&self, request: &kv::List) -> Result<kv::ListReply> {
        self.call(Op::List, request)
    }
}
