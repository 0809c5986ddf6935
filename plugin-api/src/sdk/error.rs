//! The SDK's error type: what a plugin's methods return and what host calls fail with.

use crate::error::ErrorCode;
use crate::ffi::{FfiError, FfiErrorKind};
use std::fmt;

/// What kind of failure an [`Error`] is, so a plugin can react to a denial or a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The runtime refused the subject: the plugin lacks the permission.
    Denied,
    /// A request got no answer in time.
    Timeout,
    /// NATS failed.
    Nats,
    /// A service answered with an error reply carrying this code.
    Service(ErrorCode),
    /// A payload could not be encoded or decoded.
    Json,
    /// An argument was not acceptable.
    Invalid,
    /// The plugin's own failure.
    Plugin,
    /// Plugin code panicked and the SDK caught it.
    Panic,
}

/// An error from plugin code or from the runtime, readable and with a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// The SDK's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// A plugin failure with a message, for `Err(Error::msg("..."))` in plugin code.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Plugin, message.to_string())
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The explanation.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The value that crosses the boundary back to the runtime.
    pub(crate) fn into_ffi(self) -> FfiError {
        let kind = match self.kind {
            ErrorKind::Denied => FfiErrorKind::Denied,
            ErrorKind::Timeout => FfiErrorKind::Timeout,
            ErrorKind::Nats | ErrorKind::Service(_) => FfiErrorKind::Nats,
            ErrorKind::Json | ErrorKind::Invalid => FfiErrorKind::Invalid,
            ErrorKind::Plugin => FfiErrorKind::Plugin,
            ErrorKind::Panic => FfiErrorKind::Panic,
        };
        FfiError::new(kind, self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Denied => write!(f, "denied: {}", self.message),
            ErrorKind::Timeout => write!(f, "timed out: {}", self.message),
            ErrorKind::Panic => write!(f, "panicked: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<FfiError> for Error {
    fn from(e: FfiError) -> Self {
        let kind = match e.kind {
            FfiErrorKind::Denied => ErrorKind::Denied,
            FfiErrorKind::Timeout => ErrorKind::Timeout,
            FfiErrorKind::Nats => ErrorKind::Nats,
            FfiErrorKind::Plugin => ErrorKind::Plugin,
            FfiErrorKind::Panic => ErrorKind::Panic,
            FfiErrorKind::Invalid => ErrorKind::Invalid,
        };
        Error::new(kind, e.message.into_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(ErrorKind::Json, e.to_string())
    }
}

impl From<crate::subjects::InvalidName> for Error {
    fn from(e: crate::subjects::InvalidName) -> Self {
        Error::new(ErrorKind::Invalid, e.to_string())
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::msg(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::msg(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_survive_the_boundary() {
        for kind in [
            ErrorKind::Denied,
            ErrorKind::Timeout,
            ErrorKind::Panic,
            ErrorKind::Plugin,
        ] {
            let back = Error::from(Error::new(kind, "x").into_ffi());
            assert_eq!(back.kind(), kind);
            assert_eq!(back.message(), "x");
        }
        assert_eq!(
            Error::new(ErrorKind::Denied, "publish a.b").to_string(),
            "denied: publish a.b"
        );
        assert_eq!(Error::msg("plain").to_string(), "plain");
    }
}
