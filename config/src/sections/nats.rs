//! `nats`: where the message bus is and how every process logs in to it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Problem;
use crate::seconds::Seconds;
use crate::secret::Secret;
use crate::sections::{require_non_empty, resolve_opt, secret_non_empty};

/// The `nats` section, shared by every process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct NatsConfig {
    /// Server URL (`nats://host:4222`); a comma-separated list gives several servers.
    pub server: String,
    /// Connection name shown by the server's monitoring.
    pub client_id: Option<String>,
    /// Accepted for compatibility with the PRD example and ignored (a NATS Streaming notion).
    pub cluster_id: Option<String>,
    /// Pause between reconnect attempts after a connection is lost.
    pub reconnect_delay: Seconds,
    /// Reconnect attempts after a loss: -1 retries forever.
    pub max_reconnects: i64,
    /// User name for user/password authentication.
    pub user: Option<String>,
    /// Password for user/password authentication.
    pub password: Option<Secret>,
    /// Token authentication.
    pub token: Option<Secret>,
    /// A `.creds` file (JWT and NKey seed).
    #[serde(serialize_with = "super::ser_opt_path")]
    pub creds_file: Option<PathBuf>,
    /// TLS certificates.
    pub tls: TlsConfig,
    /// Timeout of one connection attempt.
    pub connect_timeout: Seconds,
    /// How long a process keeps retrying its first connection before giving up.
    pub startup_retry: Seconds,
    /// Default timeout of NATS requests.
    pub request_timeout: Seconds,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            server: "nats://localhost:4222".to_owned(),
            client_id: None,
            cluster_id: None,
            reconnect_delay: Seconds::from_secs(2),
            max_reconnects: -1,
            user: None,
            password: None,
            token: None,
            creds_file: None,
            tls: TlsConfig::default(),
            connect_timeout: Seconds::from_secs(5),
            startup_retry: Seconds::from_secs(5),
            request_timeout: Seconds::from_secs(2),
        }
    }
}

/// The environment variable naming the NATS user a process logs in as, over `nats.user`:
/// `rosey up` hands each child its role's user this way (see `docs/NATS_SETUP.md`).
pub const USER_ENV: &str = "ROSEY_NATS_USER";
/// The password of [`USER_ENV`]'s user, over `nats.password`; kept off command lines.
pub const PASSWORD_ENV: &str = "ROSEY_NATS_PASSWORD";

impl NatsConfig {
    /// Logs in as [`USER_ENV`] with [`PASSWORD_ENV`] when both are set: one configuration
    /// file serves every process, each started with its own role's credentials.
    pub fn apply_credentials_env(&mut self) {
        let user = std::env::var(USER_ENV).ok().filter(|u| !u.is_empty());
        let password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
        if let (Some(user), Some(password)) = (user, password) {
            self.user = Some(user);
            self.password = Some(Secret::new(password));
            self.token = None;
            self.creds_file = None;
        }
    }

    /// The reconnect limit as async-nats wants it: `None` means forever.
    pub fn reconnect_limit(&self) -> Option<usize> {
        usize::try_from(self.max_reconnects).ok()
    }

    /// The server URLs, split on commas and trimmed.
    pub fn servers(&self) -> Vec<&str> {
        self.server
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Checks the rules serde cannot express.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        require_non_empty("nats.server", &self.server)?;
        if self.servers().is_empty() {
            return Err(Problem::new("nats.server", "must name at least one server"));
        }
        if self.max_reconnects == 0 || self.max_reconnects < -1 {
            return Err(Problem::new(
                "nats.max_reconnects",
                format!(
                    "must be -1 (retry forever) or a positive count, found {}",
                    self.max_reconnects
                ),
            ));
        }
        secret_non_empty("nats.password", self.password.as_ref())?;
        secret_non_empty("nats.token", self.token.as_ref())?;
        match (&self.user, &self.password) {
            (Some(_), None) => {
                return Err(Problem::new(
                    "nats.password",
                    "required when nats.user is set",
                ))
            }
            (None, Some(_)) => {
                return Err(Problem::new(
                    "nats.user",
                    "required when nats.password is set",
                ))
            }
            _ => {}
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) => Err(Problem::new(
                "nats.tls.key_file",
                "required when nats.tls.cert_file is set",
            )),
            (None, Some(_)) => Err(Problem::new(
                "nats.tls.cert_file",
                "required when nats.tls.key_file is set",
            )),
            _ => Ok(()),
        }
    }

    /// Makes relative paths relative to the configuration file's folder.
    pub(crate) fn resolve_paths(&mut self, base_dir: &Path) {
        resolve_opt(base_dir, &mut self.creds_file);
        resolve_opt(base_dir, &mut self.tls.ca_file);
        resolve_opt(base_dir, &mut self.tls.cert_file);
        resolve_opt(base_dir, &mut self.tls.key_file);
    }
}

/// TLS files for the NATS connection; giving any of them requires TLS.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct TlsConfig {
    /// Extra root certificate (PEM) to trust, e.g. a private CA.
    #[serde(serialize_with = "super::ser_opt_path")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(serialize_with = "super::ser_opt_path")]
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[serde(serialize_with = "super::ser_opt_path")]
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether any TLS file is given.
    pub fn is_configured(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}
