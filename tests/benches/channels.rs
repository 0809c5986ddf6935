//! Many channels in one deployment, with real processes: one nats-server, one `rosey-db`, one
//! `rosey-runtime` with markov and quotes, and one `rosey-bot` per channel, each joined to a mock
//! CyTube server of its own (all mocks in this process). In every channel users join, chat at
//! one line a second and leave; every ten seconds a user asks `!quote count` and the time until
//! the bot's answer reaches that channel's server is the command round trip.
//!
//! Checked at the end: every line stored once in its own channel's file (recent chat and the
//! users' line counts exact), every answer in the channel that asked and nowhere else. Reported:
//! round-trip percentiles, each process's resident memory, and the per-channel cost.
//!
//! `scripts/simulate-channels.sh` builds the release binaries and runs this; the figures go to
//! BENCHMARKS.md by hand. `ROSEY_SIM_CHANNELS` (default 100) and `ROSEY_SIM_SECONDS` (default
//! 300) size the run.

use rosey_tests::measure::{percentile, rss_kib};
use rosey_tests::mock_cytube::{user, MockCytube, MockOptions};
use rosey_tests::{binary, command, wait_for_rosey_db, ChildGuard, NatsServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Users who take turns chatting in each channel.
const CHATTERS: usize = 5;
/// Seconds between two `!quote count` in one channel.
const COMMAND_EVERY: u64 = 10;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The channel names: `sim000`, `sim001`, ...
fn channel_name(i: usize) -> String {
    format!("sim{i:03}")
}

/// How many rows `sql` counts in `db`.
fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(-1)
}

/// What one channel's driver saw.
#[derive(Default)]
struct ChannelReport {
    lines: i64,
    round_trips: Vec<Duration>,
    unanswered: usize,
}

