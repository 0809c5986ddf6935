//! The plugin interface end to end: what `Setup` tells a plugin (the command prefix, every
//! channel it serves with the bot's name there, its own configuration keys only) and deferred
//! requests, whose answers come back later as messages without stalling the plugin's worker.

use futures::StreamExt;
use rosey_plugin_api::subjects::runtime as events;
use rosey_tests::runtime_support::*;
use rosey_tests::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_carries_the_prefix_every_channel_and_only_the_plugins_own_keys() {
    let fixture = Fixture::built("counter", "counter_setup");
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let libs = tempfile::tempdir().unwrap();
    fixture.install_into(libs.path());
    let mut config = config(
        &nats,
        libs.path(),
        serde_json::json!({
            "enabled": [fixture.name],
            "config": {fixture.name.clone(): {
                "channels": ["lobby", "attic"],
                "exclude_channels": ["cellar"],
                "permissions": {"publish": ["rosey.platform.>"]},
                "commands": {"count": {"cooldown": 0}},
                "mine": {"any": "thing"},
            }},
        }),
    );
    config["platform"]["command_prefix"] = serde_json::json!("?");
    config["platform"]["credentials"] = serde_json::json!({"username": "robo"});
    let _rt = start_runtime(&config);
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    assert_eq!(
        obs.ask("whoami", "").await,
        "v1 prefix=? channels=console/lobby/robo config=mine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_requests_are_answered_later_and_never_stall_the_worker() {
    let fixture = Fixture::new("counter", "counter_deferred");
    fixture.set_answer("v1");
    fixture.build();
    let (mut obs, served) = serve(
        &[&fixture],
        serde_json::json!({
            "enabled": [fixture.name],
            "max_request_timeout": 120,
            "config": {fixture.name.clone(): {
                "permissions": {"publish": ["rosey.platform.>"], "request": ["test.>"]},
            }},
        }),
    )
    .await;
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;

    // A slow service: the test answers its requests when it chooses.
    let mut slow = obs.client.subscribe("test.slow").await.unwrap();
    // A service that never answers.
    let _silent = obs.client.subscribe("test.silent").await.unwrap();
    // A quick service that echoes the request.
    let mut fast = obs.client.subscribe("test.fast").await.unwrap();
    let responder = obs.client.clone();
    tokio::spawn(async move {
        while let Some(msg) = fast.next().await {
            let text = String::from_utf8_lossy(&msg.payload).into_owned();
            let body = serde_json::to_vec(&format!("fast:{text}")).unwrap();
            if let Some(reply) = msg.reply {
                responder.publish(reply, body.into()).await.unwrap();
            }
        }
    });
    obs.client.flush().await.unwrap();

    assert_eq!(
        obs.ask("ask", "slow1 test.slow 60000").await,
        "v1 asked slow1"
    );
    let first = tokio::time::timeout(PATIENCE, slow.next())
        .await
        .expect("the slow request arrives")
        .unwrap();
    assert_eq!(&first.payload[..], b"slow1");

    // While the first request is pending, a second one is sent and answered, and commands
    // are served: the worker is not waiting.
    assert_eq!(
        obs.ask("ask", "fast1 test.fast 60000").await,
        "v1 asked fast1"
    );
    assert_eq!(obs.next_chat().await, r#"v1 answer fast1: "fast:fast1""#);
    assert_eq!(obs.ask("count", "").await, "v1 count=1 ");

    // A request nobody answers ends in a timeout, delivered as an answer.
    assert_eq!(
        obs.ask("ask", "late test.silent 300").await,
        "v1 asked late"
    );
    let timed_out = obs.next_chat().await;
    assert!(
        timed_out.starts_with("v1 answer late failed (Timeout): "),
        "{timed_out}"
    );
    // A subject without a responder fails at once, also as an answer.
    assert_eq!(
        obs.ask("ask", "nobody test.nobody 60000").await,
        "v1 asked nobody"
    );
    let failed = obs.next_chat().await;
    assert!(
        failed.starts_with("v1 answer nobody failed (Nats): "),
        "{failed}"
    );
    // A subject outside the plugin's permissions is refused on the spot.
    assert_eq!(
        obs.ask("ask", "denied rosey.db.kv.other.get 60000").await,
        "v1 ask refused (Denied)"
    );

    // A new build while the slow request is pending: the answer goes to the generation
    // serving when it comes.
    fixture.set_answer("v2");
    fixture.build();
    fixture.install_into(served.libs.path());
    obs.event(events::PLUGIN_RELOADED, &fixture.name).await;
    let reply = first.reply.expect("a request has a reply subject");
    obs.client
        .publish(reply, br#""slow:slow1""#.to_vec().into())
        .await
        .unwrap();
    obs.client.flush().await.unwrap();
    assert_eq!(obs.next_chat().await, r#"v2 answer slow1: "slow:slow1""#);
    assert_eq!(obs.ask("count", "").await, "v2 count=2 ");
}
