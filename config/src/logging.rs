//! Diagnostics set-up shared by the binaries: tracing to standard error, text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::filter::{Directive, EnvFilter};

use crate::config::Config;
use crate::sections::logging::LogFormat;

/// Why diagnostics could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// `logging.level` is not a valid filter.
    #[error("logging.level: invalid log filter {directives:?}: {message}")]
    Level {
        /// The filter as written.
        directives: String,
        /// What the filter parser said.
        message: String,
    },
    /// The binary's default directive is not a valid directive (a bug in the binary).
    #[error("invalid default log directive {directive:?}: {message}")]
    DefaultDirective {
        /// The directive as given.
        directive: String,
        /// What the filter parser said.
        message: String,
    },
}

/// Installs the global tracing subscriber; returns `Ok(false)` when one was already installed.
///
/// The filter is `RUST_LOG` when it is set and not empty, else `logging.level`;
/// `default_directive` (e.g. `"info"`) applies when that leaves no directive at all.
pub fn init(config: &Config, default_directive: &str) -> Result<bool, LoggingError> {
    let filter = build_filter(config, default_directive, std::env::var("RUST_LOG").ok())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match config.logging.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
            .is_ok(),
        LogFormat::Json => builder.json().try_init().is_ok(),
    };
    Ok(installed)
}

/// Builds the filter from `RUST_LOG` (if given) or the configured level.
fn build_filter(
    config: &Config,
    default_directive: &str,
    rust_log: Option<String>,
) -> Result<EnvFilter, LoggingError> {
    let default: Directive =
        default_directive
            .parse()
            .map_err(|e: tracing_subscriber::filter::ParseError| {
                LoggingError::DefaultDirective {
                    directive: default_directive.to_owned(),
                    message: e.to_string(),
                }
            })?;
    let builder = EnvFilter::builder().with_default_directive(default);
    match rust_log {
        Some(directives) if !directives.trim().is_empty() => Ok(builder.parse_lossy(directives)),
        _ => {
            let level = config.logging.level.trim();
            builder.parse(level).map_err(|e| LoggingError::Level {
                directives: level.to_owned(),
                message: e.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_comes_from_the_config_unless_rust_log_is_set() {
        let mut config = Config::default();
        config.logging.level = "debug,async_nats=warn".to_owned();
        let filter = build_filter(&config, "info", None).unwrap();
        assert_eq!(filter.to_string(), "async_nats=warn,debug");
        let filter = build_filter(&config, "info", Some("trace".to_owned())).unwrap();
        assert_eq!(filter.to_string(), "trace");
        let filter = build_filter(&config, "info", Some(" ".to_owned())).unwrap();
        assert_eq!(filter.to_string(), "async_nats=warn,debug");
    }

    #[test]
    fn bad_level_names_the_key() {
        let mut config = Config::default();
        config.logging.level = "rosey=loud".to_owned();
        let err = build_filter(&config, "info", None).unwrap_err();
        assert!(err.to_string().starts_with("logging.level: "), "{err}");
        assert!(build_filter(&Config::default(), "nope=nope", None).is_err());
    }

    #[test]
    fn init_twice_does_not_panic() {
        let config = Config::default();
        let first = init(&config, "info").unwrap();
        let second = init(&config, "info").unwrap();
        assert!(!(first && second));
    }
}
