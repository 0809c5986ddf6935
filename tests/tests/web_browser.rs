//! rosey-web in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `scripts/install-chromium.sh`) driven over the DevTools protocol with tokio-tungstenite, at
//! 390 px wide, against rosey-db, the runtime (quotes) and a console bot as processes. The page
//! loads without console errors, a typed line and the bot's answer appear live, the chart is
//! drawn, a hostile line shows as text and runs nothing, nothing scrolls sideways, and the
//! admin disables and re-enables a plugin from the page. Screenshots go to
//! `target/test-artifacts/`.

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use rosey_tests::bot_support::ConsoleBot;
use rosey_tests::runtime_support::{config as runtime_config, shipped_plugin_dir, start_runtime};
use rosey_tests::web_support;
use rosey_tests::web_support::{basic, start_web, WAIT};
use rosey_tests::{target_dir, ChildGuard, NatsServer, RoseyDb};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const PASSWORD: &str = "browser pass";

/// A DevTools connection to one page: commands by id, events kept for inspection.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    next_id: u64,
    events: Vec<Value>,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).await.unwrap();
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer"))
                .expect("DevTools open")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Evaluates `expr` in the page and returns its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is true in the page.
    async fn wait_true(&mut self, what: &str, expr: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.eval(expr).await != json!(true) {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Errors the page reported: exceptions, console errors, failed loads, dialogs.
    fn errors(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") | Some("Page.javascriptDialogOpening") => true,
                Some("Runtime.consoleAPICalled") => e["params"]["type"] == "error",
                Some("Log.entryAdded") => e["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .collect()
    }

    async fn screenshot(&mut self, name: &str) {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

fn artifacts() -> PathBuf {
    // target/debug -> target/test-artifacts
    target_dir()
        .parent()
        .map(|t| t.join("test-artifacts"))
        .unwrap_or_else(|| PathBuf::from("target/test-artifacts"))
}

/// Starts headless Chromium with DevTools on a free port and connects to its page.
async fn chromium(profile: &std::path::Path) -> (ChildGuard, Cdp) {
    let program = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("chromium is not installed: run scripts/install-chromium.sh");
    let mut cmd = Command::new(program);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--remote-debugging-port=0",
        "--window-size=390,844",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg("about:blank")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let browser = ChildGuard::spawn("chromium", cmd);
    let port_file = profile.join("DevToolsActivePort");
    let ok = rosey_tests::wait_until(WAIT, || {
        std::fs::read_to_string(&port_file).is_ok_and(|t| t.lines().count() >= 2)
    });
    assert!(ok, "chromium wrote no DevToolsActivePort");
    let port: u16 = std::fs::read_to_string(&port_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The page target's WebSocket, from /json/list.
    let addr = format!("127.0.0.1:{port}");
    let mut ws_url = None;
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            format!("GET /json/list HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        // Read until the body is complete: DevTools may keep the connection open.
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let body = loop {
            let n = match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => break String::new(),
            };
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(usize::MAX);
                if body.len() >= length {
                    break body.to_owned();
                }
            }
        };
        let body = if body.is_empty() { "[]" } else { body.as_str() };
        let list: Value = serde_json::from_str(body).unwrap_or(json!([]));
        ws_url = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned));
        if ws_url.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ws_url = ws_url.expect("chromium has no page target");
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(ws_url, stream)
        .await
        .unwrap();
    (
        browser,
        Cdp {
            ws,
            next_id: 0,
            events: vec![],
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_a_real_browser() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let _db = RoseyDb::start_on_fixture(&nats, &client, WAIT).await;
    let _runtime = start_runtime(&runtime_config(
        &nats,
        &shipped_plugin_dir("quotes"),
        json!({"enabled": ["quotes"], "hot_reload": false}),
    ));
    let mut bot = ConsoleBot::start(&json!({
        "nats": {"server": nats.url()},
        "platform": {"type": "console", "channel": "console", "console_user": "tester",
                     "credentials": {"username": "rosey"}, "status_interval": 0.5}
    }));
    let web = start_web(&nats, json!({"password": PASSWORD}));
    // The page lists the users once the bot has answered rosey-web.
    let ok = rosey_tests::wait_until_async(WAIT, || async {
        web_support::get(&web, "/").await.body.contains(">tester<")
    })
    .await;
    assert!(ok, "rosey-web never saw the bot");

    let profile = tempfile::tempdir().unwrap();
    let (_browser, mut cdp) = chromium(profile.path()).await;
    for domain in [
        "Page.enable",
        "Runtime.enable",
        "Log.enable",
        "Network.enable",
    ] {
        cdp.call(domain, json!({})).await;
    }
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true}),
    )
    .await;
    // The admin's browser: every request carries the login.
    cdp.call(
        "Network.setExtraHTTPHeaders",
        json!({"headers": {"Authorization": basic(PASSWORD)}}),
    )
    .await;
    cdp.call("Page.navigate", json!({"url": web.url("/")}))
        .await;
    cdp.wait_true("the page loaded", "document.readyState === 'complete'")
        .await;
    cdp.wait_true(
        "the live feed connected",
        "document.getElementById('live').dataset.state === 'live'",
    )
    .await;
    cdp.wait_true(
        "the chart is drawn",
        "(() => { const i = document.getElementById('chart'); return i.complete && i.naturalWidth > 0; })()",
    )
    .await;
    assert_eq!(
        cdp.eval("document.body.classList.contains('admin')").await,
        json!(true)
    );

    bot.type_line("hello from the terminal");
    cdp.wait_true(
        "a typed line appears live",
        "document.getElementById('chat').textContent.includes('hello from the terminal')",
    )
    .await;
    bot.type_line("!quote count");
    cdp.wait_true(
        "the bot's answer appears",
        "[...document.querySelectorAll('#chat li.own')].some(l => l.textContent.includes('No quotes yet'))",
    )
    .await;
    bot.type_line("<img src=x onerror=alert(1)>");
    cdp.wait_true(
        "the hostile line shows as text",
        "document.getElementById('chat').textContent.includes('<img src=x onerror=alert(1)>')",
    )
    .await;
    assert_eq!(
        cdp.eval("document.querySelectorAll('#chat img, #chat script').length")
            .await,
        json!(0)
    );
    assert_eq!(
        cdp.eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        json!(true),
        "the page scrolls sideways at 390 px: {}",
        cdp.eval("document.documentElement.scrollWidth").await
    );
    cdp.screenshot("web-390px.png").await;

    // The admin disables the plugin from the page, then enables it again.
    cdp.eval("document.querySelector('button[data-action=disable][data-plugin=quotes]').click()")
        .await;
    cdp.wait_true(
        "quotes shows disabled",
        "document.querySelector('tr[data-plugin=quotes] .pill')?.textContent === 'disabled'",
    )
    .await;
    cdp.screenshot("web-plugin-disabled.png").await;
    cdp.eval("document.querySelector('button[data-action=enable][data-plugin=quotes]').click()")
        .await;
    cdp.wait_true(
        "quotes shows running",
        "document.querySelector('tr[data-plugin=quotes] .pill')?.textContent === 'running'",
    )
    .await;

    // Desktop width too, for the record.
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    cdp.screenshot("web-1280px.png").await;

    let errors = cdp.errors();
    assert!(errors.is_empty(), "the page reported errors: {errors:#?}");
}
