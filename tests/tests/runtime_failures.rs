//! A broken build, a panicking handler, a stuck handler, a failing constructor, a denied
//! subject: each is reported and the runtime (and the plugin's previous generation) keeps
//! serving.

use rosey_plugin_api::admin::PluginState;
use rosey_plugin_api::subjects::runtime as events;
use rosey_tests::runtime_support::*;

/// Writes `bytes` as the plugin's library the way deploy tools do (temporary file + rename).
fn replace_library(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".lib{name}.so.partial"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(format!("lib{name}.so"))).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_libraries_are_reported_and_the_old_generation_keeps_serving() {
    let fixture = Fixture::built("counter", "counter_broken");
    let (mut obs, served) = serve_loaded(&fixture).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");

    // Not a library at all.
    replace_library(
        served.libs.path(),
        &fixture.name,
        b"this is not an ELF file\n",
    );
    let failed = obs.event(events::PLUGIN_FAILED, &fixture.name).await;
    let error = failed.error.unwrap();
    assert!(error.contains("not a Rosey plugin library"), "{error}");
    assert!(
        error.contains("previous generation keeps serving"),
        "{error}"
    );
    assert!(error.len() < 1000, "the error should be short: {error}");
    assert_eq!(obs.ask("count", "").await, "v1 count=2 ");

    // A truncated build.
    let real = std::fs::read(fixture.built_library()).unwrap();
    replace_library(served.libs.path(), &fixture.name, &real[..real.len() / 3]);
    let failed = obs.event(events::PLUGIN_FAILED, &fixture.name).await;
    assert!(failed.error.is_some());
    assert_eq!(obs.ask("count", "").await, "v1 count=3 ");

    let info = obs.info(&fixture.name).await;
    assert_eq!(info.state, PluginState::Running);
    assert_eq!(info.generation, 1);
    assert!(info.last_error.is_some());

    // A good build afterwards is served.
    replace_library(served.libs.path(), &fixture.name, &real);
    // Same content as the serving generation: skipped, so force it with an admin reload.
    let reply = obs.admin(events::PLUGINS_RELOAD, &fixture.name).await;
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#, "{}", served.rt.log());
    assert_eq!(obs.ask("count", "").await, "v1 count=4 ");
    assert_eq!(obs.info(&fixture.name).await.generation, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_and_stuck_handlers_are_caught_and_the_plugin_restarts() {
    let fixture = Fixture::built("counter", "counter_crash");
    let (mut obs, served) = serve_loaded(&fixture).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");

    // A panic in a handler becomes a failure report, then a restart from the saved state.
    obs.send("boom", "", "mallory", 1.0).await;
    let failed = obs.event(events::PLUGIN_FAILED, &fixture.name).await;
    let error = failed.error.unwrap();
    assert!(error.contains("boom requested by mallory"), "{error}");
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    let answer = obs.ask("count", "").await;
    assert!(answer.starts_with("v1 count="), "{answer}");

    // A handler stuck in a sleep loop is replaced after the watchdog limit.
    obs.send("hang", "", "mallory", 1.0).await;
    let failed = obs.event(events::PLUGIN_FAILED, &fixture.name).await;
    let error = failed.error.unwrap();
    assert!(error.contains("stuck in on_message"), "{error}");
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    let answer = obs.ask("count", "").await;
    assert!(answer.starts_with("v1 count="), "{answer}");
    let info = obs.info(&fixture.name).await;
    assert_eq!(info.state, PluginState::Running, "{}", served.rt.log());
    assert!(info.errors >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_rank_cooldown_help_and_conflicts() {
    let first = Fixture::built("counter", "counter_rules");
    let second = Fixture::built("counter", "counter_rival");
    let (mut obs, _served) = serve(
        &[&first, &second],
        serde_json::json!({
            "enabled": [first.name],
            "config": {first.name.clone(): {"subscribe_command": "extra"}},
        }),
    )
    .await;
    obs.event(events::PLUGIN_LOADED, &first.name).await;

    // Publishing outside the grant is an error the plugin sees.
    assert_eq!(obs.ask("kick", "").await, "v1 denied");
    // A command nobody declared may be subscribed to with the SDK's helper.
    assert_eq!(obs.ask("extra", "").await, "v1 extra");

    // Rank: a refused command gets no reply; the next command's reply comes first.
    obs.send("modonly", "", "alice", 1.0).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");
    obs.send("modonly", "", "mod", 2.0).await;
    assert_eq!(obs.next_chat().await, "v1 modonly");

    // Cooldown: per user, moderators exempt.
    assert_eq!(obs.ask("slow", "").await, "v1 slow");
    obs.send("slow", "", "alice", 1.0).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=2 ");
    obs.send("slow", "", "bob", 1.0).await;
    assert_eq!(obs.next_chat().await, "v1 slow");
    for _ in 0..2 {
        obs.send("slow", "", "mod", 2.0).await;
        assert_eq!(obs.next_chat().await, "v1 slow");
    }

    // !help is the runtime's own.
    let help = obs.ask("help", "").await;
    assert!(
        help.starts_with("Commands: !ask, !boom, !count, !hang"),
        "{help}"
    );
    assert_eq!(
        obs.ask("help", "slow").await,
        "!slow: has a cooldown (once every 3600s)"
    );

    // A second plugin claiming the same commands is refused with a clear error.
    let reply = obs.admin(events::PLUGINS_ENABLE, &second.name).await;
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("command !count is already served by plugin \"counter_rules\""),
        "{message}"
    );
    let failed = obs.event(events::PLUGIN_FAILED, &second.name).await;
    assert!(failed.error.unwrap().contains("already served"));
    assert_eq!(obs.ask("count", "").await, "v1 count=3 ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_against_another_interface_is_refused_with_a_short_reason() {
    let api = changed_plugin_api();
    let stale = Fixture::with_api("counter", "counter_stale", &api);
    stale.build();
    let good = Fixture::built("counter", "counter_fresh");
    let (mut obs, _served) = serve(
        &[&stale, &good],
        serde_json::json!({"enabled": [stale.name, good.name]}),
    )
    .await;
    let failed = obs.event(events::PLUGIN_FAILED, &stale.name).await;
    let error = failed.error.unwrap();
    assert!(
        error.contains("interface mismatch: LogLevel: too many variants (expected 5, found 6)"),
        "{error}"
    );
    assert!(
        error.contains("rebuild the plugin against rosey-plugin-api"),
        "{error}"
    );
    assert!(error.len() < 2000, "{} characters: {error}", error.len());
    // The other plugin loads and serves.
    obs.event(events::PLUGIN_LOADED, &good.name).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");
    assert_eq!(obs.info(&stale.name).await.state, PluginState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_against_the_previous_interface_version_is_refused() {
    let api = plugin_api_at_version("0.1.0");
    let old = Fixture::with_api("counter", "counter_old", &api);
    old.build();
    let (mut obs, _served) = serve(&[&old], serde_json::json!({"enabled": [old.name]})).await;
    let failed = obs.event(events::PLUGIN_FAILED, &old.name).await;
    let error = failed.error.unwrap();
    assert!(error.contains("interface version mismatch"), "{error}");
    assert!(error.contains("0.1.0"), "{error}");
    assert!(
        error.contains(&format!(
            "rebuild the plugin against rosey-plugin-api {}",
            current_api_version()
        )),
        "{error}"
    );
    assert!(error.len() < 2000, "{} characters: {error}", error.len());
    assert_eq!(obs.info(&old.name).await.state, PluginState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_disable_a_plugin_until_its_next_build() {
    let fixture = Fixture::new("counter", "counter_flaky");
    fixture.set_answer("v1");
    fixture.build();
    // A long watchdog: disabling a plugin that is already off used to wait 2 x this long.
    let (mut obs, served) = serve(
        &[&fixture],
        serde_json::json!({"enabled": [fixture.name], "max_failures": 2, "watchdog_timeout": 60}),
    )
    .await;
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    obs.send("boom", "", "mallory", 1.0).await;
    obs.send("boom", "", "mallory", 1.0).await;
    let first = obs.event(events::PLUGIN_FAILED, &fixture.name).await;
    assert!(first.error.unwrap().contains("restarting"));
    let second = obs.event(events::PLUGIN_FAILED, &fixture.name).await;
    let error = second.error.unwrap();
    assert!(
        error.contains("disabled after 2 failures in a row"),
        "{error}"
    );
    assert_eq!(obs.info(&fixture.name).await.state, PluginState::Disabled);
    // The restart between the two failures announced itself; only a later load counts.
    obs.clear_backlog();
    // Its commands are no longer offered: nothing would answer them.
    let help = obs.ask("help", "").await;
    assert!(!help.contains("!count"), "{help}");

    // An operator's enable tries the same build again.
    let reply = obs.admin(events::PLUGINS_ENABLE, &fixture.name).await;
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    assert_eq!(obs.info(&fixture.name).await.state, PluginState::Running);
    let answer = obs.ask("count", "").await;
    assert!(answer.starts_with("v1 count="), "{answer}");

    // Two more failures, then the next build brings it back.
    obs.send("boom", "", "mallory", 1.0).await;
    obs.send("boom", "", "mallory", 1.0).await;
    obs.event(events::PLUGIN_FAILED, &fixture.name).await;
    let second = obs.event(events::PLUGIN_FAILED, &fixture.name).await;
    assert!(second
        .error
        .unwrap()
        .contains("disabled after 2 failures in a row"));
    obs.clear_backlog();
    fixture.set_answer("v2");
    fixture.build();
    fixture.install_into(served.libs.path());
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    let answer = obs.ask("count", "").await;
    assert!(answer.starts_with("v2 count="), "{answer}");

    // Disabling twice: the second finds it off and answers at once (not after 2 x 60 s).
    let reply = obs.admin(events::PLUGINS_DISABLE, &fixture.name).await;
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
    let again = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        obs.admin(events::PLUGINS_DISABLE, &fixture.name),
    )
    .await
    .expect("a second disable answers without waiting for a worker that is gone");
    assert_eq!(&again.payload[..], br#"{"ok":true}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_plugin_does_not_delay_others_and_its_overflow_is_counted() {
    let slow = Fixture::built("counter", "counter_slowpoke");
    let quick = Fixture::built("counter", "counter_quick");
    let (mut obs, _served) = serve(
        &[&slow, &quick],
        serde_json::json!({
            "enabled": [slow.name, quick.name],
            "queue_capacity": 2,
            "watchdog_timeout": 600,
            "config": {quick.name.clone(): {"name_prefix": "q"}},
        }),
    )
    .await;
    obs.event(events::PLUGIN_LOADED, &slow.name).await;
    obs.event(events::PLUGIN_LOADED, &quick.name).await;

    // The slow plugin gets stuck in a handler. Commands travel on separate subscriptions, so
    // the hang may be handled after some counts: keep sending counts until its queue of two
    // is reported full, which proves the worker is stuck.
    obs.send("hang", "", "mallory", 1.0).await;
    assert!(
        rosey_tests::wait_until_async(PATIENCE, || async {
            obs.send("count", "", "alice", 1.0).await;
            obs.info(&slow.name)
                .await
                .last_error
                .is_some_and(|e| e.contains("queue full"))
        })
        .await,
        "the stuck plugin's queue never overflowed"
    );
    // Every further message is dropped and counted.
    let before = obs.info(&slow.name).await.errors;
    for _ in 0..5 {
        obs.send("count", "", "alice", 1.0).await;
    }
    assert!(
        rosey_tests::wait_until_async(PATIENCE, || async {
            obs.info(&slow.name).await.errors >= before + 5
        })
        .await,
        "dropped messages were not counted"
    );
    // The other plugin answers meanwhile, from its own thread.
    assert_eq!(obs.ask("qcount", "").await, "v1 count=1 ");
    assert_eq!(obs.info(&quick.name).await.errors, 0);
}
