//! What rosey-web costs with many channels configured: one release rosey-db serving N channels
//! (default 100; `ROSEY_WEB_CHANNELS`) and one release rosey-web that learns every channel from a
//! chat line on NATS, on a private nats-server. For each phase, over `ROSEY_WEB_WINDOW` seconds
//! (default 30): requests rosey-db answered (its `$SRV.STATS` endpoint counters, so rosey-web's
//! asks and nothing else) per second, and rosey-web's CPU time (utime + stime from `/proc`).
//!
//! Phases: nobody reading; one page open (its live feed) on one channel; then every channel's
//! `/api/stats` read once per second by a scraper (the worst case: every channel watched).
//!
//! Build the release binaries first (`cargo build --release -p rosey-web -p rosey-db-service`),
//! then `ROSEY_BIN_DIR=target/release cargo test --release -p rosey-tests --bench web_channels`
//! (or without `--release`: the driver's own speed does not enter the figures).

use rosey_plugin_api::events::{Event, Message};
use rosey_plugin_api::{subjects, Timestamp};
use rosey_tests::bot_support;
use rosey_tests::web_support::{self, get, start_web, Feed};
use rosey_tests::{rosey_db_on_config, wait_for_rosey_db, wait_until_async, NatsServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds of CPU `pid` has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

/// Requests rosey-db has answered so far, summed over its endpoints.
async fn db_requests(client: &async_nats::Client) -> u64 {
    let reply = client
        .request("$SRV.STATS.rosey-db", "".into())
        .await
        .expect("rosey-db answers $SRV.STATS");
    let stats: Value = serde_json::from_slice(&reply.payload).unwrap();
    stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["num_requests"].as_u64())
        .sum()
}

struct Figures {
    db_per_s: f64,
    web_cpu_percent: f64,
    db_cpu_percent: f64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rosey-db {:.1} requests/s; CPU rosey-web {:.2} %, rosey-db {:.2} %",
            self.db_per_s, self.web_cpu_percent, self.db_cpu_percent
        )
    }
}

async fn measure(client: &async_nats::Client, pids: (u32, u32), window: Duration) -> Figures {
    let (web, db) = pids;
    let before = (db_requests(client).await, cpu_seconds(web), cpu_seconds(db));
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let after = (db_requests(client).await, cpu_seconds(web), cpu_seconds(db));
    let secs = t0.elapsed().as_secs_f64();
    Figures {
        db_per_s: (after.0 - before.0) as f64 / secs,
        web_cpu_percent: (after.1 - before.1) / secs * 100.0,
        db_cpu_percent: (after.2 - before.2) / secs * 100.0,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_or("ROSEY_WEB_CHANNELS", 100) as usize;
    let window = Duration::from_secs(env_or("ROSEY_WEB_WINDOW", 30));
    let channels: Vec<String> = (0..n).map(|i| format!("ch{i:03}")).collect();
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "nats": {"server": nats.url()},
        "platform": {"type": "console", "console_user": "tester",
                     "credentials": {"username": "rosey"},
                     "channels": channels.iter().map(|c| json!({"name": c})).collect::<Vec<_>>()},
        // A stream per channel: each reserves its byte limit on the server.
        "database": {"path": dir.path().join("bot_data.db"), "stream": {"max_bytes": 64 << 20}},
    });
    let file = bot_support::write_config(dir.path(), &config);
    let db = rosey_db_on_config(&file);
    wait_for_rosey_db(&client, Duration::from_secs(120)).await;
    let web = start_web(&nats, json!({}));
    // rosey-web learns each channel from a chat line in it; said again until it lists every
    // one (its subscription may come after the first round). `/api/current` names the channels
    // it knows when none is given, and reading it marks no channel as looked at.
    let known = wait_until_async(Duration::from_secs(60), || async {
        let listed = get(&web, "/api/current").await.body;
        if channels.iter().all(|c| listed.contains(c.as_str())) {
            return true;
        }
        for channel in &channels {
            let line = Event {
                platform: "console".into(),
                channel: channel.clone(),
                timestamp: Timestamp::now(),
                platform_data: Value::Null,
                body: Message {
                    user: "tester".into(),
                    user_data: None,
                    content: format!("hello {channel}"),
                    is_command: false,
                },
            };
            client
                .publish(
                    subjects::events::MESSAGE,
                    serde_json::to_vec(&line).unwrap().into(),
                )
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        false
    })
    .await;
    assert!(known, "rosey-web never learned the channels");
    // Start-up loads settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = (web.child.id(), db.id());
    let secs = window.as_secs();

    let idle = measure(&client, pid, window).await;
    println!("{n} channels, nobody reading, {secs} s: {idle}");

    let first = &channels[0];
    assert_eq!(get(&web, &format!("/?channel={first}")).await.status, 200);
    let feed = Feed::open(&web, &format!("?channel={first}")).await;
    let one = measure(&client, pid, window).await;
    println!("{n} channels, one page open on {first}, {secs} s: {one}");
    drop(feed);

    let scraper = {
        let addr = web.addr;
        let channels = channels.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                for c in &channels {
                    let a = web_support::http(
                        addr,
                        "GET",
                        &format!("/api/stats?channel={c}"),
                        &[],
                        None,
                    )
                    .await;
                    assert_eq!(a.status, 200, "{c}: {}", a.body);
                }
            }
        })
    };
    let all = measure(&client, pid, window).await;
    scraper.abort();
    println!("{n} channels, every channel's /api/stats read each second, {secs} s: {all}");
}
