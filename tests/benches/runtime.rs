//! rosey-runtime benchmarks with real processes: a release runtime, release fixture plugins
//! and a private nats-server. Run `cargo build --release -p rosey-runtime` first (it builds
//! `rosey-plugin-host` too), then `cargo bench -p rosey-tests --bench runtime`. Results go to
//! BENCHMARKS.md by hand.
//!
//! One runtime serves two copies of the counter fixture, one `in_process` and one in a host
//! process (`isolation: process`), and every measurement is taken for both in the same run,
//! interleaved where it can be, so machine load affects both alike:
//!
//! - reload latency: from a new library being renamed into the plugin folder to the
//!   `rosey.runtime.plugin.reloaded` event (debounce included, reported separately);
//! - added latency: command -> runtime -> plugin -> chat reply, against the same hop count
//!   through a bare NATS echo client, both in this process and in a process of its own (this
//!   binary started again with `ROSEY_BENCH_ECHO_URL`), so that waking another process is
//!   shown not to be what the runtime adds;
//! - throughput: commands per second through one plugin;
//! - memory: resident memory added per reload (libraries are never unloaded), and a host
//!   process's own resident memory.

use futures::StreamExt;
use rosey_plugin_api::subjects;
use rosey_tests::measure::{percentile, rss_kib};
use rosey_tests::runtime_support::*;
use rosey_tests::NatsServer;
use std::time::{Duration, Instant};

const RELOADS: usize = 20;
const ROUND_TRIPS: usize = 2000;
const BLAST: usize = 20_000;
const DEBOUNCE_S: f64 = 0.01;

/// Environment variable that turns this binary into the separate-process echo (its value is
/// the NATS URL).
const ECHO_PROCESS_ENV: &str = "ROSEY_BENCH_ECHO_URL";
/// Where the separate-process echo listens and answers.
const ECHO_PROCESS_IN: &str = "bench.echo_process.in";
const ECHO_PROCESS_OUT: &str = "bench.echo_process.out";

fn main() {
    if let Ok(url) = std::env::var(ECHO_PROCESS_ENV) {
        return echo_process(&url);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

/// A bare NATS echo in a process of its own, as the runtime is: one thread, one connection,
/// each message republished as it came. The least any NATS client in another process can add.
fn echo_process(url: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = async_nats::connect(url).await.unwrap();
        let mut input = client.subscribe(ECHO_PROCESS_IN).await.unwrap();
        while let Some(msg) = input.next().await {
            client.publish(ECHO_PROCESS_OUT, msg.payload).await.unwrap();
        }
    });
}

/// One plugin under test: its fixture (built twice, with different answers), its command and
/// its isolation.
struct Subject {
    fixture: Fixture,
    builds: Vec<std::path::PathBuf>,
    command: String,
    isolation: &'static str,
}

