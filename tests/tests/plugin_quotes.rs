//! The quotes plugin as shipped, loaded by the real `rosey-runtime` next to a real `rosey-db`
//! and `nats-server`, driven through the command and event subjects: every `!quote` form and
//! its misuse, answers by PM, hostile and malformed input, quotes kept across a runtime
//! restart (key-value storage) and recent lines kept across a hot reload (saved state).
//!
//! The plugin libraries are the workspace's own builds (`cargo build --workspace` puts
//! `libquotes.so` beside the binaries).

use futures::StreamExt;
use rosey_plugin_api::db::ChatLine;
use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects::{self, runtime as lifecycle};
use rosey_tests::runtime_support;
use rosey_tests::runtime_support::{
    command_payload, config, publish_chat, shipped_plugin_dir, start_runtime, store_chat_lines,
    Observer, Runtime, PATIENCE,
};
use rosey_tests::{wait_until_async, NatsServer, RoseyDb};
use serde_json::{json, Value};
use std::time::Duration;

/// A runtime serving only quotes.
async fn start_quotes(obs: &mut Observer, nats: &NatsServer) -> Runtime {
    let rt = start_runtime(&config(
        nats,
        &shipped_plugin_dir("quotes"),
        json!({"enabled": ["quotes"], "hot_reload": false}),
    ));
    obs.event(lifecycle::PLUGIN_LOADED, "quotes").await;
    rt
}

/// `!quote <text>` from `user` at `rank`, and the answer.
async fn quote(obs: &mut Observer, user: &str, rank: f64, text: &str) -> String {
    obs.send("quote", text, user, rank).await;
    obs.next_chat().await
}

