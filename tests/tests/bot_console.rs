//! `rosey-bot` on the console platform, end to end: the bot runs as its own process against a
//! private nats-server; we type on its stdin, read its stdout, and watch NATS.

use rosey_plugin_api::commands::Command;
use rosey_plugin_api::error::{ErrorBody, ErrorCode, HEADER_CODE};
use rosey_plugin_api::events::{BotStatus, Event, Message};
use rosey_plugin_api::stream::DB_STREAM;
use rosey_plugin_api::subjects;
use rosey_tests::bot_support::{next_json, next_message, request, ConsoleBot, WAIT};
use rosey_tests::{command, NatsServer};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;

/// The console bot these tests drive: `tester` types, `rosey` answers.
fn start_console_bot(nats: &NatsServer) -> ConsoleBot {
    ConsoleBot::start(&json!({
        "nats": {"server": nats.url()},
        "platform": {
            "type": "console",
            "console_user": "tester",
            "credentials": {"username": "rosey"},
            "status_interval": 0.2,
            "outbound_poll_interval": 0.2,
            "flood": {"commands_per_minute": 3, "block_seconds": 300}
        },
        "logging": {"level": "info", "chat_log_file": "chat.log"}
    }))
}

/// Asserts that an action was accepted: `{"ok": true}`.
fn assert_ok(reply: &async_nats::Message) {
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.payload).unwrap(),
        json!({"ok": true})
    );
}

/// Waits until the bot answers its action subject (it is joined and serving).
async fn wait_serving(client: &async_nats::Client) {
    let subject = subjects::platform::send("console", subjects::platform::action::AFK).unwrap();
    let body = json!({"channel": "console", "afk": false}).to_string();
    let ok = rosey_tests::wait_until_async(WAIT, || {
        let client = client.clone();
        let subject = subject.clone();
        let body = body.clone();
        async move {
            let req = async_nats::Request::new()
                .payload(body.into())
                .timeout(Some(Duration::from_millis(500)));
            client.send_request(subject, req).await.is_ok()
        }
    })
    .await;
    assert!(ok, "rosey-bot never answered its action subject");
}

