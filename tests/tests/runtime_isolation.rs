//! `isolation: process`: each plugin in a sandboxed host process of its own. A plugin that
//! crashes, runs away or reaches outside its sandbox is contained and reported, and a
//! well-behaved plugin beside it answers every command throughout.

use rosey_plugin_api::subjects::runtime as events;
use rosey_tests::runtime_support::*;
use rosey_tests::NatsServer;
use std::time::Duration;

/// What a misbehaviour must lead to.
enum Expect {
    /// The host dies, and again on the message redelivered to the next host, which is then
    /// dropped as poison; `rosey.runtime.plugin.failed` names this in its reason both times.
    Crashed(&'static str),
    /// The plugin fails once (a panic the SDK caught, a stuck call: not redelivered);
    /// `rosey.runtime.plugin.failed` names this in its reason.
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

/// The misbehaving fixture alone (copied as `copy`) in a host process, with `plugin` as its
/// configuration and `plugins` as further keys of the plugins section; returns once it is
/// loaded and serves `plugin.mode`, with the backlog of chat cleared.
async fn misbehave_alone(
    copy: &str,
    plugin: serde_json::Value,
    plugins: serde_json::Value,
) -> (Fixture, Observer, Served) {
    let bad = Fixture::built("misbehave", copy);
    let mut section = serde_json::json!({
        "enabled": [bad.name],
        "isolation": "process",
        "config": {bad.name.as_str(): plugin.clone()},
    });
    if let (Some(section), Some(extra)) = (section.as_object_mut(), plugins.as_object()) {
        section.extend(extra.clone());
    }
    let (mut obs, served) = serve(&[&bad], section).await;
    obs.event(events::PLUGIN_LOADED, &bad.name).await;
    wait_for_mode(&mut obs, plugin["mode"].as_str().expect("a mode")).await;
    obs.clear_backlog();
    (bad, obs, served)
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
        ("segfault", "", Expect::Crashed("SIGSEGV")),
        ("abort", "", Expect::Crashed("SIGABRT")),
        // Caught by the SDK, as in process; the host is replaced all the same.
        ("panic", "", Expect::Failed("told to panic")),
        (
            "stack_overflow",
            "",
            Expect::Crashed("overflowed its stack"),
        ),
        ("allocate", "", Expect::Crashed("memory allocation")),
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
            Expect::Crashed(reason) => {
                let first = obs.event(events::PLUGIN_FAILED, &bad.name).await;
                let error = first.error.unwrap_or_default();
                assert!(error.contains(reason), "{mode}: {error}\n{}", rt.log());
                assert!(error.contains("goes once more"), "{mode}: {error}");
                let second = obs.event(events::PLUGIN_FAILED, &bad.name).await;
                let error = second.error.unwrap_or_default();
                assert!(error.contains(reason), "{mode}: {error}\n{}", rt.log());
                assert!(
                    error.contains(
                        "rosey.commands.act killed two hosts in a row: dropped as poison"
                    ),
                    "{mode}: {error}"
                );
                wait_for_mode(&mut obs, mode).await;
            }
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
    // Ten failures (four crashes twice each, the panic and the stuck call), each followed by
    // a new host.
    let bad_host = obs.info(&bad.name).await.host.expect("a host process");
    assert_eq!(bad_host.restarts, 10, "{bad_host:?}");
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

/// The next chat line starting with `prefix` (others are skipped), within the patience limit.
async fn chat_starting(obs: &mut Observer, prefix: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let line = obs.next_chat().await;
        if line.starts_with(prefix) {
            return line;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "no chat line starting with {prefix:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_spinning_outside_any_call_is_stopped_by_cpu_share_while_a_neighbour_answers() {
    let bad = Fixture::built("misbehave", "misbehave_spin");
    let good = Fixture::built("counter", "counter_beside_spin");
    let (mut obs, served) = serve(
        &[&bad, &good],
        serde_json::json!({
            "enabled": [bad.name, good.name],
            "isolation": "process",
            // Low enough for a spinning thread on a machine busy with other work.
            "config": {bad.name.as_str(): {
                "mode": "spin_thread",
                "limits": {"cpu_share": 20, "cpu_window": 2},
            }},
        }),
    )
    .await;
    obs.event(events::PLUGIN_LOADED, &bad.name).await;
    obs.event(events::PLUGIN_LOADED, &good.name).await;
    wait_for_mode(&mut obs, "spin_thread").await;
    let first_pid = obs.info(&bad.name).await.host.expect("a host").pid;

    // The handler returns at once; the thread it started spins on.
    assert_eq!(obs.ask("act", "").await, "spin_thread: spinning");
    let failed = obs.event(events::PLUGIN_FAILED, &bad.name).await;
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("limits.cpu_share"), "{error}");
    assert!(error.contains("SIGKILL"), "{error}");
    assert!(
        error.contains("restarting from its last saved state"),
        "{error}"
    );
    assert!(
        served.rt.log().contains("limits.cpu_share"),
        "{}",
        served.rt.log()
    );
    // Restarted in a new host; the neighbour answered throughout.
    wait_for_mode(&mut obs, "spin_thread").await;
    let host = obs.info(&bad.name).await.host.expect("a host");
    assert_ne!(host.pid, first_pid);
    assert_eq!(host.restarts, 1);
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");
    let neighbour = obs.info(&good.name).await;
    assert_eq!(neighbour.errors, 0, "{:?}", neighbour.last_error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_busy_on_the_serving_thread_is_not_counted_against_cpu_share() {
    // A share of 1% over 1 s would stop any thread of the plugin's own within a second or
    // two; a handler looping on the serving thread is the watchdog's to stop (after 5 s).
    let (bad, mut obs, _served) = misbehave_alone(
        "misbehave_busy",
        serde_json::json!({"mode": "endless_loop"}),
        serde_json::json!({
            "watchdog_timeout": 5,
            "limits": {"cpu_share": 1, "cpu_window": 1},
        }),
    )
    .await;
    obs.send("act", "", "alice", 1.0).await;
    let failed = obs.event(events::PLUGIN_FAILED, &bad.name).await;
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("stuck in on_message"), "{error}");
    assert!(!error.contains("cpu_share"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cpu_seconds_limit_ends_a_spinning_host_with_sigxcpu() {
    let (bad, mut obs, _served) = misbehave_alone(
        "misbehave_cpu_seconds",
        // The CPU share rule out of the way: only RLIMIT_CPU can stop it.
        serde_json::json!({
            "mode": "spin_thread",
            "limits": {"cpu_seconds": 1, "cpu_share": 25600, "cpu_window": 600},
        }),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(obs.ask("act", "").await, "spin_thread: spinning");
    let failed = obs.event(events::PLUGIN_FAILED, &bad.name).await;
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("SIGXCPU"), "{error}");
    assert!(error.contains("limits.cpu_seconds"), "{error}");
    wait_for_mode(&mut obs, "spin_thread").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_files_limit_holds_and_the_plugin_goes_on_serving() {
    let (bad, mut obs, _served) = misbehave_alone(
        "misbehave_files",
        serde_json::json!({"mode": "open_files", "limits": {"open_files": 16}}),
        serde_json::json!({}),
    )
    .await;
    let line = obs.ask("act", "").await;
    // EMFILE: the process's table is full at 16, some of which the host holds already.
    assert!(line.contains("(os error 24)"), "{line}");
    let got: usize = line
        .strip_prefix("open_files: refused after ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((1..16).contains(&got), "{line}");
    // Contained: the same host serves on, nothing failed.
    wait_for_mode(&mut obs, "open_files").await;
    let info = obs.info(&bad.name).await;
    assert_eq!(info.host.expect("a host").restarts, 0);
    assert_eq!(info.errors, 0, "{:?}", info.last_error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_kills_its_host_is_redelivered_once_then_dropped_as_poison() {
    let (bad, mut obs, _served) = misbehave_alone(
        "misbehave_poison",
        serde_json::json!({"mode": "segfault"}),
        serde_json::json!({}),
    )
    .await;
    obs.send("act", "", "alice", 1.0).await;
    let first = obs.event(events::PLUGIN_FAILED, &bad.name).await;
    let error = first.error.unwrap_or_default();
    assert!(error.contains("SIGSEGV"), "{error}");
    assert!(
        error.contains("the message on rosey.commands.act it died on goes once more"),
        "{error}"
    );
    // Five commands behind it: they wait in the queue while the next host starts, and the
    // redelivered one goes first.
    for _ in 0..5 {
        obs.send("tally", "", "alice", 1.0).await;
    }
    let second = obs.event(events::PLUGIN_FAILED, &bad.name).await;
    let error = second.error.unwrap_or_default();
    assert!(error.contains("SIGSEGV"), "{error}");
    assert!(
        error.contains(
            "the message on rosey.commands.act killed two hosts in a row: dropped as poison"
        ),
        "{error}"
    );
    // Every command behind it is handled, in order, by the third host.
    for n in 1..=5 {
        assert_eq!(
            chat_starting(&mut obs, "tally=").await,
            format!("tally={n}")
        );
    }
    wait_for_mode(&mut obs, "segfault").await;
    let info = obs.info(&bad.name).await;
    assert_eq!(info.host.expect("a host").restarts, 2, "{info:?}");
    assert_eq!(
        info.state,
        rosey_plugin_api::admin::PluginState::Running,
        "{info:?}"
    );
    // No failure since the poison report.
    let last = info.last_error.unwrap_or_default();
    assert!(last.contains("dropped as poison"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_restarts_from_the_last_checkpoint_not_from_newer_unsaved_state() {
    let bad = Fixture::built("misbehave", "misbehave_checkpoint");
    let plugins = |mode: &str| {
        serde_json::json!({
            "enabled": [bad.name],
            "isolation": "process",
            // No checkpoint after a tick within the test: only the reconfiguration saves.
            "checkpoint_interval": 3600,
            "config": {bad.name.as_str(): {"mode": mode}},
        })
    };
    let (mut obs, served) = serve(&[&bad], plugins("idle")).await;
    obs.event(events::PLUGIN_LOADED, &bad.name).await;
    wait_for_mode(&mut obs, "idle").await;
    assert_eq!(chat_starting_after(&mut obs, "tally").await, "tally=1");
    assert_eq!(chat_starting_after(&mut obs, "tally").await, "tally=2");
    // A configuration change rebuilds the instance from its saved state: the checkpoint.
    served.reconfigure(plugins("segfault"));
    wait_for_mode(&mut obs, "segfault").await;
    assert_eq!(chat_starting_after(&mut obs, "tally").await, "tally=3");
    assert_eq!(chat_starting_after(&mut obs, "tally").await, "tally=4");
    obs.clear_backlog();
    obs.send("act", "", "alice", 1.0).await;
    obs.event(events::PLUGIN_FAILED, &bad.name).await;
    obs.event(events::PLUGIN_FAILED, &bad.name).await;
    wait_for_mode(&mut obs, "segfault").await;
    // 3 and 4 were never saved: the count goes on from the checkpoint's 2.
    assert_eq!(chat_starting_after(&mut obs, "tally").await, "tally=3");
}

/// Sends `command` and returns the next chat line answering it (`<command>=...`).
async fn chat_starting_after(obs: &mut Observer, command: &str) -> String {
    obs.send(command, "", "alice", 1.0).await;
    chat_starting(obs, &format!("{command}=")).await
}

/// Starts a runtime whose process (and so every host it starts) gets `ENOSYS` from
/// `syscall`, as in a container whose seccomp profile hides a kernel feature.
fn runtime_without(syscall: i64, config: &serde_json::Value) -> Runtime {
    use std::os::unix::process::CommandExt as _;
    let rules = std::collections::BTreeMap::from([(syscall, Vec::new())]);
    let filter = seccompiler::SeccompFilter::new(
        rules,
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(libc::ENOSYS as u32),
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap();
    let program: seccompiler::BpfProgram = filter.try_into().unwrap();
    start_runtime_with(config, |mut cmd| {
        // SAFETY: runs in the child between fork and exec; it only calls prctl and seccomp
        // (through seccompiler, on a program built before the fork) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                seccompiler::apply_filter(&program).map_err(std::io::Error::other)
            });
        }
        cmd
    })
}

/// The runtime's exit status once it has ended by itself.
fn exit_status(rt: &mut Runtime) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = rt.child.child_mut().try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < PATIENCE, "it still runs: {}", rt.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_refuses_to_start_when_landlock_or_seccomp_is_missing() {
    let nats = NatsServer::start();
    let libs = tempfile::tempdir().unwrap();
    let plugins = |isolation: &str| {
        serde_json::json!({
            "enabled": ["quotes", "markov"],
            "isolation": "in_process",
            "config": {"markov": {"isolation": isolation}},
        })
    };
    for (syscall, missing) in [
        (libc::SYS_landlock_create_ruleset, "Landlock"),
        (libc::SYS_seccomp, "seccomp"),
    ] {
        let mut rt = runtime_without(syscall, &config(&nats, libs.path(), plugins("process")));
        let status = exit_status(&mut rt);
        assert!(!status.success(), "{status}");
        let log = rt.log();
        assert!(log.contains("sandbox probe failed"), "{log}");
        assert!(log.contains(&format!("{missing}:")), "{log}");
        assert!(
            log.contains("plugins markov run with isolation \"process\""),
            "{log}"
        );
        assert!(log.contains("\"in_process\""), "{log}");
    }
    // Without a plugin in a host process the sandbox is not needed: it starts, and gets as
    // far as looking for the (absent) libraries.
    let mut obs = Observer::new(&nats).await;
    let _rt = runtime_without(
        libc::SYS_landlock_create_ruleset,
        &config(&nats, libs.path(), plugins("in_process")),
    );
    let failed = obs.event(events::PLUGIN_FAILED, "markov").await;
    let error = failed.error.unwrap_or_default();
    assert!(!error.contains("sandbox"), "{error}");
    assert!(obs.list().await.iter().all(|p| p.host.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_a_plugins_own_thread_are_served_between_deliveries() {
    let (_bad, mut obs, _served) = misbehave_alone(
        "misbehave_thread_calls",
        serde_json::json!({"mode": "thread_request"}),
        serde_json::json!({
            // No tick to call into the plugin meanwhile: only the runtime reading its host's
            // frames between deliveries can serve the thread's request and reply.
            "tick_interval": 3600,
        }),
    )
    .await;
    obs.send("act", "", "alice", 1.0).await;
    let line = chat_starting(&mut obs, "thread_request:").await;
    assert!(
        line.starts_with("thread_request: from its own thread, the request came back refused"),
        "{line}"
    );
    assert!(line.contains("rosey.nowhere.at_all"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_a_plugins_own_thread_is_served_while_a_handler_waits_for_it() {
    let (bad, mut obs, _served) = misbehave_alone(
        "misbehave_thread_awaited",
        serde_json::json!({"mode": "thread_request_awaited"}),
        serde_json::json!({}),
    )
    .await;
    // Twice: the second delivery finds the runtime's side of the host as the first left it.
    for _ in 0..2 {
        obs.send("act", "", "alice", 1.0).await;
        let line = chat_starting(&mut obs, "thread_request_awaited:").await;
        assert!(
            line.starts_with(
                "thread_request_awaited: during the call, the request came back refused"
            ),
            "{line}"
        );
        assert!(line.contains("rosey.nowhere.at_all"), "{line}");
    }
    // Served, not rescued: no watchdog, no restart.
    let info = obs.info(&bad.name).await;
    assert_eq!(info.host.expect("a host").restarts, 0);
    assert_eq!(info.errors, 0, "{:?}", info.last_error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_with_a_stuck_one_go_to_the_replacement() {
    let (bad, mut obs, _served) = misbehave_alone(
        "misbehave_stuck_batch",
        serde_json::json!({"mode": "endless_loop"}),
        serde_json::json!({}),
    )
    .await;
    // While it naps, a second nap, the endless command and five more queue up, and go to its
    // host together: the second nap's outcome must reach the runtime although the command
    // after it never returns (else it would count as the stuck one, and the endless command be
    // handed on and stick again).
    obs.send("nap", "", "alice", 1.0).await;
    obs.send("nap", "", "alice", 1.0).await;
    obs.send("act", "", "alice", 1.0).await;
    for _ in 0..5 {
        obs.send("tally", "", "alice", 1.0).await;
    }
    let failed = obs.event(events::PLUGIN_FAILED, &bad.name).await;
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("stuck in on_message"), "{error}");
    // The stuck one is dropped (as in process); the others are handled, once each (commands on
    // different subjects may reach the queue in any order, and a tally handled before the
    // stuck one counts from the last checkpoint again in the replacement: the lines are
    // counted, not their numbers).
    let (mut naps, mut tallies) = (0, 0);
    while tallies < 5 || naps < 2 {
        let line = obs.next_chat().await;
        if line == "napped" {
            naps += 1;
        } else if line.starts_with("tally=") {
            tallies += 1;
        }
    }
    wait_for_mode(&mut obs, "endless_loop").await;
    assert_eq!((naps, tallies), (2, 5));
    let info = obs.info(&bad.name).await;
    assert_eq!(info.host.expect("a host").restarts, 1, "{info:?}");
}
