//! rosey-web benchmarks with real processes (release rosey-web, rosey-db and a console bot on a
//! private nats-server). Run `cargo build --release -p rosey-web -p rosey-db-service -p
//! rosey-bot` first, then `cargo bench -p rosey-tests --bench web`. Results go to BENCHMARKS.md
//! by hand.
//!
//! - `/api/current` with 300 chat lines in the window: requests per second and latency at 100
//!   concurrent keep-alive clients for 10 s (served from state kept by events);
//! - live page latency: a `rosey.bot.said` event published on NATS until its line arrives on an
//!   open `/events` feed;
//! - rosey-web's resident memory, idle, after the above (3 s and 12 s after the last request),
//!   and where it is (heap, other anonymous mappings, files).

use rosey_plugin_api::bot::Said;
use rosey_plugin_api::{subjects, Timestamp};
use rosey_tests::bot_support;
use rosey_tests::measure::{percentile, rss_kib};
use rosey_tests::web_support::{get, start_web, Feed, WAIT};
use rosey_tests::{NatsServer, RoseyDb};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const CLIENTS: usize = 100;
const RUN: Duration = Duration::from_secs(10);
const LINES: usize = 300;
const LIVE_SAMPLES: usize = 200;

/// Where `pid`'s resident memory is, in KiB: the main heap, other anonymous mappings (malloc
/// arenas, thread stacks), and file-backed mappings (the binary, shared libraries).
fn rss_breakdown(pid: u32) -> (u64, u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut heap, mut anon, mut file) = (0, 0, 0);
    let mut kind = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let path = line.split_whitespace().nth(5).unwrap_or("");
            kind = match path {
                "[heap]" => 0,
                "" | "[stack]" | "[anon]" => 1,
                p if p.starts_with('[') => 1,
                _ => 2,
            };
        } else if let Some(v) = line.strip_prefix("Rss:") {
            let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            match kind {
                0 => heap += kib,
                1 => anon += kib,
                _ => file += kib,
            }
        }
    }
    (heap, anon, file)
}

async fn said(client: &async_nats::Client, content: String) {
    let line = Said {
        platform: "console".into(),
        channel: "console".into(),
        timestamp: Timestamp::now().secs(),
        user: "rosey".into(),
        content,
    };
    client
        .publish(
            subjects::bot::SAID,
            serde_json::to_vec(&line).unwrap().into(),
        )
        .await
        .unwrap();
}

/// One keep-alive client asking `/api/current` until `stop`; returns its latencies.
async fn client_loop(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let req = format!("GET /api/current HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut out = Vec::with_capacity(100_000);
    let mut body = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        write.write_all(req.as_bytes()).await.unwrap();
        let mut length = 0usize;
        let mut status_ok = false;
        loop {
            let mut line = String::new();
            read.read_line(&mut line).await.unwrap();
            if line.starts_with("HTTP/1.1 ") {
                status_ok = line.starts_with("HTTP/1.1 200");
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        assert!(status_ok, "/api/current failed");
        body.resize(length, 0);
        read.read_exact(&mut body).await.unwrap();
        out.push(start.elapsed());
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let _db = RoseyDb::start(&nats, &client, WAIT).await;
    let _bot = bot_support::ConsoleBot::start(&serde_json::json!({
        "nats": {"server": nats.url()},
        "platform": {"type": "console", "channel": "console", "console_user": "tester",
                     "credentials": {"username": "rosey"}}
    }));
    let web = start_web(&nats, serde_json::json!({}));
    let seen = rosey_tests::wait_until_async(WAIT, || async {
        get(&web, "/api/current").await.json()["status"]["channel_name"] == "console"
    })
    .await;
    assert!(seen, "rosey-web never saw the bot");
    for i in 0..LINES {
        said(&client, format!("line {i} of the warm-up window")).await;
    }
    let filled = rosey_tests::wait_until_async(WAIT, || async {
        get(&web, "/api/current").await.json()["recent_chat"]
            .as_array()
            .is_some_and(|c| c.len() >= LINES)
    })
    .await;
    assert!(filled, "the chat window did not fill");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_before = rss_kib(web.child.id());
    let breakdown_before = rss_breakdown(web.child.id());

    // /api/current under load.
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(client_loop(web.addr, stop.clone())))
        .collect();
    let started = Instant::now();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let peak = rss_kib(web.child.id());
    println!(
        "/api/current, {CLIENTS} clients, {LINES} lines in the window: {} requests in {:.1} s = {:.0} req/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.5).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        all.last().unwrap().as_secs_f64() * 1e3,
    );

    // Event to open page.
    let mut feed = Feed::open(&web, "?channel=console").await;
    let mut live = Vec::with_capacity(LIVE_SAMPLES);
    for i in 0..LIVE_SAMPLES {
        let text = format!("live-probe-{i}-end");
        let start = Instant::now();
        said(&client, text.clone()).await;
        feed.wait_for("chat", &text).await;
        live.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    live.sort();
    println!(
        "event -> open page ({LIVE_SAMPLES} lines): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&live, 0.5).as_secs_f64() * 1e3,
        percentile(&live, 0.99).as_secs_f64() * 1e3,
        live.last().unwrap().as_secs_f64() * 1e3,
    );
    drop(feed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let soon_after = rss_kib(web.child.id());
    // rosey-web gives a burst's memory back once it has been quiet for a while (5 s, checked
    // every 5 s): measured again past that.
    tokio::time::sleep(Duration::from_secs(9)).await;
    println!(
        "rosey-web RSS: {:.1} MiB idle with {LINES} lines, {:.1} MiB after the load, {:.1} MiB 3 s after, {:.1} MiB idle 12 s after",
        idle_before as f64 / 1024.0,
        peak as f64 / 1024.0,
        soon_after as f64 / 1024.0,
        rss_kib(web.child.id()) as f64 / 1024.0
    );
    for (when, (heap, anon, file)) in [
        ("idle before", breakdown_before),
        ("idle after", rss_breakdown(web.child.id())),
    ] {
        println!(
            "  {when}: heap {:.1} MiB, other anonymous (arenas, stacks) {:.1} MiB, files (binary, libraries) {:.1} MiB",
            heap as f64 / 1024.0,
            anon as f64 / 1024.0,
            file as f64 / 1024.0
        );
    }
}
