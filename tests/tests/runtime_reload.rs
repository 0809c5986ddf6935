//! Hot reload with real cargo builds: a fixture plugin answers a command, its source is edited
//! and rebuilt, and the running runtime serves the new code with the old state, losing and
//! duplicating nothing.

use rosey_plugin_api::admin::PluginState;
use rosey_plugin_api::subjects::runtime as events;
use rosey_tests::runtime_support::*;
use rosey_tests::NatsServer;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilt_plugin_serves_new_code_with_old_state() {
    let fixture = Fixture::new("counter", "counter_reload");
    fixture.set_answer("v1");
    fixture.build();
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    // The runtime watches cargo's own output folder: cargo replaces the file by unlink + link.
    let lib_dir = plugins_target().join("debug");
    let rt = start_runtime(&config(
        &nats,
        &lib_dir,
        serde_json::json!({"enabled": [fixture.name]}),
    ));
    let loaded = obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    assert_eq!(loaded.version, "0.1.0");
    assert_eq!(loaded.generation, 1);

    assert_eq!(obs.ask("count", "a").await, "v1 count=1 a");
    assert_eq!(obs.ask("count", "b").await, "v1 count=2 b");

    fixture.set_answer("v2");
    fixture.build();
    let reloaded = obs.event(events::PLUGIN_RELOADED, &fixture.name).await;
    assert_eq!(reloaded.generation, 2, "{}", rt.log());
    // New code, and the count carried over from the old generation.
    assert_eq!(obs.ask("count", "c").await, "v2 count=3 c");

    let info = obs.info(&fixture.name).await;
    assert_eq!(info.state, PluginState::Running);
    assert_eq!(info.generation, 2);
    assert_eq!(info.reloads, 1);
    assert_eq!(info.version, "0.1.0");
    // The count is taken when the handler returns, just after its reply went out.
    assert!(
        rosey_tests::wait_until_async(PATIENCE, || async {
            obs.info(&fixture.name).await.messages >= 3
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_commands_through_reloads_are_handled_exactly_once() {
    commands_through_reloads_handled_once("counter_stream", "in_process").await;
}

/// The same with the plugin in a sandboxed host process: each build gets a new host, and the
/// state crosses from the old host to the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_commands_through_reloads_are_handled_exactly_once_in_a_host_process() {
    commands_through_reloads_handled_once("counter_stream_host", "process").await;
}

async fn commands_through_reloads_handled_once(name: &str, isolation: &str) {
    let fixture = Fixture::new("counter", name);
    fixture.set_answer("s1");
    fixture.build();
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let lib_dir = plugins_target().join("debug");
    let _rt = start_runtime(&config(
        &nats,
        &lib_dir,
        serde_json::json!({
            "enabled": [fixture.name],
            "queue_capacity": 100000,
            "isolation": isolation,
        }),
    ));
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;

    // A publisher sends numbered commands without pause while two new builds land.
    let publisher = obs.client.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        loop {
            if stop_rx.try_recv().is_ok() {
                return sent;
            }
            sent += 1;
            let cmd = command_payload("count", &sent.to_string(), "alice", 1.0);
            publisher
                .publish(
                    rosey_plugin_api::subjects::commands::command("count").unwrap(),
                    serde_json::to_vec(&cmd).unwrap().into(),
                )
                .await
                .unwrap();
            publisher.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    for answer in ["s2", "s3"] {
        fixture.set_answer(answer);
        let f = Fixture {
            name: fixture.name.clone(),
            dir: fixture.dir.clone(),
        };
        tokio::task::spawn_blocking(move || f.build())
            .await
            .unwrap();
        obs.event(events::PLUGIN_RELOADED, &fixture.name).await;
    }
    stop_tx.send(()).unwrap();
    let sent = sender.await.unwrap();

    // Every command answered once, in order, the count never reset.
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut versions = Vec::new();
    for _ in 0..sent {
        let line = obs.next_chat().await;
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "{line}");
        let count: u64 = parts[1].strip_prefix("count=").unwrap().parse().unwrap();
        let seq: u64 = parts[2].parse().unwrap();
        assert!(
            seen.insert(seq, count).is_none(),
            "command {seq} answered twice"
        );
        if versions.last() != Some(&parts[0].to_owned()) {
            versions.push(parts[0].to_owned());
        }
    }
    assert_eq!(seen.len() as u64, sent);
    for (seq, count) in &seen {
        assert_eq!(seq, count, "command {seq} got count {count}");
    }
    assert_eq!(versions, ["s1", "s2", "s3"]);
}
