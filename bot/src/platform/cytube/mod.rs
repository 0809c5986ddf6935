//! The CyTube connector: socketconfig discovery, Engine.IO 4 / Socket.IO over a websocket,
//! join and login, the server-driven heartbeat with a liveness watchdog, and reconnection with
//! jittered exponential backoff.

pub mod media_link;
pub mod normalize;
pub mod protocol;
pub mod proxy;
mod session;
pub mod socketconfig;

use super::{ActionError, ActionRequest, Platform, PlatformAction, PlatformEvent};
use anyhow::Context as _;
use futures::{SinkExt, StreamExt};
use normalize::{CytubeNormalizer, EdgeLimits};
use proxy::ProxyRoute;
use rosey_config::PlatformConfig;
use rosey_plugin_api::events::PlaylistAfter;
use serde_json::{json, Value};
use session::OpenSession;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// After this many failed connections in a row, wait at least [`RATE_LIMIT_FLOOR`]: models
/// CyTube's connection limit (a burst of 5 connections per IP, then one per 10 s), so it is
/// not a setting.
const FAST_RETRIES: u32 = 4;
/// The longest pause between attempts after failed logins or kicks in a row.
const SLOW_RETRY_CAP: Duration = Duration::from_secs(15 * 60);
/// The floor of the backoff after [`FAST_RETRIES`]: models CyTube's one connection per 10 s
/// once the burst is spent.
const RATE_LIMIT_FLOOR: Duration = Duration::from_secs(10);
/// How long the closing handshake may take when the bot leaves (the close frame is sent at
/// once; this bounds waiting for the server's answer on a dead link).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

type WsConnection =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<Box<dyn Transport>>>;
type WsSink = futures::stream::SplitSink<WsConnection, WsMessage>;
type WsStream = futures::stream::SplitStream<WsConnection>;

/// The CyTube connector's settings.
#[derive(Clone)]
pub struct CytubePlatform {
    domain: String,
    channel: String,
    channel_password: Option<String>,
    username: String,
    password: Option<String>,
    watchdog: Duration,
    /// How long one connection attempt (discovery, websocket, handshake) may take.
    connect_timeout: Duration,
    min_delay: Duration,
    max_delay: Duration,
    /// Largest websocket message accepted (`platform.max_frame_bytes`).
    max_frame_bytes: usize,
    /// What the normalizer refuses at the edge.
    limits: EdgeLimits,
    tls: Arc<rustls::ClientConfig>,
    /// The client for socketconfig discovery.
    http: reqwest::Client,
    /// The SOCKS5 proxy both legs go through (`platform.proxy`); `None` connects directly.
    proxy: Option<ProxyRoute>,
}

/// What the websocket runs over: a TCP stream, direct or through the proxy.
trait Transport: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Transport for T {}

impl std::fmt::Debug for CytubePlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords stay out of logs.
        f.debug_struct("CytubePlatform")
            .field("domain", &self.domain)
            .field("channel", &self.channel)
            .field("username", &self.username)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// The network or the server went away; retry soon.
    Lost(String),
    /// The server kicked us.
    Kicked(String),
    /// Login or channel password refused; retry slowly.
    LoginFailed(String),
    /// The core is gone.
    Shutdown,
}

