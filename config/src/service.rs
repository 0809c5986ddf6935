//! The start-up and the exit every Rosey service shares, so that each one (and every service to
//! come) reads its flags, logs, follows `rosey up` and reports a failure the same way.
//!
//! A service's `main` is then three lines, as in mini-redis: parse the arguments,
//! [`start`], and hand the configuration and [`crate::signal::shutdown_signal`] to the
//! library's `run`, whose result [`exit_code`] turns into the process's status.

use crate::cli::CommonArgs;
use crate::config::Config;
use crate::error::ConfigError;
use crate::logging::LoggingError;
use crate::role::Role;
use crate::supervisor::SupervisorError;
use std::fmt::Display;
use std::process::ExitCode;
use thiserror::Error;

/// Why a service could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration file (or a flag) is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Logging could not be set up.
    #[error(transparent)]
    Logging(#[from] LoggingError),
    /// The process could not be tied to the `rosey up` that started it.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
}

/// Loads the configuration the flags name, resolving only the secrets `role` reads, lets the
/// service apply flags of its own (`adjust`, before anything reads the configuration), starts
/// logging, ties the process to a supervising `rosey up` and logs the configuration's warnings
/// (and, at debug level, the configuration itself: secrets show as `***` or as unresolved).
pub fn start(
    role: Role,
    args: &CommonArgs,
    adjust: impl FnOnce(&mut Config),
) -> Result<Config, StartError> {
    let mut config = args.load_config(role)?;
    adjust(&mut config);
    crate::logging::init(&config, "info")?;
    crate::supervisor::follow_supervisor()?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::debug!(%role, "configuration: {config:?}");
    Ok(config)
}

/// The process's exit status for a service's result; a failure is printed on stderr after the
/// program's name, with its causes (`{:#}` of an `anyhow::Error`).
pub fn exit_code<E: Display>(program: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
