//! Flags every binary shares, flattened into each binary's own clap parser.

use std::path::PathBuf;

use crate::config::Config;
use crate::error::ConfigError;
use crate::role::SecretScope;
use crate::sections::logging::LogFormat;

/// `--config`, `--nats` and `--log-format`: the flags every Rosey binary takes.
///
/// Use it with `#[command(flatten)] common: CommonArgs` in a binary's `Parser`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct CommonArgs {
    /// Configuration file (JSON); without it the built-in defaults are used
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// NATS server URL, overriding `nats.server`
    #[arg(long, value_name = "URL", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub nats: Option<String>,
    /// Diagnostics format, overriding `logging.format`
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

impl CommonArgs {
    /// Loads `--config` (or the defaults), resolving the secrets `scope` reads (a process's
    /// [`crate::Role`]), and applies the flags: flags beat the file, the file beats the defaults.
    pub fn load_config(&self, scope: impl Into<SecretScope>) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load_for(path, scope)?,
            None => Config::default(),
        };
        if let Some(url) = &self.nats {
            config.set_nats_server(url.clone());
        }
        config.nats.apply_credentials_env();
        if let Some(format) = self.log_format {
            config.set_log_format(format);
        }
        Ok(config)
    }
}
