//! The `llm` plugin as shipped, loaded by the real `rosey-runtime` (because `llm.enabled`),
//! asking the real `rosey-llm`, which asks a mock OpenAI-compatible provider written in the
//! test (`llm_support`) that records every request: each trigger fires when it should and
//! stays quiet when it should not (randomness seeded), the system prompt and the history go
//! out in order, PMs are answered by PM, the history survives a reload, a second user is
//! answered while a first answer is slow, a provider failure gets an apology, and with
//! `llm.enabled` false `!ai` says LLM chat is not configured.
//!
//! Silence is proved without timing: a line that must stay quiet is followed by a sentinel
//! that must be answered (events arrive in order), and the provider must then have seen the
//! sentinel's request right after the last expected one.

use futures::StreamExt;
use rosey_plugin_api::admin::PluginsList;
use rosey_plugin_api::commands::Command;
use rosey_plugin_api::events::{Event, Pm, UserChange, UserJoin, UserUpdate};
use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects::{self, runtime as lifecycle};
use rosey_plugin_api::{Timestamp, UserData};
use rosey_tests::llm_support::{openai_ok, rosey_llm_answers, Answer, Mock};
use rosey_tests::runtime_support::{
    command_payload, publish_chat, shipped_plugin_dir, start_runtime_with, Observer, Runtime,
    PATIENCE,
};
use rosey_tests::{command, wait_until_async, ChildGuard, NatsServer};
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const SYSTEM_PROMPT: &str = "You are Rosey, a friendly bot.";

/// nats-server, rosey-llm, the runtime with the llm plugin, the mock provider, an observer.
struct Rig {
    obs: Observer,
    mock: Mock,
    rt: Runtime,
    _llm: Option<ChildGuard>,
    _dir: tempfile::TempDir,
    _nats: NatsServer,
}

/// Lays `from` onto `into`, objects key by key.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                match into.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        into.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (into, from) => *into = from.clone(),
    }
}

