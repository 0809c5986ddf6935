//! The timing keys reach the processes: one key of the bot (`platform.connect_timeout`) and one
//! of the plugin runtime (`plugins.admin_timeout`), each set far below its default so that the
//! test could not pass on the default value within its bound.

use rosey_plugin_api::error::{ErrorBody, ErrorCode, HEADER_CODE};
use rosey_plugin_api::subjects;
use rosey_tests::bot_support::{bot_command, write_config, WAIT};
use rosey_tests::runtime_support::{serve, Fixture, PATIENCE};
use rosey_tests::{wait_until_async, ChildGuard, NatsServer};
use serde_json::json;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A short `platform.connect_timeout` against a server that accepts connections and never
/// answers: each discovery attempt times out, and the bot reconnects at once. With the default
/// (20 s per attempt) three attempts would take longer than the test waits.
#[tokio::test]
async fn a_short_connect_timeout_makes_the_bot_give_up_on_a_silent_server_quickly() {
    let nats = NatsServer::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let silent = tokio::spawn(async move {
        // Held open and never written to, so only the timeout ends an attempt.
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &json!({"platform": {
            "type": "cytube",
            "domain": format!("http://127.0.0.1:{port}"),
            "channel": "test",
            "connect_timeout": 0.3,
            "reconnect_min_delay": 0.05,
            "reconnect_max_delay": 0.2,
        }}),
    );
    let log_path = dir.path().join("bot.log");
    let mut cmd = bot_command(&config, &nats);
    cmd.env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let _bot = ChildGuard::spawn("rosey-bot", cmd);

    let reached = wait_until_async(WAIT, || {
        let n = accepted.load(Ordering::SeqCst);
        async move { n >= 3 }
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        reached,
        "the bot did not retry a silent server three times within {WAIT:?} ({} attempts)\n{log}",
        accepted.load(Ordering::SeqCst)
    );
    // The attempts ended by timing out, not by a refused or closed connection.
    assert!(
        wait_until_async(WAIT, || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            async move { log.contains("timed out") && log.contains("reconnecting") }
        })
        .await,
        "no timed-out attempt in the bot's log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    silent.abort();
}

/// A short `plugins.admin_timeout`: a reload of a plugin stuck in a handler is answered with
/// an error naming the key as soon as it passes. With the default (30 s) the request would get
/// no answer within the 20 s it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_admin_timeout_answers_a_reload_of_a_stuck_plugin() {
    let fixture = Fixture::built("counter", "counter_admin_timeout");
    let (mut obs, _served) = serve(
        &[&fixture],
        json!({
            "enabled": [fixture.name],
            "queue_capacity": 2,
            // The watchdog must not replace the stuck plugin during the test.
            "watchdog_timeout": 600,
            "admin_timeout": 0.5,
        }),
    )
    .await;
    obs.event(subjects::runtime::PLUGIN_LOADED, &fixture.name)
        .await;

    // Stuck in a handler: its queue of two overflowing proves the worker is not taking more.
    obs.send("hang", "", "mallory", 1.0).await;
    assert!(
        wait_until_async(PATIENCE, || async {
            obs.send("count", "", "alice", 1.0).await;
            obs.info(&fixture.name)
                .await
                .last_error
                .is_some_and(|e| e.contains("queue full"))
        })
        .await,
        "the plugin never got stuck"
    );

    let request = async_nats::Request::new()
        .payload(
            serde_json::to_vec(&json!({"name": fixture.name}))
                .unwrap()
                .into(),
        )
        .timeout(Some(Duration::from_secs(20)));
    let reply = obs
        .client
        .send_request(subjects::runtime::PLUGINS_RELOAD, request)
        .await
        .expect("the reload was not answered within 20 s");
    assert!(reply
        .headers
        .as_ref()
        .and_then(|h| h.get(HEADER_CODE))
        .is_some());
    let err: ErrorBody = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(err.error.code, ErrorCode::Internal, "{err:?}");
    assert!(
        err.error.message.contains("plugins.admin_timeout") && err.error.message.contains("500ms"),
        "{err:?}"
    );
}
