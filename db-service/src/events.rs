//! Durable write events: decoding a subject and payload into a checked event, and applying it.

use crate::store;
use rosey_plugin_api::db::{self as wire, PmCommandResult, STATUS_COLUMNS};
use rosey_plugin_api::subjects::db as subject;
use rosey_plugin_api::{payload, ErrorBody, ErrorCode};
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

/// The longest username accepted, in bytes (CyTube allows 20 characters).
pub const MAX_USERNAME_BYTES: usize = 256;
/// The longest text field accepted (chat line, error, command arguments), in bytes.
pub const MAX_TEXT_BYTES: usize = rosey_plugin_api::kv::MAX_VALUE_BYTES;

/// A write event that passed every check, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteEvent {
    /// `rosey.db.user.joined`.
    UserJoined(wire::UserJoined),
    /// `rosey.db.user.left`.
    UserLeft(wire::UserLeft),
    /// `rosey.db.user.sessions`.
    UserSessions(wire::UserSessions),
    /// `rosey.db.message.log`.
    MessageLog(wire::MessageLog),
    /// `rosey.db.stats.user_count`.
    UserCount(wire::StatsUserCount),
    /// `rosey.db.stats.high_water`.
    HighWater(wire::StatsHighWater),
    /// `rosey.db.status.update`, reduced to the whitelisted columns.
    Status(StatusChange),
    /// `rosey.db.messages.outbound.mark_sent`.
    MarkSent(wire::OutboundMarkSent),
    /// `rosey.db.messages.outbound.mark_failed`.
    MarkFailed(wire::OutboundMarkFailed),
    /// `rosey.db.action.pm_command`.
    PmCommand(wire::PmCommand),
}

/// A status update with its values converted for SQLite.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    /// Whitelisted columns and their values.
    pub columns: Vec<(&'static str, SqlValue)>,
    /// Keys that are not status columns (reported, not applied).
    pub ignored: Vec<String>,
    /// When the status was true.
    pub timestamp: Option<i64>,
}

fn check_username(name: &str) -> Result<(), ErrorBody> {
    if name.trim().is_empty() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidJson,
            "username must not be empty",
        ));
    }
    if name.len() > MAX_USERNAME_BYTES {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!(
                "username is {} bytes; the limit is {MAX_USERNAME_BYTES}",
                name.len()
            ),
        ));
    }
    Ok(())
}

fn check_text(field: &str, text: &str) -> Result<(), ErrorBody> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!(
                "{field} is {} bytes; the limit is {MAX_TEXT_BYTES}",
                text.len()
            ),
        ));
    }
    Ok(())
}

fn status_value(key: &str, value: &serde_json::Value) -> Result<SqlValue, ErrorBody> {
    use serde_json::Value as J;
    Ok(match value {
        J::Null => SqlValue::Null,
        J::Bool(b) => SqlValue::Integer(i64::from(*b)),
        J::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => {
            check_text(key, s)?;
            SqlValue::Text(s.clone())
        }
        J::Array(_) | J::Object(_) => {
            return Err(ErrorBody::new(
                ErrorCode::InvalidJson,
                format!("status_data.{key} must be a string, number, boolean or null"),
            ))
        }
    })
}