impl Rig {
    /// Starts everything with `llm` laid over a quick OpenAI-compatible `llm` section, and
    /// waits for the plugin to load (and rosey-llm to answer, when enabled).
    async fn start(llm: Value, default: Answer) -> Rig {
        let nats = NatsServer::start();
        let mut obs = Observer::new(&nats).await;
        let mock = Mock::start(default).await;
        let dir = tempfile::tempdir().unwrap();
        let prompt_file = dir.path().join("prompt.txt");
        std::fs::write(&prompt_file, SYSTEM_PROMPT).unwrap();
        let mut section = json!({
            "enabled": true,
            "provider": "openai",
            "openai": {"base_url": format!("{}/v1", mock.base()), "model": "gpt-test",
                       "api_key_env": "ROSEY_TEST_LLM_KEY"},
            "system_prompt_file": prompt_file,
            "max_context_messages": 4,
            "temperature": 0.3,
            "max_tokens": 60,
            "gateway": {"request_timeout": 20, "max_retries": 0, "retry_backoff": 0.05,
                        "concurrency": 8, "plugin_requests_per_minute": 1000},
        });
        merge(&mut section, &llm);
        let enabled = section["enabled"].as_bool().unwrap_or(false);
        let config = json!({
            "nats": {"server": nats.url()},
            "platform": {"channel": "lobby"},
            "plugins": {
                "directory": shipped_plugin_dir("llm"),
                "enabled": if enabled { json!([]) } else { json!(["llm"]) },
                "hot_reload": false,
                "tick_interval": 0.1,
                "config": {"llm": {"seed": 7, "user_cooldown_seconds": 0}},
            },
            "llm": section,
        });
        let path = dir.path().join("rosey.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut cmd = command("rosey-llm");
        cmd.arg("--config")
            .arg(&path)
            .env("ROSEY_TEST_LLM_KEY", "sk-plugin-test")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let llm = enabled.then(|| ChildGuard::spawn("rosey-llm", cmd));
        // The runtime resolves only the secrets it reads: it starts without the key's variable.
        let rt = start_runtime_with(&config, |mut cmd| {
            cmd.env_remove("ROSEY_TEST_LLM_KEY");
            cmd
        });
        obs.event(lifecycle::PLUGIN_LOADED, "llm").await;
        if enabled {
            let client = obs.client.clone();
            assert!(
                rosey_llm_answers(&client, PATIENCE).await,
                "rosey-llm never answered status"
            );
        }
        Rig {
            obs,
            mock,
            rt,
            _llm: llm,
            _dir: dir,
            _nats: nats,
        }
    }

    /// The messages of the provider's `n`th request (from 0), as (role, content).
    fn request(&self, n: usize) -> Vec<(String, String)> {
        let seen = self.mock.seen();
        let body = &seen[n].body;
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_owned(),
                    m["content"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn requests(&self) -> usize {
        self.mock.seen().len()
    }

    async fn chat(&self, user: &str, line: &str) {
        publish_chat(&self.obs.client, user, line, false).await;
    }
}

fn ok(text: &str) -> Answer {
    openai_ok(text, "gpt-test")
}

fn pair(role: &str, content: &str) -> (String, String) {
    (role.to_owned(), content.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_and_mention_carry_the_system_prompt_and_history_in_order() {
    let mut rig = Rig::start(json!({}), ok("unused")).await;
    rig.mock.push(ok("NATS is a message bus."));
    rig.obs.send("ai", "what is NATS?", "alice", 1.0).await;
    assert_eq!(rig.obs.next_chat().await, "alice: NATS is a message bus.");
    assert_eq!(
        rig.request(0),
        [pair("system", SYSTEM_PROMPT), pair("user", "what is NATS?")]
    );
    let body = rig.mock.seen()[0].body.clone();
    assert_eq!(body["temperature"], json!(0.3));
    assert_eq!(body["max_tokens"], json!(60));

    // Quiet: no mention, the server, the bot itself, a command line, a word containing the name.
    rig.chat("alice", "just chatting").await;
    rig.chat("[server]", "rosey was kicked").await;
    rig.chat("rosey", "rosey says hi").await;
    publish_chat(&rig.obs.client, "alice", "!ai rosey", true).await;
    rig.chat("bob", "roseybud is a flower").await;

    rig.mock.push(ok("It persists streams."));
    rig.chat("alice", "Rosey, and JetStream?").await;
    assert_eq!(rig.obs.next_chat().await, "alice: It persists streams.");
    assert_eq!(rig.requests(), 2, "only the mention was sent");
    assert_eq!(
        rig.request(1),
        [
            pair("system", SYSTEM_PROMPT),
            pair("user", "what is NATS?"),
            pair("assistant", "NATS is a message bus."),
            pair("user", "and JetStream?"),
        ]
    );

    // Another user has their own history; !ask works too.
    rig.mock.push(ok("Hi bob."));
    rig.obs.send("ask", "hello", "bob", 1.0).await;
    assert_eq!(rig.obs.next_chat().await, "bob: Hi bob.");
    assert_eq!(
        rig.request(2),
        [pair("system", SYSTEM_PROMPT), pair("user", "hello")]
    );

    // A third exchange for alice: the history keeps the last 4 messages.
    rig.mock.push(ok("Third."));
    rig.obs.send("ai", "third?", "alice", 1.0).await;
    assert_eq!(rig.obs.next_chat().await, "alice: Third.");
    assert_eq!(
        rig.request(3),
        [
            pair("system", SYSTEM_PROMPT),
            pair("user", "what is NATS?"),
            pair("assistant", "NATS is a message bus."),
            pair("user", "and JetStream?"),
            pair("assistant", "It persists streams."),
            pair("user", "third?"),
        ]
    );
    rig.mock.push(ok("Fourth."));
    rig.obs.send("ai", "fourth?", "alice", 1.0).await;
    assert_eq!(rig.obs.next_chat().await, "alice: Fourth.");
    assert_eq!(
        rig.request(4),
        [
            pair("system", SYSTEM_PROMPT),
            pair("user", "and JetStream?"),
            pair("assistant", "It persists streams."),
            pair("user", "third?"),
            pair("assistant", "Third."),
            pair("user", "fourth?"),
        ]
    );
    // An empty command gets a usage line, without asking the provider.
    rig.obs.send("ai", "", "alice", 1.0).await;
    assert_eq!(
        rig.obs.next_chat().await,
        "Ask me something: !ai <question>"
    );
    assert_eq!(rig.requests(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_messages_are_answered_by_pm() {
    let rig = Rig::start(json!({}), ok("unused")).await;
    let mut pms = rig
        .obs
        .client
        .subscribe(subjects::platform::send("console", subjects::platform::action::PM).unwrap())
        .await
        .unwrap();
    rig.obs.client.flush().await.unwrap();
    let pm = |user: &str, content: &str| Event {
        platform: "console".to_owned(),
        channel: "lobby".to_owned(),
        timestamp: Timestamp::now(),
        platform_data: Value::Null,
        body: Pm {
            user: user.to_owned(),
            recipient: "rosey".to_owned(),
            content: content.to_owned(),
        },
    };
    // Quiet: the bot's own PM and a PM command (the command path answers those).
    for event in [pm("rosey", "echo"), pm("carol", "!help")] {
        rig.obs
            .client
            .publish(
                subjects::events::PM,
                serde_json::to_vec(&event).unwrap().into(),
            )
            .await
            .unwrap();
    }
    rig.mock.push(ok("A secret answer."));
    let event = pm("carol", "tell me a secret");
    rig.obs
        .client
        .publish(
            subjects::events::PM,
            serde_json::to_vec(&event).unwrap().into(),
        )
        .await
        .unwrap();
    let msg = tokio::time::timeout(PATIENCE, pms.next())
        .await
        .expect("a PM within the patience limit")
        .unwrap();
    let v: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(v["to"], "carol");
    assert_eq!(v["content"], "A secret answer.");
    assert_eq!(rig.requests(), 1);
    assert_eq!(
        rig.request(0),
        [
            pair("system", SYSTEM_PROMPT),
            pair("user", "tell me a secret")
        ]
    );

    // `!ai` by PM is answered by PM.
    let mut cmd: Command = command_payload("ai", "by pm?", "dave", 1.0);
    cmd.is_pm = true;
    rig.mock.push(ok("Yes, by PM."));
    rig.obs.publish_command(&cmd).await;
    let msg = tokio::time::timeout(PATIENCE, pms.next())
        .await
        .expect("a PM within the patience limit")
        .unwrap();
    let v: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(
        (v["to"].as_str(), v["content"].as_str()),
        (Some("dave"), Some("Yes, by PM."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_survives_a_reload() {
    let mut rig = Rig::start(json!({}), ok("unused")).await;
    rig.mock.push(ok("First answer."));
    rig.obs.send("ai", "first", "alice", 1.0).await;
    assert_eq!(rig.obs.next_chat().await, "alice: First answer.");

    rig.obs.clear_backlog();
    let reply = rig
        .obs
        .admin(subjects::runtime::PLUGINS_RELOAD, "llm")
        .await;
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
    let reloaded = rig.obs.event(lifecycle::PLUGIN_RELOADED, "llm").await;
    assert!(reloaded.generation >= 2, "a new generation: {reloaded:?}");

    rig.mock.push(ok("Second answer."));
    rig.obs.send("ai", "second", "alice", 1.0).await;
    assert_eq!(rig.obs.next_chat().await, "alice: Second answer.");
    assert_eq!(
        rig.request(1),
        [
            pair("system", SYSTEM_PROMPT),
            pair("user", "first"),
            pair("assistant", "First answer."),
            pair("user", "second"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_user_is_answered_while_a_slow_answer_is_pending_even_across_a_reload() {
    let mut rig = Rig::start(json!({}), ok("unused")).await;
    let gate = Arc::new(Notify::new());
    rig.mock
        .push(Answer::Gated(gate.clone(), Box::new(ok("Slow answer."))));
    rig.obs.send("ai", "slow question", "alice", 1.0).await;
    let mock = rig.mock.clone();
    assert!(
        wait_until_async(PATIENCE, || {
            let mock = mock.clone();
            async move { !mock.seen().is_empty() }
        })
        .await,
        "the provider never saw the first request"
    );
    rig.mock.push(ok("Fast answer."));
    rig.obs.send("ai", "fast question", "bob", 1.0).await;
    assert_eq!(rig.obs.next_chat().await, "bob: Fast answer.");

    // The pending request is in the saved state: a reload in between still delivers it.
    rig.obs.clear_backlog();
    rig.obs
        .admin(subjects::runtime::PLUGINS_RELOAD, "llm")
        .await;
    rig.obs.event(lifecycle::PLUGIN_RELOADED, "llm").await;
    gate.notify_one();
    assert_eq!(rig.obs.next_chat().await, "alice: Slow answer.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failure_gets_an_apology() {
    let mut rig = Rig::start(
        json!({}),
        Answer::Http(500, vec![], "{\"error\":\"boom\"}".to_owned()),
    )
    .await;
    rig.obs.send("ai", "are you there?", "alice", 1.0).await;
    assert_eq!(
        rig.obs.next_chat().await,
        "alice: Sorry, I can't think right now; please try again later."
    );
    let log = rig.rt.log();
    assert!(
        wait_until_async(PATIENCE, || async {
            rig.rt.log().contains("rosey-llm failed to answer alice")
        })
        .await,
        "the reason is logged: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keywords_and_ambient_replies_follow_their_rules() {
    let mut rig = Rig::start(
        json!({"triggers": {
            "keywords": [{"phrases": ["pizza"], "probability": 1.0, "cooldown_seconds": 3600},
                         {"phrases": ["never"], "probability": 0.0, "cooldown_seconds": 0}],
            "ambient_chat": {"enabled": true, "every_n_messages": 3, "randomness": 0.0}
        }}),
        ok("An answer."),
    )
    .await;
    // Line 1 for ambient; the keyword fires (and does not count as an ambient line).
    rig.chat("alice", "I love PIZZA").await;
    assert_eq!(rig.obs.next_chat().await, "alice: An answer.");
    assert_eq!(rig.request(0).last().unwrap().1, "I love PIZZA");
    // The same phrase is cooling down; a probability-0 keyword never fires: plain lines 1, 2.
    rig.chat("bob", "pizza again").await;
    rig.chat("bob", "never ever").await;
    // Plain line 3: the ambient reply.
    rig.chat("carol", "nice weather").await;
    assert_eq!(rig.obs.next_chat().await, "carol: An answer.");
    assert_eq!(rig.requests(), 2);
    assert_eq!(rig.request(1).last().unwrap().1, "nice weather");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greetings_on_join_follow_their_rules() {
    let mut rig = Rig::start(
        json!({"triggers": {"greetings": {"enabled": true, "on_join": {
            "enabled": true, "probability": 0.0, "idle_threshold_minutes": 60,
            "specific_users": {"carol": "Welcome back!", "dave": 1.0}
        }}}}),
        ok("Hello dave!"),
    )
    .await;
    let join = |user: &str| Event {
        platform: "console".to_owned(),
        channel: "lobby".to_owned(),
        timestamp: Timestamp::now(),
        platform_data: Value::Null,
        body: UserJoin {
            user: user.to_owned(),
            user_data: UserData::new(user, 1.0),
        },
    };
    let client = rig.obs.client.clone();
    let publish_joins = |users: &'static [&'static str]| {
        let client = client.clone();
        async move {
            for user in users {
                client
                    .publish(
                        subjects::events::USER_JOIN,
                        serde_json::to_vec(&join(user)).unwrap().into(),
                    )
                    .await
                    .unwrap();
            }
        }
    };
    // erin: probability 0; carol: the fixed greeting once (then within the idle threshold,
    // which a reload does not reset); dave: probability 1, asked of the provider.
    publish_joins(&["erin", "carol"]).await;
    assert_eq!(rig.obs.next_chat().await, "carol: Welcome back!");
    rig.obs.clear_backlog();
    let reply = rig
        .obs
        .admin(subjects::runtime::PLUGINS_RELOAD, "llm")
        .await;
    assert_eq!(&reply.payload[..], br#"{"ok":true}"#);
    rig.obs.event(lifecycle::PLUGIN_RELOADED, "llm").await;
    publish_joins(&["carol", "dave"]).await;
    assert_eq!(rig.obs.next_chat().await, "dave: Hello dave!");
    assert_eq!(rig.requests(), 1);
    assert!(rig
        .request(0)
        .last()
        .unwrap()
        .1
        .starts_with("dave just joined"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_back_from_afk_is_greeted_on_status_change() {
    let mut rig = Rig::start(
        json!({"triggers": {"greetings": {"enabled": true,
            "on_join": {"enabled": false},
            "on_status_change": {"enabled": true, "probability": 1.0}}}}),
        ok("unused"),
    )
    .await;
    let update = |user: &str, afk: bool, changed: Vec<UserChange>| {
        let mut user_data = UserData::new(user, 1.0);
        user_data.is_afk = afk;
        Event {
            platform: "console".to_owned(),
            channel: "lobby".to_owned(),
            timestamp: Timestamp::now(),
            platform_data: Value::Null,
            body: UserUpdate {
                user: user.to_owned(),
                user_data,
                changed,
            },
        }
    };
    let events = [
        // Going AFK, a rank change while present, the server: quiet.
        update("frank", true, vec![UserChange::Afk]),
        update("frank", false, vec![UserChange::Rank]),
        update("[server]", false, vec![UserChange::Afk]),
        // Back from AFK: greeted.
        update("frank", false, vec![UserChange::Afk, UserChange::Profile]),
    ];
    rig.mock.push(ok("Welcome back, frank!"));
    for event in &events {
        rig.obs
            .client
            .publish(
                subjects::events::USER_UPDATE,
                serde_json::to_vec(event).unwrap().into(),
            )
            .await
            .unwrap();
    }
    assert_eq!(rig.obs.next_chat().await, "frank: Welcome back, frank!");
    assert!(rig
        .request(0)
        .last()
        .unwrap()
        .1
        .starts_with("frank is back"));
    // A sentinel proves the quiet updates asked nothing (events arrive in order).
    rig.mock.push(ok("sentinel answer"));
    rig.obs.send("ai", "sentinel", "gina", 1.0).await;
    assert_eq!(rig.obs.next_chat().await, "gina: sentinel answer");
    assert_eq!(rig.requests(), 2, "only the return from AFK was greeted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_llm_disabled_ai_says_so_once_per_cooldown_and_the_rest_is_silent() {
    let mut rig = Rig::start(json!({"enabled": false}), ok("never")).await;
    rig.obs.send("ai", "hello?", "alice", 1.0).await;
    assert_eq!(rig.obs.next_chat().await, "LLM chat is not configured.");
    rig.chat("alice", "rosey, are you there?").await;
    rig.obs.send("ask", "hello again?", "bob", 1.0).await;
    // Wait until the plugin has handled both commands, then nothing more was said.
    let client = rig.obs.client.clone();
    let handled = wait_until_async(PATIENCE, || {
        let client = client.clone();
        async move {
            request_json::<_, PluginsList>(
                &client,
                subjects::runtime::PLUGINS_LIST,
                &json!({}),
                Duration::from_secs(2),
            )
            .await
            .is_ok_and(|list| {
                list.plugins
                    .iter()
                    .any(|p| p.name == "llm" && p.messages >= 2)
            })
        }
    })
    .await;
    assert!(handled, "the plugin never handled the commands");
    assert_eq!(
        rig.obs.try_next_chat(Duration::from_millis(300)).await,
        None
    );
    assert_eq!(rig.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_only_logs_what_it_would_say_and_sends_nothing() {
    let mut rig = Rig::start(json!({"log_only": true}), ok("A quiet answer.")).await;
    rig.obs.send("ai", "speak?", "alice", 1.0).await;
    let said = "log_only: would say to alice in lobby: A quiet answer.";
    assert!(
        wait_until_async(PATIENCE, || async { rig.rt.log().contains(said) }).await,
        "log: {}",
        rig.rt.log()
    );
    // The line is logged where it would have been published, so nothing is on its way.
    assert_eq!(
        rig.obs.try_next_chat(Duration::from_millis(300)).await,
        None
    );
    assert_eq!(rig.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_and_moderators_only_greetings_are_ignored_cleanly() {
    let mut rig = Rig::start(
        json!({"triggers": {"greetings": {"enabled": true, "on_join": {
            "enabled": true, "probability": 1.0, "moderators_only": true
        }}}}),
        ok("Hi."),
    )
    .await;
    for (subject, payload) in [
        (subjects::events::MESSAGE, &b"not json"[..]),
        (subjects::events::PM, &b"{\"user\": 5}"[..]),
        (subjects::events::USER_JOIN, &b"[]"[..]),
    ] {
        rig.obs
            .client
            .publish(subject, payload.to_vec().into())
            .await
            .unwrap();
    }
    let join = |user: &str, moderator: bool| {
        let mut user_data = UserData::new(user, if moderator { 2.0 } else { 1.0 });
        user_data.is_moderator = moderator;
        Event {
            platform: "console".to_owned(),
            channel: "lobby".to_owned(),
            timestamp: Timestamp::now(),
            platform_data: Value::Null,
            body: UserJoin {
                user: user.to_owned(),
                user_data,
            },
        }
    };
    for event in [join("pleb", false), join("mod", true)] {
        rig.obs
            .client
            .publish(
                subjects::events::USER_JOIN,
                serde_json::to_vec(&event).unwrap().into(),
            )
            .await
            .unwrap();
    }
    assert_eq!(rig.obs.next_chat().await, "mod: Hi.");
    assert_eq!(rig.requests(), 1);
    assert!(rig
        .request(0)
        .last()
        .unwrap()
        .1
        .starts_with("mod just joined"));
}