impl CytubePlatform {
    /// The connector a configuration describes (`platform.type` = `cytube`).
    pub fn from_config(p: &PlatformConfig) -> anyhow::Result<Self> {
        let domain = p
            .domain
            .clone()
            .context("platform.domain is required for CyTube")?;
        let channel = p
            .channel
            .clone()
            .context("platform.channel is required for CyTube")?;
        // CyTube's own rule (`^[\w-]{1,30}$`); anything else would only fail at the server.
        let valid = !channel.is_empty()
            && channel.chars().count() <= 30
            && channel
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            anyhow::bail!(
                "platform.channel {channel:?} is not a CyTube channel name \
                 (1 to 30 letters, digits, '_' or '-')"
            );
        }
        let proxy = p
            .socks_proxy()
            .map_err(|m| anyhow::anyhow!("platform.proxy: {m}"))?
            .map(|socks| {
                let password = p.proxy_password.as_ref().map(|s| s.expose().to_owned());
                ProxyRoute::new(socks, password)
            });
        Ok(CytubePlatform {
            domain,
            channel,
            channel_password: p.channel_password.as_ref().map(|s| s.expose().to_owned()),
            username: p.credentials.username.clone(),
            password: p
                .credentials
                .password
                .as_ref()
                .map(|s| s.expose().to_owned()),
            watchdog: p.ping_timeout.as_duration(),
            connect_timeout: p.connect_timeout.as_duration(),
            min_delay: p.reconnect_min_delay.as_duration(),
            max_delay: p.reconnect_max_delay.as_duration(),
            max_frame_bytes: p.max_frame_bytes,
            limits: EdgeLimits {
                max_users: p.max_users,
                max_line_bytes: p.max_line_bytes,
            },
            tls: socketconfig::tls_config().context("cannot set up TLS")?,
            http: socketconfig::http_client(
                p.connect_timeout.as_duration(),
                proxy.as_ref().map(ProxyRoute::for_http).transpose()?,
            )
            .context("cannot set up the HTTP client")?,
            proxy,
        })
    }

    /// The site's URL.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The wait before the next connection after `failures` failed ones in a row; `slow_streak`
    /// counts the kicks and failed logins in a row before this one (a session that joined and
    /// was then kicked still counts: two bots under one name kick each other after joining).
    fn backoff(&self, failures: u32, slow_streak: u32, end: &End) -> Duration {
        let exp = self.min_delay.saturating_mul(1u32 << failures.min(16));
        let mut delay = exp.min(self.max_delay);
        if failures >= FAST_RETRIES {
            delay = delay.max(RATE_LIMIT_FLOOR.min(self.max_delay));
        }
        // A kick is usually a moderator's decision (or another session's, or a rate limit);
        // coming straight back would fight it. A failed login will not pass sooner either.
        if matches!(end, End::LoginFailed(_) | End::Kicked(_)) {
            // Never sooner than `reconnect_max_delay` (CyTube's guest-login throttle is about a
            // minute), and slower each time it happens again in a row: a wrong password or a
            // taken name will not fix itself, and every attempt spends a connection.
            let slow = self
                .max_delay
                .saturating_mul(1u32 << slow_streak.min(4))
                .min(SLOW_RETRY_CAP.max(self.max_delay));
            return slow.mul_f64(1.0 + fastrand::f64() / 2.0);
        }
        // Jitter in [0.5, 1.0] so that many bots do not reconnect in step.
        delay.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    async fn discover(&self) -> Result<String, String> {
        let url = socketconfig::socketconfig_url(&self.domain, &self.channel);
        let (status, body) = match socketconfig::http_get(&self.http, &url).await {
            Ok(answer) => answer,
            Err(e) => {
                return Err(match &self.proxy {
                    // reqwest's SOCKS errors are terse; a handshake of our own names the cause
                    // (down, login refused, server unreachable) as the websocket leg does.
                    Some(proxy) => match proxy.probe(&url).await {
                        Err(cause) => cause.to_string(),
                        Ok(()) => format!("through the SOCKS5 proxy {}: {e}", proxy.address()),
                    },
                    None => e.to_string(),
                });
            }
        };
        socketconfig::choose_server(status, &body, &url).map_err(|e| e.to_string())
    }

    /// The frame an action is sent as.
    fn encode_action(action: &PlatformAction) -> Result<String, ActionError> {
        let event = |name: &str, data: Value| protocol::encode_event(name, Some(&data));
        Ok(match action {
            PlatformAction::Chat(text) => event("chatMsg", json!({"msg": text, "meta": {}})),
            PlatformAction::Pm { to, content } => {
                event("pm", json!({"to": to, "msg": content, "meta": {}}))
            }
            PlatformAction::PlaylistAdd {
                url,
                next,
                temporary,
            } => {
                let link = media_link::parse(url).ok_or_else(|| {
                    ActionError::Invalid(format!("unsupported media link {url:?}"))
                })?;
                event(
                    "queue",
                    json!({
                        "id": link.id,
                        "type": link.kind,
                        "pos": if *next { "next" } else { "end" },
                        "temp": temporary,
                    }),
                )
            }
            PlatformAction::PlaylistRemove(uid) => event("delete", json!(uid)),
            PlatformAction::PlaylistJump(uid) => event("jumpTo", json!(uid)),
            PlatformAction::PlaylistMove { uid, after } => event(
                "moveMedia",
                json!({"from": uid, "after": match after {
                    PlaylistAfter::Uid(a) => json!(a),
                    PlaylistAfter::Start(_) => json!("prepend"),
                    PlaylistAfter::End(_) => json!("append"),
                }}),
            ),
            PlatformAction::PlaylistNext => protocol::encode_event("playNext", None),
            PlatformAction::Kick { user, reason } => {
                if user.chars().any(char::is_whitespace) || user.is_empty() {
                    return Err(ActionError::Invalid(format!("bad user name {user:?}")));
                }
                let text = match reason {
                    Some(r) => format!("/kick {user} {r}"),
                    None => format!("/kick {user}"),
                };
                event("chatMsg", json!({"msg": text, "meta": {}}))
            }
            PlatformAction::Clear => event("chatMsg", json!({"msg": "/clear", "meta": {}})),
            // `/afk` toggles; the core only asks when the state differs.
            PlatformAction::Afk(_) => event("chatMsg", json!({"msg": "/afk", "meta": {}})),
            PlatformAction::Pause {
                media_id,
                kind,
                current_time,
            } => event(
                "mediaUpdate",
                json!({"id": media_id, "type": kind, "currentTime": current_time, "paused": true}),
            ),
            PlatformAction::Disconnect => {
                return Err(ActionError::Invalid("a disconnect is not a frame".into()))
            }
        })
    }

    /// The TCP stream under the websocket at `url`: through the proxy when one is configured
    /// (never directly then), else straight to the server.
    async fn open_transport(&self, url: &str) -> Result<Box<dyn Transport>, String> {
        let (host, port) = proxy::host_port(url)?;
        let host = host.as_str();
        match &self.proxy {
            Some(proxy) => match proxy.connect(host, port).await {
                Ok(stream) => Ok(Box::new(stream)),
                Err(e) => Err(e.to_string()),
            },
            None => {
                let tcp = tokio::net::TcpStream::connect((host, port))
                    .await
                    .map_err(|e| format!("websocket connect to {url} failed: {e}"))?;
                // Small frames (pongs, chat) go out at once.
                let _ = tcp.set_nodelay(true);
                Ok(Box::new(tcp))
            }
        }
    }

    /// One connection from discovery to its end; `joined` tells whether it got into the
    /// channel.
    async fn session(
        &self,
        events: &mpsc::Sender<PlatformEvent>,
        actions: &mut mpsc::Receiver<ActionRequest>,
        normalizer: &mut CytubeNormalizer,
        joined: &mut bool,
    ) -> End {
        let connect = async {
            let url = self.discover().await?;
            match &self.proxy {
                None => tracing::info!(url, channel = self.channel, "connecting to CyTube"),
                Some(proxy) => tracing::info!(
                    url,
                    channel = self.channel,
                    proxy = proxy.address(),
                    "connecting to CyTube through the SOCKS5 proxy"
                ),
            }
            let connector = if url.starts_with("wss://") {
                tokio_tungstenite::Connector::Rustls(self.tls.clone())
            } else {
                tokio_tungstenite::Connector::Plain
            };
            // The size limits apply to the frame header, before its payload is read.
            let ws_config = WebSocketConfig::default()
                .max_message_size(Some(self.max_frame_bytes))
                .max_frame_size(Some(self.max_frame_bytes));
            let stream = self.open_transport(&url).await?;
            tokio_tungstenite::client_async_tls_with_config(
                url.as_str(),
                stream,
                Some(ws_config),
                Some(connector),
            )
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| format!("websocket connect to {url} failed: {e}"))
        };
        let connect = tokio::time::timeout(self.connect_timeout, connect);
        tokio::pin!(connect);
        // Actions get a prompt "not connected" while connecting, so nobody waits behind it.
        let ws = loop {
            tokio::select! {
                result = &mut connect => match result {
                    Ok(Ok(ws)) => break ws,
                    Ok(Err(e)) => return End::Lost(e),
                    Err(_) => return End::Lost("connecting timed out".into()),
                },
                request = actions.recv() => match request {
                    Some((PlatformAction::Disconnect, done)) => {
                        let _ = done.send(Ok(()));
                        return End::Shutdown;
                    }
                    Some((_, done)) => {
                        let _ = done.send(Err(ActionError::NotConnected));
                    }
                    None => return End::Shutdown,
                },
            }
        };
        let (mut sink, mut stream) = ws.split();
        let end = OpenSession::new(self, &mut sink, events, normalizer, joined)
            .serve(&mut stream, actions)
            .await;
        // Leave with a close frame whatever the reason (after `41` CyTube expects the client
        // to close); a dead link only costs the bounded wait.
        if tokio::time::timeout(CLOSE_TIMEOUT, sink.close())
            .await
            .is_err()
        {
            tracing::debug!("the websocket close handshake timed out");
        }
        end
    }
}

