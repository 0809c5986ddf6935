//! `web`: rosey-web, the operator's status page and HTTP API.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::Problem;
use crate::secret::Secret;

/// Where rosey-web listens unless told: loopback, on a port that clashes with neither CyTube's
/// 8080 nor NATS's 4222 and 8222.
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:8477";

/// The `web` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "an object")]
pub struct WebConfig {
    /// `host:port` to listen on; port 0 picks a free one (tests).
    pub listen: String,
    /// The admin credential (`password_env` / `password_file` keep it out of the file): token
    /// administration and plugin control need it, and so does everything else when bound
    /// beyond loopback unless `public_read` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Bound beyond loopback, let anyone read the page and the GET routes.
    pub public_read: bool,
    /// `/api/say` requests per token per minute.
    pub say_per_minute: u32,
    /// The longest `/api/say` message, in characters.
    pub say_max_chars: usize,
    /// Chat lines the page keeps and shows.
    pub chat_lines: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_WEB_LISTEN.to_owned(),
            password: None,
            public_read: false,
            say_per_minute: 10,
            say_max_chars: 240,
            chat_lines: 300,
        }
    }
}

impl WebConfig {
    /// The listen address, parsed (an IP address and a port; validation checked it on load).
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|e| {
            format!(
                "web.listen: {:?} is not an IP address and port ({e})",
                self.listen
            )
        })
    }

    /// Checks the section's rules.
    pub(crate) fn validate(&self) -> Result<(), Problem> {
        self.listen_addr()
            .map_err(|e| Problem::new("web.listen", e))?;
        super::secret_non_empty("web.password", self.password.as_ref())?;
        if self.say_per_minute == 0 {
            return Err(Problem::new("web.say_per_minute", "must be greater than 0"));
        }
        if !(1..=10_000).contains(&self.say_max_chars) {
            return Err(Problem::new("web.say_max_chars", "must be 1 to 10000"));
        }
        if !(1..=10_000).contains(&self.chat_lines) {
            return Err(Problem::new("web.chat_lines", "must be 1 to 10000"));
        }
        Ok(())
    }
}
