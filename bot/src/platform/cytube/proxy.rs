//! The CyTube connection through `platform.proxy`: a SOCKS5 proxy carries both legs, the
//! `/socketconfig` lookup (through reqwest's SOCKS support) and the websocket (a SOCKS5 stream
//! under the TLS and websocket layers). With a proxy configured nothing connects directly: a
//! proxy that is down or refuses ends the attempt with the cause, and the usual reconnect with
//! backoff follows.

use rosey_config::SocksProxy;
use std::fmt;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;

/// Why a connection through the proxy failed.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// Nothing answered at the proxy's address.
    #[error("the SOCKS5 proxy {proxy} is not reachable ({source})")]
    Unreachable {
        /// The proxy.
        proxy: String,
        /// What the connection said.
        source: tokio_socks::Error,
    },
    /// The proxy refused our credentials, or wants some we do not have.
    #[error(
        "the SOCKS5 proxy {proxy} refused the login ({source}); check platform.proxy's user \
             and platform.proxy_password"
    )]
    Auth {
        /// The proxy.
        proxy: String,
        /// What the proxy said.
        source: tokio_socks::Error,
    },
    /// The proxy could not, or would not, reach the chat server.
    #[error("the SOCKS5 proxy {proxy} could not connect to {target} ({source})")]
    Target {
        /// The proxy.
        proxy: String,
        /// The chat server asked for.
        target: String,
        /// What the proxy said.
        source: tokio_socks::Error,
    },
    /// `socks5://` resolves here, and the chat server's name did not resolve.
    #[error(
        "cannot resolve {target} (platform.proxy is socks5://, which resolves names \
             here; socks5h:// lets the proxy resolve them): {source}"
    )]
    Resolve {
        /// The chat server asked for.
        target: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// reqwest would not take the proxy's address.
    #[error("the SOCKS5 proxy {proxy} cannot be used for HTTP: {source}")]
    Http {
        /// The proxy.
        proxy: String,
        /// reqwest's error.
        source: reqwest::Error,
    },
}

/// A configured SOCKS5 proxy with its password: how the CyTube connector reaches the server.
#[derive(Clone)]
pub struct ProxyRoute {
    proxy: SocksProxy,
    password: Option<String>,
}

impl fmt::Debug for ProxyRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("ProxyRoute")
            .field("proxy", &self.address())
            .field("username", &self.proxy.username)
            .field("remote_dns", &self.proxy.remote_dns)
            .finish()
    }
}

impl ProxyRoute {
    /// The route through `proxy`, logging in with its user name and `password` when it has one.
    pub fn new(proxy: SocksProxy, password: Option<String>) -> Self {
        ProxyRoute { proxy, password }
    }

    /// `host:port` (`[v6]:port`), for logs and URLs.
    pub fn address(&self) -> String {
        if self.proxy.host.contains(':') {
            format!("[{}]:{}", self.proxy.host, self.proxy.port)
        } else {
            format!("{}:{}", self.proxy.host, self.proxy.port)
        }
    }

    /// Whether the proxy resolves the chat server's name.
    pub fn remote_dns(&self) -> bool {
        self.proxy.remote_dns
    }

    /// The same proxy for reqwest (the `/socketconfig` leg), credentials included.
    pub fn for_http(&self) -> Result<reqwest::Proxy, ProxyError> {
        let scheme = if self.proxy.remote_dns {
            "socks5h"
        } else {
            "socks5"
        };
        let http = |source| ProxyError::Http {
            proxy: self.address(),
            source,
        };
        let url = format!("{scheme}://{}", self.address());
        let mut url = reqwest::Url::parse(&url).map_err(|e| ProxyError::Resolve {
            target: self.address(),
            source: std::io::Error::other(e),
        })?;
        if let Some(user) = &self.proxy.username {
            // The setters percent-encode; reqwest decodes them again for the SOCKS login.
            let named = url.set_username(user).is_ok()
                && url
                    .set_password(self.password.as_deref().or(Some("")))
                    .is_ok();
            if !named {
                return Err(ProxyError::Resolve {
                    target: self.address(),
                    source: std::io::Error::other("the proxy URL takes no user name"),
                });
            }
        }
        reqwest::Proxy::all(url).map_err(http)
    }

