//! The NATS connection every binary opens the same way, from the `nats` section.

use std::time::{Duration, Instant};

use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};

use crate::sections::nats::NatsConfig;

/// Why the first NATS connection could not be made; `Display` is one line naming the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// `nats.server` is not a NATS URL.
    #[error("nats.server: {server:?} is not a NATS server address: {message}")]
    BadServer {
        /// The address as written.
        server: String,
        /// What the address parser said.
        message: String,
    },
    /// `nats.creds_file` could not be read or parsed.
    #[error("nats.creds_file: cannot use {}: {message}", path.display())]
    Credentials {
        /// The credentials file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Every attempt failed until `nats.startup_retry` ran out, or one failed for good.
    #[error("cannot connect to NATS at {server}: {reason} (gave up after {attempts} attempt(s) in {elapsed:.1?})")]
    Failed {
        /// The configured server URL(s).
        server: String,
        /// The last attempt's error.
        reason: String,
        /// How many attempts were made.
        attempts: u32,
        /// How long the attempts took.
        elapsed: Duration,
    },
}

/// Shortest pause between first-connection attempts; it doubles up to [`MAX_RETRY_PAUSE`].
const MIN_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Longest pause between first-connection attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Connects to NATS as configured, retrying the first connection for `nats.startup_retry`.
///
/// Authentication and TLS failures are not retried: waiting would not fix them. Once
/// connected, async-nats reconnects by itself (`nats.max_reconnects`, `nats.reconnect_delay`).
pub async fn connect(config: &NatsConfig) -> Result<async_nats::Client, ConnectError> {
    let servers = server_addrs(config)?;
    let options = connect_options(config).await?;
    let started = Instant::now();
    let budget = config.startup_retry.as_duration();
    let mut pause = MIN_RETRY_PAUSE;
    let mut attempts = 0_u32;
    loop {
        attempts += 1;
        let error = match options.clone().connect(servers.clone()).await {
            Ok(client) => return Ok(client),
            Err(error) => error,
        };
        let elapsed = started.elapsed();
        let permanent = matches!(
            error.kind(),
            ConnectErrorKind::ServerParse
                | ConnectErrorKind::Authentication
                | ConnectErrorKind::AuthorizationViolation
                | ConnectErrorKind::Tls
        );
        if permanent || elapsed >= budget {
            return Err(ConnectError::Failed {
                server: config.server.clone(),
                reason: error.to_string(),
                attempts,
                elapsed,
            });
        }
        if attempts == 1 {
            tracing::info!(server = %config.server, error = %error, "NATS is not reachable yet; retrying");
        } else {
            tracing::debug!(server = %config.server, error = %error, attempts, "NATS connection attempt failed");
        }
        tokio::time::sleep(pause.min(budget - elapsed)).await;
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// Parses `nats.server` (comma-separated URLs) into server addresses.
fn server_addrs(config: &NatsConfig) -> Result<Vec<ServerAddr>, ConnectError> {
    config
        .servers()
        .into_iter()
        .map(|server| {
            server
                .parse::<ServerAddr>()
                .map_err(|e| ConnectError::BadServer {
                    server: server.to_owned(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// Builds async-nats options from the `nats` section.
async fn connect_options(config: &NatsConfig) -> Result<ConnectOptions, ConnectError> {
    let reconnect_delay = config.reconnect_delay.as_duration();
    let mut options = ConnectOptions::new()
        .connection_timeout(config.connect_timeout.as_duration())
        .request_timeout(Some(config.request_timeout.as_duration()))
        .max_reconnects(config.reconnect_limit())
        // async-nats calls this before every attempt; the first one after a loss goes at once.
        .reconnect_delay_callback(move |attempts| {
            if attempts <= 1 {
                Duration::ZERO
            } else {
                reconnect_delay
            }
        });
    if let Some(name) = &config.client_id {
        options = options.name(name);
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
        // Replies come back under the user's own prefix, the only inboxes its NATS
        // permissions let it read (`rosey nats-config`).
        if rosey_plugin_api::access::is_inbox_token(user) {
            options = options.custom_inbox_prefix(rosey_plugin_api::access::inbox_prefix(user));
        }
    }
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(path) = &config.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| ConnectError::Credentials {
                path: path.clone(),
                message: e.to_string(),
            })?;
    }
    if config.tls.is_configured() {
        options = options.require_tls(true);
    }
    if let Some(ca_file) = &config.tls.ca_file {
        options = options.add_root_certificates(ca_file.clone());
    }
    if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}
