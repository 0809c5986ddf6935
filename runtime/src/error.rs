//! The runtime's errors: about one plugin ([`PluginError`]: which plugin, what kind of
//! failure, and why), which travel from a worker to whoever asked (an admin request, a
//! configuration change) and end up in logs, lifecycle events and admin replies; and about one
//! call a plugin makes into the runtime ([`HostError`]), which the plugin gets back.

use crate::permissions::Access;
use rosey_plugin_api::ffi::{FfiError, FfiErrorKind};
use rosey_plugin_api::ErrorCode;
use std::fmt;

/// What kind of failure a [`PluginError`] is, so an admin reply can tell a broken build from a
/// plugin that is not running or a worker that did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Its library could not be found or loaded (missing, corrupt, another interface).
    Load,
    /// Its instance could not be set up (the constructor failed, the wrong name, a command
    /// another plugin serves).
    Init,
    /// Its worker did not answer in time.
    Timeout,
    /// It is not running (never enabled, disabled, being disabled, its worker gone).
    Stopped,
    /// The request does not name a valid plugin.
    Invalid,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Load => "load",
            FailureKind::Init => "init",
            FailureKind::Timeout => "timeout",
            FailureKind::Stopped => "stopped",
            FailureKind::Invalid => "invalid",
        })
    }
}

impl FailureKind {
    /// The contract's error code for an admin reply.
    pub fn code(self) -> ErrorCode {
        match self {
            FailureKind::Stopped => ErrorCode::NotFound,
            FailureKind::Invalid => ErrorCode::InvalidJson,
            FailureKind::Load | FailureKind::Init | FailureKind::Timeout => ErrorCode::Internal,
        }
    }
}

/// A failure about one plugin. Its text is the reason alone (logs and lifecycle events
/// already name the plugin).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PluginError {
    /// The plugin's configured name.
    pub plugin: String,
    /// What kind of failure it is.
    pub kind: FailureKind,
    /// Why, readable.
    pub message: String,
}

impl PluginError {
    /// A failure of `kind` about `plugin`.
    pub fn new(plugin: &str, kind: FailureKind, message: impl Into<String>) -> Self {
        PluginError {
            plugin: plugin.to_owned(),
            kind,
            message: message.into(),
        }
    }

    /// The same failure with `more` appended to its reason.
    pub fn with_note(mut self, more: &str) -> Self {
        self.message.push_str(more);
        self
    }
}

/// Why a call a plugin made into the runtime (publish, request, request later, subscribe,
/// unsubscribe) was refused or failed. It crosses back to the plugin as an [`FfiError`] whose
/// kind tells the SDK what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The calling generation was replaced or unloaded (or is inside `shutdown` and tried to
    /// subscribe): it has no host access any more.
    #[error("this plugin generation was replaced or unloaded")]
    Retired,
    /// The plugin's permissions do not allow it.
    #[error(
        "plugin {plugin} may not {access} {subject} (see plugins.config.{plugin}.permissions)"
    )]
    Denied {
        /// The plugin.
        plugin: String,
        /// What it tried.
        access: Access,
        /// On which subject.
        subject: String,
    },
    /// An argument is not acceptable: a malformed subject or queue group, a token too long.
    #[error("{0}")]
    Invalid(String),
    /// `unsubscribe` named a subscription the plugin does not have.
    #[error("no subscription {0}")]
    NoSubscription(u64),
    /// The plugin already has as many deferred requests pending as its answer queue holds.
    #[error(
        "plugin {plugin} already has {cap} deferred requests pending (plugins.queue_capacity)"
    )]
    TooManyPending {
        /// The plugin.
        plugin: String,
        /// `plugins.queue_capacity`.
        cap: usize,
    },
    /// A blocking host call came from inside the async runtime, where it would deadlock.
    #[error("blocking host call made from an async context")]
    AsyncContext,
    /// A request got no answer in time.
    #[error("request to {subject}: {message}")]
    Timeout {
        /// Where the request went.
        subject: String,
        /// NATS's words.
        message: String,
    },
    /// NATS failed (not connected, server error).
    #[error("{what}: {message}")]
    Nats {
        /// What the runtime was doing (`publish to x`, `subscribe to x`, `request to x`).
        what: String,
        /// NATS's words.
        message: String,
    },
    /// The runtime itself failed inside the call (a panic caught at the boundary).
    #[error("the runtime failed inside {0}")]
    Internal(&'static str),
}

