//! Who may do what. Bound to loopback, the page and GET routes are open; bound elsewhere they
//! need the admin login unless `web.public_read`. Token administration and plugin control need
//! the admin credential always (HTTP Basic, user `admin`), and from a browser also the page's
//! CSRF token: a cookie or a cached Basic login alone never changes anything.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use base64::Engine as _;
use rosey_config::Secret;

/// The admin's user name in HTTP Basic.
pub const ADMIN_USER: &str = "admin";
/// The header that carries the page's CSRF token.
pub const CSRF_HEADER: &str = "x-rosey-csrf";

/// The access rules of one rosey-web.
#[derive(Debug, Clone)]
pub struct Access {
    /// Whether it listens on loopback only.
    pub loopback: bool,
    /// `web.public_read`.
    pub public_read: bool,
    /// `web.password`.
    pub password: Option<Secret>,
    /// This process's CSRF token, given to the admin's page.
    pub csrf: String,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 401 or 403.
    pub status: StatusCode,
    /// What to tell the client.
    pub message: String,
    /// Whether to ask the browser for a login.
    pub challenge: bool,
}

impl Refusal {
    /// The `WWW-Authenticate` value for a challenge.
    pub fn challenge_header() -> HeaderValue {
        HeaderValue::from_static("Basic realm=\"rosey\", charset=\"UTF-8\"")
    }
}

/// Compares without stopping at the first difference, so timing says nothing about a password.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Access {
    /// Whether the request carries the admin credential.
    pub fn is_admin(&self, headers: &HeaderMap) -> bool {
        let Some(password) = &self.password else {
            return false;
        };
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(encoded) = value.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let expected = format!("{ADMIN_USER}:{}", password.expose());
        same(&decoded, expected.as_bytes())
    }

    /// May this request read the page and the GET routes?
    pub fn may_read(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.loopback || self.public_read || self.is_admin(headers) {
            return Ok(());
        }
        Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: "rosey-web listens beyond loopback without web.public_read: log in as admin"
                .to_owned(),
            challenge: true,
        })
    }

    /// May this request change things (tokens, plugins)?
    pub fn may_administer(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.password.is_none() {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: "no admin credential is configured (set web.password, web.password_env \
                          or web.password_file); token administration and plugin control are off"
                    .to_owned(),
                challenge: false,
            });
        }
        if !self.is_admin(headers) {
            return Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "admin login required (HTTP Basic, user admin)".to_owned(),
                challenge: true,
            });
        }
        Ok(())
    }

    /// A state-changing request must not come from another site: with the CSRF header it must
    /// carry this process's token; without it, it must not look like a browser's (no `Origin`,
    /// `Sec-Fetch-Site` or `Cookie`), since a script on another site cannot set the header.
    pub fn check_csrf(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let refuse = |message: &str| Refusal {
            status: StatusCode::FORBIDDEN,
            message: message.to_owned(),
            challenge: false,
        };
        if let Some(token) = headers.get(CSRF_HEADER) {
            return if same(token.as_bytes(), self.csrf.as_bytes()) {
                Ok(())
            } else {
                Err(refuse("the X-Rosey-CSRF token is wrong; reload the page"))
            };
        }
        let browser = headers.contains_key(header::ORIGIN)
            || headers.contains_key("sec-fetch-site")
            || headers.contains_key(header::COOKIE);
        if browser {
            return Err(refuse(
                "a browser request that changes state needs the page's X-Rosey-CSRF header",
            ));
        }
        Ok(())
    }
}

/// A fresh random CSRF token.
pub fn new_csrf_token() -> String {
    let mut bytes = [0u8; 24];
    // Without OS randomness the process-unique inbox id is still unguessable from outside.
    if getrandom::getrandom(&mut bytes).is_err() {
        return format!("{:x}", std::process::id());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(loopback: bool, public_read: bool, password: Option<&str>) -> Access {
        Access {
            loopback,
            public_read,
            password: password.map(Secret::new),
            csrf: "tok".into(),
        }
    }

    fn basic(user_pw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pw)
        );
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn read_rules_follow_the_binding() {
        let none = HeaderMap::new();
        assert!(access(true, false, None).may_read(&none).is_ok());
        assert!(access(false, true, Some("pw")).may_read(&none).is_ok());
        let refused = access(false, false, Some("pw"))
            .may_read(&none)
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(access(false, false, Some("pw"))
            .may_read(&basic("admin:pw"))
            .is_ok());
        assert!(access(false, false, Some("pw"))
            .may_read(&basic("admin:px"))
            .is_err());
    }

    #[test]
    fn admin_needs_a_configured_credential() {
        let no_pw = access(true, false, None)
            .may_administer(&basic("admin:"))
            .unwrap_err();
        assert_eq!(no_pw.status, StatusCode::FORBIDDEN);
        assert!(no_pw.message.contains("web.password"));
        assert!(access(true, false, Some("pw"))
            .may_administer(&basic("admin:pw"))
            .is_ok());
        assert_eq!(
            access(true, false, Some("pw"))
                .may_administer(&basic("bob:pw"))
                .unwrap_err()
                .status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn browsers_need_the_csrf_token() {
        let a = access(true, false, Some("pw"));
        assert!(a.check_csrf(&HeaderMap::new()).is_ok(), "curl-like client");
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert_eq!(a.check_csrf(&h).unwrap_err().status, StatusCode::FORBIDDEN);
        h.insert(CSRF_HEADER, "tok".parse().unwrap());
        assert!(a.check_csrf(&h).is_ok());
        h.insert(CSRF_HEADER, "nope".parse().unwrap());
        assert!(a.check_csrf(&h).is_err());
    }
}
