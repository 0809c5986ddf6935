//! The markov plugin as shipped, loaded by the real `rosey-runtime` next to a real `rosey-db`
//! and `nats-server`, driven through the event and command subjects: every `!markov` form and
//! its misuse, speaking when addressed and unprompted, hostile and malformed input, the chain
//! kept across a hot reload (saved state) and a runtime restart (key-value storage), and the
//! bootstrap from the database's recent chat.
//!
//! The plugin libraries are the workspace's own builds (`cargo build --workspace` puts
//! `libmarkov.so` beside the binaries).

use rosey_plugin_api::kv;
use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects::{self, runtime as lifecycle};
use rosey_tests::runtime_support;
use rosey_tests::runtime_support::{
    config, publish_chat, shipped_plugin_dir, start_runtime, store_chat_lines, Observer, Runtime,
    PATIENCE,
};
use rosey_tests::{wait_until_async, NatsServer, RoseyDb};
use serde_json::{json, Value};
use std::time::Duration;

/// A runtime serving only markov, with `markov` as its plugin configuration.
async fn start_markov(obs: &mut Observer, nats: &NatsServer, markov: Value) -> Runtime {
    let rt = start_runtime(&config(
        nats,
        &shipped_plugin_dir("markov"),
        json!({"enabled": ["markov"], "hot_reload": false, "config": {"markov": markov}}),
    ));
    obs.event(lifecycle::PLUGIN_LOADED, "markov").await;
    rt
}

