//! Ingestion benchmark: 20,000 mixed join/chat/leave events published as fast as possible to a
//! private `nats-server -js`, timed until every row is visible in SQLite, with `outbound.get`
//! latency sampled during the burst and rosey-db's peak RSS (VmHWM). Two trivial responders on
//! the same server give the baseline: one on the prober's own thread, one in a process of its
//! own (this binary started again with `ROSEY_BENCH_RESPONDER_URL`), as rosey-db is.
//!
//! The nats-server, process guards and readiness wait are the integration tests' own
//! (`rosey_tests`).
//!
//! Run: `cargo bench -p rosey-db-service --bench ingest` (needs `nats-server` on PATH).

use rosey_plugin_api::db::{OutboundGet, OutboundMessage};
use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects::db;
use rosey_tests::measure::{peak_rss_kib, percentile};
use rosey_tests::{last_sequence, wait_for_rosey_db, ChildGuard, NatsServer};
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variables that turn this binary into the separate-process responder.
const RESPONDER_URL_ENV: &str = "ROSEY_BENCH_RESPONDER_URL";
const RESPONDER_SUBJECT_ENV: &str = "ROSEY_BENCH_RESPONDER_SUBJECT";
/// What the separate-process responder answers on.
const RESPONDER_SUBJECT: &str = "bench.responder";

const USERS: usize = 1000;
const LINES: usize = 18;

fn events(base: i64) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(USERS * (LINES + 2));
    for step in 0..LINES + 2 {
        for u in 0..USERS {
            let name = format!("user{u}");
            let ts = base + step as i64;
            out.push(match step {
                0 => (db::USER_JOINED, json!({"username": name, "timestamp": ts})),
                s if s == LINES + 1 => (db::USER_LEFT, json!({"username": name, "timestamp": ts})),
                s => (
                    db::MESSAGE_LOG,
                    json!({"username": name, "message": format!("chat line {s} from {name}"), "timestamp": ts}),
                ),
            });
        }
    }
    out.into_iter().map(|(s, v)| (s, v.to_string())).collect()
}

/// Samples `outbound.get` latency and, as a baseline, the round trip to a trivial responder on
/// the same NATS server (what any service could achieve while the server is this busy).
async fn probe(client: async_nats::Client, stop: Arc<AtomicBool>) -> Probed {
    let echo_subject = client.new_inbox();
    let mut echo_sub = client
        .subscribe(echo_subject.clone())
        .await
        .expect("echo subscription");
    let echo_client = client.clone();
    let echo = tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(m) = echo_sub.next().await {
            if let Some(reply) = m.reply {
                let _ = echo_client.publish(reply, m.payload).await;
            }
        }
    });
    let mut samples = Vec::new();
    let mut baseline = Vec::new();
    let mut process = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let r: Result<Vec<OutboundMessage>, _> = request_json(
            &client,
            db::OUTBOUND_GET,
            &OutboundGet::default(),
            Duration::from_secs(2),
        )
        .await;
        match r {
            Ok(_) => samples.push(t.elapsed()),
            Err(e) => {
                eprintln!("outbound.get failed during ingestion: {e}");
                samples.push(Duration::from_secs(2));
            }
        }
        let t = Instant::now();
        if client
            .request(echo_subject.clone(), "{}".into())
            .await
            .is_ok()
        {
            baseline.push(t.elapsed());
        }
        let t = Instant::now();
        if client.request(RESPONDER_SUBJECT, "{}".into()).await.is_ok() {
            process.push(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    echo.abort();
    Probed {
        samples,
        baseline,
        process,
    }
}

/// Latency samples taken during one burst.
struct Probed {
    /// `outbound.get` to rosey-db.
    samples: Vec<Duration>,
    /// A trivial responder on the prober's own thread (no other process to wake).
    baseline: Vec<Duration>,
    /// A trivial responder in a process of its own, like rosey-db.
    process: Vec<Duration>,
}

/// The separate-process responder: one thread, one connection, answers `{}` with its payload,
/// the least any NATS service in its own process can do.
fn responder(url: &str, subject: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("responder runtime");
    rt.block_on(async move {
        use futures::StreamExt;
        let client = async_nats::connect(url)
            .await
            .expect("responder connection");
        let mut sub = client
            .subscribe(subject.to_owned())
            .await
            .expect("responder subscription");
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = client.publish(reply, m.payload).await;
            }
        }
    });
}