    /// A TCP stream to `host:port` through the proxy: the name goes to the proxy unless the
    /// configuration asked to resolve it here (`socks5://`).
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Socks5Stream<TcpStream>, ProxyError> {
        let proxy = (self.proxy.host.as_str(), self.proxy.port);
        let target = if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            tokio_socks::TargetAddr::Ip((ip, port).into())
        } else if self.proxy.remote_dns {
            tokio_socks::TargetAddr::Domain(host.into(), port)
        } else {
            let resolved = tokio::net::lookup_host((host, port))
                .await
                .and_then(|mut addrs| {
                    addrs
                        .next()
                        .ok_or_else(|| std::io::Error::other("no address"))
                })
                .map_err(|source| ProxyError::Resolve {
                    target: format!("{host}:{port}"),
                    source,
                })?;
            tokio_socks::TargetAddr::Ip(resolved)
        };
        let result = match &self.proxy.username {
            Some(user) => {
                let password = self.password.as_deref().unwrap_or("");
                Socks5Stream::connect_with_password(proxy, target, user, password).await
            }
            None => Socks5Stream::connect(proxy, target).await,
        };
        result.map_err(|source| self.classify(source, host, port))
    }

    /// Opens a connection to `url`'s server through the proxy and closes it: the cause, in
    /// this module's words, when a request through the proxy failed.
    pub async fn probe(&self, url: &str) -> Result<(), ProxyError> {
        let (host, port) = host_port(url).map_err(|e| ProxyError::Resolve {
            target: url.to_owned(),
            source: std::io::Error::other(e),
        })?;
        self.connect(&host, port).await.map(drop)
    }

    fn classify(&self, source: tokio_socks::Error, host: &str, port: u16) -> ProxyError {
        use tokio_socks::Error as E;
        let proxy = self.address();
        match source {
            E::ProxyServerUnreachable | E::Io(_) => ProxyError::Unreachable { proxy, source },
            E::NoAcceptableAuthMethods
            | E::PasswordAuthFailure(_)
            | E::AuthorizationRequired
            | E::InvalidAuthValues(_)
            | E::UnknownAuthMethod => ProxyError::Auth { proxy, source },
            source => ProxyError::Target {
                proxy,
                target: format!("{host}:{port}"),
                source,
            },
        }
    }
}

/// The host (without IPv6 brackets) and port a `http(s)://` or `ws(s)://` URL names.
pub fn host_port(url: &str) -> Result<(String, u16), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL {url}: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("the URL {url} names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| format!("the URL {url} names no port"))?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: &str, username: Option<&str>, password: Option<&str>) -> ProxyRoute {
        ProxyRoute::new(
            SocksProxy {
                host: host.to_owned(),
                port: 1080,
                username: username.map(str::to_owned),
                remote_dns: true,
            },
            password.map(str::to_owned),
        )
    }

    #[test]
    fn addresses_and_debug_never_show_the_password() {
        assert_eq!(route("::1", None, None).address(), "[::1]:1080");
        let r = route("proxy", Some("alice"), Some("s3cret"));
        assert_eq!(r.address(), "proxy:1080");
        assert!(!format!("{r:?}").contains("s3cret"));
        assert!(r.for_http().is_ok());
    }

    #[test]
    fn urls_name_their_host_and_port() {
        assert_eq!(
            host_port("wss://cytu.be/x"),
            Ok(("cytu.be".to_owned(), 443))
        );
        assert_eq!(host_port("http://[::1]:8080"), Ok(("::1".to_owned(), 8080)));
        assert_eq!(host_port("ws://10.0.0.1"), Ok(("10.0.0.1".to_owned(), 80)));
        assert!(host_port("not a url").is_err());
    }

    #[tokio::test]
    async fn a_proxy_that_is_down_is_named_in_the_error() {
        // A port nothing listens on: bind one, then free it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut r = route("127.0.0.1", None, None);
        r.proxy.port = port;
        let err = r.connect("cytube.example", 443).await.unwrap_err();
        assert!(matches!(err, ProxyError::Unreachable { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}
