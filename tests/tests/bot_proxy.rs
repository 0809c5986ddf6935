//! `rosey-bot` through a SOCKS5 proxy (`platform.proxy`), against a mock CyTube server that
//! refuses every connection that does not come from the proxy: both legs go through it, names
//! are resolved by it, its login is used, and its failures end in a reconnect, never in a
//! direct connection.

use rosey_plugin_api::events::{Event, Message};
use rosey_plugin_api::subjects;
use rosey_tests::bot_support::{bot_command, next_json, wait_connected, write_config, WAIT};
use rosey_tests::mock_cytube::{user, MockCytube, MockOptions, TestCa};
use rosey_tests::socks_proxy::{SocksProxy, PROXY_SOURCE};
use rosey_tests::{wait_until_async, ChildGuard, NatsServer};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;

struct Bot {
    _child: ChildGuard,
    dir: tempfile::TempDir,
}

impl Bot {
    /// What the bot wrote on stderr (its log) so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("bot.log")
    }
}

/// Starts the bot on `mock` with `platform` keys added (the proxy among them); its log goes to a
/// file the test reads.
fn start_bot(nats: &NatsServer, mock: &MockCytube, platform: Value, ca: Option<&TestCa>) -> Bot {
    let dir = tempfile::tempdir().unwrap();
    let mut config = json!({
        "platform": {
            "type": "cytube",
            "domain": mock.domain(),
            "channel": "test",
            "credentials": {"username": "rosey"},
            "status_interval": 0.2,
            "reconnect_min_delay": 0.05,
            "reconnect_max_delay": 0.5,
            "ping_timeout": 1,
            "connect_timeout": 5
        },
        "logging": {"level": "info"}
    });
    if let (Some(p), Some(extra)) = (config["platform"].as_object_mut(), platform.as_object()) {
        for (k, v) in extra {
            p.insert(k.clone(), v.clone());
        }
    }
    let path = write_config(dir.path(), &config);
    let log = std::fs::File::create(dir.path().join("bot.log")).unwrap();
    let mut cmd = bot_command(&path, nats);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    if let Some(ca) = ca {
        cmd.env("SSL_CERT_FILE", ca.write_ca_pem(dir.path(), "ca.pem"))
            .env_remove("SSL_CERT_DIR");
    }
    cmd.env_remove("RUST_LOG");
    Bot {
        _child: ChildGuard::spawn("rosey-bot", cmd),
        dir,
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let ok = wait_until_async(WAIT, || {
        let r = check();
        async move { r }
    })
    .await;
    assert!(ok, "timed out waiting for {what}");
}

fn proxied_mock_options() -> MockOptions {
    MockOptions {
        users: vec![user("alice", 1.0)],
        ping_interval_ms: 200,
        only_from: Some(PROXY_SOURCE),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_legs_go_through_the_proxy_which_resolves_the_names() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mock = MockCytube::start(proxied_mock_options()).await;
    let proxy = SocksProxy::start(None).await;
    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let mut messages = client.subscribe(subjects::events::MESSAGE).await.unwrap();
    // The original's `host[:port]` form, and a site named by a host name the proxy resolves.
    let _bot = start_bot(
        &nats,
        &mock,
        json!({
            "domain": format!("http://localhost:{}", mock.http_port()),
            "proxy": proxy.address()
        }),
        None,
    );
    wait_connected(&mut status, WAIT).await;
    assert!(mock.chat_from("alice", "through the tunnel"));
    let line: Event<Message> = next_json(&mut messages).await;
    assert_eq!(line.body.content, "through the tunnel");

    assert_eq!(
        mock.refused(),
        0,
        "the bot connected to the server directly"
    );
    assert_eq!(mock.connections(), 1);
    let targets = proxy.targets();
    assert!(
        targets.contains(&format!("name:localhost:{}", mock.http_port())),
        "the bot resolved the site's name itself: {targets:?}"
    );
    let c = proxy.counters();
    assert!(c.tunnels.load(Ordering::SeqCst) >= 2, "{targets:?}");
    assert!(c.bytes_up.load(Ordering::SeqCst) > 0);
    assert!(c.bytes_down.load(Ordering::SeqCst) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_login_is_used_and_a_wrong_password_never_goes_direct() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mock = MockCytube::start(proxied_mock_options()).await;
    let proxy = SocksProxy::start(Some(("alice", "open sesame"))).await;

    // No login at all for a proxy that wants one: the cause is logged, nothing goes direct.
    let anonymous = start_bot(
        &nats,
        &mock,
        json!({"proxy": format!("socks5h://{}", proxy.address())}),
        None,
    );
    let logged = wait_until_async(WAIT, || async {
        anonymous.log().contains("refused the login")
    })
    .await;
    assert!(logged, "the cause is not in the log:\n{}", anonymous.log());
    drop(anonymous);

    // A wrong password: refused by the proxy, retried with backoff, never sent around it.
    let wrong = start_bot(
        &nats,
        &mock,
        json!({
            "proxy": format!("socks5h://alice@{}", proxy.address()),
            "proxy_password": "open barley"
        }),
        None,
    );
    wait_for("two refused logins", || {
        proxy.counters().auth_failures.load(Ordering::SeqCst) >= 2
    })
    .await;
    let logged =
        wait_until_async(WAIT, || async { wrong.log().contains("refused the login") }).await;
    assert!(logged, "the cause is not in the log:\n{}", wrong.log());
    assert_eq!(mock.refused(), 0, "the bot went around the proxy");
    assert_eq!(mock.connections(), 0);
    assert!(
        !wrong.log().contains("open barley"),
        "the proxy password is in the log"
    );
    drop(wrong);

    // The right one, from a file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("proxy.pass"), "open sesame\n").unwrap();
    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let _right = start_bot(
        &nats,
        &mock,
        json!({
            "proxy": format!("socks5h://alice@{}", proxy.address()),
            "proxy_password_file": dir.path().join("proxy.pass")
        }),
        None,
    );
    wait_connected(&mut status, WAIT).await;
    assert_eq!(mock.refused(), 0);
    assert_eq!(mock.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_dies_mid_session_is_reported_and_the_bot_comes_back_through_it() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mock = MockCytube::start(proxied_mock_options()).await;
    let mut proxy = SocksProxy::start(None).await;
    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let bot = start_bot(
        &nats,
        &mock,
        json!({"proxy": format!("socks5h://{}", proxy.address())}),
        None,
    );
    wait_connected(&mut status, WAIT).await;
    assert_eq!(mock.joins(), 1);

    proxy.kill();
    let unreachable = format!("the SOCKS5 proxy {} is not reachable", proxy.address());
    let logged = wait_until_async(WAIT, || async { bot.log().contains(&unreachable) }).await;
    assert!(logged, "the cause is not in the log:\n{}", bot.log());
    assert_eq!(mock.joins(), 1);
    proxy.restart().await;
    wait_for("a second join through the restarted proxy", || {
        mock.joins() == 2
    })
    .await;
    assert_eq!(mock.refused(), 0, "the bot went around the dead proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_goes_through_the_proxy_too() {
    let ca = TestCa::generate("proxy-test");
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mock = MockCytube::start(MockOptions {
        tls: Some(ca.server_config()),
        ..proxied_mock_options()
    })
    .await;
    let proxy = SocksProxy::start(None).await;
    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let _bot = start_bot(
        &nats,
        &mock,
        json!({"proxy": format!("socks5h://{}", proxy.address())}),
        Some(&ca),
    );
    wait_connected(&mut status, WAIT).await;
    assert_eq!(mock.refused(), 0);
    let targets = proxy.targets();
    // Both legs by name (`localhost`, which the certificate names), resolved by the proxy.
    assert_eq!(
        targets
            .iter()
            .filter(|t| t.starts_with("name:localhost:"))
            .count(),
        2,
        "{targets:?}"
    );
}
