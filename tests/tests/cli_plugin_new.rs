//! `rosey plugin new`: the scaffolded plugin builds with cargo, loads in a real runtime and
//! answers its command.

use rosey_plugin_api::subjects::runtime as events;
use rosey_tests::runtime_support::{config, plugins_target, start_runtime, Observer};
use rosey_tests::{command, workspace_dir, NatsServer};
use std::path::Path;
use std::process::Output;

/// Runs `rosey plugin new greeter` in the workspace `ws`, against the plugin-api crate `api`.
fn plugin_new_greeter(ws: &Path, api: &Path) -> Output {
    command("rosey")
        .args(["plugin", "new", "greeter", "--workspace"])
        .arg(ws)
        .arg("--api")
        .arg(api)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaffolded_plugin_builds_loads_and_answers() {
    // A workspace of its own, so the real one is never edited by a test.
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(
        ws.path().join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\n]\n",
    )
    .unwrap();
    // The same dependency versions as the real workspace, so the shared target folder is reused.
    std::fs::copy(
        workspace_dir().join("Cargo.lock"),
        ws.path().join("Cargo.lock"),
    )
    .unwrap();
    let api = workspace_dir().join("plugin-api");
    let out = plugin_new_greeter(ws.path(), &api);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = std::fs::read_to_string(ws.path().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("\"plugins/greeter\""), "{manifest}");
    // Creating it twice is refused, and nothing is overwritten.
    let again = plugin_new_greeter(ws.path(), &api);
    assert!(!again.status.success());

    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--quiet", "-p", "greeter", "--manifest-path"])
            .arg(ws.path().join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", plugins_target())
            .env_remove("RUSTFLAGS")
            .status()
            .unwrap();
    assert!(status.success(), "the scaffolded plugin does not build");

    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let libs = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugins_target().join("debug/libgreeter.so"),
        libs.path().join("libgreeter.so"),
    )
    .unwrap();
    let _rt = start_runtime(&config(
        &nats,
        libs.path(),
        serde_json::json!({"enabled": ["greeter"]}),
    ));
    obs.event(events::PLUGIN_LOADED, "greeter").await;
    assert_eq!(
        obs.ask("greeter", "").await,
        "Hello, alice! You are visitor number 1."
    );
    assert_eq!(
        obs.ask("greeter", "hi there").await,
        "alice says: hi there (message 2)"
    );
}
