//! A mock CyTube server for the bot tests, speaking the frames recorded in
//! `cytube-protocol.md`: `/socketconfig/<channel>.json` over HTTP, then Engine.IO 4 /
//! Socket.IO over a plain websocket (open packet, `40` connect, join and login replies,
//! history replay before the user list, chat and PM echoes, pings, kicks and connect refusals).
//!
//! It is written independently of the bot's codec, so the two check each other.
//!
//! With [`MockOptions::tls`] set it serves both over TLS instead (https and wss on
//! `localhost`), with a certificate from a [`TestCa`] made by the test.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// The channel it serves.
    pub channel: String,
    /// `chatMsg` replayed on join before the user list: `(username, html)`.
    pub history: Vec<(String, String)>,
    /// Users already in the channel (CyTube user objects).
    pub users: Vec<Value>,
    /// The bot's rank once joined.
    pub bot_rank: f64,
    /// The ping interval announced in the open packet.
    pub ping_interval_ms: u64,
    /// Whether the server pings (a silent server tests the watchdog).
    pub send_pings: bool,
    /// The first this many connections are refused with `44{"message":"Rate limit exceeded"}`.
    pub refuse_first: usize,
    /// Every login fails with this error.
    pub login_error: Option<String>,
    /// The channel's password, if it has one.
    pub channel_password: Option<String>,
    /// The playlist sent on join.
    pub playlist: Vec<Value>,
    /// Serve socketconfig and the websocket over TLS with this configuration
    /// ([`TestCa::server_config`]); plain http and ws when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// In TLS mode, the websocket's own configuration when it differs from the site's (a
    /// socket server whose certificate the client does not trust).
    pub ws_tls: Option<Arc<rustls::ServerConfig>>,
    /// Accept connections (HTTP and websocket) only from this address, as a server behind a
    /// firewall that only a proxy gets through; others are closed at once and counted.
    pub only_from: Option<std::net::IpAddr>,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            channel: "test".into(),
            history: Vec::new(),
            users: Vec::new(),
            bot_rank: 2.0,
            ping_interval_ms: 25_000,
            send_pings: true,
            refuse_first: 0,
            login_error: None,
            channel_password: None,
            playlist: Vec::new(),
            tls: None,
            ws_tls: None,
            only_from: None,
        }
    }
}

/// A certificate authority made for one test, and the `localhost` / `127.0.0.1` server
/// certificate it signed: a client trusts the mock by trusting [`TestCa::ca_pem`].
pub struct TestCa {
    /// The CA certificate in PEM, for a client's `SSL_CERT_FILE`.
    pub ca_pem: String,
    config: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// Generates the CA (named `name`) and its server certificate.
    pub fn generate(name: &str) -> TestCa {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();

        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), ca_cert.der().clone()], key)
            .unwrap();
        TestCa {
            ca_pem: ca_cert.pem(),
            config: Arc::new(config),
        }
    }

    /// The server side, for [`MockOptions::tls`].
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// Writes [`TestCa::ca_pem`] as `<name>.pem` in `dir` and returns its path.
    pub fn write_ca_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }
}

/// A CyTube user object as the server sends it.
pub fn user(name: &str, rank: f64) -> Value {
    json!({"name": name, "rank": rank, "profile": {"image": "", "text": ""}, "meta": {"afk": false, "muted": false}})
}

#[derive(Default)]
struct Shared {
    connections: usize,
    joins: usize,
    pongs: usize,
    close_frames: usize,
    tls_failures: usize,
    refused: usize,
    received: Vec<(String, Value)>,
    current: Option<mpsc::UnboundedSender<String>>,
}

/// The running mock; its tasks stop when it is dropped.
pub struct MockCytube {
    secure: bool,
    http_port: u16,
    shared: Arc<Mutex<Shared>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for MockCytube {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The in-process marker that makes `serve` drop its connection.
const DROP: &str = "\u{0}drop";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
}

/// What CyTube does to chat text: escape HTML (the bot must decode it again).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn event(name: &str, data: Value) -> String {
    format!("42{}", json!([name, data]))
}

