//! The bot's benchmarks (ignored by the test suite; they assert nothing about speed):
//! websocket frames from the mock CyTube server to `rosey.events.message` on NATS and to
//! acknowledged `rosey.db.message.log` writes in the stream, and the bot's memory; and the
//! memory and CPU of huge user lists (`huge_user_lists_memory_and_cpu`).
//!
//! Run them on a release build:
//! `cargo build --release -p rosey-bot && cargo test --release -p rosey-tests --test bot_bench -- --ignored --nocapture`

use futures::StreamExt;
use rosey_plugin_api::stream::DB_STREAM;
use rosey_plugin_api::subjects;
use rosey_tests::bot_support::{spawn_quiet_bot, wait_connected, write_config};
use rosey_tests::measure::{peak_rss_kib, rss_kib};
use rosey_tests::mock_cytube::{user, MockCytube, MockOptions};
use rosey_tests::NatsServer;
use serde_json::json;
use std::time::{Duration, Instant};

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    (rss_kib(pid), peak_rss_kib(pid))
}

const WAIT: Duration = Duration::from_secs(120);

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

/// User and system CPU time of a process so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at `state`.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line (10 and 11 after `state`, field 3).
    let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    let per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(100);
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// A `userlist` frame of `n` users named `<prefix><i>`, plus `also`.
fn user_list_frame(prefix: &str, n: usize, also: &[&str]) -> String {
    let mut users: Vec<serde_json::Value> = (0..n)
        .map(|i| user(&format!("{prefix}{i:05}"), 0.0))
        .collect();
    users.extend(also.iter().map(|name| user(name, 1.0)));
    format!("42{}", json!(["userlist", users]))
}

/// Waits for a `rosey.events.user.count` with `chat_count == want` (the list was applied).
async fn wait_count(counts: &mut async_nats::Subscriber, want: u64) {
    loop {
        let msg = tokio::time::timeout(WAIT, counts.next())
            .await
            .expect("no user count in time")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        if v["chat_count"].as_u64() == Some(want) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture on a release build"]
async fn huge_user_lists_memory_and_cpu() {
    let n: usize = std::env::var("ROSEY_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let max_users: usize = std::env::var("ROSEY_BENCH_MAX_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let replacements = 10;
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
                         "credentials": {"username": "rosey"}, "max_users": max_users},
            "logging": {"level": "warn"}
        }),
    );
    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let mut counts = client
        .subscribe(subjects::events::USER_COUNT)
        .await
        .unwrap();
    client.flush().await.unwrap();
    let bot = spawn_quiet_bot(&config, &nats);
    wait_connected(&mut status, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = bot.id();
    let (idle_rss, _) = memory_kib(pid);

    // Two lists with no name in common; their sizes differ by one so each is recognised.
    let list_a = user_list_frame("a", n, &["rosey"]);
    let list_b = user_list_frame("b", n, &["rosey", "alice"]);
    let kept = |extra: usize| (n + extra).min(max_users) as u64;

    let cpu_before = cpu_time(pid);
    let start = Instant::now();
    assert!(mock.send_frame(list_a.clone()));
    wait_count(&mut counts, kept(1)).await;
    let first_wall = start.elapsed();
    let first_cpu = cpu_time(pid) - cpu_before;
    let (rss_after, peak) = memory_kib(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss_10s, _) = memory_kib(pid);

    let cpu_before = cpu_time(pid);
    let start = Instant::now();
    for i in 0..replacements {
        let (frame, extra) = if i % 2 == 0 {
            (&list_b, 2)
        } else {
            (&list_a, 1)
        };
        assert!(mock.send_frame(frame.clone()));
        wait_count(&mut counts, kept(extra)).await;
    }
    let wall = start.elapsed() / replacements;
    let cpu = (cpu_time(pid) - cpu_before) / replacements;
    let (rss_end, peak_end) = memory_kib(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss_end_10s, _) = memory_kib(pid);
    // The channel is back to three users.
    assert!(mock.send_frame(user_list_frame("c", 1, &["rosey", "alice"])));
    wait_count(&mut counts, 3).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss_small, _) = memory_kib(pid);
    // The bot's next timers (status every 30 s) give the allocator a chance to return more.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (rss_small_40s, _) = memory_kib(pid);

    println!(
        "rosey-bot, user lists of {n} users ({:.1} MB frames), platform.max_users = {max_users}",
        list_a.len() as f64 / 1e6
    );
    println!(
        "first list (everyone arrives): {:.0} ms CPU, {first_wall:?} wall",
        first_cpu.as_secs_f64() * 1e3
    );
    println!(
        "each full replacement (every user leaves, as many arrive), mean of {replacements}: \
         {:.0} ms CPU, {wall:?} wall",
        cpu.as_secs_f64() * 1e3
    );
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "RSS idle: {:.1} MiB; after one list: {:.1} MiB (peak {:.1}); 10 s later: {:.1} MiB",
        mib(idle_rss),
        mib(rss_after),
        mib(peak),
        mib(rss_10s)
    );
    println!(
        "RSS after {replacements} replacements: {:.1} MiB (peak {:.1}); 10 s later: {:.1} MiB",
        mib(rss_end),
        mib(peak_end),
        mib(rss_end_10s)
    );
    println!(
        "RSS 10 s after a 3-user list replaced the last big one: {:.1} MiB; 40 s after: {:.1} MiB",
        mib(rss_small),
        mib(rss_small_40s)
    );
}