/// Asks `!quote grab <user>` until the plugin has heard them (events and commands travel on
/// different subscriptions, so a command may overtake a chat line).
async fn grab(obs: &mut Observer, by: &str, user: &str) -> String {
    let mut last = String::new();
    for _ in 0..300 {
        last = quote(obs, by, 1.0, &format!("grab {user}")).await;
        if !last.starts_with("I haven't heard") {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never heard {user}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_and_its_misuse() {
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let _db = RoseyDb::start(&nats, &obs.client, PATIENCE).await;
    let _rt = start_quotes(&mut obs, &nats).await;

    let empty = "No quotes yet; add one with !quote add <text>.";
    assert_eq!(quote(&mut obs, "ann", 1.0, "").await, empty);
    assert_eq!(quote(&mut obs, "ann", 1.0, "count").await, empty);

    // add, get, random, count
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "add The cake is a lie -- GLaDOS").await,
        "Added quote #1."
    );
    assert_eq!(
        quote(&mut obs, "bob", 1.0, "add I like cake").await,
        "Added quote #2."
    );
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "1").await,
        "#1: The cake is a lie — GLaDOS"
    );
    assert_eq!(quote(&mut obs, "ann", 1.0, "#2").await, "#2: I like cake");
    assert_eq!(quote(&mut obs, "ann", 1.0, "count").await, "2 quotes.");
    let random = quote(&mut obs, "ann", 1.0, "").await;
    assert!(
        random.starts_with("#1:") || random.starts_with("#2:"),
        "{random}"
    );

    // by and search
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "by glados").await,
        "#1: The cake is a lie — GLaDOS"
    );
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "by nobody").await,
        "No quotes by nobody."
    );
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "search CAKE").await,
        "2 found: #1 \"The cake is a lie\", #2 \"I like cake\""
    );
    for i in 0..5 {
        let long = format!("add cake number {i} {}", "and more words ".repeat(10));
        quote(&mut obs, "ann", 1.0, &long).await;
    }
    let many = quote(&mut obs, "ann", 1.0, "search cake").await;
    assert!(many.starts_with("7 found, first 5: "), "{many}");
    assert_eq!(many.matches(" #").count(), 5, "{many}");
    assert!(many.contains('…'), "long quotes are previewed: {many}");

    // Misuse: a clear reply each time.
    for (text, reply) in [
        (
            "add",
            "the quote is empty; usage: !quote add <text> [-- <author>]",
        ),
        (
            "add -- bob",
            "the quote is empty; usage: !quote add <text> [-- <author>]",
        ),
        ("99", "No quote #99."),
        ("del 99", "No quote #99."),
        ("del x", "usage: !quote del <id>"),
        ("search ca", "Search for at least 3 characters."),
        ("search zebra", "No quote contains \"zebra\"."),
        ("by", "usage: !quote by <author>"),
        ("grab", "usage: !quote grab <user>"),
        ("grab ann", "You can't quote yourself."),
        ("count 5", "!quote count takes no arguments"),
        ("add I like cake", "That is already quote #2."),
    ] {
        assert_eq!(quote(&mut obs, "ann", 1.0, text).await, reply, "{text}");
    }
    let too_long = format!("add {}", "x".repeat(501));
    assert_eq!(
        quote(&mut obs, "ann", 1.0, &too_long).await,
        "That quote is 501 characters; the limit is 500."
    );
    let huge = format!("add {}", "ü".repeat(100_000));
    assert_eq!(
        quote(&mut obs, "ann", 1.0, &huge).await,
        "That quote is 100000 characters; the limit is 500."
    );
    let long_search = format!("search {}", "y".repeat(10_000));
    let reply = quote(&mut obs, "ann", 1.0, &long_search).await;
    assert!(
        reply.starts_with("No quote contains \"yyy") && reply.len() < 100,
        "{reply}"
    );
    let unknown = quote(&mut obs, "ann", 1.0, "frobnicate").await;
    assert!(
        unknown.starts_with("I don't know !quote frobnicate;"),
        "{unknown}"
    );
    assert!(quote(&mut obs, "ann", 1.0, "help")
        .await
        .starts_with("!quote [id]"));

    // del: the adder or a moderator; ids are never reused.
    assert_eq!(
        quote(&mut obs, "bob", 1.0, "del 1").await,
        "Only ann (who added it) or a moderator can delete quote #1."
    );
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "del 1").await,
        "Deleted quote #1."
    );
    assert_eq!(
        quote(&mut obs, "mod", 2.0, "del 2").await,
        "Deleted quote #2."
    );
    assert_eq!(quote(&mut obs, "ann", 1.0, "1").await, "No quote #1.");
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "add fresh").await,
        "Added quote #8."
    );

    // grab: from what the plugin heard, commands and the bot's own lines excluded.
    publish_chat(&obs.client, "Carol", "carol's <i>finest</i> line", false).await;
    assert_eq!(
        grab(&mut obs, "ann", "carol").await,
        "Added quote #9: carol's <i>finest</i> line — Carol"
    );
    // grab: from the database's recent chat for someone the plugin never heard.
    store_chat_lines(
        &obs.client,
        &[("dave", "dave's wise words"), ("dave", "!quote count")],
    )
    .await;
    let stored = wait_until_async(PATIENCE, || async {
        request_json::<_, Vec<ChatLine>>(
            &obs.client,
            subjects::db::RECENT_CHAT_GET,
            &json!({"username": "dave"}),
            Duration::from_secs(2),
        )
        .await
        .is_ok_and(|lines| lines.len() == 2)
    })
    .await;
    assert!(stored, "rosey-db stored dave's lines");
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "grab dave").await,
        "Added quote #10: dave's wise words — dave"
    );
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "grab nobody").await,
        "I haven't heard nobody say anything here."
    );

    // Hostile text is stored and shown exactly as typed.
    for (i, text) in [
        "'; DROP TABLE rosey_plugin_kv; --",
        "<script>alert('x')</script> &amp; &lt;",
        "🎉 ünïcödé 中文 \u{202e}reversed",
        "%00 \\ \" {\"json\": true} $(rm -rf /)",
    ]
    .into_iter()
    .enumerate()
    {
        let id = 11 + i;
        assert_eq!(
            quote(&mut obs, "ann", 1.0, &format!("add {text}")).await,
            format!("Added quote #{id}.")
        );
        assert_eq!(
            quote(&mut obs, "ann", 1.0, &id.to_string()).await,
            format!("#{id}: {text}")
        );
    }

    // A command by PM is answered by PM.
    let mut pms = obs
        .client
        .subscribe(subjects::platform::send("console", subjects::platform::action::PM).unwrap())
        .await
        .unwrap();
    obs.client.flush().await.unwrap();
    let mut pm = command_payload("quote", "10", "erin", 0.0);
    pm.is_pm = true;
    obs.publish_command(&pm).await;
    let answer = tokio::time::timeout(PATIENCE, pms.next())
        .await
        .expect("a PM answer")
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["to"], "erin");
    assert_eq!(answer["content"], "#10: dave's wise words — dave");

    // Malformed payloads are refused without harm.
    for bad in [&b"not json"[..], b"[1, 2]", b"{}", b"{\"user\": 5}", b""] {
        for subject in [
            subjects::events::MESSAGE.to_owned(),
            subjects::commands::command("quote").unwrap(),
        ] {
            obs.client
                .publish(subject, bad.to_vec().into())
                .await
                .unwrap();
        }
    }
    obs.client.flush().await.unwrap();
    let reported =
        wait_until_async(PATIENCE, || async { obs.info("quotes").await.errors >= 5 }).await;
    assert!(
        reported,
        "decode errors are reported: {:?}",
        obs.info("quotes").await
    );
    assert_eq!(quote(&mut obs, "ann", 1.0, "count").await, "12 quotes.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_survive_a_restart_and_memory_a_reload() {
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let _db = RoseyDb::start(&nats, &obs.client, PATIENCE).await;
    let mut rt = start_quotes(&mut obs, &nats).await;

    assert_eq!(
        quote(&mut obs, "ann", 1.0, "add one -- A").await,
        "Added quote #1."
    );
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "add two").await,
        "Added quote #2."
    );
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "del 2").await,
        "Deleted quote #2."
    );
    // Heard only by the plugin (the database never saw this line).
    publish_chat(&obs.client, "frank", "remember me", false).await;
    // Handled: the three commands and the chat line.
    let heard = wait_until_async(PATIENCE, || async {
        obs.info("quotes").await.messages >= 4
    })
    .await;
    assert!(heard, "{:?}", obs.info("quotes").await);

    // A hot reload keeps what the plugin heard: grab works from the new generation.
    let reply = obs
        .client
        .request(
            subjects::runtime::PLUGINS_RELOAD,
            br#"{"name":"quotes"}"#.to_vec().into(),
        )
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
    let reloaded = obs.event(lifecycle::PLUGIN_RELOADED, "quotes").await;
    assert_eq!(reloaded.generation, 2);
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "grab frank").await,
        "Added quote #3: remember me — frank"
    );

    // A restart keeps the quotes and the id counter.
    rt.child.terminate(PATIENCE);
    let _rt = start_quotes(&mut obs, &nats).await;
    assert_eq!(quote(&mut obs, "bob", 1.0, "1").await, "#1: one — A");
    assert_eq!(quote(&mut obs, "bob", 1.0, "count").await, "2 quotes.");
    assert_eq!(quote(&mut obs, "bob", 1.0, "2").await, "No quote #2.");
    assert_eq!(
        quote(&mut obs, "bob", 1.0, "add three").await,
        "Added quote #4."
    );
    assert_eq!(
        quote(&mut obs, "bob", 1.0, "del 1").await,
        "Only ann (who added it) or a moderator can delete quote #1."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_gets_an_apology_and_loses_nothing() {
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let mut db = RoseyDb::start(&nats, &obs.client, PATIENCE).await;
    let _rt = start_quotes(&mut obs, &nats).await;
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "add kept").await,
        "Added quote #1."
    );
    db.kill();

    let sorry = "Sorry, the quote book is not reachable right now; try again later.";
    assert_eq!(quote(&mut obs, "ann", 1.0, "add lost?").await, sorry);
    // Reads are served from memory meanwhile.
    assert_eq!(quote(&mut obs, "ann", 1.0, "1").await, "#1: kept");

    db.restart(&nats, &obs.client, PATIENCE).await;
    assert_eq!(quote(&mut obs, "ann", 1.0, "count").await, "1 quote.");
    assert_eq!(
        quote(&mut obs, "ann", 1.0, "add again").await,
        "Added quote #2."
    );
    // A channel never loaded before the outage is read from the storage.
    let mut other = runtime_support::command_payload("quote", "count", "ann", 1.0);
    other.channel = "other".to_owned();
    obs.publish_command(&other).await;
    assert_eq!(
        obs.next_chat().await,
        "No quotes yet; add one with !quote add <text>."
    );
}

/// Quotes refuses unknown configuration keys; an operator's command override is the
/// runtime's key, taken out before the plugin reads its own, so it loads and both apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_plugin_loads_when_an_operator_overrides_its_command() {
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let _db = RoseyDb::start(&nats, &obs.client, PATIENCE).await;
    let _rt = start_runtime(&config(
        &nats,
        &shipped_plugin_dir("quotes"),
        json!({
            "enabled": ["quotes"],
            "hot_reload": false,
            "config": {"quotes": {
                "max_length": 10,
                "commands": {"quote": {"min_rank": 2, "cooldown": 0}},
            }},
        }),
    ));
    obs.event(lifecycle::PLUGIN_LOADED, "quotes").await;
    // Below the overridden rank: refused without a reply, so the next reply is the
    // moderator's, whose quote is held to the plugin's own `max_length`.
    obs.send("quote", "add low rank", "guest", 1.0).await;
    assert_eq!(
        quote(&mut obs, "mod", 2.0, "add far too long for ten").await,
        "That quote is 20 characters; the limit is 10."
    );
    assert_eq!(
        quote(&mut obs, "mod", 2.0, "count").await,
        "No quotes yet; add one with !quote add <text>."
    );
}
