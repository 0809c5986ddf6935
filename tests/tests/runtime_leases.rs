//! Several runtimes on one NATS: each plugin is served by one runtime in total (a lease per
//! plugin in a JetStream key-value bucket), so no command is answered twice; the other runtime
//! stands by and takes over when the first stops or dies.

use rosey_plugin_api::admin::PluginLifecycle;
use rosey_plugin_api::subjects::runtime as events;
use rosey_tests::runtime_support::{config, plugins_target, start_runtime, Fixture, Observer};
use rosey_tests::{wait_until, NatsServer};
use std::time::Duration;

/// Answers to `!count` in the next `wait`, however many come.
async fn answers_within(obs: &mut Observer, wait: Duration) -> Vec<String> {
    let mut answers = Vec::new();
    while let Some(line) = obs.try_next_chat(wait).await {
        answers.push(line);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_answer_each_command_once_and_the_standby_takes_over() {
    let fixture = Fixture::built("counter", "counter_leased");
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let lib_dir = plugins_target().join("debug");
    let plugins = serde_json::json!({"enabled": [fixture.name], "lease_ttl": 3});
    let mut first = start_runtime(&config(&nats, &lib_dir, plugins.clone()));
    obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    let second = start_runtime(&config(&nats, &lib_dir, plugins));
    let standing_by = wait_until(Duration::from_secs(30), || {
        second.log().contains("already served by another runtime")
    });
    assert!(
        standing_by,
        "the second runtime did not say it stands by:\n{}",
        second.log()
    );

    // Every command once, though both runtimes run the plugin's configuration.
    for n in 1..=20 {
        obs.send("count", &n.to_string(), "alice", 1.0).await;
    }
    let answers = answers_within(&mut obs, Duration::from_secs(3)).await;
    assert_eq!(answers.len(), 20, "{answers:?}");

    // The first dies without a word: the second takes the plugin over and answers, once.
    first.child.kill();
    let loaded: PluginLifecycle = obs.event(events::PLUGIN_LOADED, &fixture.name).await;
    assert_eq!(loaded.name, fixture.name);
    obs.send("count", "after", "alice", 1.0).await;
    let answers = answers_within(&mut obs, Duration::from_secs(3)).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(second.log().contains("taking"), "{}", second.log());
}