/// Decodes and checks one write event, on the PRD's subject or its channel's
/// (`rosey.db.channel.<channel>.<write>`: the stream it came from is that channel's); the error
/// says why it can never be applied.
pub fn decode(subject_name: &str, bytes: &[u8]) -> Result<WriteEvent, ErrorBody> {
    let event = match subject::write_of(subject_name).unwrap_or(subject_name) {
        subject::USER_JOINED => {
            let e: wire::UserJoined = payload::decode(bytes)?;
            check_username(&e.username)?;
            WriteEvent::UserJoined(e)
        }
        subject::USER_LEFT => {
            let e: wire::UserLeft = payload::decode(bytes)?;
            check_username(&e.username)?;
            WriteEvent::UserLeft(e)
        }
        subject::USER_SESSIONS => {
            let e: wire::UserSessions = payload::decode(bytes)?;
            let names = e.left.len() + e.joined.len();
            // The bot never sends an empty one; an object that names nobody is not this write.
            if names == 0 {
                return Err(ErrorBody::new(
                    ErrorCode::InvalidJson,
                    "a sessions write names no user in `left` or `joined`",
                ));
            }
            if names > wire::MAX_SESSION_NAMES {
                return Err(ErrorBody::new(
                    ErrorCode::TooLarge,
                    format!(
                        "{names} names in one sessions write; the limit is {}",
                        wire::MAX_SESSION_NAMES
                    ),
                ));
            }
            for name in e.left.iter().chain(&e.joined) {
                check_username(name)?;
            }
            WriteEvent::UserSessions(e)
        }
        subject::MESSAGE_LOG => {
            let e: wire::MessageLog = payload::decode(bytes)?;
            check_username(&e.username)?;
            check_text("message", &e.message)?;
            WriteEvent::MessageLog(e)
        }
        subject::STATS_USER_COUNT => WriteEvent::UserCount(payload::decode(bytes)?),
        subject::STATS_HIGH_WATER => WriteEvent::HighWater(payload::decode(bytes)?),
        subject::STATUS_UPDATE => {
            let e: wire::StatusUpdate = payload::decode(bytes)?;
            let mut columns = Vec::new();
            let mut ignored = Vec::new();
            for (key, value) in &e.status_data {
                match STATUS_COLUMNS.iter().find(|c| **c == key.as_str()) {
                    Some(column) => columns.push((*column, status_value(column, value)?)),
                    None => ignored.push(key.chars().take(64).collect()),
                }
            }
            WriteEvent::Status(StatusChange {
                columns,
                ignored,
                timestamp: e.timestamp.map(|t| t.secs()),
            })
        }
        subject::OUTBOUND_MARK_SENT => WriteEvent::MarkSent(payload::decode(bytes)?),
        subject::OUTBOUND_MARK_FAILED => {
            let e: wire::OutboundMarkFailed = payload::decode(bytes)?;
            check_text("error", &e.error)?;
            WriteEvent::MarkFailed(e)
        }
        subject::ACTION_PM_COMMAND => {
            let e: wire::PmCommand = payload::decode(bytes)?;
            check_username(&e.username)?;
            check_text("command", &e.command)?;
            check_text("args", &e.args)?;
            if let Some(err) = &e.error {
                check_text("error", err)?;
            }
            WriteEvent::PmCommand(e)
        }
        _ => {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("{subject_name:?} is not a database write subject"),
            ))
        }
    };
    Ok(event)
}

impl WriteEvent {
    /// The event's own time, when the publisher gave one.
    pub fn timestamp(&self) -> Option<i64> {
        match self {
            WriteEvent::UserJoined(e) => e.timestamp.map(|t| t.secs()),
            WriteEvent::UserLeft(e) => e.timestamp.map(|t| t.secs()),
            WriteEvent::UserSessions(e) => e.timestamp.map(|t| t.secs()),
            WriteEvent::MessageLog(e) => e.timestamp.map(|t| t.secs()),
            WriteEvent::UserCount(e) => e.timestamp.map(|t| t.secs()),
            WriteEvent::HighWater(e) => e.timestamp.map(|t| t.secs()),
            WriteEvent::Status(e) => e.timestamp,
            WriteEvent::MarkSent(e) => e.timestamp.map(|t| t.secs()),
            WriteEvent::MarkFailed(e) => e.timestamp.map(|t| t.secs()),
            WriteEvent::PmCommand(e) => e.timestamp.map(|t| t.secs()),
        }
    }