/// Drives one channel for `run_for`: a line a second from the chatters in turn, a join and a
/// leave every ten seconds, and `!quote count` every [`COMMAND_EVERY`] seconds, timed until the
/// bot's answer reaches the server.
async fn drive(mock: Arc<MockCytube>, channel: usize, run_for: Duration) -> ChannelReport {
    let mut report = ChannelReport::default();
    // Channels start spread over the first second, as real ones would not all speak at once.
    tokio::time::sleep(Duration::from_millis((channel as u64 * 37) % 1000)).await;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut second = 0u64;
    while start.elapsed() < run_for {
        tick.tick().await;
        second += 1;
        let who = format!("user{}_{channel}", second as usize % CHATTERS);
        if second % COMMAND_EVERY == 0 {
            let before = mock.received("chatMsg").len();
            let asked = Instant::now();
            mock.chat_from(&who, "!quote count");
            let deadline = asked + Duration::from_secs(5);
            loop {
                if mock.received("chatMsg").len() > before {
                    report.round_trips.push(asked.elapsed());
                    break;
                }
                if Instant::now() > deadline {
                    report.unanswered += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        } else {
            mock.chat_from(&who, &format!("line {second} of channel {channel}"));
            report.lines += 1;
        }
        if second % 10 == 5 {
            let visitor = format!("visitor{}_{channel}", second / 10);
            mock.send_event("addUser", user(&visitor, 0.0));
            if second >= 15 {
                let gone = format!("visitor{}_{channel}", second / 10 - 1);
                mock.send_event("userLeave", json!({"name": gone}));
            }
        }
    }
    report
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let channels = env_or("ROSEY_SIM_CHANNELS", 100) as usize;
    let run_for = Duration::from_secs(env_or("ROSEY_SIM_SECONDS", 300));
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bot_data.db");

    let mut mocks = Vec::with_capacity(channels);
    for i in 0..channels {
        let users: Vec<Value> = (0..CHATTERS)
            .map(|u| user(&format!("user{u}_{i}"), 1.0))
            .collect();
        mocks.push(Arc::new(
            MockCytube::start(MockOptions {
                channel: channel_name(i),
                users,
                ..Default::default()
            })
            .await,
        ));
    }
    let entries: Vec<Value> = mocks
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"name": channel_name(i), "domain": m.domain()}))
        .collect();
    let plugins_dir = binary("rosey-runtime")
        .parent()
        .map(Path::to_path_buf)
        .unwrap();
    let config = json!({
        "nats": {"server": nats.url()},
        "platform": {
            "type": "cytube", "channels": entries, "credentials": {"username": "rosey"},
            "chat_rate": {"burst": 4, "per_second": 2.0}
        },
        // A stream per channel: each reserves its byte limit on the server.
        "database": {"path": db, "stream": {"max_bytes": 64 << 20}},
        "plugins": {
            "directory": plugins_dir, "enabled": ["markov", "quotes"], "hot_reload": false,
            "config": {"markov": {"bootstrap_lines": 0}}
        },
        "logging": {"level": "warn"},
    });
    let config_file = dir.path().join("rosey.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let quiet = |name: &str, extra: &[String]| {
        let mut cmd = command(name);
        cmd.arg("--config")
            .arg(&config_file)
            .args(extra)
            .env("RUST_LOG", "warn")
            // As `rosey up` and the systemd units run them.
            .env("MIMALLOC_PURGE_DELAY", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        ChildGuard::spawn(name, cmd)
    };
    let db_service = quiet("rosey-db", &[]);
    wait_for_rosey_db(&client, Duration::from_secs(120)).await;
    let runtime = quiet("rosey-runtime", &[]);
    let started = Instant::now();
    let bots: Vec<ChildGuard> = (0..channels)
        .map(|i| quiet("rosey-bot", &["--channel".to_owned(), channel_name(i)]))
        .collect();
    // Every bot has joined once its mock has counted a join.
    let deadline = Instant::now() + Duration::from_secs(300);
    while mocks.iter().any(|m| m.joins() == 0) {
        assert!(Instant::now() < deadline, "not every bot joined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{channels} bots joined in {:.1} s; driving for {} s",
        started.elapsed().as_secs_f64(),
        run_for.as_secs()
    );
    // Quotes must be loaded before the first command: wait for an answer in channel 0.
    let probe = mocks[0].clone();
    let before = probe.received("chatMsg").len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while probe.received("chatMsg").len() == before {
        probe.chat_from("prober", "!quote count");
        assert!(Instant::now() < deadline, "quotes never answered");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let probe_answers = probe.received("chatMsg").len();

    let drivers: Vec<_> = mocks
        .iter()
        .enumerate()
        .map(|(i, m)| tokio::spawn(drive(m.clone(), i, run_for)))
        .collect();
    let mut peak: Vec<(String, u64)> = Vec::new();
    let sample = |peak: &mut Vec<(String, u64)>| {
        let mut rows = vec![
            ("rosey-db".to_owned(), rss_kib(db_service.id())),
            ("rosey-runtime".to_owned(), rss_kib(runtime.id())),
            (
                "rosey-bot (sum)".to_owned(),
                bots.iter().map(|b| rss_kib(b.id())).sum(),
            ),
            (
                "rosey-bot (largest)".to_owned(),
                bots.iter().map(|b| rss_kib(b.id())).max().unwrap_or(0),
            ),
        ];
        if peak.is_empty() {
            peak.append(&mut rows);
        } else {
            for (slot, (_, now)) in peak.iter_mut().zip(rows) {
                slot.1 = slot.1.max(now);
            }
        }
    };
    let driving = Instant::now();
    while driving.elapsed() < run_for {
        sample(&mut peak);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let mut reports = Vec::new();
    for d in drivers {
        reports.push(d.await.unwrap());
    }
    sample(&mut peak);

    // Every line stored once, in its own channel's file.
    let files: Vec<PathBuf> = (0..channels)
        .map(|i| {
            if i == 0 {
                db.clone()
            } else {
                dir.path().join(format!("bot_data.{}.db", channel_name(i)))
            }
        })
        .collect();
    let settle = Instant::now() + Duration::from_secs(120);
    let mut wrong = Vec::new();
    for (i, (file, report)) in files.iter().zip(&reports).enumerate() {
        // Channel 0 also heard the prober's commands (not stored as lines of chat counts).
        let expected = report.lines;
        let stored = loop {
            let n = count(
                file,
                &format!(
                    "SELECT COUNT(*) FROM recent_chat WHERE message LIKE 'line % of channel {i}'"
                ),
            );
            if n >= expected || Instant::now() > settle {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let foreign = count(
            file,
            &format!("SELECT COUNT(*) FROM recent_chat WHERE message LIKE 'line % of channel %' AND message NOT LIKE 'line % of channel {i}'"),
        );
        let chatters: Vec<String> = (0..CHATTERS).map(|u| format!("'user{u}_{i}'")).collect();
        let counted = count(
            file,
            &format!(
                "SELECT COALESCE(SUM(total_chat_lines), 0) FROM user_stats WHERE username IN ({})",
                chatters.join(", ")
            ),
        );
        let commands = report.round_trips.len() + report.unanswered;
        // Each user's count includes their `!quote count` lines.
        if stored != expected || foreign != 0 || counted != expected + commands as i64 {
            wrong.push(format!(
                "channel {i}: {stored} of {expected} lines stored, {foreign} foreign, {counted} counted (expected {})",
                expected + commands as i64
            ));
        }
    }
    // Every answer in the channel that asked: one bot line per command, nowhere else.
    for (i, (mock, report)) in mocks.iter().zip(&reports).enumerate() {
        let said = mock.received("chatMsg").len();
        let asked = report.round_trips.len() + if i == 0 { probe_answers } else { 0 };
        if said < asked || said > asked + report.unanswered {
            wrong.push(format!(
                "channel {i}: the bot said {said} lines for {asked} answered commands"
            ));
        }
    }

    let mut trips: Vec<Duration> = reports
        .iter()
        .flat_map(|r| r.round_trips.iter().copied())
        .collect();
    trips.sort();
    let unanswered: usize = reports.iter().map(|r| r.unanswered).sum();
    let lines: i64 = reports.iter().map(|r| r.lines).sum();
    println!(
        "channels: {channels}; lines: {lines}; commands answered: {}; unanswered: {unanswered}",
        trips.len()
    );
    println!(
        "command round trip (chat line in -> answer out, through the bot, NATS, the runtime, quotes, NATS, the bot): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&trips, 0.5).as_secs_f64() * 1e3,
        percentile(&trips, 0.9).as_secs_f64() * 1e3,
        percentile(&trips, 0.99).as_secs_f64() * 1e3,
        trips.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    for (name, kib) in &peak {
        println!("peak RSS {name}: {:.1} MiB", *kib as f64 / 1024.0);
    }
    if let Some((_, sum)) = peak.iter().find(|(n, _)| n == "rosey-bot (sum)") {
        println!(
            "per channel: {:.2} MiB of bot",
            *sum as f64 / 1024.0 / channels as f64
        );
    }
    let files_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "database files: {:.1} MiB in {} files",
        files_bytes as f64 / (1 << 20) as f64,
        files.len()
    );
    if wrong.is_empty() {
        println!("every line stored once in its own channel; every answer in its own channel");
    } else {
        for w in &wrong {
            println!("WRONG: {w}");
        }
        std::process::exit(1);
    }
    drop(bots);
}
