//! Rosey's configuration: one JSON file that every process (bot, database service, plugin
//! runtime, `rosey` CLI) reads, with defaults for everything optional.
//!
//! Loading is strict so mistakes surface at start-up, not hours later: an unknown key, a wrong
//! type or a broken rule is an error that names the file and the key path, e.g.
//! `config.json: platform.chat_rate.burst: invalid type: string "x", expected u32`. Only the
//! free-form parts (`plugins.config.<name>`, `llm`, `metrics`) accept any key.
//!
//! Secrets (`password`, `channel_password`, `proxy_password`, `token`, `api_key`) may be given as `<key>_env`
//! (an environment variable's name) or `<key>_file` (a file holding the secret), and are held
//! in [`Secret`], which prints as `***`. A process resolves only the secrets of the parts of the
//! file its [`Role`] reads ([`SECRET_READERS`]); it holds the others unresolved, never their text.
//!
//! ```
//! use std::path::Path;
//! use rosey_config::{Config, PlatformKind};
//!
//! let config = Config::from_json_str(
//!     r#"{"platform": {"type": "cytube", "domain": "https://cytu.be", "channel": "lobby"}}"#,
//!     "example.json",
//!     Path::new("/srv/rosey"),
//! )?;
//! assert_eq!(config.platform.kind, PlatformKind::Cytube);
//! assert_eq!(config.database.path, Path::new("/srv/rosey/bot_data.db"));
//!
//! let err = Config::from_json_str(r#"{"nats": {"sever": "x"}}"#, "example.json", Path::new(""))
//!     .unwrap_err();
//! assert!(err.to_string().starts_with("example.json: nats.sever: unknown field `sever`"));
//! # Ok::<(), rosey_config::ConfigError>(())
//! ```
//!
//! # Layout
//! - [`Config`] (`config.rs`) and its loading pipeline (`load.rs`).
//! - [`sections`]: one module per section of the file.
//! - [`Seconds`], [`Secret`], [`Verbatim`]: the value types durations, secrets and free-form
//!   JSON are held in.
//! - [`ConfigError`]: every way loading can fail.
//!
//! # Crate features
//! - `cli`: `CommonArgs` (shared command-line flags), `service::start` (the start-up every
//!   service shares), `logging::init` and `connect::connect`, for the binaries.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod error;
mod load;
pub mod role;
mod seconds;
mod secret;
pub mod sections;
mod verbatim;

#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
pub mod connect;
#[cfg(feature = "cli")]
pub mod logging;
#[cfg(feature = "cli")]
pub mod service;
#[cfg(feature = "cli")]
pub mod signal;
#[cfg(feature = "cli")]
pub mod supervisor;

pub use crate::config::{Config, CURRENT_VERSION};
pub use crate::error::ConfigError;
pub use crate::role::{Role, SecretScope, SECRET_READERS};
pub use crate::seconds::Seconds;
pub use crate::secret::{Secret, REDACTED, SECRET_KEYS};
pub use crate::sections::database::{db_subject, DatabaseConfig, StreamConfig, DB_SUBJECTS};
pub use crate::sections::llm::{
    AmbientChat, GatewayConfig, Greetings, KeywordTrigger, LlmConfig, LlmPluginSettings,
    LlmProvider, OllamaConfig, OnJoin, OnStatusChange, OpenAiConfig, OpenRouterConfig,
    SpecificUser, TriggersConfig,
};
pub use crate::sections::logging::{LogFormat, LoggingConfig};
pub use crate::sections::nats::{NatsConfig, TlsConfig};
pub use crate::sections::platform::{
    is_channel_token, ChannelEntry, ChatRate, Credentials, FloodConfig, PlatformConfig,
    PlatformKind, ServedChannel,
};
pub use crate::sections::plugins::{
    CommandOverride, Isolation, PluginLimits, PluginPermissions, PluginSettings, PluginsConfig,
};
pub use crate::sections::proxy::{SocksProxy, DEFAULT_SOCKS_PORT};
pub use crate::sections::shell::ShellConfig;
pub use crate::sections::web::{WebConfig, DEFAULT_WEB_LISTEN};
pub use crate::verbatim::Verbatim;

#[cfg(feature = "cli")]
pub use crate::cli::CommonArgs;