impl HostError {
    /// The kind of [`FfiError`] the plugin sees.
    pub fn ffi_kind(&self) -> FfiErrorKind {
        match self {
            HostError::Retired | HostError::Denied { .. } => FfiErrorKind::Denied,
            HostError::Invalid(_)
            | HostError::NoSubscription(_)
            | HostError::TooManyPending { .. }
            | HostError::AsyncContext => FfiErrorKind::Invalid,
            HostError::Timeout { .. } => FfiErrorKind::Timeout,
            HostError::Nats { .. } | HostError::Internal(_) => FfiErrorKind::Nats,
        }
    }

    /// A NATS failure while doing `what`.
    pub fn nats(what: impl Into<String>, error: impl fmt::Display) -> Self {
        HostError::Nats {
            what: what.into(),
            message: error.to_string(),
        }
    }

    /// A failed NATS request to `subject`: a timeout or another NATS failure.
    pub fn request(subject: &str, error: &async_nats::RequestError) -> Self {
        match error.kind() {
            async_nats::RequestErrorKind::TimedOut => HostError::Timeout {
                subject: subject.to_owned(),
                message: error.to_string(),
            },
            _ => HostError::nats(format!("request to {subject}"), error),
        }
    }
}

impl From<HostError> for FfiError {
    fn from(e: HostError) -> Self {
        FfiError::new(e.ffi_kind(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_errors_cross_with_the_kind_the_sdk_expects() {
        let denied = HostError::Denied {
            plugin: "quotes".into(),
            access: Access::Publish,
            subject: "rosey.db.kv.markov.put".into(),
        };
        let ffi = FfiError::from(denied);
        assert_eq!(ffi.kind, FfiErrorKind::Denied);
        assert_eq!(
            ffi.message.as_str(),
            "plugin quotes may not publish to rosey.db.kv.markov.put (see plugins.config.quotes.permissions)"
        );
        assert_eq!(
            FfiError::from(HostError::Retired).kind,
            FfiErrorKind::Denied
        );
        assert_eq!(
            FfiError::from(HostError::NoSubscription(7))
                .message
                .as_str(),
            "no subscription 7"
        );
        assert_eq!(HostError::AsyncContext.ffi_kind(), FfiErrorKind::Invalid);
        assert_eq!(
            HostError::Timeout {
                subject: "a.b".into(),
                message: "timed out".into()
            }
            .ffi_kind(),
            FfiErrorKind::Timeout
        );
        assert_eq!(
            HostError::nats("subscribe to a.b", "not connected").to_string(),
            "subscribe to a.b: not connected"
        );
    }

    #[test]
    fn a_failure_reads_as_its_reason_and_answers_with_its_kinds_code() {
        let e = PluginError::new("quotes", FailureKind::Load, "no libquotes.so")
            .with_note("; the previous generation keeps serving");
        assert_eq!(
            e.to_string(),
            "no libquotes.so; the previous generation keeps serving"
        );
        assert_eq!((e.plugin.as_str(), e.kind), ("quotes", FailureKind::Load));
        assert_eq!(FailureKind::Stopped.code(), ErrorCode::NotFound);
        assert_eq!(FailureKind::Invalid.code(), ErrorCode::InvalidJson);
        for kind in [FailureKind::Load, FailureKind::Init, FailureKind::Timeout] {
            assert_eq!(kind.code(), ErrorCode::Internal, "{kind}");
        }
    }
}