impl Platform for CytubePlatform {
    fn default_rank(action: &str) -> f64 {
        normalize::default_permission(action)
    }

    fn name(&self) -> &'static str {
        "cytube"
    }

    fn channel(&self) -> &str {
        &self.channel
    }

    async fn run(
        self,
        events: mpsc::Sender<PlatformEvent>,
        mut actions: mpsc::Receiver<ActionRequest>,
    ) -> anyhow::Result<()> {
        let mut normalizer = CytubeNormalizer::with_limits(self.username.clone(), self.limits);
        let mut failures: u32 = 0;
        let mut slow_streak: u32 = 0;
        loop {
            normalizer.reset();
            let mut joined = false;
            let end = self
                .session(&events, &mut actions, &mut normalizer, &mut joined)
                .await;
            let reason = match &end {
                End::Shutdown => return Ok(()),
                End::Lost(r) => r.clone(),
                End::Kicked(r) => format!("kicked: {r}"),
                End::LoginFailed(r) => r.clone(),
            };
            if joined {
                failures = 0;
                if events
                    .send(PlatformEvent::Disconnected {
                        reason: reason.clone(),
                    })
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            } else {
                failures = failures.saturating_add(1);
            }
            let slow_end = matches!(end, End::Kicked(_) | End::LoginFailed(_));
            let delay = self.backoff(failures, if slow_end { slow_streak } else { 0 }, &end);
            slow_streak = if slow_end {
                slow_streak.saturating_add(1)
            } else {
                0
            };
            match &end {
                End::LoginFailed(_) => {
                    tracing::error!(reason, ?delay, "cannot join; retrying slowly")
                }
                End::Kicked(r) if r.contains("Duplicate login") => tracing::error!(
                    user = self.username,
                    ?delay,
                    "another session logged in with the bot's name (Duplicate login); \
                     retrying slowly"
                ),
                _ => tracing::warn!(reason, ?delay, "connection ended; reconnecting"),
            }
            let wake = Instant::now() + delay;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => break,
                    request = actions.recv() => match request {
                        Some((PlatformAction::Disconnect, done)) => {
                            let _ = done.send(Ok(()));
                            return Ok(());
                        }
                        Some((_, done)) => { let _ = done.send(Err(ActionError::NotConnected)); }
                        None => return Ok(()),
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> CytubePlatform {
        let config = PlatformConfig {
            domain: Some("http://127.0.0.1:1".into()),
            channel: Some("test".into()),
            ..Default::default()
        };
        CytubePlatform::from_config(&config).unwrap()
    }

    #[test]
    fn channel_names_follow_cytube_rules() {
        for bad in ["a/b", "has space", "", &"x".repeat(31), "../x", "émoji"] {
            let config = PlatformConfig {
                domain: Some("http://127.0.0.1:1".into()),
                channel: Some(bad.to_owned()),
                ..Default::default()
            };
            assert!(CytubePlatform::from_config(&config).is_err(), "{bad:?}");
        }
        assert_eq!(platform().channel(), "test");
    }

    #[test]
    fn backoff_grows_with_a_floor_and_slows_for_login_failures() {
        let p = platform();
        let lost = End::Lost("x".into());
        let first = p.backoff(0, 0, &lost);
        assert!(
            first >= Duration::from_millis(500) && first <= Duration::from_secs(1),
            "{first:?}"
        );
        let fifth = p.backoff(5, 0, &lost);
        assert!(fifth >= Duration::from_secs(10), "{fifth:?}");
        assert!(p.backoff(30, 0, &lost) <= Duration::from_secs(60));
        for reason in ["Duplicate login", "bye", "Rate limit exceeded"] {
            // After a session that had joined (`failures` reset to 0).
            let slow = p.backoff(0, 0, &End::Kicked(reason.into()));
            assert!(slow >= Duration::from_secs(30), "{reason}: {slow:?}");
        }
        let first_login = p.backoff(1, 0, &End::LoginFailed("x".into()));
        assert!(
            first_login >= Duration::from_secs(60) && first_login <= Duration::from_secs(90),
            "{first_login:?}"
        );
        // Kicked or refused again and again, joined or not: slower each time, up to a quarter
        // of an hour.
        let fourth = p.backoff(0, 3, &End::Kicked("Duplicate login".into()));
        assert!(fourth >= Duration::from_secs(8 * 60), "{fourth:?}");
        let many = p.backoff(20, 20, &End::LoginFailed("x".into()));
        assert!(
            many >= Duration::from_secs(15 * 60) && many <= Duration::from_secs(23 * 60),
            "{many:?}"
        );
    }

    #[test]
    fn actions_encode_to_cytube_frames() {
        let enc = |a| CytubePlatform::encode_action(&a).unwrap();
        assert_eq!(
            enc(PlatformAction::Chat("hi".into())),
            r#"42["chatMsg",{"meta":{},"msg":"hi"}]"#
        );
        assert_eq!(
            enc(PlatformAction::Pm {
                to: "bob".into(),
                content: "yo".into()
            }),
            r#"42["pm",{"meta":{},"msg":"yo","to":"bob"}]"#
        );
        assert_eq!(
            enc(PlatformAction::PlaylistAdd {
                url: "https://youtu.be/abc".into(),
                next: true,
                temporary: true
            }),
            r#"42["queue",{"id":"abc","pos":"next","temp":true,"type":"yt"}]"#
        );
        assert_eq!(enc(PlatformAction::PlaylistRemove(7)), r#"42["delete",7]"#);
        assert_eq!(enc(PlatformAction::PlaylistJump(7)), r#"42["jumpTo",7]"#);
        assert_eq!(
            enc(PlatformAction::PlaylistMove {
                uid: 7,
                after: PlaylistAfter::Start(rosey_plugin_api::events::Prepend::Prepend)
            }),
            r#"42["moveMedia",{"after":"prepend","from":7}]"#
        );
        assert_eq!(
            enc(PlatformAction::PlaylistMove {
                uid: 7,
                after: PlaylistAfter::End(rosey_plugin_api::events::Append::Append)
            }),
            r#"42["moveMedia",{"after":"append","from":7}]"#
        );
        assert_eq!(enc(PlatformAction::PlaylistNext), r#"42["playNext"]"#);
        assert_eq!(
            enc(PlatformAction::Kick {
                user: "eve".into(),
                reason: Some("spam".into())
            }),
            r#"42["chatMsg",{"meta":{},"msg":"/kick eve spam"}]"#
        );
        assert!(CytubePlatform::encode_action(&PlatformAction::Kick {
            user: "a b".into(),
            reason: None
        })
        .is_err());
        assert!(matches!(
            CytubePlatform::encode_action(&PlatformAction::PlaylistAdd {
                url: "nope".into(),
                next: false,
                temporary: false
            }),
            Err(ActionError::Invalid(_))
        ));
    }
}
