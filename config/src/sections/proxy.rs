//! `platform.proxy`: the SOCKS5 proxy the chat connection goes through, in the original's
//! `host[:port]` form or as a `socks5://` / `socks5h://` URL.

/// The port a proxy listens on when `platform.proxy` names none (the original's default).
pub const DEFAULT_SOCKS_PORT: u16 = 1080;

/// A SOCKS5 proxy, as `platform.proxy` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksProxy {
    /// The proxy's host name or IP address (without brackets for IPv6).
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// The user name for the proxy's user/password authentication; the password is
    /// `platform.proxy_password`.
    pub username: Option<String>,
    /// Whether the proxy resolves the chat server's host name (`socks5h://` and the bare
    /// `host[:port]` form), so that no DNS query leaves this machine; `socks5://` resolves here.
    pub remote_dns: bool,
}

impl SocksProxy {
    /// Reads `host[:port]`, `socks5://[user@]host[:port]` or `socks5h://[user@]host[:port]`.
    pub fn parse(text: &str) -> Result<SocksProxy, String> {
        let text = text.trim();
        let (remote_dns, rest) = match text.split_once("://") {
            None => (true, text),
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "socks5h" => (true, rest),
                "socks5" => (false, rest),
                other => {
                    return Err(format!(
                        "{other}:// proxies are not supported; use a SOCKS5 proxy \
                         (socks5h://host:port, or host:port)"
                    ))
                }
            },
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err("a proxy is host[:port] (or a socks5h:// URL) with no path".to_owned());
        }
        let (username, address) = match rest.rsplit_once('@') {
            None => (None, rest),
            Some((user, _)) if user.contains(':') => {
                return Err(
                    "put the proxy's password in platform.proxy_password (or its _env \
                            / _file form), not in the URL"
                        .to_owned(),
                )
            }
            Some((user, _)) if user.is_empty() || user.contains('@') => {
                return Err("the proxy's user name is empty or has an '@'".to_owned())
            }
            Some((user, address)) => (Some(user.to_owned()), address),
        };
        let (host, port) = split_host_port(address)?;
        if host.is_empty() {
            return Err("the proxy's host is empty".to_owned());
        }
        Ok(SocksProxy {
            host,
            port,
            username,
            remote_dns,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let port = |text: &str| match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a port (1 to 65535)")),
        Ok(p) => Ok(p),
    };
    if let Some(v6) = address.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("an IPv6 proxy address needs its closing ']'")?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_owned(), port(p)?)),
            None if after.is_empty() => Ok((host.to_owned(), DEFAULT_SOCKS_PORT)),
            None => Err(format!("unexpected {after:?} after the IPv6 address")),
        };
    }
    match address.split_once(':') {
        Some((_, p)) if p.contains(':') => {
            Err("write an IPv6 proxy address in brackets: [::1]:1080".to_owned())
        }
        Some((host, p)) => Ok((host.to_owned(), port(p)?)),
        None => Ok((address.to_owned(), DEFAULT_SOCKS_PORT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(host: &str, port: u16, username: Option<&str>, remote_dns: bool) -> SocksProxy {
        SocksProxy {
            host: host.to_owned(),
            port,
            username: username.map(str::to_owned),
            remote_dns,
        }
    }

    #[test]
    fn the_originals_form_and_urls() {
        let p = SocksProxy::parse;
        assert_eq!(
            p("proxy.example"),
            Ok(proxy("proxy.example", 1080, None, true))
        );
        assert_eq!(p("10.0.0.1:9050"), Ok(proxy("10.0.0.1", 9050, None, true)));
        assert_eq!(
            p("socks5h://alice@tor:9050/"),
            Ok(proxy("tor", 9050, Some("alice"), true))
        );
        assert_eq!(
            p("SOCKS5://127.0.0.1"),
            Ok(proxy("127.0.0.1", 1080, None, false))
        );
        assert_eq!(
            p("socks5h://[::1]:1081"),
            Ok(proxy("::1", 1081, None, true))
        );
        assert_eq!(p("[::1]"), Ok(proxy("::1", 1080, None, true)));
    }

    #[test]
    fn what_it_refuses_says_why() {
        let err = |text| SocksProxy::parse(text).unwrap_err();
        assert!(err("http://proxy:3128").contains("not supported"));
        assert!(err("socks4://proxy").contains("not supported"));
        assert!(err("socks5h://alice:secret@proxy").contains("proxy_password"));
        assert!(err("proxy:0").contains("not a port"));
        assert!(err("proxy:99999").contains("not a port"));
        assert!(err("::1").contains("brackets"));
        assert!(err("socks5h://proxy/path").contains("no path"));
        assert!(err("socks5h://:1080").contains("empty"));
        assert!(err("socks5h://@proxy").contains("user name"));
    }
}