impl MockCytube {
    /// Starts the HTTP and websocket listeners on free loopback ports.
    pub async fn start(options: MockOptions) -> MockCytube {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_port = http.local_addr().unwrap().port();
        let ws_port = ws.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let channel = options.channel.clone();
        let acceptor = options.tls.clone().map(TlsAcceptor::from);
        let secure = acceptor.is_some();
        let servers = if secure {
            json!([{"url": format!("https://localhost:{ws_port}"), "secure": true}])
        } else {
            json!([
                {"url": format!("http://[::1]:{ws_port}"), "secure": true, "ipv6": true},
                {"url": format!("http://127.0.0.1:{ws_port}"), "secure": false}
            ])
        };
        let http_shared = shared.clone();
        let http_acceptor = acceptor.clone();
        let only_from = options.only_from;
        let http_task = tokio::spawn(async move {
            while let Ok((stream, peer)) = http.accept().await {
                if only_from.is_some_and(|ip| ip != peer.ip()) {
                    http_shared.lock().unwrap().refused += 1;
                    continue;
                }
                let channel = channel.clone();
                let servers = servers.clone();
                let acceptor = http_acceptor.clone();
                let shared = http_shared.clone();
                tokio::spawn(async move {
                    match acceptor {
                        None => answer_http(stream, &channel, servers).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => answer_http(stream, &channel, servers).await,
                            Err(_) => shared.lock().unwrap().tls_failures += 1,
                        },
                    }
                });
            }
        });
        let ws_shared = shared.clone();
        let acceptor = match &options.ws_tls {
            Some(config) if secure => Some(TlsAcceptor::from(config.clone())),
            _ => acceptor,
        };
        let ws_task = tokio::spawn(async move {
            while let Ok((stream, peer)) = ws.accept().await {
                if only_from.is_some_and(|ip| ip != peer.ip()) {
                    ws_shared.lock().unwrap().refused += 1;
                    continue;
                }
                let shared = ws_shared.clone();
                let options = options.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        None => accept_ws(stream, shared, options).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => accept_ws(stream, shared, options).await,
                            Err(_) => shared.lock().unwrap().tls_failures += 1,
                        },
                    }
                });
            }
        });
        MockCytube {
            secure,
            http_port,
            shared,
            tasks: vec![http_task, ws_task],
        }
    }

    /// The site URL for `platform.domain`.
    pub fn domain(&self) -> String {
        if self.secure {
            format!("https://localhost:{}", self.http_port)
        } else {
            format!("http://127.0.0.1:{}", self.http_port)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap()
    }

    /// Sends a raw frame to the connected bot; false when nobody is connected.
    pub fn send_frame(&self, frame: String) -> bool {
        self.lock()
            .current
            .as_ref()
            .is_some_and(|tx| tx.send(frame).is_ok())
    }

    /// Sends `42["name",data]`.
    pub fn send_event(&self, name: &str, data: Value) -> bool {
        self.send_frame(event(name, data))
    }

    /// A chat line from `user` (already HTML, as the server sends it).
    pub fn chat_from(&self, user: &str, html: &str) -> bool {
        self.send_event(
            "chatMsg",
            json!({"username": user, "msg": html, "meta": {}, "time": now_ms()}),
        )
    }

    /// A PM from `user` to the bot.
    pub fn pm_from(&self, user: &str, to: &str, html: &str) -> bool {
        self.send_event(
            "pm",
            json!({"username": user, "msg": html, "meta": {}, "time": now_ms(), "to": to}),
        )
    }

    /// `kick {reason}` followed by `41`, as CyTube does.
    pub fn kick(&self, reason: &str) -> bool {
        self.send_event("kick", json!({"reason": reason})) && self.send_frame("41".into())
    }

    /// Drops the current connection without a word (a crashed or restarted server).
    pub fn drop_connection(&self) -> bool {
        self.send_frame(DROP.into())
    }

    /// Connections closed unanswered because they did not come from `only_from`.
    pub fn refused(&self) -> usize {
        self.lock().refused
    }

    /// The HTTP (socketconfig) listener's port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Websocket connections accepted so far.
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// Completed joins (join sequence sent) so far.
    pub fn joins(&self) -> usize {
        self.lock().joins
    }

    /// Pongs received.
    pub fn pongs(&self) -> usize {
        self.lock().pongs
    }

    /// Websocket close frames received from the bot (a clean goodbye).
    pub fn close_frames(&self) -> usize {
        self.lock().close_frames
    }

    /// TLS handshakes that failed (a client that does not trust the certificate).
    pub fn tls_failures(&self) -> usize {
        self.lock().tls_failures
    }

    /// The payloads of every `name` event the bot sent.
    pub fn received(&self, name: &str) -> Vec<Value> {
        self.lock()
            .received
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .collect()
    }
}

