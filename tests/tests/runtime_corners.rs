//! Corners of the plugin runtime: hot reload switched off, a constructor that never returns,
//! and a plugin folder that does not exist yet when the runtime starts.

mod runtime_support;

use rosey_plugin_api::admin::PluginState;
use rosey_plugin_api::subjects::runtime as events;
use rosey_tests::NatsServer;
use runtime_support::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_hot_reload_a_new_build_waits_for_the_admin_reload() {
    let fixture = Fixture::new("counter", "counter_no_hot");
    fixture.set_answer("h1");
    fixture.build();
    let other = Fixture::built("counter", "counter_no_hot_other");
    let (mut obs, served) = serve(
        &[&fixture, &other],
        serde_json::json!({
            "enabled": [fixture.name, other.name],
            "hot_reload": false,
            "config": {other.name.clone(): {"command_prefix": "o"}},
        }),
    )
    .await;
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    obs.event(events::PLUGIN_LOADED, &other.name).await;
    assert_eq!(obs.ask("count", "a").await, "h1 count=1 a");

    fixture.set_answer("h2");
    fixture.build();
    fixture.install_into(served.libs.path());
    // Nothing watches the folder, so there is no event saying "the watcher chose not to
    // act". The closest positive signal is another plugin's full reload going through the
    // same workers after the install; on top of it, a bounded wait of ten debounce periods
    // (0.1 s each) gives a watcher, had there been one, ample time to have fired.
    let reply = obs.admin(events::PLUGINS_RELOAD, &other.name).await;
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
    obs.event(events::PLUGIN_RELOADED, &other.name).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        obs.ask("count", "b").await,
        "h1 count=2 b",
        "{}",
        served.rt.log()
    );
    let info = obs.info(&fixture.name).await;
    assert_eq!(info.generation, 1);
    assert_eq!(info.reloads, 0);

    // The operator's reload picks the new build up, with the state carried over.
    let reply = obs.admin(events::PLUGINS_RELOAD, &fixture.name).await;
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
    let reloaded = obs.event(events::PLUGIN_RELOADED, &fixture.name).await;
    assert_eq!(reloaded.generation, 2);
    assert_eq!(obs.ask("count", "c").await, "h2 count=3 c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constructor_that_never_returns_is_marked_and_others_keep_serving() {
    let hanging = Fixture::built("counter", "counter_hang_init");
    let healthy = Fixture::built("counter", "counter_hang_peer");
    let (mut obs, _served) = serve(
        &[&hanging, &healthy],
        serde_json::json!({
            "enabled": [hanging.name, healthy.name],
            "config": {hanging.name.clone(): {"hang_in_init": true, "command_prefix": "h"}},
        }),
    )
    .await;
    obs.event(events::PLUGIN_LOADED, &healthy.name).await;
    let failed = obs.event(events::PLUGIN_FAILED, &hanging.name).await;
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("stuck in init"), "{error}");

    // The list says so, and keeps answering.
    let settled = rosey_tests::wait_until_async(PATIENCE, || async {
        let info = obs.info(&hanging.name).await;
        matches!(info.state, PluginState::Failed | PluginState::Stuck)
            && info
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("stuck in init"))
    })
    .await;
    assert!(settled, "{:?}", obs.info(&hanging.name).await);
    assert_eq!(
        obs.info(&healthy.name).await.state,
        PluginState::Running,
        "{:?}",
        obs.list().await
    );

    // The other plugin serves.
    assert_eq!(obs.ask("count", "x").await, "v1 count=1 x");
    assert_eq!(obs.ask("count", "z").await, "v1 count=2 z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_folder_created_after_start_is_picked_up() {
    let fixture = Fixture::built("counter", "counter_late_dir");
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let root = tempfile::tempdir().unwrap();
    // Two levels missing, as `mkdir -p` would create them.
    let dir = root.path().join("later").join("plugins");
    let rt = start_runtime(&config(
        &nats,
        &dir,
        serde_json::json!({"enabled": [fixture.name]}),
    ));

    let failed = obs.event(events::PLUGIN_FAILED, &fixture.name).await;
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("does not exist"), "{error}");
    assert!(error.contains(&dir.display().to_string()), "{error}");
    assert!(
        rosey_tests::wait_until(PATIENCE, || rt
            .log()
            .contains("plugin folder does not exist")),
        "{}",
        rt.log()
    );

    std::fs::create_dir_all(&dir).unwrap();
    fixture.install_into(&dir);
    let loaded = obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    assert_eq!(loaded.generation, 1, "{}", rt.log());
    assert_eq!(obs.ask("count", "a").await, "v1 count=1 a");

    // From now on the folder is watched like any other: a new build is served.
    fixture.set_answer("late2");
    fixture.build();
    fixture.install_into(&dir);
    obs.event(events::PLUGIN_RELOADED, &fixture.name).await;
    assert_eq!(obs.ask("count", "b").await, "late2 count=2 b");
}
