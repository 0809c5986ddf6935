//! Corners of the plugin runtime: hot reload switched off, a constructor that never returns,
//! a plugin folder that does not exist yet when the runtime starts, and where the per-run
//! library copies go (a configured folder; never a `noexec` mount).

use rosey_plugin_api::admin::PluginState;
use rosey_plugin_api::subjects::runtime as events;
use rosey_tests::runtime_support::*;
use rosey_tests::NatsServer;
use std::path::Path;
use std::process::Command;
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
            "config": {other.name.clone(): {"name_prefix": "o"}},
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
            "config": {hanging.name.clone(): {"hang_in_init": true, "name_prefix": "h"}},
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

/// The per-run copy folders (`rosey-runtime-<pid>`) under `base`, with how many files each holds.
fn copy_folders(base: &Path) -> Vec<(String, usize)> {
    std::fs::read_dir(base)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with("rosey-runtime-").then(|| {
                        let files = std::fs::read_dir(e.path()).map_or(0, |d| d.count());
                        (name, files)
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_copies_go_to_the_configured_folder() {
    let fixture = Fixture::built("counter", "counter_copy_dir");
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let libs = tempfile::tempdir().unwrap();
    fixture.install_into(libs.path());
    let root = tempfile::tempdir().unwrap();
    // Made when missing, like the plugin folder.
    let copies = root.path().join("copies").join("here");
    let rt = start_runtime(&config(
        &nats,
        libs.path(),
        serde_json::json!({"enabled": [fixture.name], "copy_directory": copies}),
    ));
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    assert_eq!(obs.ask("count", "a").await, "v1 count=1 a");
    let folders = copy_folders(&copies);
    assert_eq!(
        folders,
        vec![(format!("rosey-runtime-{}", rt.child.id()), 1)],
        "{}",
        rt.log()
    );
}

/// Whether this process may make a private `noexec` mount (root, with `unshare`), which the
/// two tests below need to show a hardened `/tmp`.
fn can_mount_noexec() -> bool {
    let dir = tempfile::tempdir().unwrap();
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .args(["mount", "-t", "tmpfs", "-o", "noexec", "tmpfs"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` in a private mount namespace where `mount_point` is a fresh `noexec` tmpfs.
fn under_noexec_mount(cmd: Command, mount_point: &Path) -> Command {
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs -o noexec tmpfs \"$0\" && exec \"$@\"")
        .arg(mount_point)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_noexec_tmp_the_copies_go_elsewhere_and_plugins_load() {
    if !can_mount_noexec() {
        eprintln!("skipped: making a private noexec mount needs root and unshare");
        return;
    }
    let fixture = Fixture::built("counter", "counter_noexec_tmp");
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let libs = tempfile::tempdir().unwrap();
    fixture.install_into(libs.path());
    let tmp = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let rt = start_runtime_with(
        &config(
            &nats,
            libs.path(),
            serde_json::json!({"enabled": [fixture.name]}),
        ),
        |mut cmd| {
            cmd.env("TMPDIR", tmp.path())
                .env("HOME", home.path())
                .env_remove("XDG_RUNTIME_DIR");
            under_noexec_mount(cmd, tmp.path())
        },
    );
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    assert_eq!(obs.ask("count", "a").await, "v1 count=1 a");
    let log = rt.log();
    assert!(
        log.contains("not keeping plugin copies here") && log.contains("noexec"),
        "{log}"
    );
    let cache = home.path().join(".cache").join("rosey");
    assert_eq!(copy_folders(&cache).len(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_copy_folder_on_a_noexec_mount_stops_the_runtime_with_the_reason() {
    if !can_mount_noexec() {
        eprintln!("skipped: making a private noexec mount needs root and unshare");
        return;
    }
    let nats = NatsServer::start();
    let libs = tempfile::tempdir().unwrap();
    let copies = tempfile::tempdir().unwrap();
    let mut rt = start_runtime_with(
        &config(
            &nats,
            libs.path(),
            serde_json::json!({"enabled": [], "copy_directory": copies.path()}),
        ),
        |cmd| under_noexec_mount(cmd, copies.path()),
    );
    let exited = rosey_tests::wait_until(
        PATIENCE,
        || matches!(rt.child.child_mut().try_wait(), Ok(Some(status)) if !status.success()),
    );
    assert!(exited, "the runtime did not fail: {}", rt.log());
    let log = rt.log();
    assert!(
        log.contains("plugins.copy_directory") && log.contains("noexec"),
        "{log}"
    );
}