    /// Applies the event at its own time, or at `received` (when rosey-db read it) when it
    /// has none.
    pub fn apply(&self, conn: &Connection, received: i64) -> rusqlite::Result<()> {
        let ts = self.timestamp().unwrap_or(received);
        match self {
            WriteEvent::UserJoined(e) => store::user_joined(conn, &e.username, ts),
            WriteEvent::UserLeft(e) => store::user_left(conn, &e.username, ts),
            WriteEvent::UserSessions(e) => {
                for name in &e.left {
                    store::user_left(conn, name, ts)?;
                }
                for name in &e.joined {
                    store::user_joined(conn, name, ts)?;
                }
                Ok(())
            }
            WriteEvent::MessageLog(e) => store::chat_message(conn, &e.username, &e.message, ts),
            WriteEvent::UserCount(e) => {
                store::log_user_count(conn, e.chat_count, e.connected_count, ts)
            }
            WriteEvent::HighWater(e) => {
                let change = store::update_high_water(conn, e.chat_count, e.connected_count, ts)?;
                if change.users {
                    tracing::info!(users = e.chat_count, "new chat-user high-water mark");
                }
                if change.connected {
                    tracing::info!(connected = ?e.connected_count, "new connected high-water mark");
                }
                Ok(())
            }
            WriteEvent::Status(e) => store::update_status(conn, &e.columns, ts),
            WriteEvent::MarkSent(e) => store::mark_outbound_sent(conn, e.message_id, ts),
            WriteEvent::MarkFailed(e) => {
                store::mark_outbound_failed(conn, e.message_id, &e.error, e.permanent, ts)
            }
            WriteEvent::PmCommand(e) => {
                let line = if e.args.is_empty() {
                    e.command.clone()
                } else {
                    format!("{} {}", e.command, e.args)
                };
                let details = match (e.result, &e.error) {
                    (PmCommandResult::Pending, _) => line,
                    (PmCommandResult::Success, _) => format!("{line} [success]"),
                    (PmCommandResult::Error, Some(err)) => format!("{line} [error: {err}]"),
                    (PmCommandResult::Error, None) => format!("{line} [error]"),
                };
                store::log_user_action(conn, &e.username, "pm_command", Some(&details), ts)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_write_subject() {
        let cases: [(&str, &str); 10] = [
            (subject::USER_JOINED, r#"{"username":"a"}"#),
            (subject::USER_LEFT, r#"{"username":"a","timestamp":5}"#),
            (
                subject::USER_SESSIONS,
                r#"{"left":["a"],"joined":["b","c"],"timestamp":5}"#,
            ),
            (subject::MESSAGE_LOG, r#"{"username":"a","message":"hi"}"#),
            (subject::STATS_USER_COUNT, r#"{}"#),
            (subject::STATS_HIGH_WATER, r#"{"chat_count":3}"#),
            (
                subject::STATUS_UPDATE,
                r#"{"status_data":{"bot_name":"r","x":1}}"#,
            ),
            (subject::OUTBOUND_MARK_SENT, r#"{"message_id":1}"#),
            (
                subject::OUTBOUND_MARK_FAILED,
                r#"{"message_id":1,"error":"e"}"#,
            ),
            (
                subject::ACTION_PM_COMMAND,
                r#"{"username":"a","command":"stats","result":"pending"}"#,
            ),
        ];
        for (s, p) in cases {
            decode(s, p.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        assert_eq!(cases.len(), subject::WRITE_SUBJECTS.len());
        match decode(
            subject::STATUS_UPDATE,
            br#"{"status_data":{"bot_name":"r","x":1}}"#,
        )
        .unwrap()
        {
            WriteEvent::Status(s) => {
                assert_eq!(s.columns, vec![("bot_name", SqlValue::Text("r".into()))]);
                assert_eq!(s.ignored, vec!["x".to_owned()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_payloads_with_the_right_code() {
        let bad: [(&str, &[u8], ErrorCode); 8] = [
            (subject::USER_JOINED, b"{", ErrorCode::InvalidJson),
            (subject::USER_JOINED, b"{}", ErrorCode::MissingField),
            (
                subject::USER_JOINED,
                br#"{"username":5}"#,
                ErrorCode::InvalidJson,
            ),
            (
                subject::USER_JOINED,
                br#"{"username":""}"#,
                ErrorCode::InvalidJson,
            ),
            (subject::USER_JOINED, b"[\"a\"]", ErrorCode::InvalidJson),
            (
                subject::MESSAGE_LOG,
                br#"{"username":"a","message":"x","timestamp":0}"#,
                ErrorCode::InvalidJson,
            ),
            (
                subject::STATUS_UPDATE,
                br#"{"status_data":{"bot_name":[1]}}"#,
                ErrorCode::InvalidJson,
            ),
            (
                subject::OUTBOUND_MARK_SENT,
                br#"{"message_id":"1"}"#,
                ErrorCode::InvalidJson,
            ),
        ];
        for (s, p, code) in bad {
            let err = decode(s, p).expect_err(s);
            assert_eq!(err.error.code, code, "{s} {:?}", String::from_utf8_lossy(p));
        }
        let too_many = serde_json::json!({"joined": vec!["a"; wire::MAX_SESSION_NAMES + 1]});
        assert_eq!(
            decode(subject::USER_SESSIONS, too_many.to_string().as_bytes())
                .unwrap_err()
                .error
                .code,
            ErrorCode::TooLarge
        );
        assert_eq!(
            decode(subject::USER_SESSIONS, br#"{"username":"a"}"#)
                .unwrap_err()
                .error
                .code,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            decode(subject::USER_SESSIONS, br#"{"left":["a",""]}"#)
                .unwrap_err()
                .error
                .code,
            ErrorCode::InvalidJson
        );
        let huge = format!(r#"{{"username":"{}"}}"#, "é".repeat(200));
        assert_eq!(
            decode(subject::USER_JOINED, huge.as_bytes())
                .unwrap_err()
                .error
                .code,
            ErrorCode::TooLarge
        );
    }
}
