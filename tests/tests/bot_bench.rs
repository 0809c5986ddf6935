//! The bot's benchmark (ignored by the test suite; it asserts nothing about speed):
//! websocket frames from the mock CyTube server to `rosey.events.message` on NATS and to
//! acknowledged `rosey.db.message.log` writes in the stream, and the bot's memory.
//!
//! Run it on a release build:
//! `cargo build --release -p rosey-bot && cargo test --release -p rosey-tests --test bot_bench -- --ignored --nocapture`

mod bot_support;
mod mock_cytube;

use bot_support::{spawn_quiet_bot, wait_connected, write_config};
use futures::StreamExt;
use mock_cytube::{user, MockCytube, MockOptions};
use rosey_plugin_api::stream::DB_STREAM;
use rosey_plugin_api::subjects;
use rosey_tests::NatsServer;
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture on a release build"]
async fn frames_to_nats_throughput_and_memory() {
    let n: usize = std::env::var("ROSEY_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mock = MockCytube::start(MockOptions {
        users: vec![user("alice", 1.0)],
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &json!({
            "platform": {"type": "cytube", "domain": mock.domain(), "channel": "test",
                         "credentials": {"username": "rosey"}},
            "logging": {"level": "warn"}
        }),
    );
    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let bot = spawn_quiet_bot(&config, &nats);
    wait_connected(&mut status, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss, _) = memory_kib(bot.id());

    let mut messages = client.subscribe(subjects::events::MESSAGE).await.unwrap();
    client.flush().await.unwrap();
    let start = Instant::now();
    for i in 0..n {
        assert!(mock.chat_from("alice", &format!("benchmark line {i} with some &amp; text")));
    }
    let mut seen = 0;
    while seen < n {
        tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("events stopped")
            .unwrap();
        seen += 1;
    }
    let events_elapsed = start.elapsed();
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(DB_STREAM).await.unwrap();
    // Writes are acknowledged in order: the last line stored means every line is.
    let last_line = format!("benchmark line {} with some & text", n - 1);
    loop {
        if let Ok(msg) = stream
            .get_last_raw_message_by_subject(subjects::db::MESSAGE_LOG)
            .await
        {
            let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
            if v["message"] == last_line.as_str() {
                break;
            }
        }
        assert!(start.elapsed() < WAIT, "db writes stopped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let db_elapsed = start.elapsed();
    let (rss, peak) = memory_kib(bot.id());

    println!("rosey-bot benchmark, {n} chatMsg frames from the mock server");
    println!(
        "frame -> rosey.events.message: {:.0} events/s ({events_elapsed:?})",
        n as f64 / events_elapsed.as_secs_f64()
    );
    println!(
        "frame -> acknowledged rosey.db.message.log in {DB_STREAM}: {:.0} writes/s ({db_elapsed:?})",
        n as f64 / db_elapsed.as_secs_f64()
    );
    println!(
        "RSS idle after join: {:.1} MiB; after the run: {:.1} MiB; peak: {:.1} MiB",
        idle_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}
