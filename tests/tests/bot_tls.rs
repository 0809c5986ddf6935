//! `rosey-bot` against the mock CyTube server over TLS, end to end: socketconfig over https and
//! the websocket over wss on `localhost`, with a certificate authority made by the test and
//! trusted (or not) through `SSL_CERT_FILE`, which the bot's root store (rustls-native-certs)
//! reads instead of the system's.

use rosey_plugin_api::events::{Event, Message};
use rosey_plugin_api::subjects;
use rosey_tests::bot_support::{bot_command, next_json, wait_connected, write_config, WAIT};
use rosey_tests::mock_cytube::{user, MockCytube, MockOptions, TestCa};
use rosey_tests::{wait_until, ChildGuard, NatsServer};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// A running bot, its temporary directory and the file its log (stderr) goes to.
struct Bot {
    child: ChildGuard,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Bot {
    /// Everything the bot has logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Waits until the mock has refused at least three TLS handshakes: the bot came back after
/// each failure.
fn wait_for_refused_handshakes(mock: &MockCytube, bot: &Bot) {
    assert!(
        wait_until(WAIT, || mock.tls_failures() >= 3),
        "only {} TLS handshakes; bot log:\n{}",
        mock.tls_failures(),
        bot.log()
    );
}

/// The bot neither crashed nor got through: it is still running, never connected, never joined.
fn assert_still_retrying(bot: &mut Bot, mock: &MockCytube) {
    let log = bot.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        bot.child.child_mut().try_wait().unwrap().is_none(),
        "the bot exited; log:\n{log}"
    );
    assert_eq!(mock.connections(), 0);
    assert_eq!(mock.joins(), 0);
}

/// Starts `rosey-bot` on `mock` with `SSL_CERT_FILE` set to `trusted` (a PEM file of root
/// certificates) and nothing else trusted.
fn start_bot(nats: &NatsServer, mock: &MockCytube, trusted: &Path) -> Bot {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &json!({"platform": {
            "type": "cytube",
            "domain": mock.domain(),
            "channel": "test",
            "credentials": {"username": "rosey"},
            "status_interval": 0.2,
            "reconnect_min_delay": 0.05,
            "reconnect_max_delay": 0.5,
            "connect_timeout": 10,
        }}),
    );
    let log = dir.path().join("bot.log");
    let mut cmd = bot_command(&config, nats);
    cmd.env("SSL_CERT_FILE", trusted)
        .env_remove("SSL_CERT_DIR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    Bot {
        child: ChildGuard::spawn("rosey-bot", cmd),
        log,
        _dir: dir,
    }
}

fn tls_mock_options(ca: &TestCa) -> MockOptions {
    MockOptions {
        users: vec![user("alice", 1.0)],
        ping_interval_ms: 200,
        tls: Some(ca.server_config()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_joins_over_https_and_wss_when_it_trusts_the_certificate() {
    let ca = TestCa::generate("trusted");
    let certs = tempfile::tempdir().unwrap();
    let ca_file = ca.write_ca_pem(certs.path(), "ca");
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mock = MockCytube::start(tls_mock_options(&ca)).await;
    assert!(mock.domain().starts_with("https://localhost:"));

    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let mut messages = client.subscribe(subjects::events::MESSAGE).await.unwrap();
    let bot = start_bot(&nats, &mock, &ca_file);
    wait_connected(&mut status, WAIT).await;
    assert!(
        wait_until(WAIT, || mock.joins() == 1),
        "no join at the mock; bot log:\n{}",
        bot.log()
    );
    assert_eq!(mock.tls_failures(), 0, "bot log:\n{}", bot.log());
    let joined = mock.received("joinChannel");
    assert_eq!(joined[0]["name"], "test");

    assert!(mock.chat_from("alice", "hello over &lt;tls&gt;"));
    let event: Event<Message> = next_json(&mut messages).await;
    assert_eq!(event.platform, "cytube");
    assert_eq!(event.channel, "test");
    assert_eq!(event.body.user, "alice");
    assert_eq!(event.body.content, "hello over <tls>");

    // The bot's own line goes back over the same wss connection.
    let chat = subjects::platform::send("cytube", subjects::platform::action::CHAT).unwrap();
    let reply = client
        .request(
            chat,
            json!({"channel": "test", "content": "secure hello"})
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&reply.payload).contains("\"error\""),
        "{:?}",
        reply.payload
    );
    assert!(
        wait_until(WAIT, || mock
            .received("chatMsg")
            .iter()
            .any(|d| d["msg"] == "secure hello")),
        "the bot's line never reached the mock"
    );
    assert_eq!(mock.connections(), 1, "bot log:\n{}", bot.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_that_does_not_trust_the_certificate_logs_a_tls_error_and_keeps_retrying() {
    let ca = TestCa::generate("server");
    // The bot trusts only an unrelated CA, so the system's roots play no part either.
    let stranger = TestCa::generate("stranger");
    let certs = tempfile::tempdir().unwrap();
    let stranger_file = stranger.write_ca_pem(certs.path(), "stranger");
    let nats = NatsServer::start();
    let mock = MockCytube::start(tls_mock_options(&ca)).await;

    let mut bot = start_bot(&nats, &mock, &stranger_file);
    // Several refused handshakes at the mock: the bot comes back after each failure.
    wait_for_refused_handshakes(&mock, &bot);
    assert!(
        wait_until(WAIT, || {
            let log = bot.log();
            log.matches("invalid peer certificate").count() >= 3
                && log.matches("reconnecting").count() >= 3
        }),
        "no clear, repeated TLS error in the bot log:\n{}",
        bot.log()
    );
    let log = bot.log();
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert_still_retrying(&mut bot, &mock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_that_does_not_trust_the_socket_server_fails_at_wss_and_keeps_retrying() {
    // The site (socketconfig) is trusted; the websocket server's certificate is not.
    let site = TestCa::generate("site");
    let socket = TestCa::generate("socket");
    let certs = tempfile::tempdir().unwrap();
    let site_file = site.write_ca_pem(certs.path(), "site");
    let nats = NatsServer::start();
    let mock = MockCytube::start(MockOptions {
        ws_tls: Some(socket.server_config()),
        ..tls_mock_options(&site)
    })
    .await;

    let mut bot = start_bot(&nats, &mock, &site_file);
    wait_for_refused_handshakes(&mock, &bot);
    assert!(
        wait_until(WAIT, || {
            let log = bot.log();
            log.lines()
                .filter(|l| {
                    l.contains("reconnecting")
                        && l.contains("websocket connect to wss://localhost:")
                        && l.contains("invalid peer certificate: UnknownIssuer")
                })
                .count()
                >= 3
        }),
        "no clear, repeated wss TLS error in the bot log:\n{}",
        bot.log()
    );
    let log = bot.log();
    assert!(
        !log.contains("cannot fetch"),
        "discovery should work: {log}"
    );
    assert_still_retrying(&mut bot, &mock);
}