/// Answers one HTTP request: the socketconfig of `channel` listing `servers`, or a 404.
async fn answer_http<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    channel: &str,
    servers: Value,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let request = String::from_utf8_lossy(&buf);
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (status, body) = if path == format!("/socketconfig/{channel}.json") {
        ("200 OK", json!({ "servers": servers }))
    } else {
        (
            "404 Not Found",
            json!({"error": format!("Channel \"{path}\" does not exist.")}),
        )
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Upgrades `stream` to a websocket and serves it.
async fn accept_ws<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    shared: Arc<Mutex<Shared>>,
    options: MockOptions,
) {
    if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
        serve(ws, shared, options).await;
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    shared: Arc<Mutex<Shared>>,
    options: MockOptions,
) {
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let number = {
        let mut s = shared.lock().unwrap();
        s.connections += 1;
        s.current = Some(tx.clone());
        s.connections
    };
    let open = format!(
        "0{}",
        json!({"sid": format!("mock{number}"), "upgrades": [], "pingInterval": options.ping_interval_ms,
               "pingTimeout": 120000, "maxPayload": 1048576})
    );
    if sink.send(Message::text(open)).await.is_err() {
        return;
    }
    let pinger = options.send_pings.then(|| {
        let tx = tx.clone();
        let every = Duration::from_millis(options.ping_interval_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if tx.send("2".into()).is_err() {
                    return;
                }
            }
        })
    });
    let refuse = number <= options.refuse_first;
    let mut channel_ok = false;
    let mut login_name: Option<String> = None;
    let mut joined = false;
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                if out == DROP {
                    return;
                }
                if sink.send(Message::text(out)).await.is_err() {
                    break;
                }
            }
            incoming = source.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) => {
                        shared.lock().unwrap().close_frames += 1;
                        break;
                    }
                    None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let mut replies: Vec<String> = Vec::new();
                if text == "40" {
                    if refuse {
                        let _ = sink.send(Message::text(r#"44{"message":"Rate limit exceeded"}"#)).await;
                        break;
                    }
                    replies.push(format!("40{}", json!({"sid": format!("sock{number}")})));
                    replies.push(event("rank", json!(-1)));
                } else if text == "3" {
                    shared.lock().unwrap().pongs += 1;
                } else if let Some(array) = text.strip_prefix("42") {
                    let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(array) else { continue };
                    let name = parts.first().and_then(Value::as_str).unwrap_or_default().to_owned();
                    let data = parts.get(1).cloned().unwrap_or(Value::Null);
                    shared.lock().unwrap().received.push((name.clone(), data.clone()));
                    match name.as_str() {
                        "joinChannel" => match &options.channel_password {
                            None => channel_ok = true,
                            Some(pw) if data.get("pw").and_then(Value::as_str) == Some(pw) => channel_ok = true,
                            Some(_) => replies.push(event("needPassword", json!(data.get("pw").is_some()))),
                        },
                        "channelPassword" => {
                            if options.channel_password.as_deref() == data.as_str() {
                                channel_ok = true;
                                replies.push(format!("42{}", json!(["cancelNeedPassword"])));
                            } else {
                                replies.push(event("needPassword", json!(true)));
                            }
                        }
                        "login" => match &options.login_error {
                            Some(error) => replies.push(event("login", json!({"success": false, "error": error}))),
                            None => {
                                let name = data.get("name").and_then(Value::as_str).unwrap_or("guest").to_owned();
                                replies.push(event("rank", json!(0)));
                                replies.push(event("login", json!({"success": true, "name": name, "guest": data.get("pw").is_none()})));
                                login_name = Some(name);
                            }
                        },
                        "chatMsg" => {
                            if let (Some(me), Some(msg)) = (&login_name, data.get("msg").and_then(Value::as_str)) {
                                replies.push(event("chatMsg", json!({"username": me, "msg": escape(msg), "meta": {}, "time": now_ms()})));
                            }
                        }
                        "pm" => {
                            if let (Some(me), Some(msg)) = (&login_name, data.get("msg").and_then(Value::as_str)) {
                                replies.push(event("pm", json!({"username": me, "msg": escape(msg), "meta": {}, "time": now_ms(), "to": data["to"]})));
                            }
                        }
                        _ => {}
                    }
                    if channel_ok && !joined {
                        if let Some(me) = &login_name {
                            joined = true;
                            replies.push(event("setPermissions", json!({"chat": 0, "kick": 1.5, "chatclear": 2})));
                            for (user, html) in &options.history {
                                replies.push(event("chatMsg", json!({"username": user, "msg": html, "meta": {}, "time": 1_700_000_000_000u64})));
                            }
                            replies.push(event("setPlaylistMeta", json!({"count": options.playlist.len(), "rawTime": 0, "time": "00:00"})));
                            replies.push(event("playlist", json!(options.playlist)));
                            let mut users = options.users.clone();
                            users.push(user(me, options.bot_rank));
                            replies.push(event("userlist", json!(users)));
                            replies.push(event("usercount", json!(users.len() + 1)));
                            replies.push(event("rank", json!(options.bot_rank)));
                            replies.push(format!("42{}", json!(["channelNotRegistered"])));
                            shared.lock().unwrap().joins += 1;
                        }
                    }
                }
                for reply in replies {
                    if sink.send(Message::text(reply)).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    if let Some(p) = pinger {
        p.abort();
    }
    let _ = sink.close().await;
}