/// The test configuration: no cooldown, no bootstrap unless asked.
fn markov_config(extra: Value) -> Value {
    let mut c = json!({
        "commands": {"markov": {"cooldown": 0}},
        "bootstrap_lines": 0,
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

/// Asks `!markov stats` until it reports `lines` lines learned (events and commands travel
/// on different subscriptions, so a command may overtake the last events).
async fn wait_for_lines(obs: &mut Observer, lines: usize) -> String {
    let wanted = format!("{lines} lines learned");
    let mut last = String::new();
    for _ in 0..300 {
        obs.send("markov", "stats", "mod", 2.0).await;
        last = obs.next_chat().await;
        if last.starts_with(&wanted) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never reached {lines} lines; last answer: {last:?}");
}

/// The lines the markov tests learn (the plugin's unit tests use the same file).
const CORPUS_TEXT: &str = include_str!("../../plugins/markov/testdata/corpus.txt");

fn corpus() -> Vec<&'static str> {
    CORPUS_TEXT.lines().collect()
}

fn corpus_words() -> std::collections::HashSet<&'static str> {
    corpus().into_iter().flat_map(|l| l.split(' ')).collect()
}

/// Publishes every line of the corpus as alice's chat.
async fn teach_corpus(client: &async_nats::Client) {
    for line in corpus() {
        publish_chat(client, "alice", line, false).await;
    }
}

/// Asserts that an unprompted `!markov` says only words of the corpus.
async fn assert_speaks_from_corpus(obs: &mut Observer) {
    let words = corpus_words();
    let said = obs.ask("markov", "").await;
    assert!(said.split(' ').all(|w| words.contains(w)), "{said:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_speaking_and_hostile_input() {
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let _db = RoseyDb::start(&nats, &obs.client, PATIENCE).await;
    let _rt = start_markov(&mut obs, &nats, markov_config(json!({}))).await;

    // Nothing learned yet: the answer says so rather than staying silent.
    assert_eq!(
        obs.ask("markov", "").await,
        "I have not learned anything in this channel yet; chat a little first."
    );

    teach_corpus(&obs.client).await;
    // Commands and the bot's own lines are not learned.
    publish_chat(&obs.client, "alice", "!markov stats", true).await;
    publish_chat(&obs.client, "rosey", "i am the bot talking", false).await;
    let stats = wait_for_lines(&mut obs, corpus().len()).await;
    assert!(stats.contains("distinct states"), "{stats}");

    // Sentences use only learned words and fit one chat message.
    let words = corpus_words();
    for _ in 0..5 {
        let said = obs.ask("markov", "").await;
        assert!(!said.is_empty() && said.chars().count() <= 200, "{said:?}");
        assert!(said.split(' ').all(|w| words.contains(w)), "{said:?}");
    }
    // A seed in the middle of a line grows both ways and stays in the sentence.
    let seeded = obs.ask("markov", "BROWN").await;
    let at = seeded.split(' ').position(|w| w == "brown");
    assert!(at.is_some_and(|i| i > 0), "{seeded:?}");
    // An unknown seed still gets a sentence.
    let unknown = obs.ask("markov", "zyzzyva").await;
    assert!(unknown.split(' ').all(|w| words.contains(w)), "{unknown:?}");

    // Addressed by name: the answer names the asker.
    publish_chat(&obs.client, "bob", "hey Rosey, what about the cat?", false).await;
    let answer = obs.next_chat().await;
    assert!(answer.starts_with("bob: "), "{answer:?}");

    // Settings: moderators only, with a clear reply for every misuse.
    obs.send("markov", "order 3", "alice", 1.0).await;
    assert_eq!(
        obs.next_chat().await,
        "Only moderators can change the markov settings."
    );
    obs.send("markov", "order 9", "mod", 2.0).await;
    assert_eq!(obs.next_chat().await, "usage: !markov order <1-5>");
    obs.send("markov", "learn maybe", "mod", 2.0).await;
    assert_eq!(obs.next_chat().await, "usage: !markov learn on|off");
    obs.send("markov", "probability 7", "mod", 2.0).await;
    assert!(obs
        .next_chat()
        .await
        .starts_with("usage: !markov probability"));
    obs.send("markov", "stats now", "mod", 2.0).await;
    assert_eq!(obs.next_chat().await, "!markov stats takes no arguments");
    obs.send("markov", "order 3", "mod", 2.0).await;
    // The addressed line was learned too, without the bot's name.
    assert_eq!(
        obs.next_chat().await,
        format!("Order set to 3; relearned {} lines.", corpus().len() + 1)
    );
    obs.send("markov", "trigger botty", "mod", 2.0).await;
    assert_eq!(obs.next_chat().await, "Trigger: \"botty\".");
    obs.send("markov", "settings", "alice", 0.0).await;
    assert_eq!(
        obs.next_chat().await,
        "order 3, learning on, trigger \"botty\", chance per line 0, interval 300 s"
    );
    obs.send("markov", "help", "alice", 0.0).await;
    assert!(obs.next_chat().await.starts_with("!markov [seed words]"));

    // Unprompted: with a certain chance and no interval, a chat line gets a random sentence.
    obs.send("markov", "interval 0", "mod", 2.0).await;
    obs.next_chat().await;
    obs.send("markov", "probability 1", "mod", 2.0).await;
    obs.next_chat().await;
    publish_chat(
        &obs.client,
        "carol",
        "the fox eats honey every morning",
        false,
    )
    .await;
    let unprompted = obs.next_chat().await;
    assert!(
        !unprompted.contains(':'),
        "not an addressed answer: {unprompted:?}"
    );
    obs.send("markov", "probability 0", "mod", 2.0).await;
    // The reply may follow one more unprompted line said before the change arrived.
    loop {
        if obs.next_chat().await.starts_with("Chance of chiming in") {
            break;
        }
    }

    // Learning off: lines are not learned. Every earlier line is in first (the addressed
    // one and carol's), and the line sent while learning is off is handled before it is
    // turned back on.
    let before = wait_for_lines(&mut obs, corpus().len() + 2).await;
    obs.send("markov", "learn off", "mod", 2.0).await;
    assert_eq!(obs.next_chat().await, "Learning is off.");
    let handled = obs.info("markov").await.messages;
    publish_chat(&obs.client, "dave", "never learned words", false).await;
    let seen = wait_until_async(PATIENCE, || async {
        obs.info("markov").await.messages > handled
    })
    .await;
    assert!(seen, "the line was handled");
    obs.send("markov", "learn on", "mod", 2.0).await;
    assert_eq!(obs.next_chat().await, "Learning is on.");
    assert_eq!(obs.ask("markov", "stats").await, before);

    // Hostile input: learned as plain words, never breaking the plugin.
    let long_line = "spam ".repeat(5000);
    let hostile = [
        long_line.as_str(),
        "héllo wörld 🎉 中文 ünïcödé",
        "<script>alert('x')</script> <b>bold</b> &amp;",
        "'; DROP TABLE rosey_plugin_kv; -- \" \\ %00",
    ];
    for line in hostile {
        publish_chat(&obs.client, "mallory", line, false).await;
    }
    let after = wait_for_lines(&mut obs, corpus().len() + 2 + hostile.len()).await;
    assert_ne!(before, after);
    let seeded = obs.ask("markov", "<script>alert('x')</script>").await;
    assert!(seeded.contains("<script>alert('x')</script>"), "{seeded:?}");
    let unicode = obs.ask("markov", "wörld").await;
    assert!(unicode.contains("wörld"), "{unicode:?}");
    let spam = obs.ask("markov", "spam").await;
    assert!(spam.chars().count() <= 200, "bounded: {}", spam.len());

    // Chains are per channel: another channel has learned nothing.
    let mut elsewhere = runtime_support::command_payload("markov", "stats", "mod", 2.0);
    elsewhere.channel = "other".to_owned();
    obs.publish_command(&elsewhere).await;
    assert_eq!(
        obs.next_chat().await,
        "0 lines learned, 0 distinct states, 0 words (order 2)."
    );

    // Malformed payloads are refused without harm.
    for bad in [&b"not json"[..], b"[1, 2]", b"{}", b"{\"user\": 5}", b""] {
        obs.client
            .publish(subjects::events::MESSAGE, bad.to_vec().into())
            .await
            .unwrap();
        obs.client
            .publish(
                subjects::commands::command("markov").unwrap(),
                bad.to_vec().into(),
            )
            .await
            .unwrap();
    }
    obs.client.flush().await.unwrap();
    // Malformed commands are dropped by the runtime; malformed events reach the plugin, which
    // reports each as an error and keeps serving.
    let reported =
        wait_until_async(PATIENCE, || async { obs.info("markov").await.errors >= 5 }).await;
    let info = obs.info("markov").await;
    assert!(reported, "decode errors are reported: {info:?}");
    assert_eq!(info.state, rosey_plugin_api::admin::PluginState::Running);
    assert!(info
        .last_error
        .unwrap_or_default()
        .contains("rosey.events.message"));
    assert_eq!(obs.ask("markov", "stats").await, after);
}

/// Lines saved for `lobby` according to markov's `index` key.
fn saved_lines(index: &Value) -> u64 {
    index["channels"]["lobby"]["chunks"]
        .as_array()
        .map_or(0, |chunks| {
            chunks.iter().filter_map(|c| c["lines"].as_u64()).sum()
        })
}

/// The `index` key of markov's storage, if saved.
async fn saved_index(client: &async_nats::Client) -> Option<Value> {
    let reply: kv::GetReply = request_json(
        client,
        &subjects::kv::subject("markov", subjects::kv::Op::Get).unwrap(),
        &kv::Get {
            channel: None,
            key: "index".to_owned(),
        },
        Duration::from_secs(5),
    )
    .await
    .ok()?;
    reply.value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_survives_a_hot_reload() {
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let mut db = RoseyDb::start(&nats, &obs.client, PATIENCE).await;
    let _rt = start_markov(
        &mut obs,
        &nats,
        markov_config(json!({"save_interval": 3600})),
    )
    .await;
    teach_corpus(&obs.client).await;
    obs.send("markov", "order 1", "mod", 2.0).await;
    obs.next_chat().await;
    let stats = wait_for_lines(&mut obs, corpus().len()).await;
    assert!(
        saved_index(&obs.client).await.is_none(),
        "nothing was saved to the storage yet"
    );
    // With the database gone, the chain can cross the reload only in the state handed from
    // one generation to the next (the old generation's save on shutdown fails).
    db.kill();

    let reply = obs
        .client
        .request(
            subjects::runtime::PLUGINS_RELOAD,
            br#"{"name":"markov"}"#.to_vec().into(),
        )
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
    let reloaded = obs.event(lifecycle::PLUGIN_RELOADED, "markov").await;
    assert_eq!(reloaded.generation, 2);
    assert_eq!(
        obs.ask("markov", "stats").await,
        stats,
        "the chain crossed the reload"
    );
    assert!(obs.ask("markov", "settings").await.starts_with("order 1,"));
    assert_speaks_from_corpus(&mut obs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_and_settings_survive_a_restart() {
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let _db = RoseyDb::start(&nats, &obs.client, PATIENCE).await;
    let settings = markov_config(json!({"save_interval": 1}));
    let mut rt = start_markov(&mut obs, &nats, settings.clone()).await;
    teach_corpus(&obs.client).await;
    obs.send("markov", "order 1", "mod", 2.0).await;
    obs.next_chat().await;
    let stats = wait_for_lines(&mut obs, corpus().len()).await;
    let saved = wait_until_async(PATIENCE, || async {
        saved_index(&obs.client).await.is_some_and(|index| {
            saved_lines(&index) == corpus().len() as u64
                && index["channels"]["lobby"]["settings"]["order"] == 1
        })
    })
    .await;
    assert!(
        saved,
        "the chain and its settings are saved every save_interval"
    );

    rt.child.terminate(PATIENCE);
    publish_chat(
        &obs.client,
        "alice",
        "said while the runtime was down",
        false,
    )
    .await;
    let _rt = start_markov(&mut obs, &nats, settings).await;
    assert_eq!(wait_for_lines(&mut obs, corpus().len()).await, stats);
    assert!(obs.ask("markov", "settings").await.starts_with("order 1,"));
    assert_speaks_from_corpus(&mut obs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_is_saved_on_shutdown() {
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let _db = RoseyDb::start(&nats, &obs.client, PATIENCE).await;
    // No periodic save happens during the test: only the save in `shutdown` can keep the chain.
    let settings = markov_config(json!({"save_interval": 3600}));
    let mut rt = start_markov(&mut obs, &nats, settings.clone()).await;
    teach_corpus(&obs.client).await;
    let stats = wait_for_lines(&mut obs, corpus().len()).await;
    assert!(saved_index(&obs.client).await.is_none());

    let status = rt.child.terminate(PATIENCE);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let saved = wait_until_async(PATIENCE, || async {
        saved_index(&obs.client)
            .await
            .is_some_and(|index| saved_lines(&index) == corpus().len() as u64)
    })
    .await;
    assert!(saved, "the chain was saved when the runtime stopped");
    let _rt = start_markov(&mut obs, &nats, settings).await;
    assert_eq!(wait_for_lines(&mut obs, corpus().len()).await, stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_saves_and_bootstrap_from_recent_chat() {
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let _db = RoseyDb::start(&nats, &obs.client, PATIENCE).await;
    // The database has heard some chat before the plugin ever ran.
    let history = [
        ("alice", "history line one about cats"),
        ("bob", "!markov stats"),
        ("rosey", "the bot's own words"),
        ("carol", "history line two about dogs"),
    ];
    store_chat_lines(&obs.client, &history).await;
    let stored = wait_until_async(PATIENCE, || async {
        let lines: Result<Vec<rosey_plugin_api::db::ChatLine>, _> = request_json(
            &obs.client,
            subjects::db::RECENT_CHAT_GET,
            &json!({"limit": 10}),
            Duration::from_secs(2),
        )
        .await;
        lines.is_ok_and(|l| l.len() == history.len())
    })
    .await;
    assert!(stored, "rosey-db stored the history");

    let mut rt = start_markov(
        &mut obs,
        &nats,
        markov_config(json!({"bootstrap_lines": 100, "save_interval": 1})),
    )
    .await;
    // Commands and the bot's own lines are left out.
    wait_for_lines(&mut obs, 2).await;
    let said = obs.ask("markov", "").await;
    assert!(said.starts_with("history line"), "{said:?}");
    publish_chat(&obs.client, "alice", "a fresh line heard live", false).await;
    wait_for_lines(&mut obs, 3).await;

    // Saved periodically, without a shutdown.
    let saved = wait_until_async(PATIENCE, || async {
        saved_index(&obs.client)
            .await
            .is_some_and(|index| saved_lines(&index) == 3)
    })
    .await;
    assert!(saved, "the chain is saved every save_interval");

    // Killed without a chance to save: the periodic save is what survives, and a channel
    // that was saved is not bootstrapped again (that would give 2 or 5 lines, not 3).
    rt.child.kill();
    let _rt = start_markov(
        &mut obs,
        &nats,
        markov_config(json!({"bootstrap_lines": 100})),
    )
    .await;
    wait_for_lines(&mut obs, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_loses_nothing() {
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let settings = markov_config(json!({"save_interval": 1}));

    // A first run saves two lines.
    let mut db = RoseyDb::start(&nats, &obs.client, PATIENCE).await;
    let mut rt = start_markov(&mut obs, &nats, settings.clone()).await;
    publish_chat(&obs.client, "alice", "saved line one", false).await;
    publish_chat(&obs.client, "alice", "saved line two", false).await;
    wait_for_lines(&mut obs, 2).await;
    let saved = wait_until_async(PATIENCE, || async {
        saved_index(&obs.client)
            .await
            .is_some_and(|index| saved_lines(&index) == 2)
    })
    .await;
    assert!(saved);
    rt.child.kill();
    db.kill();

    // The runtime starts while the database is down: the plugin loads, learns and talks.
    let _rt = start_markov(&mut obs, &nats, settings).await;
    for line in ["new line one", "new line two", "new line three"] {
        publish_chat(&obs.client, "bob", line, false).await;
    }
    wait_for_lines(&mut obs, 3).await;
    let said = obs.ask("markov", "").await;
    assert!(said.starts_with("new line"), "{said:?}");

    // The database comes back: the saved lines are restored under the new ones, and the
    // next save keeps all five.
    db.restart(&nats, &obs.client, PATIENCE).await;
    wait_for_lines(&mut obs, 5).await;
    let merged = wait_until_async(PATIENCE, || async {
        saved_index(&obs.client)
            .await
            .is_some_and(|index| saved_lines(&index) == 5)
    })
    .await;
    assert!(merged, "{:?}", saved_index(&obs.client).await);
}
