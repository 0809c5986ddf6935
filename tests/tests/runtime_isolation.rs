//! `isolation: process`: each plugin in a sandboxed host process of its own. A plugin that
//! crashes, runs away or reaches outside its sandbox is contained and reported, and a
//! well-behaved plugin beside it answers every command throughout.

use rosey_plugin_api::subjects::runtime as events;
use rosey_tests::runtime_support::*;
use rosey_tests::NatsServer;
use std::time::Duration;

/// What a misbehaviour must lead to.
enum Expect {
    /// The host dies; `rosey.runtime.plugin.failed` names this in its reason.
    Failed(&'static str),
    /// The sandbox refuses; the plugin answers with this.
    Answer(&'static str),
}

/// Asks `!ping` until the misbehaving plugin answers as configured with `mode` (it restarts
/// after a crash or a configuration change, meanwhile commands may be refused or dropped).
async fn wait_for_mode(obs: &mut Observer, mode: &str) {
    let want = format!("pong {mode}");
    let started = std::time::Instant::now();
    loop {
        obs.send("ping", "", "alice", 1.0).await;
        while let Some(line) = obs.try_next_chat(Duration::from_millis(300)).await {
            if line == want {
                return;
            }
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the misbehaving plugin never served {mode}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaviour_is_contained_and_reported_while_a_neighbour_answers() {
    let bad = Fixture::built("misbehave", "misbehave");
    let good = Fixture::built("counter", "counter_beside");
    let files = tempfile::tempdir().unwrap();
    let database = files.path().join("bot_data.db");
    std::fs::copy(
        rosey_tests::shared_dir().join("fixtures/rosey-v0.5-sample.db"),
        &database,
    )
    .unwrap();
    let escaped = files.path().join("escaped.txt");

    let nats = NatsServer::start();
    let nats_addr = nats
        .url()
        .trim_start_matches("nats://")
        .trim_end_matches('/')
        .to_owned();
    let plugins = |mode: &str, target: &str| {
        serde_json::json!({
            "enabled": [bad.name, good.name],
            "isolation": "process",
            "max_failures": 100,
            "limits": {"memory_mib": 256},
            "config": {bad.name.as_str(): {"mode": mode, "target": target}},
        })
    };
    let mut obs = Observer::new(&nats).await;
    let libs = tempfile::tempdir().unwrap();
    bad.install_into(libs.path());
    good.install_into(libs.path());
    let rt = start_runtime(&config(&nats, libs.path(), plugins("idle", "")));
    obs.event(events::PLUGIN_LOADED, &bad.name).await;
    obs.event(events::PLUGIN_LOADED, &good.name).await;
    wait_for_mode(&mut obs, "idle").await;

    let database_text = database.display().to_string();
    let escaped_text = escaped.display().to_string();
    let cases = [
        ("segfault", "", Expect::Failed("SIGSEGV")),
        ("abort", "", Expect::Failed("SIGABRT")),
        // Caught by the SDK, as in process; the host is replaced all the same.
        ("panic", "", Expect::Failed("told to panic")),
        ("stack_overflow", "", Expect::Failed("overflowed its stack")),
        ("allocate", "", Expect::Failed("memory allocation")),
        ("endless_loop", "", Expect::Failed("stuck in on_message")),
        (
            "connect",
            nats_addr.as_str(),
            Expect::Answer("connect: refused"),
        ),
        (
            "open_database",
            database_text.as_str(),
            Expect::Answer("open_database: refused"),
        ),
        (
            "write_file",
            escaped_text.as_str(),
            Expect::Answer("write_file: refused"),
        ),
        (
            "publish_outside",
            "",
            Expect::Answer("publish_outside: refused"),
        ),
    ];
    let mut counted = 0;
    for (mode, target, expect) in cases {
        rt.write_config(&config(&nats, libs.path(), plugins(mode, target)));
        wait_for_mode(&mut obs, mode).await;
        obs.clear_backlog();
        obs.send("act", "", "alice", 1.0).await;
        match expect {
            Expect::Failed(reason) => {
                let failed = obs.event(events::PLUGIN_FAILED, &bad.name).await;
                let error = failed.error.unwrap_or_default();
                assert!(error.contains(reason), "{mode}: {error}\n{}", rt.log());
                // Restarted in a new host from its last saved state.
                wait_for_mode(&mut obs, mode).await;
            }
            Expect::Answer(answer) => {
                let line = obs.next_chat().await;
                assert!(line.starts_with(answer), "{mode}: {line}");
                if mode != "publish_outside" {
                    // EPERM from seccomp or EACCES from Landlock, not a network or file error.
                    assert!(
                        line.contains("(os error 1)") || line.contains("(os error 13)"),
                        "{mode}: {line}"
                    );
                }
            }
        }
        // The neighbour answered every command throughout, its count intact.
        counted += 1;
        assert_eq!(
            obs.ask("count", "").await,
            format!("v1 count={counted} "),
            "after {mode}"
        );
    }
    assert!(!escaped.exists(), "the plugin wrote a file");
    let info = obs.info(&good.name).await;
    assert_eq!(info.errors, 0, "{:?}", info.last_error);
    let host = info.host.expect("the neighbour runs in a host process");
    assert_eq!(host.restarts, 0);
    assert!(host.rss_kib.is_some_and(|k| k > 0), "{host:?}");
    // Six failures (the panic and the stuck call included), each followed by a new host.
    let bad_host = obs.info(&bad.name).await.host.expect("a host process");
    assert_eq!(bad_host.restarts, 6, "{bad_host:?}");
    assert_ne!(bad_host.pid, host.pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_its_host_cannot_load_leaves_the_old_host_serving_with_its_state() {
    // Same name, built against an interface that differs from the runtime's: in process mode
    // the runtime only copies it, and abi_stable's check refuses it in the new host.
    let fixture = Fixture::built("counter", "counter_host_swap");
    let stale = Fixture::with_api("counter", "counter_host_swap_stale", &changed_plugin_api());
    stale.build();
    let (mut obs, served) = serve(
        &[&fixture],
        serde_json::json!({"enabled": [fixture.name], "isolation": "process"}),
    )
    .await;
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");
    let first_pid = obs.info(&fixture.name).await.host.expect("a host").pid;

    let tmp = served.libs.path().join(".incoming");
    std::fs::copy(stale.built_library(), &tmp).unwrap();
    std::fs::rename(
        &tmp,
        served.libs.path().join(format!("lib{}.so", fixture.name)),
    )
    .unwrap();
    let failed = obs.event(events::PLUGIN_FAILED, &fixture.name).await;
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("interface mismatch"), "{error}");
    assert!(
        error.contains("previous generation keeps serving"),
        "{error}"
    );
    assert_eq!(obs.ask("count", "").await, "v1 count=2 ");
    assert_eq!(
        obs.info(&fixture.name).await.host.expect("a host").pid,
        first_pid
    );

    // A good build afterwards gets a new host, with the count carried over.
    fixture.set_answer("v2");
    fixture.build();
    fixture.install_into(served.libs.path());
    obs.event(events::PLUGIN_RELOADED, &fixture.name).await;
    assert_eq!(obs.ask("count", "").await, "v2 count=3 ");
    let info = obs.info(&fixture.name).await;
    let host = info.host.expect("a host");
    assert_ne!(host.pid, first_pid, "a new build runs in a new host");
    assert_eq!(host.restarts, 0, "a reload is not a restart");
    // The old host has exited (its pid is not ours any more, or is gone).
    let old_alive = std::fs::read_to_string(format!("/proc/{first_pid}/cmdline"))
        .is_ok_and(|c| c.contains("rosey-plugin-host"));
    assert!(!old_alive, "the old host still runs");
}
