//! The one error type of configuration loading; every message names the file and the key.

use std::path::PathBuf;

/// Why a configuration could not be loaded; `Display` is one line naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not well-formed JSON.
    #[error("{file}:{line}:{column}: not valid JSON: {message}")]
    Parse {
        /// The file (or origin name) that was parsed.
        file: String,
        /// 1-based line of the mistake.
        line: usize,
        /// 1-based column of the mistake.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A key is unknown, has the wrong type, or a value breaks a rule.
    #[error("{file}: {key_path}: {message}")]
    Invalid {
        /// The file (or origin name) that was loaded.
        file: String,
        /// Dotted path of the offending key, e.g. `platform.chat_rate.burst`.
        key_path: String,
        /// What is wrong and, where possible, what is expected.
        message: String,
    },
    /// The file is in the original (Python) Rosey's v1 or v2 format.
    #[error(
        "{file}: {key_path}: this looks like the original Rosey's format; \
         convert it with `rosey migrate-config {file}`"
    )]
    OldFormat {
        /// The file (or origin name) that was loaded.
        file: String,
        /// The key that gave the old format away, e.g. `platforms` or `nats.url`.
        key_path: String,
    },
    /// A secret given as `<key>_env` or `<key>_file` could not be resolved, or was given twice.
    #[error("{file}: {key_path}: {message}")]
    Secret {
        /// The file (or origin name) that was loaded.
        file: String,
        /// Dotted path of the secret key, e.g. `nats.password_env`.
        key_path: String,
        /// What went wrong.
        message: String,
    },
}

impl ConfigError {
    /// The dotted key path the error is about, when it is about one key.
    pub fn key_path(&self) -> Option<&str> {
        match self {
            Self::Invalid { key_path, .. }
            | Self::OldFormat { key_path, .. }
            | Self::Secret { key_path, .. } => Some(key_path),
            Self::Io { .. } | Self::Parse { .. } => None,
        }
    }
}

/// A mistake found while checking a section, before the file name is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Dotted path of the offending key.
    pub(crate) key_path: String,
    /// What is wrong.
    pub(crate) message: String,
}

impl Problem {
    /// Builds a problem about `key_path`.
    pub(crate) fn new(key_path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key_path: key_path.into(),
            message: message.into(),
        }
    }

    /// Turns the problem into [`ConfigError::Invalid`] for `file`.
    pub(crate) fn invalid(self, file: &str) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_owned(),
            key_path: self.key_path,
            message: self.message,
        }
    }

    /// Turns the problem into [`ConfigError::Secret`] for `file`.
    pub(crate) fn secret(self, file: &str) -> ConfigError {
        ConfigError::Secret {
            file: file.to_owned(),
            key_path: self.key_path,
            message: self.message,
        }
    }
}

/// Joins a parent key path and a child key with a dot (`""` + `a` = `a`).
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}
