//! A NATS message as a plugin receives it, with typed readers for the contract's payloads.

use super::error::{Error, ErrorKind, Result};
use crate::commands::Command;
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
