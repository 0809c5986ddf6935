//! `rosey-bot`, `rosey-db`, `nats-server` and the mock CyTube server as separate processes
//! (the mock in-process): chat lines and joins reach SQLite exactly once, replayed history
//! never, across a database-service restart; queued outbound messages are sent and marked;
//! huge user lists replacing each other lose no chat line and keep the sessions right.

use rosey_plugin_api::subjects;
use rosey_tests::bot_support::{spawn_quiet_bot, wait_connected, write_config, WAIT};
use rosey_tests::mock_cytube::{user, MockCytube, MockOptions};
use rosey_tests::{rosey_db_command, ChildGuard, NatsServer};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn start_db(nats: &NatsServer, db: &Path) -> ChildGuard {
    let mut cmd = rosey_db_command(nats, db);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard::spawn("rosey-db", cmd)
}

/// Starts the bot against the mock server (its configuration in `dir`) and waits until it has
/// joined.
async fn start_joined_bot(
    nats: &NatsServer,
    client: &async_nats::Client,
    mock: &MockCytube,
    dir: &Path,
) -> ChildGuard {
    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let config = write_config(
        dir,
        &json!({"platform": {
            "type": "cytube", "domain": mock.domain(), "channel": "test",
            "credentials": {"username": "rosey"},
            "status_interval": 0.2, "outbound_poll_interval": 0.2,
            "reconnect_min_delay": 0.05, "reconnect_max_delay": 0.5
        }}),
    );
    let bot = spawn_quiet_bot(&config, nats);
    wait_connected(&mut status, WAIT).await;
    bot
}

/// Rows of `sql` once there are at least `min` of them (read-only, while rosey-db writes).
fn wait_rows(db: &Path, sql: &str, min: usize) -> Vec<Vec<String>> {
    wait_rows_within(db, sql, min, WAIT)
}

