//! The runtime as a library: `rosey_runtime::run(config, shutdown)` serves in this test's own
//! process, as the thin `rosey-runtime` binary runs it, and returns once `shutdown` completes,
//! having unloaded its plugins.

use rosey_config::Config;
use rosey_plugin_api::subjects::runtime as events;
use rosey_tests::runtime_support::*;
use rosey_tests::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_in_process_until_shutdown() {
    let fixture = Fixture::built("counter", "counter_library");
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let libs = tempfile::tempdir().unwrap();
    fixture.install_into(libs.path());
    let json = config(
        &nats,
        libs.path(),
        serde_json::json!({"enabled": [fixture.name]}),
    );
    let config = Config::from_json_str(&json.to_string(), "test", libs.path()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(rosey_runtime::run(config, async {
        let _ = stopped.await;
    }));

    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");

    stop.send(()).unwrap();
    obs.event(events::PLUGIN_UNLOADED, &fixture.name).await;
    tokio::time::timeout(PATIENCE, running)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
}
