//! The error reply every request subject uses.
//!
//! An error reply carries the NATS service headers (so `nats` tooling shows it) and a JSON
//! body (so any client can read it without looking at headers):
//! `Nats-Service-Error-Code: 400`, `Nats-Service-Error: <message>`,
//! `{"error":{"code":"invalid_json","message":"..."}}`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The header holding the numeric status of an error reply.
pub const HEADER_CODE: &str = "Nats-Service-Error-Code";
/// The header holding the error text of an error reply.
pub const HEADER_MESSAGE: &str = "Nats-Service-Error";

/// Why a request failed, as a stable machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON, or a field has the wrong type or value.
    InvalidJson,
    /// A required field is absent.
    MissingField,
    /// The payload or a value exceeds a size limit.
    TooLarge,
    /// The thing asked for does not exist.
    NotFound,
    /// The caller may not do this.
    Denied,
    /// The service failed; retrying may help.
    Internal,
    /// A third party the service depends on (an LLM provider) is down or answered nonsense.
    Unavailable,
    /// A third party refused for rate, or the caller spent its budget; retry later.
    RateLimited,
    /// A third party did not answer in time.
    Timeout,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and docs.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::InvalidJson,
        ErrorCode::MissingField,
        ErrorCode::TooLarge,
        ErrorCode::NotFound,
        ErrorCode::Denied,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::RateLimited,
        ErrorCode::Timeout,
    ];

    /// The HTTP-like status that goes in [`HEADER_CODE`].
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson | ErrorCode::MissingField => 400,
            ErrorCode::Denied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::TooLarge => 413,
            ErrorCode::Internal => 500,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
        }
    }

    /// The code's wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Denied => "denied",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Timeout => "timeout",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of an error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
}

/// The body of an error reply: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// An error body with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }

    /// The error for a request body that did not decode, told apart by serde's category.
    pub fn from_json_error(err: &serde_json::Error) -> Self {
        let text = err.to_string();
        let code = if err.is_data() && text.starts_with("missing field") {
            ErrorCode::MissingField
        } else {
            ErrorCode::InvalidJson
        };
        ErrorBody::new(code, text)
    }

    /// The error a reply carries, if it is an error reply: flagged by the [`HEADER_CODE`]
    /// header (`flagged`) or shaped like one. Both the async-nats helpers and the plugin SDK
    /// read replies this way.
    pub fn from_reply(flagged: bool, payload: &[u8]) -> Option<ErrorBody> {
        if !flagged && !payload.starts_with(b"{\"error\"") {
            return None;
        }
        serde_json::from_slice(payload).ok()
    }

    /// The JSON text of the body.
    pub fn to_json(&self) -> String {
        // A struct of strings always serializes; fall back to a fixed body rather than panic.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"error":{"code":"internal","message":"unserializable error"}}"#.to_owned()
        })
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error.code, self.error.message)
    }
}

impl std::error::Error for ErrorBody {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_statuses() {
        let pairs: Vec<(&str, u16)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.status()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("invalid_json", 400),
                ("missing_field", 400),
                ("too_large", 413),
                ("not_found", 404),
                ("denied", 403),
                ("internal", 500),
                ("unavailable", 503),
                ("rate_limited", 429),
                ("timeout", 504)
            ]
        );
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    #[test]
    fn json_errors_are_classified() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Needs {
            username: String,
        }
        let missing = serde_json::from_str::<Needs>("{}").unwrap_err();
        assert_eq!(
            ErrorBody::from_json_error(&missing).error.code,
            ErrorCode::MissingField
        );
        let syntax = serde_json::from_str::<Needs>("{nope").unwrap_err();
        assert_eq!(
            ErrorBody::from_json_error(&syntax).error.code,
            ErrorCode::InvalidJson
        );
        let wrong = serde_json::from_str::<Needs>(r#"{"username":1}"#).unwrap_err();
        assert_eq!(
            ErrorBody::from_json_error(&wrong).error.code,
            ErrorCode::InvalidJson
        );
    }

    #[test]
    fn error_replies_are_recognised() {
        let body = ErrorBody::new(ErrorCode::Denied, "no").to_json();
        assert_eq!(
            ErrorBody::from_reply(false, body.as_bytes()).map(|b| b.error.code),
            Some(ErrorCode::Denied)
        );
        assert_eq!(ErrorBody::from_reply(false, b"{\"ok\":true}"), None);
        assert_eq!(ErrorBody::from_reply(true, b"not json"), None);
    }

    #[test]
    fn body_shape() {
        let b = ErrorBody::new(ErrorCode::NotFound, "no such key");
        assert_eq!(
            b.to_json(),
            r#"{"error":{"code":"not_found","message":"no such key"}}"#
        );
    }
}