fn main() {
    if let (Ok(url), Ok(subject)) = (
        std::env::var(RESPONDER_URL_ENV),
        std::env::var(RESPONDER_SUBJECT_ENV),
    ) {
        return responder(&url, &subject);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run_round() -> Round {
    let store = tempfile::tempdir().expect("temp dir");
    let nats = NatsServer::start();
    let url = nats.url();
    let client = nats.connect().await;
    let mut responder = Command::new(std::env::current_exe().expect("this binary"));
    responder
        .env(RESPONDER_URL_ENV, &url)
        .env(RESPONDER_SUBJECT_ENV, RESPONDER_SUBJECT)
        .stdout(Stdio::null());
    let _responder = ChildGuard::spawn("responder", responder);
    while client
        .request(RESPONDER_SUBJECT, "{}".into())
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let db_path = store.path().join("bench.db");
    let mut service = Command::new(env!("CARGO_BIN_EXE_rosey-db"));
    service
        .arg("--nats")
        .arg(&url)
        .arg("--db")
        .arg(&db_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    let service = ChildGuard::spawn("rosey-db", service);
    let pid = service.id();
    wait_for_rosey_db(&client, Duration::from_secs(30)).await;

    // Idle latency first.
    let mut idle = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        let _: Vec<OutboundMessage> = request_json(
            &client,
            db::OUTBOUND_GET,
            &OutboundGet::default(),
            Duration::from_secs(2),
        )
        .await
        .expect("outbound.get");
        idle.push(t.elapsed());
    }
    idle.sort();

    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(1)
        - 600;
    let evts = events(base);
    let total = evts.len() as i64;
    let publisher = async_nats::connect(&url).await.expect("publisher");
    let js = async_nats::jetstream::new(publisher.clone());
    let stop = Arc::new(AtomicBool::new(false));
    // The probe runs on its own thread, runtime and connection, so the publisher's work in this
    // process does not count as rosey-db's latency.
    let prober = {
        let stop = stop.clone();
        let url = url.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("probe runtime");
            rt.block_on(async move {
                let client = async_nats::connect(&url).await.expect("probe connection");
                probe(client, stop).await
            })
        })
    };
    // Let the probe connect before the burst starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    // A window of unacknowledged publishes (async-nats caps acks in flight).
    let mut acks = std::collections::VecDeque::with_capacity(1024);
    for (subject, payload) in evts {
        if acks.len() >= 1000 {
            if let Some(ack) = acks.pop_front() {
                let _: async_nats::jetstream::context::PublishAckFuture = ack;
                ack.await.expect("stream ack");
            }
        }
        acks.push_back(js.publish(subject, payload.into()).await.expect("publish"));
    }
    for ack in acks {
        ack.await.expect("stream ack");
    }
    let published = started.elapsed();

    let poll_path = db_path.clone();
    let visible = tokio::task::spawn_blocking(move || {
        let mut last_report = Instant::now();
        loop {
            let seq = last_sequence(&poll_path);
            if seq >= total {
                break;
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                eprintln!("  applied {seq} of {total}");
                last_report = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        started.elapsed()
    })
    .await
    .expect("poll");
    stop.store(true, Ordering::Relaxed);
    let probed = tokio::task::spawn_blocking(move || prober.join().expect("probe thread"))
        .await
        .expect("probe");

    let conn = rusqlite::Connection::open(&db_path).expect("open");
    let (lines, recent): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT SUM(total_chat_lines) FROM user_stats), (SELECT COUNT(*) FROM recent_chat)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("counts");
    let expected = (USERS * LINES) as i64;
    let rss = peak_rss_kib(pid);
    drop(service);
    Round {
        published,
        visible,
        exact: lines == expected && recent == expected,
        idle,
        probed,
        rss_kib: rss,
    }
}

/// One burst's measurements.
struct Round {
    published: Duration,
    visible: Duration,
    exact: bool,
    idle: Vec<Duration>,
    probed: Probed,
    rss_kib: u64,
}

fn line(name: &str, samples: &mut [Duration]) {
    samples.sort();
    println!(
        "  {name}: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        percentile(samples, 0.5).as_secs_f64() * 1e3,
        percentile(samples, 0.95).as_secs_f64() * 1e3,
        percentile(samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        samples.len()
    );
}

async fn run() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let total = USERS * (LINES + 2);
    println!("rosey-db ingest benchmark: {rounds} rounds of {total} events ({USERS} users x join + {LINES} chat + leave), fresh nats-server and database each round");
    let (mut idle, mut during, mut baseline, mut process) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rates = Vec::new();
    let mut rss = 0;
    let mut all_exact = true;
    for round in 1..=rounds {
        let r = run_round().await;
        let rate = total as f64 / r.visible.as_secs_f64();
        println!(
            "  round {round}: published+acked {:.3} s, every row visible {:.3} s -> {:.0} events/s, counts {}, peak RSS {:.1} MiB",
            r.published.as_secs_f64(),
            r.visible.as_secs_f64(),
            rate,
            if r.exact { "exact" } else { "MISMATCH" },
            r.rss_kib as f64 / 1024.0
        );
        rates.push(rate);
        rss = rss.max(r.rss_kib);
        all_exact &= r.exact;
        idle.extend(r.idle);
        during.extend(r.probed.samples);
        baseline.extend(r.probed.baseline);
        process.extend(r.probed.process);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "  throughput end to end: min {:.0}, median {:.0}, max {:.0} events/s; every count exact: {all_exact}",
        rates[0],
        rates[rates.len() / 2],
        rates[rates.len() - 1]
    );
    line("outbound.get idle", &mut idle);
    line("outbound.get during ingestion", &mut during);
    line(
        "trivial NATS responder on the prober's thread, same windows",
        &mut baseline,
    );
    line(
        "trivial NATS responder in its own process, same windows",
        &mut process,
    );
    println!(
        "  rosey-db peak RSS (VmHWM, max over rounds): {:.1} MiB",
        rss as f64 / 1024.0
    );
}
