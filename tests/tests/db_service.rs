//! `rosey-db` as a separate process against a private nats-server: every write subject lands
//! in SQLite, every request answers as the contract says (error replies included), the v0.5
//! fixture database is read and extended in place, and nothing is lost or applied twice across
//! kill -9, a NATS restart and a flood of malformed events.

use async_nats::jetstream::{self, message::PublishMessage};
use rosey_plugin_api::db::{
    ChannelStats, ChatLine, DeadLetter, Enqueued, MaintenanceReport, OutboundMessage,
    UserCountSample, UserStats,
};
use rosey_plugin_api::error::{ErrorCode, HEADER_CODE};
use rosey_plugin_api::reply::{request_json, RequestError};
use rosey_plugin_api::stream::{DB_STREAM, DLQ_STREAM};
use rosey_plugin_api::subjects::{db, kv as kv_subject};
use rosey_plugin_api::{actions, kv};
use rosey_tests::fixture_support;
use rosey_tests::fixture_support::rebase_to_now;
use rosey_tests::{
    last_sequence, rosey_db_command, start_rosey_db, wait_for_rosey_db, wait_until,
    wait_until_async, ChildGuard, NatsCluster, NatsServer,
};
use rusqlite::Connection;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(30);
const REQ: Duration = Duration::from_secs(5);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn open(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

fn count(path: &Path, sql: &str) -> i64 {
    open(path).query_row(sql, [], |r| r.get(0)).unwrap_or(-1)
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bot_data.db");
    (dir, path)
}

async fn publish(js: &jetstream::Context, subject: &str, payload: Value) {
    js.publish(subject.to_owned(), payload.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn publish_raw(js: &jetstream::Context, subject: &str, payload: Vec<u8>) {
    js.publish(subject.to_owned(), payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Sends a raw request and returns the error code from both the header and the body.
async fn error_of(client: &async_nats::Client, subject: &str, payload: Vec<u8>) -> ErrorCode {
    let msg = client
        .request(subject.to_owned(), payload.into())
        .await
        .expect("a reply");
    let status = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(HEADER_CODE))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_else(|| {
            panic!(
                "{subject}: no error header; got {:?}",
                String::from_utf8_lossy(&msg.payload)
            )
        });
    let body: Value = serde_json::from_slice(&msg.payload).expect("JSON error body");
    let code: ErrorCode =
        serde_json::from_value(body["error"]["code"].clone()).expect("error code in body");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(status, code.status().to_string());
    code
}

async fn req<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: &str,
    body: Value,
) -> T {
    request_json(client, subject, &body, REQ)
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"))
}

#[tokio::test]
async fn every_subject_lands_and_every_request_answers() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = jetstream::new(client.clone());
    let (_dir, path) = temp_db();
    let mut service = start_rosey_db(&nats, &client, &path, WAIT).await;
    let t = now() - 100;

    // Queue two outbound messages through the request subject.
    let first: Enqueued = req(&client, db::OUTBOUND_ENQUEUE, json!({"message": "hello"})).await;
    let second: Enqueued = req(&client, db::OUTBOUND_ENQUEUE, json!({"message": "again"})).await;
    let third: Enqueued = req(&client, db::OUTBOUND_ENQUEUE, json!({"message": "doomed"})).await;
    let due: Vec<OutboundMessage> = req(&client, db::OUTBOUND_GET, json!({})).await;
    assert_eq!(
        due.iter().map(|m| m.id).collect::<Vec<_>>(),
        [first.id, second.id, third.id]
    );

    // Every write subject, in an order where each depends on the previous ones.
    publish(
        &js,
        db::USER_JOINED,
        json!({"username": "alice", "timestamp": t}),
    )
    .await;
    publish(
        &js,
        db::MESSAGE_LOG,
        json!({"username": "alice", "message": "hi '; DROP TABLE x; --", "timestamp": t + 1}),
    )
    .await;
    publish(
        &js,
        db::MESSAGE_LOG,
        json!({"username": "server", "message": "notice", "timestamp": t + 2}),
    )
    .await;
    publish(
        &js,
        db::USER_LEFT,
        json!({"username": "alice", "timestamp": t + 40}),
    )
    .await;
    publish(
        &js,
        db::STATS_USER_COUNT,
        json!({"chat_count": 3, "connected_count": 5, "timestamp": t}),
    )
    .await;
    publish(
        &js,
        db::STATS_HIGH_WATER,
        json!({"chat_count": 7, "connected_count": 9, "timestamp": t + 3}),
    )
    .await;
    publish(&js, db::STATUS_UPDATE, json!({"status_data": {"bot_name": "Rosey", "bot_rank": 1.5, "bot_connected": true, "not_a_column": 1}, "timestamp": t + 4})).await;
    publish(
        &js,
        db::OUTBOUND_MARK_SENT,
        json!({"message_id": first.id, "timestamp": t + 5}),
    )
    .await;
    publish(
        &js,
        db::OUTBOUND_MARK_FAILED,
        json!({"message_id": second.id, "error": "muted", "permanent": false}),
    )
    .await;
    publish(
        &js,
        db::OUTBOUND_MARK_FAILED,
        json!({"message_id": third.id, "error": "banned", "permanent": true}),
    )
    .await;
    publish(&js, db::ACTION_PM_COMMAND, json!({"username": "admin", "command": "stats", "args": "", "result": "success", "timestamp": t + 6})).await;
    // Sessions in bulk (a user list replacing the last): closed first, then opened.
    publish(
        &js,
        db::USER_SESSIONS,
        json!({"joined": ["bob", "carol"], "timestamp": t + 50}),
    )
    .await;
    publish(
        &js,
        db::USER_SESSIONS,
        json!({"left": ["bob"], "joined": ["dave"], "timestamp": t + 80}),
    )
    .await;
    assert!(
        wait_until(WAIT, || last_sequence(&path) == 13),
        "events not applied"
    );

    let c = open(&path);
    let alice: (i64, i64, i64, Option<i64>) = c
        .query_row(
            "SELECT first_seen, total_chat_lines, total_time_connected, current_session_start
             FROM user_stats WHERE username = 'alice'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(alice, (t, 1, 40, None));
    let sessions: Vec<(String, i64, Option<i64>)> = c
        .prepare(
            "SELECT username, COALESCE(total_time_connected, 0), current_session_start
             FROM user_stats WHERE username IN ('bob', 'carol', 'dave') ORDER BY username",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        sessions,
        [
            ("bob".to_owned(), 30, None),
            ("carol".to_owned(), 0, Some(t + 50)),
            ("dave".to_owned(), 0, Some(t + 80)),
        ]
    );
    assert_eq!(
        count(
            &path,
            "SELECT COUNT(*) FROM user_count_history WHERE chat_users = 3 AND connected_users = 5"
        ),
        1
    );
    let status: (String, f64, i64) = c
        .query_row(
            "SELECT bot_name, bot_rank, bot_connected FROM current_status WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(status, ("Rosey".to_owned(), 1.5, 1));
    let outbound: Vec<(i64, i64, i64, Option<String>)> = c
        .prepare("SELECT id, sent, retry_count, last_error FROM outbound_messages ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        outbound,
        [
            (first.id, 1, 0, None),
            (second.id, 0, 1, Some("muted".to_owned())),
            (third.id, 1, 1, Some("banned".to_owned()))
        ]
    );
    let details: String = c
        .query_row(
            "SELECT details FROM user_actions WHERE username = 'admin' AND action_type = 'pm_command'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(details.starts_with("stats"), "{details}");

    // Requests answer from what was written.
    let due: Vec<OutboundMessage> = req(&client, db::OUTBOUND_GET, json!({"limit": 10})).await;
    assert!(
        due.is_empty(),
        "retry 1 is due only 120 s after enqueue: {due:?}"
    );
    let chat: Vec<ChatLine> = req(&client, db::RECENT_CHAT_GET, json!({})).await;
    assert_eq!(chat.len(), 1, "the server user is not kept: {chat:?}");
    assert_eq!(chat[0].message, "hi '; DROP TABLE x; --");
    let chat: Vec<ChatLine> = req(
        &client,
        db::RECENT_CHAT_GET,
        json!({"username": "ALICE", "since": t + 1}),
    )
    .await;
    assert_eq!(chat.len(), 1);
    let chat: Vec<ChatLine> = req(&client, db::RECENT_CHAT_GET, json!({"since": t + 2})).await;
    assert!(chat.is_empty());
    let history: Vec<UserCountSample> =
        req(&client, db::USER_COUNT_HISTORY_GET, json!({"hours": 1})).await;
    assert_eq!(
        history,
        [UserCountSample {
            timestamp: t,
            chat_users: 3,
            connected_users: 5
        }]
    );
    let stats: ChannelStats = req(&client, db::QUERY_CHANNEL_STATS, json!({})).await;
    assert_eq!(
        (stats.high_water_mark.users, stats.high_water_mark.timestamp),
        (7, Some(t + 3))
    );
    assert_eq!(stats.high_water_connected.users, 9);
    assert_eq!(
        stats.total_users_seen, 4,
        "alice, then bob, carol and dave in bulk"
    );
    assert_eq!(stats.top_chatters[0].username, "alice");
    let user: UserStats = req(&client, db::QUERY_USER_STATS, json!({"username": "alice"})).await;
    assert!(user.found);
    assert_eq!(user.total_time_connected, Some(40));
    let nobody: UserStats = req(&client, db::QUERY_USER_STATS, json!({"username": "nobody"})).await;
    assert!(!nobody.found);
    let report: MaintenanceReport = req(&client, db::MAINTENANCE_RUN, json!({})).await;
    assert_eq!(
        report.log.last().map(String::as_str),
        Some("Database analyzed")
    );

    // Plugin storage: namespaces, TTL, incr, paging.
    let set = kv_subject::subject("quotes", kv_subject::Op::Set).unwrap();
    let get = kv_subject::subject("quotes", kv_subject::Op::Get).unwrap();
    let del = kv_subject::subject("quotes", kv_subject::Op::Delete).unwrap();
    let list = kv_subject::subject("quotes", kv_subject::Op::List).unwrap();
    let incr = kv_subject::subject("quotes", kv_subject::Op::Incr).unwrap();
    let other_get = kv_subject::subject("markov", kv_subject::Op::Get).unwrap();
    let ok: actions::Ok = req(
        &client,
        &set,
        json!({"key": "q1", "value": {"text": "\u{0}ünï"}}),
    )
    .await;
    assert!(ok.ok);
    let got: kv::GetReply = req(&client, &get, json!({"key": "q1"})).await;
    assert_eq!(got.value, Some(json!({"text": "\u{0}ünï"})));
    let other: kv::GetReply = req(&client, &other_get, json!({"key": "q1"})).await;
    assert!(!other.found, "plugins do not see each other's keys");
    let _: actions::Ok = req(
        &client,
        &set,
        json!({"key": "short", "value": 1, "ttl_seconds": 1}),
    )
    .await;
    assert!(
        wait_until_async(WAIT, || async {
            let r: kv::GetReply = req(&client, &get, json!({"key": "short"})).await;
            !r.found
        })
        .await,
        "the key did not expire"
    );
    for _ in 0..5 {
        let _: kv::IncrReply = req(&client, &incr, json!({"key": "n"})).await;
    }
    let n: kv::IncrReply = req(&client, &incr, json!({"key": "n", "by": 10})).await;
    assert_eq!(n.value, 15);
    for i in 0..5 {
        let _: actions::Ok = req(&client, &set, json!({"key": format!("p/{i}"), "value": i})).await;
    }
    let page: kv::ListReply = req(
        &client,
        &list,
        json!({"prefix": "p/", "limit": 3, "values": true}),
    )
    .await;
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.items[0].value, Some(json!(0)));
    let rest: kv::ListReply = req(
        &client,
        &list,
        json!({"prefix": "p/", "after": page.next.unwrap()}),
    )
    .await;
    assert_eq!(
        rest.items
            .iter()
            .map(|i| i.key.as_str())
            .collect::<Vec<_>>(),
        ["p/3", "p/4"]
    );
    assert!(rest.next.is_none());
    let deleted: kv::DeleteReply = req(&client, &del, json!({"key": "q1"})).await;
    assert!(deleted.deleted);
    let deleted: kv::DeleteReply = req(&client, &del, json!({"key": "q1"})).await;
    assert!(!deleted.deleted);

    // Every kind of error reply, with headers and body.
    assert_eq!(
        error_of(&client, db::QUERY_USER_STATS, b"{nope".to_vec()).await,
        ErrorCode::InvalidJson
    );
    assert_eq!(
        error_of(&client, db::QUERY_USER_STATS, b"[1,2]".to_vec()).await,
        ErrorCode::InvalidJson
    );
    assert_eq!(
        error_of(&client, db::OUTBOUND_GET, br#"{"limit":"ten"}"#.to_vec()).await,
        ErrorCode::InvalidJson
    );
    assert_eq!(
        error_of(&client, db::QUERY_USER_STATS, b"{}".to_vec()).await,
        ErrorCode::MissingField
    );
    assert_eq!(
        error_of(&client, db::OUTBOUND_ENQUEUE, b"{}".to_vec()).await,
        ErrorCode::MissingField
    );
    let big = json!({"key": "big", "value": "x".repeat(kv::MAX_VALUE_BYTES + 1)}).to_string();
    assert_eq!(
        error_of(&client, &set, big.into_bytes()).await,
        ErrorCode::TooLarge
    );
    let long_key = json!({"key": "k".repeat(kv::MAX_KEY_BYTES + 1)}).to_string();
    assert_eq!(
        error_of(&client, &get, long_key.into_bytes()).await,
        ErrorCode::TooLarge
    );
    let not_kv = format!("{}quotes.drop", kv_subject::PREFIX);
    assert_eq!(
        error_of(&client, &not_kv, b"{}".to_vec()).await,
        ErrorCode::NotFound
    );
    let bad_plugin = format!("{}Bad$Name.get", kv_subject::PREFIX);
    assert_eq!(
        error_of(&client, &bad_plugin, b"{}".to_vec()).await,
        ErrorCode::NotFound
    );
    assert_eq!(
        error_of(
            &client,
            &incr,
            br#"{"key":"n","by":9223372036854775807}"#.to_vec()
        )
        .await,
        ErrorCode::InvalidJson
    );
    let typed = request_json::<_, kv::GetReply>(&client, &get, &json!({"nokey": 1}), REQ).await;
    assert!(
        matches!(typed, Err(RequestError::Service(b, _)) if b.error.code == ErrorCode::MissingField)
    );

    // The service API discovers and measures it, error replies counted.
    let info = client
        .request("$SRV.INFO.rosey-db", "".into())
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["subject"].as_str())
        .collect();
    for s in db::REQUEST_SUBJECTS.iter().chain([&kv_subject::ALL]) {
        assert!(subjects.contains(s), "{s} not served: {subjects:?}");
    }
    let stats = client
        .request("$SRV.STATS.rosey-db", "".into())
        .await
        .unwrap();
    let stats: Value = serde_json::from_slice(&stats.payload).unwrap();
    let user_stats = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "user-stats")
        .unwrap();
    assert_eq!(user_stats["data"]["errors"]["invalid_json"], 2);
    assert_eq!(user_stats["data"]["errors"]["missing_field"], 1);

    // No exclusive lock: another process can write the file and rosey-db sees its rows.
    open(&path)
        .execute(
            "INSERT INTO outbound_messages (timestamp, message, sent) VALUES (?1, 'from the operator', 0)",
            [now()],
        )
        .unwrap();
    let due: Vec<OutboundMessage> = req(&client, db::OUTBOUND_GET, json!({})).await;
    assert_eq!(
        due.iter().map(|m| m.message.as_str()).collect::<Vec<_>>(),
        ["from the operator"]
    );

    // SIGTERM: a clean exit.
    let status = service.terminate(WAIT).expect("exit status");
    assert!(status.success(), "rosey-db exited with {status}");
}

/// An event that carries no timestamp gets rosey-db's clock, never nats-server's: under the
/// test script's faketime run the two differ by 400 days (as two machines' clocks may), and the
/// line must still count as recent and the user as seen now.
#[tokio::test]
async fn an_untimed_event_is_stamped_with_rosey_dbs_clock() {
    let (_dir, path) = temp_db();
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = jetstream::new(client.clone());
    let mut service = start_rosey_db(&nats, &client, &path, WAIT).await;
    let before = now();
    publish(&js, db::USER_JOINED, json!({"username": "dana"})).await;
    publish(
        &js,
        db::MESSAGE_LOG,
        json!({"username": "dana", "message": "no clock on me"}),
    )
    .await;
    assert!(wait_until(WAIT, || last_sequence(&path) == 2));
    let after = now();

    let chat: Vec<ChatLine> = req(&client, db::RECENT_CHAT_GET, json!({"limit": 5})).await;
    assert_eq!(
        chat.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["no clock on me"],
        "the untimed line is past retention by the service's own clock"
    );
    assert!(
        (before..=after).contains(&chat[0].timestamp),
        "{} not within {before}..={after}",
        chat[0].timestamp
    );
    let user: UserStats = req(&client, db::QUERY_USER_STATS, json!({"username": "dana"})).await;
    let first_seen = user.first_seen.expect("dana was seen");
    assert!((before..=after).contains(&first_seen), "{first_seen}");
    let status = service.terminate(WAIT).expect("exit status");
    assert!(status.success());
}

/// The service is a library call: `run(config, shutdown)` serves until its shutdown future
/// resolves and then returns cleanly, with what it was sent applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_in_process_until_its_shutdown_resolves() {
    let (_dir, path) = temp_db();
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = jetstream::new(client.clone());
    let mut config = rosey_config::Config::default();
    config.set_database_path(path.clone());
    config.set_nats_server(nats.url());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(rosey_db_service::service::run(config, async move {
        let _ = stopped.await;
    }));
    rosey_tests::wait_for_rosey_db(&client, WAIT).await;
    publish(
        &js,
        db::MESSAGE_LOG,
        json!({"username": "erin", "message": "in process", "timestamp": now()}),
    )
    .await;
    assert!(wait_until(WAIT, || last_sequence(&path) == 1));
    assert!(!service.is_finished(), "the service stopped on its own");
    stop.send(())
        .expect("the service is listening for its shutdown");
    let result = tokio::time::timeout(WAIT, service)
        .await
        .expect("the service stops when told")
        .expect("the service task did not panic");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(count(&path, "SELECT COUNT(*) FROM recent_chat"), 1);
}

fn original_schema(path: &Path) -> Vec<(String, String)> {
    let c = open(path);
    let mut stmt = c
        .prepare(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name IN
             ('user_stats','user_actions','channel_stats','user_count_history','recent_chat',
              'current_status','outbound_messages','api_tokens') AND sql IS NOT NULL ORDER BY name",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn the_v05_fixture_opens_reads_and_is_extended_in_place() {
    let fixture = fixture_support::sample_db();
    let (_dir, path) = temp_db();
    std::fs::copy(&fixture, &path).expect("copy the fixture");
    rebase_to_now(&path);
    let before = original_schema(&path);
    assert_eq!(
        before.iter().filter(|(n, _)| !n.starts_with("idx")).count(),
        8
    );
    let c = open(&path);
    let users_before = count(&path, "SELECT COUNT(*) FROM user_stats");
    let (hw, hw_ts, hwc): (i64, i64, i64) = c
        .query_row(
            "SELECT max_users, max_users_timestamp, max_connected FROM channel_stats",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let newest: Vec<(i64, String, String)> = c
        .prepare("SELECT timestamp, username, message FROM recent_chat ORDER BY timestamp DESC, id DESC LIMIT 5")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let some_user: (String, i64, i64) = c
        .query_row(
            "SELECT username, total_chat_lines, total_time_connected FROM user_stats ORDER BY username LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let never_tried: Vec<i64> = c
        .prepare("SELECT id FROM outbound_messages WHERE sent = 0 AND retry_count = 0 ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let may_be_due: Vec<i64> = c
        .prepare("SELECT id FROM outbound_messages WHERE sent = 0 AND retry_count < 3 ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(c);

    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = jetstream::new(client.clone());
    let mut service = start_rosey_db(&nats, &client, &path, WAIT).await;

    let stats: ChannelStats = req(&client, db::QUERY_CHANNEL_STATS, json!({})).await;
    assert_eq!(
        (stats.high_water_mark.users, stats.high_water_mark.timestamp),
        (hw, Some(hw_ts))
    );
    assert_eq!(stats.high_water_connected.users, hwc);
    assert_eq!(stats.total_users_seen, users_before);
    let user: UserStats = req(
        &client,
        db::QUERY_USER_STATS,
        json!({"username": some_user.0}),
    )
    .await;
    assert_eq!(
        (user.total_chat_lines, user.total_time_connected),
        (Some(some_user.1), Some(some_user.2))
    );
    let chat: Vec<ChatLine> = req(&client, db::RECENT_CHAT_GET, json!({"limit": 5})).await;
    let mut expected = newest.clone();
    expected.reverse();
    assert_eq!(
        chat.into_iter()
            .map(|l| (l.timestamp, l.username, l.message))
            .collect::<Vec<_>>(),
        expected
    );
    let due: Vec<OutboundMessage> = req(&client, db::OUTBOUND_GET, json!({"limit": 1000})).await;
    let due: Vec<i64> = due.into_iter().map(|m| m.id).collect();
    assert!(
        never_tried.iter().all(|id| due.contains(id)),
        "{due:?} misses some of {never_tried:?}"
    );
    assert!(
        due.iter().all(|id| may_be_due.contains(id)),
        "{due:?} not within {may_be_due:?}"
    );

    // Extended in place: new events land next to the old rows.
    let t = now();
    publish(
        &js,
        db::USER_JOINED,
        json!({"username": "newcomer", "timestamp": t}),
    )
    .await;
    publish(
        &js,
        db::MESSAGE_LOG,
        json!({"username": "newcomer", "message": "first!", "timestamp": t}),
    )
    .await;
    publish(
        &js,
        db::MESSAGE_LOG,
        json!({"username": some_user.0, "message": "still here", "timestamp": t}),
    )
    .await;
    assert!(wait_until(WAIT, || last_sequence(&path) == 3));
    let status = service.terminate(WAIT).expect("exit status");
    assert!(status.success());

    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM user_stats"),
        users_before + 1
    );
    let lines: i64 = open(&path)
        .query_row(
            "SELECT total_chat_lines FROM user_stats WHERE username = ?1",
            [&some_user.0],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(lines, some_user.1 + 1);
    assert_eq!(
        original_schema(&path),
        before,
        "the original tables were altered"
    );
    assert_eq!(count(&path, "SELECT schema_version FROM rosey_meta"), 2);
}

/// `users` users each join, say `lines` lines and leave, interleaved across users.
fn session_events(users: usize, lines: usize, base: i64) -> Vec<(&'static str, Value)> {
    let mut out = Vec::with_capacity(users * (lines + 2));
    for step in 0..lines + 2 {
        for u in 0..users {
            let name = format!("user{u}");
            let ts = base + step as i64;
            out.push(match step {
                0 => (db::USER_JOINED, json!({"username": name, "timestamp": ts})),
                s if s == lines + 1 => (db::USER_LEFT, json!({"username": name, "timestamp": ts})),
                s => (
                    db::MESSAGE_LOG,
                    json!({"username": name, "message": format!("line {s}"), "timestamp": ts}),
                ),
            });
        }
    }
    out
}

fn assert_sessions_exact(path: &Path, users: usize, lines: usize) {
    let c = open(path);
    let (n, total_lines, total_time, open_sessions): (i64, i64, i64, i64) = c
        .query_row(
            "SELECT COUNT(*), SUM(total_chat_lines), SUM(total_time_connected),
                    SUM(current_session_start IS NOT NULL) FROM user_stats",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let users = users as i64;
    let lines = lines as i64;
    assert_eq!(n, users);
    assert_eq!(total_lines, users * lines, "chat lines lost or doubled");
    assert_eq!(total_time, users * (lines + 1), "session time wrong");
    assert_eq!(open_sessions, 0);
    assert_eq!(
        count(path, "SELECT COUNT(*) FROM recent_chat"),
        users * lines
    );
}

/// Publishes every event with a message id, retrying until the stream acknowledges it, so a
/// NATS outage loses nothing and duplicates nothing.
async fn publish_reliably(js: &jetstream::Context, events: &[(&'static str, Value)], tag: &str) {
    for (i, (subject, payload)) in events.iter().enumerate() {
        let id = format!("{tag}-{i}");
        loop {
            let publish = PublishMessage::build()
                .payload(payload.to_string().into())
                .message_id(id.clone());
            let acked = match js.send_publish(subject.to_string(), publish).await {
                Ok(ack) => tokio::time::timeout(Duration::from_secs(5), ack)
                    .await
                    .map(|r| r.is_ok())
                    .unwrap_or(false),
                Err(_) => false,
            };
            if acked {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_20000_events_then_restart_is_exact() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = jetstream::new(client.clone());
    let (_dir, path) = temp_db();
    let mut service = start_rosey_db(&nats, &client, &path, WAIT).await;
    let (users, lines) = (1000, 18);
    let events = session_events(users, lines, now() - 1000);
    assert_eq!(events.len(), 20_000);
    let publisher = {
        let js = js.clone();
        let events = events.clone();
        tokio::spawn(async move { publish_reliably(&js, &events, "kill").await })
    };
    assert!(
        wait_until(WAIT, || last_sequence(&path) >= 1000),
        "ingestion did not start"
    );
    service.kill();
    let killed_at = last_sequence(&path);
    assert!(killed_at < 20_000, "killed too late to test anything");
    publisher.await.unwrap();
    let _service = start_rosey_db(&nats, &client, &path, WAIT).await;
    assert!(
        wait_until(Duration::from_secs(120), || last_sequence(&path) == 20_000),
        "not every event applied after restart (at {})",
        last_sequence(&path)
    );
    assert_sessions_exact(&path, users, lines);
}

#[tokio::test]
async fn a_nats_restart_during_ingestion_loses_nothing() {
    let mut nats = NatsServer::start();
    let client = nats.connect().await;
    let js = jetstream::new(client.clone());
    let (_dir, path) = temp_db();
    let _service = start_rosey_db(&nats, &client, &path, WAIT).await;
    let (users, lines) = (400, 13);
    let events = session_events(users, lines, now() - 1000);
    let (head, tail) = events.split_at(events.len() / 2);
    // The first half goes out pipelined (no outage yet), so rosey-db is still applying it
    // when the server is killed and restarted.
    let mut acks = Vec::with_capacity(head.len());
    for (i, (subject, payload)) in head.iter().enumerate() {
        let publish = PublishMessage::build()
            .payload(payload.to_string().into())
            .message_id(format!("head-{i}"));
        acks.push(js.send_publish(subject.to_string(), publish).await.unwrap());
    }
    for ack in acks {
        ack.await.expect("stored before the restart");
    }
    let applied_before_restart = last_sequence(&path);
    nats.restart();
    eprintln!(
        "NATS restarted with {applied_before_restart} of {} events applied",
        head.len()
    );
    let tail = tail.to_vec();
    publish_reliably(&js, &tail, "tail").await;
    let total = events.len() as i64;
    assert!(
        wait_until(Duration::from_secs(90), || last_sequence(&path) == total),
        "not every event applied after the NATS restart (at {})",
        last_sequence(&path)
    );
    assert_sessions_exact(&path, users, lines);
    let stream_messages = js
        .get_stream(DB_STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(stream_messages as i64, total, "publishes were duplicated");
}

#[tokio::test]
async fn a_flood_of_malformed_events_is_dead_lettered_and_valid_ones_apply_once() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = jetstream::new(client.clone());
    let (_dir, path) = temp_db();
    let _service = start_rosey_db(&nats, &client, &path, WAIT).await;

    let huge = "é".repeat(140_000);
    let mut bad = 0;
    for subject in db::WRITE_SUBJECTS {
        let payloads: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"{".to_vec(),
            b"null".to_vec(),
            b"[1,2,3]".to_vec(),
            b"\"string\"".to_vec(),
            vec![0xff, 0xfe, 0x00],
            br#"{"username": 5, "message": [], "message_id": "x", "status_data": 3, "error": 1, "chat_count": -1, "result": "maybe", "command": 2}"#.to_vec(),
            format!(r#"{{"username": "{huge}", "message": "{huge}", "timestamp": -5}}"#).into_bytes(),
            br#"{"timestamp": 0, "username": "u", "message": "m", "message_id": 1, "error": "e", "status_data": {}, "command": "c", "result": "pending"}"#.to_vec(),
        ];
        for p in payloads {
            for _ in 0..20 {
                publish_raw(&js, subject, p.clone()).await;
                bad += 1;
            }
        }
    }
    let hostile = "'); DELETE FROM user_stats; --\u{0}\u{202e}𝕳";
    let t = now() - 50;
    let valid = vec![
        (
            db::USER_JOINED,
            json!({"username": hostile, "timestamp": t, "unknown_key": true}),
        ),
        (
            db::MESSAGE_LOG,
            json!({"username": hostile, "message": hostile, "timestamp": t + 1}),
        ),
        (db::USER_JOINED, json!({"username": "bob", "timestamp": t})),
        (
            db::MESSAGE_LOG,
            json!({"username": "bob", "message": "x", "timestamp": t + 2}),
        ),
        (
            db::USER_LEFT,
            json!({"username": "bob", "timestamp": t + 10}),
        ),
        (
            db::STATS_USER_COUNT,
            json!({"chat_count": 2, "connected_count": 3}),
        ),
        (db::STATS_HIGH_WATER, json!({"chat_count": 2})),
        (
            db::STATUS_UPDATE,
            json!({"status_data": {"channel_name": hostile}}),
        ),
        (db::OUTBOUND_MARK_SENT, json!({"message_id": 12345})),
        (
            db::OUTBOUND_MARK_FAILED,
            json!({"message_id": 12345, "error": hostile}),
        ),
        (
            db::ACTION_PM_COMMAND,
            json!({"username": hostile, "command": "x", "result": "pending"}),
        ),
    ];
    for (s, p) in &valid {
        publish(&js, s, p.clone()).await;
    }
    let total = (bad + valid.len()) as i64;
    assert!(
        wait_until(Duration::from_secs(60), || last_sequence(&path) == total),
        "stream not consumed (at {} of {total})",
        last_sequence(&path)
    );
    let c = open(&path);
    let (lines, sessions): (i64, i64) = c
        .query_row(
            "SELECT total_chat_lines, current_session_start FROM user_stats WHERE username = ?1",
            [hostile],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((lines, sessions), (1, t));
    assert_eq!(count(&path, "SELECT COUNT(*) FROM user_stats"), 2);
    assert_eq!(
        count(
            &path,
            "SELECT total_time_connected FROM user_stats WHERE username = 'bob'"
        ),
        10
    );
    assert_eq!(count(&path, "SELECT COUNT(*) FROM recent_chat"), 2);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM user_count_history"), 1);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM user_actions"), 1);
    let channel: String = c
        .query_row("SELECT channel_name FROM current_status", [], |r| r.get(0))
        .unwrap();
    assert_eq!(channel, hostile);

    // Every bad event is in the dead-letter stream, once.
    let dlq_ok = wait_until_async(WAIT, || async {
        let mut s = js.get_stream(DLQ_STREAM).await.unwrap();
        s.info().await.unwrap().state.messages as usize == bad
    })
    .await;
    assert!(dlq_ok, "dead letters missing");
    let dlq = js.get_stream(DLQ_STREAM).await.unwrap();
    let first = dlq.get_raw_message(1).await.unwrap();
    let letter: DeadLetter = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(letter.stream_sequence, 1);
    assert_eq!(letter.subject, db::WRITE_SUBJECTS[0]);
    assert!(!letter.error.is_empty());
}

#[tokio::test]
async fn without_jetstream_it_falls_back_to_plain_subscriptions() {
    let nats = NatsServer::start_without_jetstream();
    let client = nats.connect().await;
    let (_dir, path) = temp_db();
    let _service = start_rosey_db(&nats, &client, &path, WAIT).await;
    client
        .publish(
            db::USER_JOINED,
            json!({"username": "solo"}).to_string().into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    assert!(wait_until(WAIT, || count(
        &path,
        "SELECT COUNT(*) FROM user_stats WHERE username = 'solo'"
    ) == 1));
    let user: UserStats = req(&client, db::QUERY_USER_STATS, json!({"username": "solo"})).await;
    assert!(user.found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_ingestion_exits_cleanly_and_resumes_exactly() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = jetstream::new(client.clone());
    let (_dir, path) = temp_db();
    let mut service = start_rosey_db(&nats, &client, &path, WAIT).await;
    let (users, lines) = (250, 18);
    let events = session_events(users, lines, now() - 1000);
    let publisher = {
        let js = js.clone();
        let events = events.clone();
        tokio::spawn(async move { publish_reliably(&js, &events, "term").await })
    };
    assert!(
        wait_until(WAIT, || last_sequence(&path) >= 500),
        "ingestion did not start"
    );
    let status = service.terminate(WAIT).expect("exit status");
    assert!(status.success(), "rosey-db exited with {status} on SIGTERM");
    let stopped_at = last_sequence(&path);
    publisher.await.unwrap();
    let total = events.len() as i64;
    assert!(stopped_at < total, "stopped too late to test anything");
    let _service = start_rosey_db(&nats, &client, &path, WAIT).await;
    assert!(
        wait_until(Duration::from_secs(60), || last_sequence(&path) == total),
        "not every event applied after the restart (at {})",
        last_sequence(&path)
    );
    assert_sessions_exact(&path, users, lines);
}

/// Writes a configuration file whose `database` section is `database`.
fn config_file(dir: &Path, database: Value) -> PathBuf {
    let path = dir.join("rosey.json");
    std::fs::write(&path, json!({ "database": database }).to_string()).unwrap();
    path
}

#[tokio::test]
async fn the_database_timing_keys_reach_the_service() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let (dir, path) = temp_db();
    let config = config_file(
        dir.path(),
        json!({
            "ack_wait": 0.75,
            // Pull requests expire (and are renewed) several times while the test runs.
            "pull_heartbeat": 0.05,
            "pull_expiry": 0.1,
            "busy_timeout": 0.2,
            "read_connections": 1,
            "request_concurrency": 1,
            "shutdown_flush_timeout": 0.5,
        }),
    );
    let mut cmd = rosey_db_command(&nats, &path);
    cmd.arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut service = ChildGuard::spawn("rosey-db", cmd);
    wait_for_rosey_db(&client, WAIT).await;

    let stream = js.get_stream(DB_STREAM).await.unwrap();
    let consumer = stream
        .consumer_info(rosey_plugin_api::stream::DB_CONSUMER)
        .await
        .unwrap();
    assert_eq!(consumer.config.ack_wait, Duration::from_millis(750));

    // Events published after several pull expiries still arrive: the short heartbeat and
    // expiry pair is accepted by the server and renewed by the service.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let t = now();
    for i in 0..20 {
        publish(
            &js,
            db::USER_JOINED,
            json!({"username": format!("timing{i}"), "timestamp": t}),
        )
        .await;
    }
    let applied = wait_until(WAIT, || {
        count(
            &path,
            "SELECT COUNT(*) FROM user_stats WHERE username LIKE 'timing%'",
        ) == 20
    });
    assert!(applied, "events were not applied with short pull timings");

    // One request at a time still answers every one of many concurrent requests.
    let empty = json!({});
    let requests = (0..16)
        .map(|_| request_json::<_, ChannelStats>(&client, db::QUERY_CHANNEL_STATS, &empty, REQ));
    for answer in futures::future::join_all(requests).await {
        answer.unwrap();
    }

    let status = service.terminate(WAIT).expect("rosey-db did not stop");
    assert!(status.success(), "rosey-db exited with {status}");
    drop(dir);
}

#[tokio::test]
async fn an_invalid_database_timing_key_stops_the_service_with_its_key_path() {
    let nats = NatsServer::start();
    let (dir, path) = temp_db();
    // The server refuses a pull request whose heartbeat exceeds half its expiry.
    let config = config_file(dir.path(), json!({"pull_heartbeat": 10, "pull_expiry": 15}));
    let stderr_path = dir.path().join("stderr.txt");
    let mut cmd = rosey_db_command(&nats, &path);
    cmd.arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut service = ChildGuard::spawn("rosey-db", cmd);
    let status = service
        .wait_exit(WAIT)
        .expect("rosey-db kept running with an invalid configuration");
    assert!(!status.success());
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        stderr.contains("database.pull_heartbeat") && stderr.contains("at most half"),
        "{stderr}"
    );
    assert!(
        !path.exists(),
        "the database was created despite the bad configuration"
    );
}

#[tokio::test]
async fn a_recreated_stream_is_followed_from_its_start_not_skipped() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = jetstream::new(client.clone());
    let (_dir, path) = temp_db();
    let line = |n: usize| json!({"username": "someone", "message": format!("line {n}"), "timestamp": now() - 60});
    let mut service = start_rosey_db(&nats, &client, &path, WAIT).await;
    for n in 0..10 {
        publish(&js, db::MESSAGE_LOG, line(n)).await;
    }
    assert!(wait_until(WAIT, || last_sequence(&path) == 10));
    let status = service.terminate(WAIT).expect("exit status");
    assert!(status.success());

    // An operator deletes and recreates the stream, and 15 events land in it before rosey-db
    // is back: the new stream's sequences 1..15 are not the 10 already applied.
    js.delete_stream(DB_STREAM).await.unwrap();
    rosey_plugin_api::stream::ensure_streams(
        &js,
        &rosey_plugin_api::stream::StreamLimits::default(),
    )
    .await
    .unwrap();
    for n in 10..25 {
        publish(&js, db::MESSAGE_LOG, line(n)).await;
    }
    let _service = start_rosey_db(&nats, &client, &path, WAIT).await;
    assert!(
        wait_until(WAIT, || count(&path, "SELECT COUNT(*) FROM recent_chat")
            == 25),
        "only {} of 25 lines applied",
        count(&path, "SELECT COUNT(*) FROM recent_chat")
    );
    assert_eq!(last_sequence(&path), 15);
}

/// On a three-node cluster keeping three copies of the stream, rosey-db (connected to one node)
/// ingests a burst published through another while the node leading the stream is killed and
/// restarted: nothing is lost and nothing is applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_the_stream_leader_mid_burst_and_nothing_is_lost_or_doubled() {
    let mut cluster = NatsCluster::start(3);
    let client = async_nats::connect(cluster.nodes[2].url()).await.unwrap();
    cluster
        .wait_for_jetstream(&client, Duration::from_secs(60))
        .await;
    let (dir, path) = temp_db();
    let config = config_file(dir.path(), json!({"stream": {"replicas": 3}}));
    let mut cmd = rosey_tests::command("rosey-db");
    cmd.arg("--config")
        .arg(&config)
        .arg("--nats")
        .arg(cluster.nodes[1].url())
        .arg("--db")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let _service = ChildGuard::spawn("rosey-db", cmd);
    rosey_tests::wait_for_rosey_db(&client, WAIT).await;

    // Three copies, all caught up, before the burst; the leader is the node to lose.
    let js = jetstream::new(client.clone());
    let deadline = std::time::Instant::now() + WAIT;
    let leader = loop {
        let info = match js.get_stream(DB_STREAM).await {
            Ok(mut stream) => stream.info().await.ok().cloned(),
            Err(_) => None,
        };
        let placed = info
            .and_then(|i| i.cluster)
            .filter(|c| c.replicas.len() == 2 && c.replicas.iter().all(|r| r.current));
        if let Some(leader) = placed.and_then(|c| c.leader) {
            break leader;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stream never had three current copies"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let (users, lines) = (20, 48);
    let events = session_events(users, lines, now() - 1000);
    let (first, second) = events.split_at(events.len() / 2);
    publish_reliably(&js, first, "cluster-a").await;
    cluster
        .node_named(&leader)
        .expect("the leader is a node")
        .stop();
    publish_reliably(&js, second, "cluster-b").await;
    cluster
        .node_named(&leader)
        .expect("the leader is a node")
        .restart();
    let total = events.len() as i64;
    assert!(
        wait_until(Duration::from_secs(120), || last_sequence(&path) == total),
        "not every event applied (at {} of {total})",
        last_sequence(&path)
    );
    assert_sessions_exact(&path, users, lines);
}

/// A server with JetStream whose stream cannot be set up (another stream already takes the
/// database subjects) stops rosey-db with the reason; it never falls back to the plain
/// subscriptions meant for servers without JetStream, which would lose writes silently.
#[tokio::test]
async fn a_stream_that_cannot_be_set_up_stops_the_service_instead_of_losing_durability() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: "SQUATTER".to_owned(),
        subjects: vec!["rosey.db.>".to_owned()],
        ..Default::default()
    })
    .await
    .expect("a stream on the database subjects");
    let (dir, path) = temp_db();
    let log = dir.path().join("rosey-db.log");
    let mut cmd = rosey_db_command(&nats, &path);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut service = ChildGuard::spawn("rosey-db", cmd);
    let status = service.wait_exit(WAIT);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("rosey-db kept running:\n{stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("JetStream is available but the stream cannot be set up"),
        "{stderr}"
    );
}