/// [`wait_rows`] with its own bound, for work that takes long on a debug build.
fn wait_rows_within(db: &Path, sql: &str, min: usize, wait: Duration) -> Vec<Vec<String>> {
    let deadline = Instant::now() + wait;
    loop {
        let rows = rosey_tests::sqlite_rows(db, sql);
        if rows.len() >= min {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "only {} rows for {sql}: {rows:?}",
            rows.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_joins_reach_sqlite_once_across_a_db_restart() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bot_data.db");
    let mut db_service = start_db(&nats, &db);
    let mock = MockCytube::start(MockOptions {
        history: vec![("alice".into(), "replayed &amp; old".into())],
        users: vec![user("alice", 1.0), user("modbob", 2.0)],
        ping_interval_ms: 200,
        ..Default::default()
    })
    .await;
    let _bot = start_joined_bot(&nats, &client, &mock, dir.path()).await;

    assert!(mock.chat_from("alice", "one &amp; only"));
    assert!(mock.send_event("addUser", user("carol", 0.0)));
    wait_rows(
        &db,
        "SELECT message FROM recent_chat WHERE username = 'alice'",
        1,
    );

    // The database service goes away; the bot keeps serving and loses nothing.
    db_service.kill();
    assert!(mock.chat_from("alice", "two"));
    assert!(mock.chat_from("carol", "three"));
    db_service = start_db(&nats, &db);
    assert!(mock.chat_from("alice", "four"));

    let rows = wait_rows(
        &db,
        "SELECT username, message FROM recent_chat ORDER BY id",
        4,
    );
    std::thread::sleep(Duration::from_millis(500));
    let rows_again = wait_rows(
        &db,
        "SELECT username, message FROM recent_chat ORDER BY id",
        4,
    );
    assert_eq!(rows, rows_again, "no late duplicates");
    let lines: Vec<(String, String)> = rows
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(
        lines,
        [
            ("alice".to_owned(), "one & only".to_owned()),
            ("alice".to_owned(), "two".to_owned()),
            ("carol".to_owned(), "three".to_owned()),
            ("alice".to_owned(), "four".to_owned()),
        ]
    );
    let stats = wait_rows(
        &db,
        "SELECT username, total_chat_lines FROM user_stats ORDER BY username",
        2,
    );
    assert!(
        stats.contains(&vec!["alice".to_owned(), "3".to_owned()]),
        "{stats:?}"
    );
    assert!(
        stats.contains(&vec!["carol".to_owned(), "1".to_owned()]),
        "{stats:?}"
    );

    // The PM shell's `stats` and `user` are served from the database.
    assert!(mock.pm_from("modbob", "rosey", "stats"));
    assert!(mock.pm_from("modbob", "rosey", "user alice"));
    let deadline = Instant::now() + WAIT;
    loop {
        let replies: Vec<String> = mock
            .received("pm")
            .iter()
            .map(|d| d["msg"].as_str().unwrap_or_default().to_owned())
            .collect();
        let stats_ok = replies
            .iter()
            .any(|m| m.contains("Total users seen: 4") && m.contains("alice (3 lines)"));
        let user_ok = replies
            .iter()
            .any(|m| m.contains("User: alice") && m.contains("Chat messages: 3"));
        if stats_ok && user_ok {
            break;
        }
        assert!(Instant::now() < deadline, "shell replies: {replies:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(db_service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_outbound_messages_are_sent_and_marked_in_sqlite() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bot_data.db");
    let _db_service = start_db(&nats, &db);
    let mock = MockCytube::start(MockOptions {
        users: vec![user("alice", 1.0)],
        ..Default::default()
    })
    .await;
    let _bot = start_joined_bot(&nats, &client, &mock, dir.path()).await;

    let enqueue = |text: &'static str| {
        let client = client.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let req = async_nats::Request::new()
                    .payload(json!({"message": text}).to_string().into())
                    .timeout(Some(Duration::from_secs(2)));
                if let Ok(reply) = client
                    .send_request(subjects::db::OUTBOUND_ENQUEUE, req)
                    .await
                {
                    let v: Value = serde_json::from_slice(&reply.payload).unwrap();
                    return v["id"].as_i64().expect("enqueue returns an id");
                }
                assert!(Instant::now() < deadline, "rosey-db never answered enqueue");
            }
        }
    };
    let id = enqueue("from the queue").await;
    let deadline = Instant::now() + WAIT;
    while !mock
        .received("chatMsg")
        .iter()
        .any(|d| d["msg"] == "from the queue")
    {
        assert!(
            Instant::now() < deadline,
            "the queued message never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = wait_rows(
        &db,
        &format!("SELECT id FROM outbound_messages WHERE id = {id} AND sent = 1"),
        1,
    );
    assert_eq!(rows, [[id.to_string()]]);
    assert_eq!(
        mock.received("chatMsg")
            .iter()
            .filter(|d| d["msg"] == "from the queue")
            .count(),
        1,
        "sent once"
    );
}

/// A `userlist` frame of `n` users named `<prefix><i>`, plus `also` (the bot, a chatter).
fn big_user_list(prefix: &str, n: usize, also: &[&str]) -> String {
    let mut users: Vec<Value> = (0..n).map(|i| user(&format!("{prefix}{i}"), 0.0)).collect();
    users.extend(also.iter().map(|name| user(name, 1.0)));
    format!("42{}", json!(["userlist", users]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_after_alternating_50k_user_lists_all_reaches_sqlite() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bot_data.db");
    let _db_service = start_db(&nats, &db);
    let mock = MockCytube::start(MockOptions {
        users: vec![user("alice", 1.0)],
        ..Default::default()
    })
    .await;
    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let config = write_config(
        dir.path(),
        &json!({"platform": {
            "type": "cytube", "domain": mock.domain(), "channel": "test",
            "credentials": {"username": "rosey"}, "max_users": 60_000
        }}),
    );
    let _bot = spawn_quiet_bot(&config, &nats);
    wait_connected(&mut status, WAIT).await;

    // Each list replaces the last entirely: 50,000 sessions end and 50,000 begin, four times
    // (the writes of the original design overflowed the backlog and dropped the chat).
    let lists = [
        big_user_list("a", 50_000, &["rosey", "alice"]),
        big_user_list("b", 50_000, &["rosey", "alice"]),
    ];
    for round in 0..4 {
        assert!(mock.send_frame(lists[round % 2].clone()));
    }
    for i in 0..50 {
        assert!(mock.chat_from("alice", &format!("line {i}")));
    }
    // 400,000 session changes go through a debug rosey-db first: a generous bound.
    let rows = wait_rows_within(
        &db,
        "SELECT message FROM recent_chat WHERE username = 'alice' ORDER BY id",
        50,
        Duration::from_secs(300),
    );
    let lines: Vec<String> = rows.into_iter().map(|r| r[0].clone()).collect();
    let expected: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected, "every line, once, in order");

    // The sessions follow the lists: the last one (b*) is open, the first (a*) closed.
    let open = wait_rows(
        &db,
        "SELECT COUNT(*) FROM user_stats WHERE current_session_start IS NOT NULL \
         AND username LIKE 'b%'",
        1,
    );
    assert_eq!(open, [["50000".to_owned()]]);
    let closed = wait_rows(
        &db,
        "SELECT COUNT(*) FROM user_stats WHERE current_session_start IS NULL \
         AND username LIKE 'a%'",
        1,
    );
    assert_eq!(closed, [["50000".to_owned()]]);

    // Coalesced: a few sessions writes per list, not one write per user.
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js
        .get_stream(rosey_plugin_api::stream::DB_STREAM)
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert!(
        info.state.messages < 1_000,
        "{} writes for four lists and 50 lines",
        info.state.messages
    );
}