async fn bench() {
    let scratch = tempfile::tempdir().unwrap();
    let mut subjects_under_test = Vec::new();
    for (name, prefix, isolation) in [
        ("counter_bench", "", "in_process"),
        ("counter_bench_host", "h", "process"),
    ] {
        // Two builds with different answers, so each reload loads new content.
        let fixture = Fixture::new("counter", name);
        let mut builds = Vec::new();
        for answer in ["a", "b"] {
            fixture.set_answer(answer);
            fixture.build_release();
            let copy = scratch.path().join(format!("{name}-{answer}.so"));
            std::fs::copy(fixture.built_release_library(), &copy).unwrap();
            builds.push(copy);
        }
        subjects_under_test.push(Subject {
            fixture,
            builds,
            command: format!("{prefix}count"),
            isolation,
        });
    }
    let libs = tempfile::tempdir().unwrap();
    let install = |s: &Subject, build: usize| {
        let tmp = libs.path().join(".incoming");
        std::fs::copy(&s.builds[build], &tmp).unwrap();
        let start = Instant::now();
        std::fs::rename(&tmp, libs.path().join(format!("lib{}.so", s.fixture.name))).unwrap();
        start
    };
    for s in &subjects_under_test {
        install(s, 0);
    }

    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let mut plugin_config = serde_json::Map::new();
    for s in &subjects_under_test {
        let prefix = s.command.trim_end_matches("count");
        plugin_config.insert(
            s.fixture.name.clone(),
            serde_json::json!({"isolation": s.isolation, "name_prefix": prefix}),
        );
    }
    let names: Vec<&str> = subjects_under_test
        .iter()
        .map(|s| s.fixture.name.as_str())
        .collect();
    let rt = start_runtime(&config(
        &nats,
        libs.path(),
        serde_json::json!({
            "enabled": names,
            "queue_capacity": BLAST * 2,
            "reload_debounce": DEBOUNCE_S,
            "tick_interval": 1.0,
            "config": plugin_config,
        }),
    ));
    for s in &subjects_under_test {
        obs.event(subjects::runtime::PLUGIN_LOADED, &s.fixture.name)
            .await;
        assert_eq!(obs.ask(&s.command, "").await, "a count=1 ");
    }
    let pid = rt.child.id();

    // Reload latency and memory per reload.
    let mut reload_results = Vec::new();
    for s in &subjects_under_test {
        let rss_before = rss_kib(pid);
        let mut reloads = Vec::new();
        for i in 0..RELOADS {
            let start = install(s, (i + 1) % 2);
            obs.event(subjects::runtime::PLUGIN_RELOADED, &s.fixture.name)
                .await;
            reloads.push(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss_after = rss_kib(pid);
        reloads.sort();
        reload_results.push((reloads, rss_before, rss_after));
    }
    let host = obs
        .info(&subjects_under_test[1].fixture.name)
        .await
        .host
        .expect("the process-isolated plugin runs in a host");

    // Added latency: command -> plugin -> chat, against a bare echo with the same hops,
    // interleaved so that load from other processes affects both alike.
    let echo_client = nats.connect().await;
    let mut echo_in = echo_client.subscribe("bench.echo.in").await.unwrap();
    echo_client.flush().await.unwrap();
    let echo = tokio::spawn(async move {
        while let Some(msg) = echo_in.next().await {
            echo_client
                .publish("bench.echo.out", msg.payload)
                .await
                .unwrap();
        }
    });
    let mut out = obs.client.subscribe("bench.echo.out").await.unwrap();
    let mut out_process = obs.client.subscribe(ECHO_PROCESS_OUT).await.unwrap();
    obs.client.flush().await.unwrap();
    let _echo_process = rosey_tests::ChildGuard::spawn("echo process", {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.env(ECHO_PROCESS_ENV, nats.url());
        cmd
    });
    // Wait until the echo process answers.
    loop {
        obs.client
            .publish(ECHO_PROCESS_IN, "ready?".into())
            .await
            .unwrap();
        obs.client.flush().await.unwrap();
        if tokio::time::timeout(Duration::from_millis(200), out_process.next())
            .await
            .is_ok()
        {
            break;
        }
    }
    let payload = serde_json::to_vec(&command_payload("count", "", "alice", 1.0)).unwrap();
    let mut through_plugin: Vec<Vec<Duration>> = vec![Vec::new(); subjects_under_test.len()];
    let mut bare = Vec::new();
    let mut bare_process = Vec::new();
    for _ in 0..ROUND_TRIPS {
        for (i, s) in subjects_under_test.iter().enumerate() {
            let start = Instant::now();
            obs.ask(&s.command, "").await;
            through_plugin[i].push(start.elapsed());
        }
        let start = Instant::now();
        obs.client
            .publish("bench.echo.in", payload.clone().into())
            .await
            .unwrap();
        obs.client.flush().await.unwrap();
        out.next().await.unwrap();
        bare.push(start.elapsed());
        let start = Instant::now();
        obs.client
            .publish(ECHO_PROCESS_IN, payload.clone().into())
            .await
            .unwrap();
        obs.client.flush().await.unwrap();
        out_process.next().await.unwrap();
        bare_process.push(start.elapsed());
    }
    echo.abort();
    for t in &mut through_plugin {
        t.sort();
    }
    bare.sort();
    bare_process.sort();

    // Throughput: a burst of commands, timed to the last reply.
    let mut blasts = Vec::new();
    for s in &subjects_under_test {
        let payload = serde_json::to_vec(&command_payload(&s.command, "", "alice", 1.0)).unwrap();
        let start = Instant::now();
        let subject = subjects::commands::command(&s.command).unwrap();
        for _ in 0..BLAST {
            obs.client
                .publish(subject.clone(), payload.clone().into())
                .await
                .unwrap();
        }
        obs.client.flush().await.unwrap();
        for _ in 0..BLAST {
            obs.next_chat().await;
        }
        blasts.push(start.elapsed());
    }

    let p50_bare = percentile(&bare, 0.5);
    let p50_bare_process = percentile(&bare_process, 0.5);
    println!(
        "rosey-runtime benchmarks ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "bare NATS echo in this process (no process to wake): p50 {:?} p99 {:?}",
        p50_bare,
        percentile(&bare, 0.99),
    );
    println!(
        "bare NATS echo in a process of its own (as the runtime is): p50 {:?} p99 {:?}",
        p50_bare_process,
        percentile(&bare_process, 0.99),
    );
    let p50_in_process = percentile(&through_plugin[0], 0.5);
    for (i, s) in subjects_under_test.iter().enumerate() {
        let (reloads, rss_before, rss_after) = &reload_results[i];
        let p50_plugin = percentile(&through_plugin[i], 0.5);
        println!("--- isolation {}", s.isolation);
        println!(
            "reload latency over {RELOADS} reloads (debounce {DEBOUNCE_S}s included): p50 {:?}, p90 {:?}, max {:?}",
            percentile(reloads, 0.5),
            percentile(reloads, 0.9),
            reloads[reloads.len() - 1]
        );
        println!(
            "round trip over {ROUND_TRIPS}: through the plugin p50 {:?} p99 {:?}; added over the echo in a process of its own p50 {:?}; over in_process p50 {:?}",
            p50_plugin,
            percentile(&through_plugin[i], 0.99),
            p50_plugin.saturating_sub(p50_bare_process),
            p50_plugin.saturating_sub(p50_in_process),
        );
        println!(
            "throughput: {BLAST} commands in {:?} = {:.0} msgs/s through one plugin",
            blasts[i],
            BLAST as f64 / blasts[i].as_secs_f64()
        );
        println!(
            "runtime memory: RSS {} KiB before, {} KiB after {RELOADS} reloads = {:.0} KiB per reload",
            rss_before,
            rss_after,
            (*rss_after as f64 - *rss_before as f64) / RELOADS as f64
        );
    }
    println!(
        "host process (after {RELOADS} reloads, each in a new host): pid {}, RSS {} KiB",
        host.pid,
        rss_kib(host.pid)
    );
}
