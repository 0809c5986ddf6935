//! Server discovery: `GET <domain>/socketconfig/<channel>.json` and the choice of server.
//!
//! The request goes through reqwest (rustls with `ring`); the response is one small JSON
//! document, read up to a size limit.

use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The largest socketconfig response read.
const MAX_RESPONSE: usize = 256 * 1024;

/// Why discovery failed.
#[derive(Debug, Error)]
pub enum DiscoveryError {
    /// The URL is not `http://` or `https://` with a host.
    #[error("bad URL {0:?}")]
    BadUrl(String),
    /// Network or TLS failure.
    #[error("cannot fetch {url}: {source}")]
    Io {
        /// The URL.
        url: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("fetching {0} timed out")]
    Timeout(String),
    /// Not an HTTP response.
    #[error("bad HTTP response from {0}")]
    BadResponse(String),
    /// The server answered with an error (`{"error": ...}` or a non-200 status).
    #[error("{url} answered {status}: {message}")]
    Server {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The server list is empty or unusable.
    #[error("{0} lists no usable server")]
    NoServer(String),
}

/// A parsed `http(s)://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Whether it is `https`.
    pub secure: bool,
    /// The host name or address (IPv6 without brackets).
    pub host: String,
    /// The port (default 80 or 443).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses an `http://` or `https://` URL (also accepts `ws://` and `wss://`).
    pub fn parse(url: &str) -> Result<HttpUrl, DiscoveryError> {
        let bad = || DiscoveryError::BadUrl(url.to_owned());
        let (secure, rest) = if let Some(r) = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("wss://"))
        {
            (true, r)
        } else if let Some(r) = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
        {
            (false, r)
        } else {
            return Err(bad());
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '@') {
            return Err(bad());
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if secure => 443,
            None => 80,
        };
        Ok(HttpUrl {
            secure,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// `host:port` as the `Host` header and URLs write it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A TLS configuration with the system's root certificates and the `ring` provider.
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        tracing::warn!("no system root certificates found; https and wss will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The HTTP client used for discovery: rustls with the `ring` provider and the system's roots.
pub fn http_client(
    timeout: Duration,
    proxy: Option<reqwest::Proxy>,
) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .user_agent(concat!("rosey-bot/", env!("CARGO_PKG_VERSION")));
    // An explicit proxy replaces the environment's (HTTP_PROXY...), so the lookup goes exactly
    // where the websocket goes.
    match proxy {
        Some(proxy) => builder.proxy(proxy),
        None => builder,
    }
    .build()
}

/// GETs `url` and returns the status and body (at most `MAX_RESPONSE` bytes).
pub async fn http_get(
    client: &reqwest::Client,
    url: &str,
) -> Result<(u16, Vec<u8>), DiscoveryError> {
    let io = |e: reqwest::Error| {
        if e.is_timeout() {
            DiscoveryError::Timeout(url.to_owned())
        } else {
            DiscoveryError::Io {
                url: url.to_owned(),
                source: std::io::Error::other(error_chain(&e)),
            }
        }
    };
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(io)?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(io)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_RESPONSE {
            return Err(DiscoveryError::BadResponse(url.to_owned()));
        }
    }
    Ok((status, body))
}

/// `error` followed by its causes: reqwest's own message is only "error sending request",
/// and the reason an operator needs (refused, TLS certificate, DNS) is in the sources.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[derive(Debug, Deserialize)]
struct ServerEntry {
    url: String,
    #[serde(default)]
    secure: bool,
    #[serde(default)]
    ipv6: bool,
}

#[derive(Debug, Deserialize)]
struct SocketConfig {
    #[serde(default)]
    servers: Vec<ServerEntry>,
    #[serde(default)]
    error: Option<String>,
}

/// The socketconfig URL of a channel on a site.
pub fn socketconfig_url(domain: &str, channel: &str) -> String {
    format!(
        "{}/socketconfig/{channel}.json",
        domain.trim_end_matches('/')
    )
}

/// Picks the websocket URL from a socketconfig body: the first secure non-IPv6 server, else
/// the first non-IPv6 one, else the first.
pub fn choose_server(status: u16, body: &[u8], url: &str) -> Result<String, DiscoveryError> {
    let parsed: Result<SocketConfig, _> = serde_json::from_slice(body);
    let config = match parsed {
        Ok(c) => c,
        Err(_) => {
            return Err(DiscoveryError::Server {
                url: url.to_owned(),
                status,
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            })
        }
    };
    if let Some(error) = config.error {
        return Err(DiscoveryError::Server {
            url: url.to_owned(),
            status,
            message: error,
        });
    }
    if status != 200 {
        return Err(DiscoveryError::Server {
            url: url.to_owned(),
            status,
            message: "unexpected status".into(),
        });
    }
    let pick = config
        .servers
        .iter()
        .find(|s| s.secure && !s.ipv6)
        .or_else(|| config.servers.iter().find(|s| !s.ipv6))
        .or_else(|| config.servers.first())
        .ok_or_else(|| DiscoveryError::NoServer(url.to_owned()))?;
    let server = HttpUrl::parse(&pick.url).map_err(|_| DiscoveryError::NoServer(url.to_owned()))?;
    let scheme = if pick.secure || server.secure {
        "wss"
    } else {
        "ws"
    };
    Ok(format!(
        "{scheme}://{}/socket.io/?EIO=4&transport=websocket",
        server.authority()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = HttpUrl::parse("https://cytu.be").unwrap();
        assert_eq!(
            (u.secure, u.host.as_str(), u.port, u.path.as_str()),
            (true, "cytu.be", 443, "/")
        );
        let u = HttpUrl::parse("http://127.0.0.1:1337/socketconfig/x.json").unwrap();
        assert_eq!(
            (u.secure, u.port, u.path.as_str()),
            (false, 1337, "/socketconfig/x.json")
        );
        let u = HttpUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority()),
            ("::1", "[::1]:8080".to_owned())
        );
        for bad in ["cytu.be", "ftp://x", "http://", "http://a:b", "http://u@h"] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn servers_are_chosen_like_the_web_client() {
        let body = br#"{"servers":[{"url":"https://cytu.be:10443","secure":true},{"url":"http://sea.cytu.be:8880","secure":false}]}"#;
        assert_eq!(
            choose_server(200, body, "u").unwrap(),
            "wss://cytu.be:10443/socket.io/?EIO=4&transport=websocket"
        );
        let body = br#"{"servers":[{"url":"http://127.0.0.1:1337","secure":false}]}"#;
        assert_eq!(
            choose_server(200, body, "u").unwrap(),
            "ws://127.0.0.1:1337/socket.io/?EIO=4&transport=websocket"
        );
        let body = br#"{"servers":[{"url":"https://[::1]:1","secure":true,"ipv6":true},{"url":"http://h:2","secure":false}]}"#;
        assert_eq!(
            choose_server(200, body, "u").unwrap(),
            "ws://h:2/socket.io/?EIO=4&transport=websocket"
        );
        let err = choose_server(404, br#"{"error":"Channel \"$bad\" does not exist."}"#, "u")
            .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(matches!(
            choose_server(200, br#"{"servers":[]}"#, "u"),
            Err(DiscoveryError::NoServer(_))
        ));
        assert!(matches!(
            choose_server(502, b"<html>bad gateway</html>", "u"),
            Err(DiscoveryError::Server { status: 502, .. })
        ));
    }

    #[test]
    fn fetch_errors_carry_their_causes() {
        #[derive(Debug, Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        assert_eq!(
            error_chain(&Outer(inner)),
            "error sending request: invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn socketconfig_url_is_per_channel() {
        assert_eq!(
            socketconfig_url("https://cytu.be/", "mlp"),
            "https://cytu.be/socketconfig/mlp.json"
        );
    }
}
