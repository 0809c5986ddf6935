//! `rosey-bot` against a mock CyTube server, end to end: the bot, nats-server and the mock run
//! separately; we drive the mock and watch NATS and what the bot sends back.

use futures::StreamExt;
use rosey_plugin_api::commands::Command;
use rosey_plugin_api::error::{ErrorBody, ErrorCode};
use rosey_plugin_api::events::{Event, Message, Pm, UserJoin, UserLeave};
use rosey_plugin_api::stream::DB_STREAM;
use rosey_plugin_api::subjects;
use rosey_tests::bot_support::{
    next_json, next_message, request, spawn_quiet_bot, wait_connected, wait_disconnected,
    write_config, WAIT,
};
use rosey_tests::mock_cytube::{user, MockCytube, MockOptions};
use rosey_tests::{wait_until_async, ChildGuard, NatsServer};
use serde_json::{json, Value};
use std::time::Duration;

struct Bot {
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

fn start_bot(nats: &NatsServer, mock: &MockCytube, extra: Value) -> Bot {
    let dir = tempfile::tempdir().unwrap();
    let mut platform = json!({
        "type": "cytube",
        "domain": mock.domain(),
        "channel": "test",
        "credentials": {"username": "rosey"},
        "status_interval": 0.2,
        "outbound_poll_interval": 0.2,
        "outbound_request_timeout": 0.5,
        "reconnect_min_delay": 0.05,
        "reconnect_max_delay": 0.5,
        "ping_timeout": 1,
        "flood": {"commands_per_minute": 3, "block_seconds": 300}
    });
    // `extra` overrides platform keys, except `logging`, a section of its own.
    let mut root = json!({});
    if let (Some(p), Some(e)) = (platform.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "logging" {
                root["logging"] = v.clone();
            } else {
                p.insert(k.clone(), v.clone());
            }
        }
    }
    root["platform"] = platform;
    let config = write_config(dir.path(), &root);
    Bot {
        _child: spawn_quiet_bot(&config, nats),
        _dir: dir,
    }
}

/// A nats-server, a client on it, and the mock server started with `options`.
async fn start_servers(options: MockOptions) -> (NatsServer, async_nats::Client, MockCytube) {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mock = MockCytube::start(options).await;
    (nats, client, mock)
}

/// Starts the bot with `extra` platform settings and waits until it has joined; returns it and
/// its status subscription (subscribe to anything else the test watches before calling this).
async fn start_joined_bot(
    nats: &NatsServer,
    client: &async_nats::Client,
    mock: &MockCytube,
    extra: Value,
) -> (Bot, async_nats::Subscriber) {
    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let bot = start_bot(nats, mock, extra);
    wait_connected(&mut status, WAIT).await;
    (bot, status)
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let ok = wait_until_async(WAIT, || {
        let r = check();
        async move { r }
    })
    .await;
    assert!(ok, "timed out waiting for {what}");
}

/// Every payload stored in the database stream on `subject`.
async fn db_writes(client: &async_nats::Client, subject: &str) -> Vec<Value> {
    let js = async_nats::jetstream::new(client.clone());
    let Ok(mut stream) = js.get_stream(DB_STREAM).await else {
        return Vec::new();
    };
    let Ok(info) = stream.info().await else {
        return Vec::new();
    };
    let last = info.state.last_sequence;
    let first = info.state.first_sequence;
    let mut out = Vec::new();
    for seq in first..=last {
        if let Ok(msg) = stream.get_raw_message(seq).await {
            if msg.subject.as_str() == subject {
                out.push(serde_json::from_slice(&msg.payload).unwrap());
            }
        }
    }
    out
}

