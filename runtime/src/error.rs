//! The runtime's errors about one plugin: which plugin, what kind of failure, and why. They
//! travel from a worker to whoever asked (an admin request, a configuration change) and end up
//! in logs, lifecycle events and admin replies.

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

#[cfg(test)]
mod tests {
    use super::*;

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
