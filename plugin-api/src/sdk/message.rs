//! A NATS message as a plugin receives it, with typed readers for the contract's payloads.

use super::error::{Error, ErrorKind, Result};
use crate::commands::Command;
use crate::error::{ErrorBody, HEADER_CODE};
use crate::subjects;
use serde::de::DeserializeOwned;

/// One message delivered to a plugin: from an event, a command or any subscription.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The subject it was published on.
    pub subject: String,
    /// Where an answer goes, when it is a request.
    pub reply: Option<String>,
    /// Header name and value pairs.
    pub headers: Vec<(String, String)>,
    /// The payload (JSON for every contract subject).
    pub payload: Vec<u8>,
    /// Set when this is the outcome of a deferred request
    /// ([`super::Context::request_later`]); `None` for every other message.
    pub answer_to: Option<AnswerTo>,
}

/// Marks a message as the outcome of a deferred request. Only the runtime sets it (answers
/// cross the plugin boundary apart from NATS messages), so a publisher cannot forge one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerTo {
    /// The token the plugin gave [`super::Context::request_later`].
    pub token: String,
    /// Why no reply came (timeout, denial, NATS failure); `None` when one did.
    pub failure: Option<Error>,
}

impl Message {
    /// A message with a subject and payload, for tests and for publishing.
    pub fn new(subject: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Message {
            subject: subject.into(),
            payload: payload.into(),
            ..Message::default()
        }
    }

    /// The outcome of a deferred request as a plugin's tests build it: `reply` (error
    /// replies included), or the failure.
    pub fn answer(
        token: impl Into<String>,
        subject: impl Into<String>,
        reply: std::result::Result<Message, Error>,
    ) -> Self {
        let (mut message, failure) = match reply {
            Ok(reply) => (reply, None),
            Err(e) => (Message::default(), Some(e)),
        };
        message.subject = subject.into();
        message.answer_to = Some(AnswerTo {
            token: token.into(),
            failure,
        });
        message
    }

    /// The token of the deferred request this message answers; `None` for any other message.
    pub fn answer_token(&self) -> Option<&str> {
        self.answer_to.as_ref().map(|a| a.token.as_str())
    }

    /// Decodes the JSON reply of a deferred request: the failure (kind
    /// [`ErrorKind::Timeout`], [`ErrorKind::Denied`], ...) when none came, and
    /// [`ErrorKind::Service`] when the service answered with an error reply. Any other
    /// message is [`ErrorKind::Invalid`].
    pub fn answer_json<T: DeserializeOwned>(&self) -> Result<T> {
        match &self.answer_to {
            None => Err(Error::new(
                ErrorKind::Invalid,
                format!("{} is not the answer to a deferred request", self.subject),
            )),
            Some(AnswerTo {
                failure: Some(e), ..
            }) => Err(e.clone()),
            Some(_) => self.reply_json(),
        }
    }

    /// Decodes a request's reply: an error reply becomes [`ErrorKind::Service`].
    pub(crate) fn reply_json<T: DeserializeOwned>(&self) -> Result<T> {
        let flagged = self.headers.iter().any(|(k, _)| k == HEADER_CODE);
        if let Some(body) = ErrorBody::from_reply(flagged, &self.payload) {
            return Err(Error::new(
                ErrorKind::Service(body.error.code),
                format!("{} answered {}", self.subject, body.error.message),
            ));
        }
        self.json()
    }

    /// Decodes the JSON payload.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.payload)?)
    }

    /// Decodes a contract payload (a JSON object, as [`crate::payload::decode`] insists); the
    /// error names the subject.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        crate::payload::decode(&self.payload).map_err(|body| {
            Error::new(
                ErrorKind::Json,
                format!("{}: {}", self.subject, body.error.message),
            )
        })
    }

    /// The command, when this is a `rosey.commands.<name>` message with a valid payload.
    pub fn command(&self) -> Option<Command> {
        subjects::commands::name_of(&self.subject)?;
        crate::payload::decode(&self.payload).ok()
    }

    /// The payload as text (lossy), for logs.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}