/// Waits until the stream holds at least `min` writes on `subject`, and returns them all.
async fn wait_db_writes(client: &async_nats::Client, subject: &str, min: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let writes = db_writes(client, subject).await;
        if writes.len() >= min {
            return writes;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} {subject} writes: {writes:?}",
            writes.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mock_options() -> MockOptions {
    MockOptions {
        history: vec![("alice".into(), "old &amp; replayed".into())],
        users: vec![user("alice", 1.0), user("modbob", 2.0)],
        ping_interval_ms: 200,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_chat_is_normalized_history_is_not_and_db_gets_each_line_once() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let mut messages = client.subscribe(subjects::events::MESSAGE).await.unwrap();
    let mut raw_chat = client
        .subscribe("rosey.platform.cytube.chatMsg")
        .await
        .unwrap();
    let mut joins = client.subscribe(subjects::events::USER_JOIN).await.unwrap();
    let mut leaves = client
        .subscribe(subjects::events::USER_LEAVE)
        .await
        .unwrap();
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;

    // The replay reached the raw subject only.
    let replayed: Value = next_json(&mut raw_chat).await;
    assert_eq!(replayed["msg"], "old &amp; replayed");

    assert!(mock.chat_from("[server]", "guesty joined (aliases: guesty)"));
    assert!(mock.send_event(
        "chatMsg",
        json!({"username": "modbob", "msg": "shadow", "meta": {"shadow": true}, "time": 1_795_727_587_322u64})
    ));
    assert!(mock.chat_from(
        "alice",
        r#"hello &amp; <strong>bold</strong> <a href="https://example.com/a?b=1" target="_blank">https://example.com/a?b=1</a>"#
    ));
    let event: Event<Message> = next_json(&mut messages).await;
    assert_eq!(event.platform, "cytube");
    assert_eq!(event.channel, "test");
    assert_eq!(event.body.user, "alice");
    assert_eq!(event.body.content, "hello & bold https://example.com/a?b=1");
    assert!(!event.body.is_command);
    let alice = event.body.user_data.unwrap();
    assert_eq!((alice.rank, alice.is_moderator), (1.0, false));
    assert!(event.platform_data["msg"]
        .as_str()
        .unwrap()
        .contains("<strong>"));
    assert!(event.timestamp.secs() > 1_700_000_000);

    // Joins and leaves: events and durable writes.
    assert!(mock.send_event("addUser", user("carol", 0.0)));
    let join: Event<UserJoin> = next_json(&mut joins).await;
    assert_eq!(
        (join.body.user.as_str(), join.body.user_data.rank),
        ("carol", 0.0)
    );
    assert!(mock.send_event("userLeave", json!({"name": "carol"})));
    let leave: Event<UserLeave> = next_json(&mut leaves).await;
    assert_eq!(leave.body.user_data.unwrap().username, "carol");

    // The bot's own line is logged but is no message event.
    let chat = subjects::platform::send("cytube", subjects::platform::action::CHAT).unwrap();
    request(
        &client,
        &chat,
        json!({"channel": "test", "content": "I am <b>here</b>"}),
    )
    .await;
    wait_for("the bot's line at the server", || {
        mock.received("chatMsg")
            .iter()
            .any(|d| d["msg"] == "I am <b>here</b>")
    })
    .await;
    assert!(mock.chat_from("alice", "after"));
    let event: Event<Message> = next_json(&mut messages).await;
    assert_eq!(
        event.body.content, "after",
        "no event for the bot's own echo, shadow or [server]"
    );

    let logs = wait_db_writes(&client, subjects::db::MESSAGE_LOG, 3).await;
    let lines: Vec<(String, String)> = logs
        .iter()
        .map(|v| {
            (
                v["username"].as_str().unwrap().to_owned(),
                v["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                "alice".to_owned(),
                "hello & bold https://example.com/a?b=1".to_owned()
            ),
            ("rosey".to_owned(), "I am <b>here</b>".to_owned()),
            ("alice".to_owned(), "after".to_owned()),
        ],
        "each live line once, no history, shadow or [server] lines"
    );
    // Everyone present at start-up opens a session (one coalesced write), then carol once.
    let sessions = db_writes(&client, subjects::db::USER_SESSIONS).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(
        session_names(&sessions, "joined"),
        ["alice", "modbob", "rosey"]
    );
    let joined = db_writes(&client, subjects::db::USER_JOINED).await;
    let joined: Vec<&str> = joined
        .iter()
        .map(|v| v["username"].as_str().unwrap())
        .collect();
    assert_eq!(joined, ["carol"]);
    let left = db_writes(&client, subjects::db::USER_LEFT).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["username"], "carol");
    assert_eq!(left[0]["user_data"]["rank"], 0.0);
    let hw = db_writes(&client, subjects::db::STATS_HIGH_WATER).await;
    assert!(
        hw.iter().any(|v| v["connected_count"] == 4),
        "real connected count: {hw:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_published_and_floods_are_stopped_once() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let mut commands = client.subscribe(subjects::commands::ALL).await.unwrap();
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;

    for i in 0..5 {
        assert!(mock.chat_from("alice", &format!("!Dice {i} &lt;x&gt;")));
    }
    let msg = next_message(&mut commands).await;
    assert_eq!(msg.subject.as_str(), "rosey.commands.dice");
    let cmd: Command = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(cmd.args, ["0", "<x>"]);
    assert_eq!(cmd.raw, "!Dice 0 <x>");
    assert_eq!(
        (cmd.platform.as_str(), cmd.channel.as_str(), cmd.is_pm),
        ("cytube", "test", false)
    );
    for i in 1..3 {
        let cmd: Command = next_json(&mut commands).await;
        assert_eq!(cmd.args[0], i.to_string());
    }
    // The fourth is refused with one warning in chat, the fifth silently.
    wait_for("the flood warning", || {
        mock.received("chatMsg").iter().any(|d| {
            d["msg"]
                .as_str()
                .unwrap_or_default()
                .contains("too many commands")
        })
    })
    .await;
    // Moderators are exempt: modbob's command still goes through.
    assert!(mock.chat_from("modbob", "!skip"));
    let cmd: Command = next_json(&mut commands).await;
    assert_eq!(
        (cmd.command.as_str(), cmd.user.as_str()),
        ("skip", "modbob")
    );
    let warnings = mock
        .received("chatMsg")
        .iter()
        .filter(|d| {
            d["msg"]
                .as_str()
                .unwrap_or_default()
                .contains("too many commands")
        })
        .count();
    assert_eq!(warnings, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pm_shell_answers_moderators_and_audits() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let mut pms = client.subscribe(subjects::events::PM).await.unwrap();
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;

    assert!(mock.pm_from("alice", "rosey", "status"));
    let pm: Event<Pm> = next_json(&mut pms).await;
    assert_eq!(
        (
            pm.body.user.as_str(),
            pm.body.recipient.as_str(),
            pm.body.content.as_str()
        ),
        ("alice", "rosey", "status")
    );
    assert!(mock.pm_from("modbob", "rosey", "status"));
    wait_for("the shell reply", || {
        mock.received("pm").iter().any(|d| {
            d["to"] == "modbob"
                && d["msg"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Connected: yes")
        })
    })
    .await;
    assert!(mock.pm_from("modbob", "rosey", "users"));
    wait_for("the users reply", || {
        mock.received("pm").iter().any(|d| {
            let m = d["msg"].as_str().unwrap_or_default();
            m.contains("[2] modbob") && m.contains("[1] alice")
        })
    })
    .await;
    assert!(
        mock.received("pm").iter().all(|d| d["to"] == "modbob"),
        "a non-moderator got a shell answer"
    );
    let audits = wait_db_writes(&client, subjects::db::ACTION_PM_COMMAND, 2).await;
    assert_eq!(audits[0]["username"], "modbob");
    assert_eq!(audits[0]["command"], "status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_is_followed_by_a_rejoin_and_pings_are_answered() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let (_bot, mut status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    wait_for("pongs", || mock.pongs() >= 2).await;
    assert!(mock.kick("bye"));
    wait_disconnected(&mut status, WAIT).await;
    wait_connected(&mut status, WAIT).await;
    assert_eq!(mock.joins(), 2);
    assert_eq!(mock.received("joinChannel").len(), 2);
    assert_eq!(mock.received("joinChannel")[1], json!({"name": "test"}));
    assert_eq!(
        mock.received("login")[0],
        json!({"name": "rosey"}),
        "guest login without pw"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_trips_the_watchdog_and_refusals_are_retried() {
    let (nats, client, mock) = start_servers(MockOptions {
        send_pings: false,
        refuse_first: 2,
        ping_interval_ms: 200,
        ..Default::default()
    })
    .await;
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    assert!(mock.connections() >= 3, "two refusals come before the join");
    // No pings: the watchdog (1 s) drops the connection and the bot joins again.
    wait_for("a second join after the watchdog", || mock.joins() >= 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_password_and_registered_login() {
    let (nats, client, mock) = start_servers(MockOptions {
        channel_password: Some("sesame".into()),
        ..Default::default()
    })
    .await;
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({"channel_password": "sesame", "credentials": {"username": "rosey", "password": "pw"}})).await;
    assert_eq!(
        mock.received("joinChannel")[0],
        json!({"name": "test", "pw": "sesame"})
    );
    assert_eq!(
        mock.received("login")[0],
        json!({"name": "rosey", "pw": "pw"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_login_is_reported_and_retried_slowly() {
    let nats = NatsServer::start();
    let mock = MockCytube::start(MockOptions {
        login_error: Some("Invalid username/password combination".into()),
        ..Default::default()
    })
    .await;
    let client = nats.connect().await;
    let mut errors = client
        .subscribe(subjects::platform::error("cytube").unwrap())
        .await
        .unwrap();
    let _bot = start_bot(&nats, &mock, json!({"reconnect_max_delay": 1}));
    let reported: Value = next_json(&mut errors).await;
    assert_eq!(reported["action"], "login");
    assert!(
        reported["error"]
            .as_str()
            .is_some_and(|e| e.contains("Invalid username/password combination")),
        "{reported}"
    );
    wait_for("a login retry", || mock.received("login").len() >= 2).await;
    assert_eq!(mock.joins(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_messages_are_sent_and_marked() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    // Stand in for rosey-db's outbound queue: one message, then nothing.
    let mut requests = client.subscribe(subjects::db::OUTBOUND_GET).await.unwrap();
    let responder = client.clone();
    tokio::spawn(async move {
        let mut served = false;
        while let Some(req) = requests.next().await {
            let body: Value = serde_json::from_slice(&req.payload).unwrap();
            assert_eq!(body, json!({"limit": 20, "max_retries": 3}));
            let reply = if served {
                json!([])
            } else {
                served = true;
                json!([{"id": 7, "timestamp": 1_700_000_000, "message": "queued hello", "retry_count": 0, "last_error": null}])
            };
            if let Some(to) = req.reply {
                responder
                    .publish(to, reply.to_string().into())
                    .await
                    .unwrap();
            }
        }
    });
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    wait_for("the outbound message at the server", || {
        mock.received("chatMsg")
            .iter()
            .any(|d| d["msg"] == "queued hello")
    })
    .await;
    let marks = wait_db_writes(&client, subjects::db::OUTBOUND_MARK_SENT, 1).await;
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0]["message_id"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_bot_refuses_chat_and_reports_it() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let mut errors = client
        .subscribe("rosey.platform.cytube.error")
        .await
        .unwrap();
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    assert!(mock.send_event(
        "setUserMeta",
        json!({"name": "rosey", "meta": {"afk": false, "muted": true}})
    ));
    let chat = subjects::platform::send("cytube", subjects::platform::action::CHAT).unwrap();
    let ok = wait_until_async(WAIT, || {
        let client = client.clone();
        let chat = chat.clone();
        async move {
            let reply = request(&client, &chat, json!({"channel": "test", "content": "hi"})).await;
            serde_json::from_slice::<ErrorBody>(&reply.payload).is_ok_and(|b| {
                b.error.code == ErrorCode::Denied && b.error.message.contains("muted")
            })
        }
    })
    .await;
    assert!(ok, "a muted bot accepted chat");
    let report: Value = next_json(&mut errors).await;
    assert_eq!(report["action"], "send.chat");
    assert!(mock.send_event(
        "noflood",
        json!({"action": "chat", "msg": "You have been muted on this channel."})
    ));
    loop {
        let report: Value = next_json(&mut errors).await;
        if report["error"] == "You have been muted on this channel." {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_backlog_holds_the_chat_instead_of_dropping_lines() {
    let (mut nats, client, mock) = start_servers(mock_options()).await;
    // A backlog of 20 writes, far below the lines said while NATS is away.
    let (_bot, _status) = start_joined_bot(
        &nats,
        &client,
        &mock,
        json!({"db_write_backlog": 20, "ping_timeout": 60}),
    )
    .await;
    assert!(mock.chat_from("alice", "before"));
    wait_db_writes(&client, subjects::db::MESSAGE_LOG, 1).await;
    nats.stop();
    for i in 0..200 {
        assert!(mock.chat_from("alice", &format!("during {i}")));
    }
    // Long enough for the backlog to fill and the bot to stop reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.restart();
    let client = nats.connect().await;
    let logs = wait_db_writes(&client, subjects::db::MESSAGE_LOG, 201).await;
    let messages: Vec<String> = logs
        .iter()
        .map(|v| v["message"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = vec!["before".to_owned()];
    expected.extend((0..200).map(|i| format!("during {i}")));
    assert_eq!(messages, expected, "every line once, in order");
    assert_eq!(
        mock.connections(),
        1,
        "the stall did not cost the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_loses_no_database_write() {
    let (mut nats, client, mock) = start_servers(mock_options()).await;
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    assert!(mock.chat_from("alice", "before"));
    let ok = wait_until_async(WAIT, || {
        let client = client.clone();
        async move { db_writes(&client, subjects::db::MESSAGE_LOG).await.len() == 1 }
    })
    .await;
    assert!(ok);
    nats.stop();
    for i in 0..5 {
        assert!(mock.chat_from("alice", &format!("during {i}")));
    }
    nats.restart();
    let client = nats.connect().await;
    wait_db_writes(&client, subjects::db::MESSAGE_LOG, 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = db_writes(&client, subjects::db::MESSAGE_LOG).await;
    let messages: Vec<&str> = logs
        .iter()
        .map(|v| v["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["before", "during 0", "during 1", "during 2", "during 3", "during 4"]
    );
}

fn item(uid: u64, id: &str, title: &str, by: &str) -> Value {
    json!({"media": {"id": id, "title": title, "seconds": 61, "duration": "01:01", "type": "yt", "meta": {}},
           "uid": uid, "temp": true, "queueby": by})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_is_normalized_and_published() {
    use rosey_plugin_api::events as ev;
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mut options = mock_options();
    options.playlist = vec![
        item(1, "m1", "First &amp; best", "alice"),
        item(2, "m2", "Second", "modbob"),
    ];
    let mock = MockCytube::start(options).await;
    let sub = |s: &'static str| {
        let client = client.clone();
        async move { client.subscribe(s).await.unwrap() }
    };
    let mut status = sub(subjects::events::BOT_STATUS).await;
    let mut list = sub(subjects::events::USER_LIST).await;
    let mut update = sub(subjects::events::USER_UPDATE).await;
    let mut count = sub(subjects::events::USER_COUNT).await;
    let mut media = sub(subjects::events::MEDIA_CHANGE).await;
    let mut add = sub(subjects::events::PLAYLIST_ADD).await;
    let mut moved = sub(subjects::events::PLAYLIST_MOVE).await;
    let mut removed = sub(subjects::events::PLAYLIST_REMOVE).await;
    let mut poll_open = sub(subjects::events::POLL_OPEN).await;
    let mut poll_update = sub(subjects::events::POLL_UPDATE).await;
    let mut poll_close = sub(subjects::events::POLL_CLOSE).await;
    let mut raw_rank = sub("rosey.platform.cytube.setUserRank").await;
    let _bot = start_bot(&nats, &mock, json!({}));
    wait_connected(&mut status, WAIT).await;

    let users: Event<ev::UserList> = next_json(&mut list).await;
    assert_eq!(users.body.count, 3);
    let names: Vec<&str> = users
        .body
        .users
        .iter()
        .map(|u| u.username.as_str())
        .collect();
    assert_eq!(names, ["alice", "modbob", "rosey"]);
    assert!(users.body.users[1].is_moderator && !users.body.users[0].is_moderator);
    let counted: Event<ev::UserCount> = next_json(&mut count).await;
    assert_eq!(
        (counted.body.chat_count, counted.body.connected_count),
        (3, 4)
    );

    mock.send_event("setAFK", json!({"name": "alice", "afk": true}));
    mock.send_event(
        "setUserMeta",
        json!({"name": "alice", "meta": {"afk": true, "muted": false}}),
    );
    mock.send_event("setUserRank", json!({"name": "alice", "rank": 1.5}));
    let u: Event<ev::UserUpdate> = next_json(&mut update).await;
    assert_eq!(u.body.user, "alice");
    assert_eq!(u.body.changed, [ev::UserChange::Afk]);
    assert!(u.body.user_data.is_afk);
    let u: Event<ev::UserUpdate> = next_json(&mut update).await;
    assert_eq!(
        u.body.changed,
        [ev::UserChange::Rank],
        "the repeated afk is no change"
    );
    assert_eq!(u.body.user_data.rank, 1.5);
    let raw: Value = next_json(&mut raw_rank).await;
    assert_eq!(raw, json!({"name": "alice", "rank": 1.5}));

    mock.send_event("setCurrent", json!(1));
    mock.send_event(
        "changeMedia",
        json!({"id": "m1", "title": "First &amp; best", "seconds": 61, "duration": "01:01", "type": "yt",
               "meta": {}, "currentTime": -3, "paused": true}),
    );
    let m: Event<ev::MediaChange> = next_json(&mut media).await;
    assert_eq!(m.body.media.id, "m1");
    assert_eq!(m.body.media.kind, "yt");
    assert_eq!(m.body.media.title, "First & best");
    assert_eq!(m.body.media.duration_s, 61.0);
    assert_eq!(m.body.queued_by.as_deref(), Some("alice"));
    assert_eq!(m.platform_data["currentTime"], -3);

    mock.send_event(
        "queue",
        json!({"item": item(3, "m3", "Third", "carol"), "after": 2}),
    );
    let a: Event<ev::PlaylistAdd> = next_json(&mut add).await;
    assert_eq!(a.body.item.uid, 3);
    assert_eq!(a.body.item.queued_by.as_deref(), Some("carol"));
    assert!(a.body.item.temporary);
    assert_eq!(a.body.after, ev::PlaylistAfter::Uid(2));
    mock.send_event("moveVideo", json!({"from": 3, "after": "prepend"}));
    let mv: Event<ev::PlaylistMove> = next_json(&mut moved).await;
    assert_eq!(mv.body.uid, 3);
    assert_eq!(
        mv.body.after,
        ev::PlaylistAfter::Start(ev::Prepend::Prepend)
    );
    mock.send_event("delete", json!({"uid": 3}));
    let r: Event<ev::PlaylistRemove> = next_json(&mut removed).await;
    assert_eq!(r.body.uid, 3);

    mock.send_frame(format!(
        "42{}",
        json!(["newPoll", {"title": "Next?", "options": ["a", "b &amp; c"], "counts": [0, 0], "initiator": "modbob", "timestamp": 1_795_727_587_322u64}])
    ));
    let p: Event<ev::Poll> = next_json(&mut poll_open).await;
    assert_eq!(p.body.title, "Next?");
    assert_eq!(p.body.options, ["a", "b & c"]);
    assert_eq!(p.body.counts, [Some(0), Some(0)]);
    assert_eq!(p.body.initiator.as_deref(), Some("modbob"));
    assert_eq!(p.timestamp.secs(), 1_795_727_587);
    mock.send_event(
        "updatePoll",
        json!({"title": "Next?", "options": ["a", "b"], "counts": [1, "?"], "initiator": "modbob"}),
    );
    let p: Event<ev::Poll> = next_json(&mut poll_update).await;
    assert_eq!(p.body.counts, [Some(1), None]);
    mock.send_frame(r#"42["closePoll",null]"#.into());
    let c: Event<ev::PollClose> = next_json(&mut poll_close).await;
    assert_eq!(c.platform, "cytube");

    // The shell sees the state the events built.
    mock.pm_from("modbob", "rosey", "playlist");
    wait_for("the playlist reply", || {
        mock.received("pm").iter().any(|d| {
            let m = d["msg"].as_str().unwrap_or_default();
            m.contains("► 1. First & best (1:01)") && m.contains("2. Second (1:01)")
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_and_names_do_not_break_the_bot() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let mut messages = client.subscribe(subjects::events::MESSAGE).await.unwrap();
    let mut commands = client.subscribe(subjects::commands::ALL).await.unwrap();
    let raw_chat = subjects::platform::raw("cytube", "chatMsg").unwrap();
    let mut raw = client.subscribe(raw_chat).await.unwrap();
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    for frame in [
        "42[not json",
        "4",
        "9zzz",
        r#"42[5,{}]"#,
        r#"42["chatMsg","just a string"]"#,
        r#"42["chatMsg",{"username":7,"msg":[]}]"#,
        r#"42["rosey.>",{}]"#,
        r#"42["addUser",{"name":{"x":1}}]"#,
        r#"42["usercount",-5]"#,
        r#"42["cooldown","soon"]"#,
    ] {
        assert!(mock.send_frame(frame.into()));
    }
    // Names CyTube never gives (`^[\w-]{1,20}$`) and a line far over its 1,000 characters:
    // refused at the edge, neither published (raw or normalized) nor written.
    let huge_name = "n".repeat(100_000);
    for data in [
        json!({"username": "alice", "msg": "x".repeat(600_000), "meta": {}, "time": 1}),
        json!({"username": "", "msg": "!empty", "meta": {}, "time": 1}),
        json!({"username": huge_name, "msg": "!huge", "meta": {}, "time": 1}),
        json!({"username": "evil.user", "msg": "!dotted", "meta": {}, "time": 1}),
    ] {
        assert!(mock.send_event("chatMsg", data));
    }
    assert!(mock.send_event("addUser", user("", 0.0)));
    assert!(mock.send_event("addUser", user(&huge_name, 0.0)));
    assert!(mock.send_event("userLeave", json!({"name": huge_name})));
    mock.chat_from("alice", "!rosey.> wildcard");
    mock.chat_from("alice", "!a*b star");
    mock.chat_from("alice", "!ok after the refused ones");
    let mut contents = Vec::new();
    for _ in 0..3 {
        let m: Event<Message> = next_json(&mut messages).await;
        contents.push(m.body.content);
    }
    assert_eq!(
        contents,
        [
            "!rosey.> wildcard",
            "!a*b star",
            "!ok after the refused ones"
        ]
    );
    let cmd: Command = next_json(&mut commands).await;
    assert_eq!((cmd.command.as_str(), cmd.user.as_str()), ("ok", "alice"));
    // The raw subject saw the valid lines only (the history replay, then the three).
    let mut raw_lines = Vec::new();
    while raw_lines.last().map(String::as_str) != Some("!ok after the refused ones") {
        let v: Value = serde_json::from_slice(&next_message(&mut raw).await.payload).unwrap();
        raw_lines.push(v["msg"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        raw_lines,
        [
            "old &amp; replayed",
            "!rosey.> wildcard",
            "!a*b star",
            "!ok after the refused ones"
        ]
    );
    let logged = wait_db_writes(&client, subjects::db::MESSAGE_LOG, 3).await;
    assert_eq!(logged.len(), 3, "{logged:?}");
    assert!(logged.iter().all(|w| w["username"] == "alice"));
    let joined = db_writes(&client, subjects::db::USER_JOINED).await;
    assert!(joined.is_empty(), "no join for a refused name: {joined:?}");
    let left = db_writes(&client, subjects::db::USER_LEFT).await;
    assert!(left.is_empty(), "no leave for a refused name: {left:?}");
    assert_eq!(mock.connections(), 1, "the bot kept its connection");
}

/// Every name in the `field` lists of the stored `rosey.db.user.sessions` writes, sorted.
fn session_names(writes: &[Value], field: &str) -> Vec<String> {
    let mut n: Vec<String> = writes
        .iter()
        .filter_map(|w| w[field].as_array())
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_list_over_max_users_is_cut_and_later_joins_ignored() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let mut counts = client
        .subscribe(subjects::events::USER_COUNT)
        .await
        .unwrap();
    let mut joins = client.subscribe(subjects::events::USER_JOIN).await.unwrap();
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({"max_users": 100})).await;
    let mut users: Vec<Value> = (0..1_000).map(|i| user(&format!("u{i}"), 0.0)).collect();
    users.push(user("rosey", 2.0));
    assert!(mock.send_event("userlist", json!(users)));
    loop {
        let c: Event<rosey_plugin_api::events::UserCount> = next_json(&mut counts).await;
        if c.body.chat_count == 100 {
            break;
        }
        assert!(
            c.body.chat_count < 100,
            "over the cap: {}",
            c.body.chat_count
        );
    }
    // Full: a newcomer is ignored; someone already known still updates.
    assert!(mock.send_event("addUser", user("late", 0.0)));
    assert!(mock.send_event("addUser", user("u1", 1.0)));
    let join: Event<UserJoin> = next_json(&mut joins).await;
    assert_eq!(join.body.user, "u1");
    // The cut list kept the first 99 users and the bot's own entry (sent last): 99 sessions
    // open and the two users missing from it leave, in one write.
    let sessions = wait_db_writes(&client, subjects::db::USER_SESSIONS, 2).await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let mut expected: Vec<String> = (0..99).map(|i| format!("u{i}")).collect();
    expected.sort();
    assert_eq!(session_names(&sessions[1..], "joined"), expected);
    assert_eq!(session_names(&sessions[1..], "left"), ["alice", "modbob"]);
    // A valid line still gets through at once.
    assert!(mock.chat_from("alice", "still here"));
    let logs = wait_db_writes(&client, subjects::db::MESSAGE_LOG, 1).await;
    assert_eq!(logs[0]["message"], "still here");
    let joined = db_writes(&client, subjects::db::USER_JOINED).await;
    assert!(joined.iter().all(|w| w["username"] != "late"), "{joined:?}");
    assert_eq!(mock.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_and_lines_over_their_limits_are_refused_before_parsing() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let mut messages = client.subscribe(subjects::events::MESSAGE).await.unwrap();
    let (_bot, mut status) = start_joined_bot(
        &nats,
        &client,
        &mock,
        json!({"max_frame_bytes": 65536, "max_line_bytes": 1024}),
    )
    .await;
    // A line over max_line_bytes is refused; the connection stays.
    assert!(mock.chat_from("alice", &"l".repeat(2_000)));
    assert!(mock.chat_from("alice", "short"));
    let m: Event<Message> = next_json(&mut messages).await;
    assert_eq!(m.body.content, "short");
    assert_eq!(mock.connections(), 1);
    // A frame over max_frame_bytes ends the connection (tungstenite refuses it from its
    // header); the bot comes back and loses nothing after it.
    assert!(mock.chat_from("alice", &"f".repeat(100_000)));
    wait_disconnected(&mut status, WAIT).await;
    wait_connected(&mut status, WAIT).await;
    assert!(mock.chat_from("alice", "after"));
    let m: Event<Message> = next_json(&mut messages).await;
    assert_eq!(m.body.content, "after");
    let logs = wait_db_writes(&client, subjects::db::MESSAGE_LOG, 2).await;
    let lines: Vec<&str> = logs.iter().filter_map(|l| l["message"].as_str()).collect();
    assert_eq!(lines, ["short", "after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_says_goodbye_with_a_close_frame() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let (bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    assert_eq!(mock.close_frames(), 0);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &bot._child.id().to_string()])
        .status();
    wait_for("a websocket close frame", || mock.close_frames() == 1).await;
    // And the sessions still end at the stop.
    let sessions = wait_db_writes(&client, subjects::db::USER_SESSIONS, 2).await;
    assert_eq!(
        session_names(&sessions[1..], "left"),
        ["alice", "modbob", "rosey"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_server_connection_is_recovered_without_losing_writes() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let (_bot, mut status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    assert!(mock.chat_from("alice", "one"));
    wait_db_writes(&client, subjects::db::MESSAGE_LOG, 1).await;
    assert!(mock.drop_connection());
    wait_disconnected(&mut status, WAIT).await;
    wait_connected(&mut status, WAIT).await;
    assert_eq!(mock.joins(), 2);
    assert!(mock.chat_from("alice", "two"));
    let logs = wait_db_writes(&client, subjects::db::MESSAGE_LOG, 2).await;
    let lines: Vec<&str> = logs
        .iter()
        .map(|v| v["message"].as_str().unwrap())
        .collect();
    // The replayed history of the second join is not logged again.
    assert_eq!(lines, ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_become_cytube_frames_after_permission_checks() {
    use subjects::platform::action;
    let mut options = mock_options();
    options.playlist = vec![item(1, "m1", "First", "alice")];
    let (nats, client, mock) = start_servers(options).await;
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    let ask = |act: &'static str, body: Value| {
        let client = client.clone();
        async move {
            let subject = subjects::platform::send("cytube", act).unwrap();
            let reply = request(&client, &subject, body).await;
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };
    let ok = json!({"ok": true});
    assert_eq!(
        ask(action::PLAYLIST_ADD, json!({"channel": "test", "url": "https://youtu.be/abc", "position": "next", "temporary": true})).await,
        ok
    );
    assert_eq!(
        ask(
            action::KICK,
            json!({"channel": "test", "user": "alice", "reason": "spam"})
        )
        .await,
        ok
    );
    assert_eq!(
        ask(action::PLAYLIST_JUMP, json!({"channel": "test", "uid": 1})).await,
        ok
    );
    assert_eq!(
        ask(action::PLAYLIST_NEXT, json!({"channel": "test"})).await,
        ok
    );
    assert_eq!(ask(action::CLEAR, json!({"channel": "test"})).await, ok);
    assert_eq!(
        ask(action::AFK, json!({"channel": "test", "afk": true})).await,
        ok
    );
    // Refusals: an equal rank, an unknown item, a link CyTube cannot play.
    let denied = ask(action::KICK, json!({"channel": "test", "user": "modbob"})).await;
    assert_eq!(denied["error"]["code"], "denied");
    let missing = ask(
        action::PLAYLIST_REMOVE,
        json!({"channel": "test", "uid": 99}),
    )
    .await;
    assert_eq!(missing["error"]["code"], "not_found");
    let bad_link = ask(
        action::PLAYLIST_ADD,
        json!({"channel": "test", "url": "https://example.com/page", "temporary": true}),
    )
    .await;
    assert_eq!(bad_link["error"]["code"], "invalid_json");
    // Permanent items need `addnontemp` (rank 2 by default): the bot has rank 2.
    assert_eq!(
        ask(
            action::PLAYLIST_ADD,
            json!({"channel": "test", "url": "yt:def"})
        )
        .await,
        ok
    );

    wait_for("the frames at the server", || {
        mock.received("queue").len() == 2 && mock.received("playNext").len() == 1
    })
    .await;
    assert_eq!(
        mock.received("queue"),
        [
            json!({"id": "abc", "type": "yt", "pos": "next", "temp": true}),
            json!({"id": "def", "type": "yt", "pos": "end", "temp": false})
        ]
    );
    assert_eq!(mock.received("jumpTo"), [json!(1)]);
    let chat: Vec<Value> = mock
        .received("chatMsg")
        .iter()
        .map(|d| d["msg"].clone())
        .collect();
    assert_eq!(
        chat,
        [json!("/kick alice spam"), json!("/clear"), json!("/afk")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pm_shell_moves_jumps_and_pauses_the_playlist() {
    let mut options = mock_options();
    options.playlist = vec![
        item(11, "m1", "First", "alice"),
        item(12, "m2", "Second", "alice"),
        item(13, "m3", "Third", "alice"),
    ];
    let (nats, client, mock) = start_servers(options).await;
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    let replies = || -> Vec<String> {
        mock.received("pm")
            .iter()
            .filter(|d| d["to"] == "modbob")
            .map(|d| d["msg"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let shell = |line: &str, answer: &str| {
        let before = replies().len();
        assert!(mock.pm_from("modbob", "rosey", line));
        let (answer, line) = (answer.to_owned(), line.to_owned());
        let replies = &replies;
        async move {
            wait_for(&format!("the answer to {line:?}"), || {
                replies().get(before).is_some_and(|r| r.contains(&answer))
            })
            .await;
        }
    };

    // Positions are 1-based, as the original's shell. (The mock does not reorder its list, so
    // each line below starts from 11, 12, 13.) Up: the third item goes after the first.
    shell("move 3 2", "Moved").await;
    // Down: the first item goes after the third, to end up third (the original put it second).
    shell("move 1 3", "Moved").await;
    // To the top, which the original could not do.
    shell("move 2 1", "Moved").await;
    shell("move 2 2", "Already at position 2").await;
    shell("move 1 4", "No item at position 4 (playlist has 3)").await;
    shell("jump 2", "Jumped").await;
    shell("jump 9", "No item at position 9 (playlist has 3)").await;
    // Pausing needs something playing and the bot as leader.
    mock.send_event(
        "changeMedia",
        json!({"id": "m2", "title": "Second", "seconds": 61, "duration": "01:01",
               "type": "yt", "meta": {}, "currentTime": 7.5, "paused": false}),
    );
    shell("pause", "The bot must be the leader to pause").await;
    mock.send_event("setLeader", json!("rosey"));
    shell("pause", "Paused").await;

    assert_eq!(
        mock.received("moveMedia"),
        [
            json!({"from": 13, "after": 11}),
            json!({"from": 11, "after": 13}),
            json!({"from": 12, "after": "prepend"})
        ]
    );
    assert_eq!(mock.received("jumpTo"), [json!(12)]);
    let paused = mock.received("mediaUpdate");
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(
        (&paused[0]["id"], &paused[0]["type"], &paused[0]["paused"]),
        (&json!("m2"), &json!("yt"), &json!(true))
    );
    assert!(
        paused[0]["currentTime"].as_f64().is_some_and(|t| t >= 7.5),
        "{paused:?}"
    );
    let audits = wait_db_writes(&client, subjects::db::ACTION_PM_COMMAND, 9).await;
    let commands: Vec<&str> = audits
        .iter()
        .filter_map(|a| a["command"].as_str())
        .collect();
    assert_eq!(
        commands,
        ["move", "move", "move", "move", "move", "jump", "jump", "pause", "pause"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_pms_and_media_changes_are_written_to_the_log_files() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let logs = tempfile::tempdir().unwrap();
    let (chat_log, media_log) = (logs.path().join("chat.log"), logs.path().join("media.log"));
    let (_bot, _status) = start_joined_bot(
        &nats,
        &client,
        &mock,
        json!({"logging": {"chat_log_file": chat_log, "media_log_file": media_log}}),
    )
    .await;
    assert!(mock.chat_from("alice", "fish &amp; chips"));
    assert!(mock.pm_from("alice", "rosey", "psst"));
    mock.send_event(
        "changeMedia",
        json!({"id": "abc", "title": "Song &amp; Dance", "seconds": 61, "duration": "01:01",
               "type": "yt", "meta": {}, "currentTime": 0, "paused": false}),
    );
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    wait_for("both log files", || {
        read(&chat_log).lines().count() >= 2 && !read(&media_log).is_empty()
    })
    .await;
    // `[YYYY-MM-DD HH:MM:SS] ...`, with HTML entities decoded.
    let stamp = |line: &str| {
        let b = line.as_bytes();
        b.len() > 21 && b[0] == b'[' && b[5] == b'-' && b[11] == b' ' && b[20] == b']'
    };
    let chat: Vec<String> = read(&chat_log).lines().map(str::to_owned).collect();
    assert!(
        stamp(&chat[0]) && chat[0].ends_with("] <alice> fish & chips"),
        "{chat:?}"
    );
    assert!(
        stamp(&chat[1]) && chat[1].ends_with("] [pm] alice -> rosey: psst"),
        "{chat:?}"
    );
    let media = read(&media_log);
    assert!(
        stamp(&media) && media.trim_end().ends_with("] yt:abc Song & Dance"),
        "{media:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_cooldown_holds_the_bots_chat_and_resends_the_dropped_line() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let mut messages = client.subscribe(subjects::events::MESSAGE).await.unwrap();
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    let chat = subjects::platform::send("cytube", subjects::platform::action::CHAT).unwrap();
    let said = |text: &str| mock.received("chatMsg").iter().any(|d| d["msg"] == text);
    request(&client, &chat, json!({"channel": "test", "content": "one"})).await;
    wait_for("the first line", || said("one")).await;

    const PAUSE: Duration = Duration::from_millis(1500);
    let cooldown_sent = std::time::Instant::now();
    assert!(mock.send_event("cooldown", json!(PAUSE.as_millis() as u64)));
    // Frames are handled in order: once this line is an event, the cooldown has been seen.
    assert!(mock.chat_from("alice", "marker"));
    let marker: Event<Message> = next_json(&mut messages).await;
    assert_eq!(marker.body.content, "marker");
    request(&client, &chat, json!({"channel": "test", "content": "two"})).await;
    wait_for("the held line", || said("two")).await;
    assert!(
        cooldown_sent.elapsed() >= PAUSE,
        "the line went out {:?} after a {PAUSE:?} cooldown",
        cooldown_sent.elapsed()
    );
    // The cooldown said the server dropped "one": it went again, first.
    let lines: Vec<Value> = mock
        .received("chatMsg")
        .iter()
        .map(|d| d["msg"].clone())
        .collect();
    assert_eq!(lines, [json!("one"), json!("one"), json!("two")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_write_too_large_for_nats_is_dropped_without_holding_up_the_rest() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let mut messages = client.subscribe(subjects::events::MESSAGE).await.unwrap();
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    // Over nats-server's 1 MiB max_payload once it is a database write.
    assert!(mock.send_frame(format!(
        "42{}",
        json!(["chatMsg", {"username": "alice", "msg": "y".repeat(1_200_000), "meta": {}, "time": 1}])
    )));
    assert!(mock.chat_from("alice", "small one"));
    // Too large for core NATS as an event too: that one is logged and skipped.
    let next: Event<Message> = next_json(&mut messages).await;
    assert_eq!(next.body.content, "small one");
    // The oversized write cannot be stored; the next one must not wait behind it forever.
    let logs = wait_db_writes(&client, subjects::db::MESSAGE_LOG, 1).await;
    let lines: Vec<&str> = logs.iter().filter_map(|l| l["message"].as_str()).collect();
    assert_eq!(lines, ["small one"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_the_connection_drops_and_when_the_bot_stops() {
    let (nats, client, mock) = start_servers(mock_options()).await;
    let (bot, mut status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    // The first user list opens everyone's session in one write.
    let writes = wait_db_writes(&client, subjects::db::USER_SESSIONS, 1).await;
    let present = session_names(&writes[..1], "joined");
    assert_eq!(present, ["alice", "modbob", "rosey"]);

    // While the bot is away nobody is seen: every session ends at the drop...
    let dropped_at = rosey_plugin_api::Timestamp::now().secs();
    assert!(mock.drop_connection());
    wait_disconnected(&mut status, WAIT).await;
    let writes = wait_db_writes(&client, subjects::db::USER_SESSIONS, 2).await;
    assert_eq!(session_names(&writes[1..2], "left"), present);
    assert!(writes[1]["timestamp"]
        .as_i64()
        .is_some_and(|t| t >= dropped_at));
    // ...and opens again with the next user list.
    wait_connected(&mut status, WAIT).await;
    let writes = wait_db_writes(&client, subjects::db::USER_SESSIONS, 3).await;
    assert_eq!(session_names(&writes[2..3], "joined"), present);

    // Stopping the bot ends them too, as the original's close() did.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &bot._child.id().to_string()])
        .status();
    let writes = wait_db_writes(&client, subjects::db::USER_SESSIONS, 4).await;
    assert_eq!(session_names(&writes[3..], "left"), present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_playlist_lets_a_low_ranked_bot_add() {
    let mut options = mock_options();
    // Below the locked playlist's `playlistadd` (1.5); an open one asks `oplaylistadd` (-1).
    options.bot_rank = 1.0;
    let (nats, client, mock) = start_servers(options).await;
    let mut messages = client.subscribe(subjects::events::MESSAGE).await.unwrap();
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    let add = subjects::platform::send("cytube", subjects::platform::action::PLAYLIST_ADD).unwrap();
    let body = json!({"channel": "test", "url": "yt:abc", "temporary": true});
    let locked = request(&client, &add, body.clone()).await;
    let locked: Value = serde_json::from_slice(&locked.payload).unwrap();
    assert_eq!(locked["error"]["code"], "denied", "{locked}");

    assert!(mock.send_event("setPlaylistLocked", json!(false)));
    // Frames are handled in order: once this line is an event, the unlock has been seen.
    assert!(mock.chat_from("alice", "marker"));
    let marker: Event<Message> = next_json(&mut messages).await;
    assert_eq!(marker.body.content, "marker");
    let open = request(&client, &add, body).await;
    assert_eq!(&open.payload[..], br#"{"ok":true}"#);
    wait_for("the queued item", || mock.received("queue").len() == 1).await;
}

/// The NATS action server and the PM shell share one rule book: a permanent item needs
/// `addnontemp` whichever way it is asked for (the shell once checked only `playlistadd`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_and_the_shell_refuse_the_same_permanent_add() {
    let mut options = mock_options();
    // At `playlistadd` (1.5) but below `addnontemp` (2), with the playlist locked.
    options.bot_rank = 1.5;
    let (nats, client, mock) = start_servers(options).await;
    let (_bot, _status) = start_joined_bot(&nats, &client, &mock, json!({})).await;
    let add = subjects::platform::send("cytube", subjects::platform::action::PLAYLIST_ADD).unwrap();
    let ask = |body: Value| {
        let (client, add) = (client.clone(), add.clone());
        async move {
            let reply = request(&client, &add, body).await;
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };
    let permanent = ask(json!({"channel": "test", "url": "yt:perm1", "temporary": false})).await;
    assert_eq!(permanent["error"]["code"], "denied", "{permanent}");
    assert!(
        permanent["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("addnontemp")),
        "{permanent}"
    );
    let temporary = ask(json!({"channel": "test", "url": "yt:temp1", "temporary": true})).await;
    assert_eq!(temporary, json!({"ok": true}));

    let replies = || -> Vec<String> {
        mock.received("pm")
            .iter()
            .filter(|d| d["to"] == "modbob")
            .map(|d| d["msg"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert!(mock.pm_from("modbob", "rosey", "add yt:perm2 perm"));
    wait_for("the refusal", || {
        replies()
            .first()
            .is_some_and(|r| r.starts_with("Error:") && r.contains("addnontemp"))
    })
    .await;
    assert!(mock.pm_from("modbob", "rosey", "add yt:temp2"));
    wait_for("the temporary add", || {
        replies()
            .get(1)
            .is_some_and(|r| r.contains("Added yt:temp2"))
    })
    .await;
    wait_for("both temporary items at the server", || {
        mock.received("queue").len() == 2
    })
    .await;
    let ids: Vec<Value> = mock
        .received("queue")
        .iter()
        .map(|q| q["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!("temp1"), json!("temp2")],
        "a permanent add got through"
    );
}