/// The last payload stored in the database stream for `subject`, once one matches `want`,
/// with its message id.
async fn last_db_write(
    js: &async_nats::jetstream::Context,
    subject: &str,
    want: impl Fn(&Value) -> bool,
) -> (Value, String) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Ok(stream) = js.get_stream(DB_STREAM).await {
            if let Ok(msg) = stream.get_last_raw_message_by_subject(subject).await {
                let value: Value = serde_json::from_slice(&msg.payload).unwrap();
                if want(&value) {
                    let id = msg
                        .headers
                        .get("Nats-Msg-Id")
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default();
                    return (value, id);
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no matching {subject} write in {DB_STREAM}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_lines_become_events_commands_and_db_writes() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mut messages = client.subscribe(subjects::events::MESSAGE).await.unwrap();
    let mut commands = client.subscribe(subjects::commands::ALL).await.unwrap();
    let mut raw = client
        .subscribe("rosey.platform.console.line")
        .await
        .unwrap();
    let mut bot = start_console_bot(&nats);
    wait_serving(&client).await;

    bot.type_line("hello &amp; <b>world</b>");
    let event: Event<Message> = next_json(&mut messages).await;
    assert_eq!(event.platform, "console");
    assert_eq!(event.channel, "console");
    assert!(event.timestamp.secs() > 1_600_000_000);
    assert_eq!(event.body.user, "tester");
    assert_eq!(
        event.body.content, "hello &amp; <b>world</b>",
        "console text is plain, not HTML"
    );
    assert!(!event.body.is_command);
    let user = event.body.user_data.expect("the console user is known");
    assert_eq!(
        (user.username.as_str(), user.rank, user.is_moderator),
        ("tester", 2.0, true)
    );
    assert_eq!(event.platform_data["line"], "hello &amp; <b>world</b>");
    let raw_line: Value = next_json(&mut raw).await;
    assert_eq!(raw_line["user"], "tester");

    bot.type_line("!Roll 2d6  fast");
    let event: Event<Message> = next_json(&mut messages).await;
    assert!(event.body.is_command);
    assert_eq!(event.body.content, "!Roll 2d6  fast");
    let cmd_msg = next_message(&mut commands).await;
    assert_eq!(cmd_msg.subject.as_str(), "rosey.commands.roll");
    let cmd: Command = serde_json::from_slice(&cmd_msg.payload).unwrap();
    assert_eq!(cmd.command, "roll");
    assert_eq!(cmd.args, ["2d6", "fast"]);
    assert_eq!(cmd.text, "2d6  fast");
    assert_eq!(cmd.raw, "!Roll 2d6  fast");
    assert_eq!(cmd.user, "tester");
    assert!(cmd.user_data.is_moderator);
    assert!(!cmd.is_pm);
    assert_eq!(
        (cmd.platform.as_str(), cmd.channel.as_str()),
        ("console", "console")
    );

    // A PM with the prefix is a command with is_pm.
    bot.type_line("/pm !quote 5");
    let cmd_msg = next_message(&mut commands).await;
    let cmd: Command = serde_json::from_slice(&cmd_msg.payload).unwrap();
    assert_eq!((cmd.command.as_str(), cmd.is_pm), ("quote", true));
    assert_eq!(cmd.args, ["5"]);

    // Durable writes with message ids, in the stream, without any rosey-db running.
    let js = async_nats::jetstream::new(client.clone());
    let (log, id) = last_db_write(&js, subjects::db::MESSAGE_LOG, |v| {
        v["message"] == "!Roll 2d6  fast"
    })
    .await;
    assert_eq!(log["username"], "tester");
    assert!(log["timestamp"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(log["user_data"]["rank"], 2.0);
    assert!(id.starts_with("rosey-bot-"), "message id {id:?}");
    let (status, _) = last_db_write(&js, subjects::db::STATUS_UPDATE, |v| {
        v["status_data"]["bot_connected"] == true
    })
    .await;
    assert_eq!(status["status_data"]["bot_name"], "rosey");
    assert_eq!(status["status_data"]["channel_name"], "console");

    assert!(
        bot.chat_log().contains("<tester> !Roll 2d6  fast"),
        "{}",
        bot.chat_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_print_on_stdout_and_errors_are_replied() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mut errors = client
        .subscribe("rosey.platform.console.error")
        .await
        .unwrap();
    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let mut bot = start_console_bot(&nats);
    wait_serving(&client).await;

    let chat = subjects::platform::send("console", subjects::platform::action::CHAT).unwrap();
    let reply = request(
        &client,
        &chat,
        json!({"channel": "console", "content": "hi there"}),
    )
    .await;
    assert_ok(&reply);
    assert_eq!(bot.next_stdout(), "<rosey> hi there");

    // Long text is split on word boundaries at 320 characters.
    let long = "word ".repeat(100);
    request(
        &client,
        &chat,
        json!({"channel": "console", "content": long}),
    )
    .await;
    let first = bot.next_stdout();
    let second = bot.next_stdout();
    assert!(first.starts_with("<rosey> word") && second.starts_with("<rosey> word"));
    assert!(first.len() <= "<rosey> ".len() + 320);
    assert_eq!(
        format!(
            "{} {}",
            &first["<rosey> ".len()..],
            &second["<rosey> ".len()..]
        ),
        long.trim()
    );

    let pm = subjects::platform::send("console", subjects::platform::action::PM).unwrap();
    request(
        &client,
        &pm,
        json!({"channel": "console", "to": "tester", "content": "psst"}),
    )
    .await;
    assert_eq!(bot.next_stdout(), "[pm] psst");

    // Malformed JSON: an error reply with the contract's headers and body, and a report.
    let bad = client
        .request(chat.clone(), "{not json".into())
        .await
        .unwrap();
    let headers = bad.headers.as_ref().expect("error headers");
    assert_eq!(headers.get(HEADER_CODE).unwrap().as_str(), "400");
    let body: ErrorBody = serde_json::from_slice(&bad.payload).unwrap();
    assert_eq!(body.error.code, ErrorCode::InvalidJson);
    let report: Value = next_json(&mut errors).await;
    assert_eq!(report["action"], "send.chat");
    assert_eq!(report["channel"], "console");

    let missing = request(&client, &chat, json!({"channel": "console"})).await;
    let body: ErrorBody = serde_json::from_slice(&missing.payload).unwrap();
    assert_eq!(body.error.code, ErrorCode::MissingField);

    let code_of = |reply: async_nats::Message| {
        serde_json::from_slice::<ErrorBody>(&reply.payload)
            .unwrap()
            .error
            .code
    };
    let wrong_type = request(&client, &chat, json!({"channel": "console", "content": 5})).await;
    assert_eq!(code_of(wrong_type), ErrorCode::InvalidJson);
    let too_long = request(
        &client,
        &chat,
        json!({"channel": "console", "content": "y".repeat(5000)}),
    )
    .await;
    assert_eq!(code_of(too_long), ErrorCode::TooLarge);
    let huge = request(
        &client,
        &chat,
        json!({"channel": "console", "content": "z".repeat(200_000)}),
    )
    .await;
    assert_eq!(code_of(huge), ErrorCode::TooLarge);
    let unknown = subjects::platform::send("console", "send.dance").unwrap();
    let reply = request(&client, &unknown, json!({"channel": "console"})).await;
    assert_eq!(code_of(reply), ErrorCode::NotFound);

    // Another channel's action is not ours to answer.
    let other = client
        .send_request(
            chat.clone(),
            async_nats::Request::new()
                .payload(
                    json!({"channel": "elsewhere", "content": "x"})
                        .to_string()
                        .into(),
                )
                .timeout(Some(Duration::from_millis(500))),
        )
        .await;
    assert!(other.is_err(), "a bot answered for another channel");

    // The status is published on changes (the rank arrives before the join) and periodically.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let s: Event<BotStatus> = next_json(&mut status).await;
        seen.push((s.body.bot_name, s.body.connected, s.body.rank));
    }
    assert_eq!(
        seen[seen.len() - 1],
        ("rosey".to_owned(), true, 3.0),
        "{seen:?}"
    );
    assert_eq!(
        seen[seen.len() - 2],
        seen[seen.len() - 1],
        "periodic repeats: {seen:?}"
    );

    // The PM shell answers a moderator, by PM, and audits the command.
    bot.type_line("/pm help");
    let help = bot.next_stdout();
    assert!(help.starts_with("[pm] Commands: help, info"), "{help}");
    bot.type_line("/pm users");
    let users = bot.next_stdout();
    assert!(
        users.contains("[3] rosey") && users.contains("[2] tester"),
        "{users}"
    );
    let js = async_nats::jetstream::new(client.clone());
    let (audit, _) = last_db_write(&js, subjects::db::ACTION_PM_COMMAND, |v| {
        v["command"] == "users"
    })
    .await;
    assert_eq!(audit["username"], "tester");
    assert_eq!(audit["result"], "success");

    // End of input leaves the bot running and serving.
    drop(bot.stdin.take());
    let reply = request(
        &client,
        &chat,
        json!({"channel": "console", "content": "still here"}),
    )
    .await;
    assert_ok(&reply);
    assert_eq!(bot.next_stdout(), "<rosey> still here");

    let status = bot.child.terminate(WAIT).expect("exit status");
    assert!(status.success(), "rosey-bot exited with {status}");
    // Shutdown stores its last status (disconnected) before exiting.
    let (last, _) = last_db_write(&js, subjects::db::STATUS_UPDATE, |v| {
        v["status_data"]["bot_connected"] == false
    })
    .await;
    assert_eq!(last["status_data"]["bot_name"], "rosey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_chatty_source_cannot_starve_another() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let mut bot = start_console_bot(&nats);
    bot.type_line("/pm help");
    assert!(bot.next_stdout().starts_with("[pm] Commands:"));
    let chat = subjects::platform::send("console", subjects::platform::action::CHAT).unwrap();
    let send = |source: &'static str, text: String| {
        let client = client.clone();
        let chat = chat.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(rosey_plugin_api::actions::HEADER_SOURCE, source);
            let body = json!({"channel": "console", "content": text}).to_string();
            client
                .publish_with_headers(chat, headers, body.into())
                .await
                .unwrap();
        }
    };
    // At the default rate (burst 4, then 1 a second) the spammer's 40 lines take most of a
    // minute; the other source's single line is queued behind them in time, but not in turn.
    for i in 0..40 {
        send("spammer", format!("spam {i}")).await;
    }
    send("polite", "my turn".to_owned()).await;
    client.flush().await.unwrap();
    let mut seen = vec![];
    while !seen.iter().any(|l: &String| l.contains("my turn")) {
        seen.push(bot.next_stdout());
        assert!(
            seen.len() <= 10,
            "the polite line waited behind the spam: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_bot_while_its_input_is_still_open() {
    let nats = NatsServer::start();
    let mut bot = start_console_bot(&nats);
    bot.type_line("/pm help");
    assert!(bot.next_stdout().starts_with("[pm] Commands:"));
    // A terminal (or `rosey up`) keeps stdin open; SIGTERM must still stop the bot.
    assert!(bot.stdin.is_some());
    let status = bot.child.terminate(WAIT).expect("exit status");
    assert!(status.success(), "rosey-bot exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderators_are_exempt_from_the_command_flood_guard() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    // The limit is 3 per minute; the console user is a moderator, so all 6 go through.
    let mut commands = client.subscribe(subjects::commands::ALL).await.unwrap();
    let mut bot = start_console_bot(&nats);
    wait_serving(&client).await;
    for i in 0..6 {
        bot.type_line(&format!("!count {i}"));
    }
    for i in 0..6 {
        let cmd: Command = next_json(&mut commands).await;
        assert_eq!(cmd.args, [i.to_string()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jetstream_writes_fall_back_to_plain_publishes() {
    let nats = NatsServer::start_without_jetstream();
    let client = nats.connect().await;
    let mut logs = client.subscribe(subjects::db::MESSAGE_LOG).await.unwrap();
    let mut bot = start_console_bot(&nats);
    wait_serving(&client).await;
    bot.type_line("plain please");
    let log: Value = next_json(&mut logs).await;
    assert_eq!(log["message"], "plain please");
    assert_eq!(log["username"], "tester");
}

#[test]
fn dead_nats_is_a_clear_error() {
    let port = rosey_tests::free_port();
    let out = command("rosey-bot")
        .arg("--nats")
        .arg(format!("nats://127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rosey-bot:") && stderr.to_lowercase().contains("nats"),
        "{stderr}"
    );
}
