//! One deployment serving three channels (three mock CyTube servers): one `rosey-db`, one
//! `rosey-runtime` with quotes, and a `rosey-bot` per channel, all separate processes on one
//! nats-server and one configuration (`platform.channels`). Each channel's lines, sessions,
//! counts and outbound messages land in its own database file only; a command is answered in its
//! own channel only; a channel whose database is stuck, or that receives a poison event, does
//! not delay another; the original's single-channel database becomes the first channel's file
//! untouched, and is refused to a channel it does not belong to.

use rosey_plugin_api::db::{ChatLine, Enqueued};
use rosey_plugin_api::events::{BotStatus, Event};
use rosey_plugin_api::reply::{request_json, RequestError};
use rosey_plugin_api::subjects::{self, runtime as lifecycle};
use rosey_plugin_api::ErrorCode;
use rosey_tests::bot_support::{bot_command, next_json_within, write_config, WAIT};
use rosey_tests::fixture_support::{rebase_to_now, sample_db};
use rosey_tests::mock_cytube::{user, MockCytube, MockOptions};
use rosey_tests::runtime_support;
use rosey_tests::runtime_support::{shipped_plugin_dir, start_runtime, Observer, Runtime};
use rosey_tests::{command, rosey_db_on_config, wait_for_rosey_db, ChildGuard, NatsServer};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The channel the sample database belongs to (its `current_status.channel_name`).
const FIRST: &str = "testchan";
/// The channels added next to it.
const OTHERS: [&str; 2] = ["second", "third"];

/// Everything one deployment runs, in drop order: bots first.
struct Deployment {
    bots: Vec<ChildGuard>,
    _runtime: Runtime,
    _db: ChildGuard,
    mocks: Vec<MockCytube>,
    files: Vec<PathBuf>,
    config_file: PathBuf,
    client: async_nats::Client,
    _dir: tempfile::TempDir,
    _nats: NatsServer,
}

impl Deployment {
    /// The mock server of channel `i` (0: [`FIRST`]).
    fn mock(&self, i: usize) -> &MockCytube {
        &self.mocks[i]
    }
}

/// The configuration every process of the deployment reads.
fn deployment_config(nats: &NatsServer, mocks: &[MockCytube], db: &Path) -> Value {
    let names = std::iter::once(FIRST).chain(OTHERS);
    let channels: Vec<Value> = names
        .zip(mocks)
        .enumerate()
        .map(|(i, (name, mock))| {
            let mut entry = json!({"name": name, "domain": mock.domain()});
            if i == 1 {
                // A channel where the bot has another account.
                entry["credentials"] = json!({"username": "rosey_two"});
            }
            entry
        })
        .collect();
    json!({
        "nats": {"server": nats.url()},
        "platform": {
            "type": "cytube", "channels": channels,
            "credentials": {"username": "rosey"},
            "status_interval": 0.2, "outbound_poll_interval": 0.2, "user_count_interval": 0.2,
            "reconnect_min_delay": 0.05, "reconnect_max_delay": 0.5
        },
        "database": {"path": db, "busy_timeout": 0.2},
        "plugins": {
            "directory": shipped_plugin_dir("quotes"),
            "enabled": ["quotes"], "hot_reload": false,
            "tick_interval": 0.1, "restart_backoff_max": 0.5
        },
    })
}

/// Starts the deployment on a copy of the sample database (rebased to now) as the first
/// channel's file, and waits until every bot has joined and the runtime serves quotes.
async fn start_deployment() -> Deployment {
    start_deployment_with(false).await
}

/// [`start_deployment`] with every channel in one `rosey-bot` process (`--channel` given for
/// each) when `one_bot_process`.
async fn start_deployment_with(one_bot_process: bool) -> Deployment {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bot_data.db");
    std::fs::copy(sample_db(), &db).expect("copy the sample database");
    rebase_to_now(&db);
    let names: Vec<&str> = std::iter::once(FIRST).chain(OTHERS).collect();
    let mut mocks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        mocks.push(
            MockCytube::start(MockOptions {
                channel: (*name).to_owned(),
                users: vec![
                    user(&format!("regular_{name}"), 1.0),
                    user("shared", 0.0),
                    user(&format!("mod_{name}"), 2.0),
                ],
                ping_interval_ms: 200,
                bot_rank: if i == 0 { 2.0 } else { 3.0 },
                ..Default::default()
            })
            .await,
        );
    }
    let config = deployment_config(&nats, &mocks, &db);
    let config_file = write_config(dir.path(), &config);

    let db_service = rosey_db_on_config(&config_file);
    wait_for_rosey_db(&client, WAIT).await;

    let mut observer = Observer::new(&nats).await;
    let runtime = start_runtime(&config);
    observer.event(lifecycle::PLUGIN_LOADED, "quotes").await;

    let mut status = client
        .subscribe(subjects::events::BOT_STATUS)
        .await
        .unwrap();
    let mut bots = Vec::new();
    let groups: Vec<Vec<&str>> = if one_bot_process {
        vec![names.clone()]
    } else {
        names.iter().map(|n| vec![*n]).collect()
    };
    for group in groups {
        let mut cmd = bot_command(&config_file, &nats);
        for name in group {
            cmd.arg("--channel").arg(name);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        bots.push(ChildGuard::spawn("rosey-bot", cmd));
    }
    let mut joined = HashSet::new();
    while joined.len() < names.len() {
        let s: Event<BotStatus> = next_json_within(&mut status, WAIT).await;
        if s.body.connected {
            joined.insert(s.channel.clone());
        }
    }
    let files = std::iter::once(db.clone())
        .chain(
            OTHERS
                .iter()
                .map(|n| dir.path().join(format!("bot_data.{n}.db"))),
        )
        .collect();
    Deployment {
        bots,
        _runtime: runtime,
        _db: db_service,
        mocks,
        files,
        config_file,
        client,
        _dir: dir,
        _nats: nats,
    }
}

/// The rows of `sql` in `db` as text (read-only, while rosey-db writes).
fn rows(db: &Path, sql: &str) -> Vec<Vec<String>> {
    rosey_tests::sqlite_rows(db, sql)
}

/// The rows of `sql` in `db` once there are at least `min`.
fn wait_rows(db: &Path, sql: &str, min: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = rows(db, sql);
        if found.len() >= min {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "only {} rows in {} for {sql}: {found:?}",
            found.len(),
            db.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number `sql` counts in `db`.
fn count(db: &Path, sql: &str) -> i64 {
    rows(db, sql)
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// Waits until `mock` has received from its bot a chat line `text`.
async fn wait_said(mock: &MockCytube, text: &str) {
    let deadline = Instant::now() + WAIT;
    while !said(mock, text) {
        assert!(Instant::now() < deadline, "the bot never said {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `mock`'s bot said a chat line containing `text`.
fn said(mock: &MockCytube, text: &str) -> bool {
    mock.received("chatMsg")
        .iter()
        .any(|d| d["msg"].as_str().is_some_and(|m| m.contains(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_keeps_its_own_lines_sessions_counts_and_outbound_queue() {
    let d = start_deployment().await;
    // The join's user list is written after the bots report joining: wait for it, so the
    // baseline holds every user present at the start and only `late_<first>` is new.
    for (i, name) in std::iter::once(FIRST).chain(OTHERS).enumerate() {
        wait_rows(
            &d.files[i],
            &format!("SELECT 1 FROM user_stats WHERE username = 'mod_{name}'"),
            1,
        );
    }
    let first_users_before = count(&d.files[0], "SELECT COUNT(*) FROM user_stats");
    for (i, name) in std::iter::once(FIRST).chain(OTHERS).enumerate() {
        assert!(d
            .mock(i)
            .chat_from(&format!("regular_{name}"), &format!("hello from {name}")));
        assert!(d.mock(i).chat_from("shared", &format!("shared in {name}")));
        assert!(d
            .mock(i)
            .send_event("addUser", user(&format!("late_{name}"), 0.0)));
        // A moderator's PM to the bot runs a shell command, audited in the channel's file.
        let bot = if i == 1 { "rosey_two" } else { "rosey" };
        assert!(d.mock(i).pm_from(&format!("mod_{name}"), bot, "status"));
    }
    for (i, name) in std::iter::once(FIRST).chain(OTHERS).enumerate() {
        let file = &d.files[i];
        wait_rows(
            file,
            &format!("SELECT 1 FROM recent_chat WHERE message = 'hello from {name}'"),
            1,
        );
        wait_rows(
            file,
            &format!("SELECT 1 FROM user_stats WHERE username = 'late_{name}'"),
            1,
        );
        wait_rows(file, "SELECT 1 FROM user_count_history", 1);
        // `shared` is one user in each channel, counted apart.
        wait_rows(
            file,
            "SELECT 1 FROM user_stats WHERE username = 'shared' AND total_chat_lines = 1",
            1,
        );
        // Nothing of another channel is here.
        for (j, other) in std::iter::once(FIRST).chain(OTHERS).enumerate() {
            if i == j {
                continue;
            }
            assert_eq!(
                count(
                    file,
                    &format!(
                        "SELECT COUNT(*) FROM recent_chat WHERE message LIKE '%{other}' \
                         OR username IN ('regular_{other}', 'late_{other}')"
                    )
                ),
                0,
                "{name}'s file holds {other}'s chat"
            );
            assert_eq!(
                count(
                    file,
                    &format!(
                        "SELECT COUNT(*) FROM user_stats \
                         WHERE username IN ('regular_{other}', 'late_{other}')"
                    )
                ),
                0,
                "{name}'s file holds {other}'s users"
            );
        }
        // The PM audit and the high-water mark are the channel's own.
        wait_rows(
            file,
            &format!("SELECT 1 FROM user_actions WHERE username = 'mod_{name}'"),
            1,
        );
        let other_mods: Vec<String> = std::iter::once(FIRST)
            .chain(OTHERS)
            .filter(|other| *other != name)
            .map(|other| format!("'mod_{other}'"))
            .collect();
        assert_eq!(
            count(
                file,
                &format!(
                    "SELECT COUNT(*) FROM user_actions WHERE username IN ({})",
                    other_mods.join(", ")
                )
            ),
            0,
            "{name}'s file audits another channel's PM"
        );
        wait_rows(file, "SELECT 1 FROM channel_stats WHERE max_users >= 3", 1);
        // Each bot's status is in its own channel's row.
        wait_rows(
            file,
            &format!("SELECT 1 FROM current_status WHERE channel_name = '{name}'"),
            1,
        );
    }
    // The new channels start empty of the first channel's history: nothing was copied.
    let first_chat: i64 = count(&d.files[0], "SELECT COUNT(*) FROM recent_chat");
    assert!(
        first_chat > 590,
        "the sample's 590 lines and the new ones: {first_chat}"
    );
    for file in &d.files[1..] {
        assert_eq!(count(file, "SELECT COUNT(*) FROM recent_chat"), 2);
    }
    assert!(
        count(&d.files[0], "SELECT COUNT(*) FROM user_stats") > first_users_before,
        "the first channel's file keeps its users and gains late_{FIRST}"
    );

    // Reads name their channel; with several served, a read naming none is refused with the
    // list of channels (it would otherwise pass one channel's data off as another's).
    let second: Vec<ChatLine> = request_json(
        &d.client,
        subjects::db::RECENT_CHAT_GET,
        &json!({"channel": "second", "limit": 10}),
        WAIT,
    )
    .await
    .unwrap();
    let texts: Vec<&str> = second.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(texts, ["hello from second", "shared in second"]);
    for (subject, body) in [
        (subjects::db::RECENT_CHAT_GET, json!({"limit": 500})),
        (subjects::db::QUERY_CHANNEL_STATS, json!({})),
        (subjects::db::QUERY_CURRENT_STATUS, json!({})),
        (subjects::db::OUTBOUND_GET, json!({})),
        (subjects::db::OUTBOUND_ENQUEUE, json!({"message": "whose?"})),
    ] {
        let refused = request_json::<_, Value>(&d.client, subject, &body, WAIT)
            .await
            .unwrap_err();
        let RequestError::Service(envelope, _) = &refused else {
            panic!("{subject}: not an error envelope: {refused}");
        };
        assert_eq!(envelope.error.code, ErrorCode::MissingField, "{subject}");
        let refused = refused.to_string();
        for name in [FIRST, "second", "third"] {
            assert!(refused.contains(name), "{subject}: {refused}");
        }
        assert!(refused.contains("channel"), "{subject}: {refused}");
    }
    let unknown = request_json::<_, Vec<ChatLine>>(
        &d.client,
        subjects::db::RECENT_CHAT_GET,
        &json!({"channel": "nowhere"}),
        WAIT,
    )
    .await
    .unwrap_err();
    assert!(unknown.to_string().contains("nowhere"), "{unknown}");

    // An outbound message queued for the third channel is sent there only, and marked there.
    let queued: Enqueued = request_json(
        &d.client,
        subjects::db::OUTBOUND_ENQUEUE,
        &json!({"channel": "third", "message": "only for the third"}),
        WAIT,
    )
    .await
    .unwrap();
    wait_said(d.mock(2), "only for the third").await;
    wait_rows(
        &d.files[2],
        &format!(
            "SELECT 1 FROM outbound_messages WHERE id = {} AND sent = 1",
            queued.id
        ),
        1,
    );
    // The sample's own queue belongs to the first channel: its bot sends it.
    let sample_queued = rows(
        &d.files[0],
        "SELECT message FROM outbound_messages WHERE sent = 0 AND retry_count = 0 ORDER BY id LIMIT 1",
    );
    if let Some(text) = sample_queued.first().and_then(|r| r.first()) {
        wait_said(d.mock(0), text).await;
        for i in [1, 2] {
            assert!(!said(d.mock(i), text), "{text:?} sent in channel {i}");
        }
    }
    assert!(!said(d.mock(0), "only for the third"));
    assert!(!said(d.mock(1), "only for the third"));

    // `rosey status` shows each channel's backlog of writes.
    let out = command("rosey")
        .arg("status")
        .arg("--config")
        .arg(&d.config_file)
        .output()
        .expect("run rosey status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for name in OTHERS {
        assert!(
            stdout.contains(&format!("database     {name}: "))
                && stdout.contains("event(s) waiting"),
            "{stdout}"
        );
    }
    assert_eq!(
        count(
            &d.files[0],
            "SELECT COUNT(*) FROM outbound_messages WHERE message = 'only for the third'"
        ),
        0
    );
}

/// The first chat line `mock`'s bot says that `accept` takes, waiting for it.
async fn next_said(mock: &MockCytube, accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = mock
            .received("chatMsg")
            .iter()
            .filter_map(|m| m["msg"].as_str().map(str::to_owned))
            .find(|m| accept(m));
        if let Some(line) = found {
            return line;
        }
        assert!(Instant::now() < deadline, "the bot said nothing expected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_answered_in_its_own_channel_only() {
    let d = start_deployment().await;
    assert!(d
        .mock(1)
        .chat_from("regular_second", "!quote add the second channel speaks"));
    let added = next_said(d.mock(1), |m| m.starts_with("Added quote")).await;
    // The quote book is the channel's: the third channel has none, the second one.
    assert!(d.mock(2).chat_from("regular_third", "!quote count"));
    let third = next_said(d.mock(2), |m| m.contains("quote")).await;
    assert!(!third.contains("1 quote"), "{third:?}");
    assert!(d.mock(1).chat_from("regular_second", "!quote count"));
    next_said(d.mock(1), |m| m == "1 quote.").await;
    // Each answer reached its own channel's server only.
    for i in [0, 2] {
        assert!(
            !said(d.mock(i), &added),
            "{added:?} was said in channel {i}"
        );
    }
    assert!(!said(d.mock(0), &third) && !said(d.mock(1), &third));
    assert_eq!(d.bots.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bot_process_serves_several_channels_each_apart() {
    let d = start_deployment_with(true).await;
    assert_eq!(d.bots.len(), 1);
    // Each channel's lines land in its own file only.
    for (i, name) in std::iter::once(FIRST).chain(OTHERS).enumerate() {
        assert!(d
            .mock(i)
            .chat_from(&format!("regular_{name}"), &format!("together in {name}")));
    }
    for (i, name) in std::iter::once(FIRST).chain(OTHERS).enumerate() {
        wait_rows(
            &d.files[i],
            &format!("SELECT 1 FROM recent_chat WHERE message = 'together in {name}'"),
            1,
        );
        assert_eq!(
            rows(
                &d.files[i],
                "SELECT 1 FROM recent_chat WHERE message LIKE 'together in %'"
            )
            .len(),
            1
        );
    }
    // A command is answered in its own channel only, with that channel's own bot name.
    assert!(d
        .mock(1)
        .chat_from("regular_second", "!quote add one process, many channels"));
    let added = next_said(d.mock(1), |m| m.starts_with("Added quote")).await;
    assert!(!said(d.mock(0), &added) && !said(d.mock(2), &added));
    // An outbound message queued for the third channel is sent there only.
    let _: Enqueued = request_json(
        &d.client,
        subjects::db::OUTBOUND_ENQUEUE,
        &json!({"channel": "third", "message": "third, from the shared process"}),
        WAIT,
    )
    .await
    .unwrap();
    wait_said(d.mock(2), "third, from the shared process").await;
    assert!(!said(d.mock(0), "third, from the shared process"));
    assert!(!said(d.mock(1), "third, from the shared process"));
    // `$SRV.INFO` has one entry per channel, each naming its channel and the process's.
    let inbox = d.client.new_inbox();
    let mut replies = d.client.subscribe(inbox.clone()).await.unwrap();
    d.client
        .publish_with_reply("$SRV.INFO.rosey-bot", inbox, "".into())
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, futures::StreamExt::next(&mut replies))
            .await
            .expect("every channel answers $SRV.INFO")
            .unwrap();
        let info: Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(
            info["metadata"]["channels"], "testchan,second,third",
            "{info}"
        );
        seen.insert(info["metadata"]["channel"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        HashSet::from([FIRST.to_owned(), "second".to_owned(), "third".to_owned()])
    );
    // `rosey status` names each channel's entry.
    let status = command("rosey")
        .args(["status", "--config"])
        .arg(&d.config_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    for name in [FIRST, "second", "third"] {
        assert!(stdout.contains(&format!("serves {name}")), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_or_poisoned_channel_does_not_delay_another() {
    let d = start_deployment().await;
    // The third channel's database is locked by someone else: its writes wait.
    let lock = rusqlite::Connection::open(&d.files[2]).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    assert!(d.mock(2).chat_from("regular_third", "stuck behind a lock"));
    // A poison event in the second channel: dead-lettered, and the next line still applied.
    let poison = subjects::db::channel_write("second", subjects::db::MESSAGE_LOG).unwrap();
    let js = async_nats::jetstream::new(d.client.clone());
    js.publish(poison, "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    for i in [0, 1] {
        let name = if i == 0 { FIRST } else { OTHERS[0] };
        assert!(d
            .mock(i)
            .chat_from(&format!("regular_{name}"), "not delayed"));
    }
    for file in &d.files[..2] {
        wait_rows(
            file,
            "SELECT 1 FROM recent_chat WHERE message = 'not delayed'",
            1,
        );
    }
    // The lock is still held: the third channel's line cannot have been applied.
    assert_eq!(
        rows(
            &d.files[2],
            "SELECT 1 FROM recent_chat WHERE message = 'stuck behind a lock'"
        )
        .len(),
        0
    );
    lock.execute_batch("ROLLBACK").unwrap();
    wait_rows(
        &d.files[2],
        "SELECT 1 FROM recent_chat WHERE message = 'stuck behind a lock'",
        1,
    );
    wait_rows(
        &d.files[1],
        "SELECT subject FROM rosey_dead_letters WHERE subject = 'rosey.db.channel.second.message.log'",
        1,
    );
    // `$SRV.STATS` shows whose dead letter it was: the second channel's, in the total too
    // (counted once the dead letter is published, a moment after its row is written).
    let deadline = Instant::now() + WAIT;
    let stats = loop {
        let reply = d
            .client
            .request("$SRV.STATS.rosey-db", "".into())
            .await
            .unwrap();
        let stats: Value = serde_json::from_slice(&reply.payload).unwrap();
        let data = &stats["endpoints"][0]["data"];
        if data["channels"]["second"]["ingest"]["dead_lettered"] == 1
            && data["channels"]["third"]["ingest"]["applied"].as_u64() >= Some(1)
        {
            break stats;
        }
        assert!(Instant::now() < deadline, "no per-channel figures: {data}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let data = &stats["endpoints"][0]["data"];
    assert_eq!(
        data["channels"]["second"]["ingest"]["dead_lettered"], 1,
        "{data}"
    );
    assert_eq!(data["ingest"]["dead_lettered"], 1, "{data}");
    for name in [FIRST, "third"] {
        assert!(
            data["channels"][name]["ingest"]["dead_lettered"].is_null(),
            "{data}"
        );
        assert!(
            data["channels"][name]["ingest"]["applied"].as_u64() >= Some(1),
            "{data}"
        );
    }
    let applied = |name: &str| data["channels"][name]["ingest"]["applied"].as_u64();
    assert_eq!(
        data["ingest"]["applied"].as_u64(),
        Some(applied(FIRST).unwrap() + applied("second").unwrap() + applied("third").unwrap()),
        "{data}"
    );
}

#[tokio::test]
async fn the_sample_database_is_refused_to_another_channel() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bot_data.db");
    std::fs::copy(sample_db(), &db).expect("copy the sample database");
    let before = std::fs::read(&db).unwrap();
    let config = write_config(
        dir.path(),
        &json!({
            "platform": {"type": "cytube", "domain": "https://cytu.be",
                         "channels": [{"name": "elsewhere"}, {"name": FIRST}]},
            "database": {"path": db},
        }),
    );
    let out = command("rosey-db")
        .arg("--config")
        .arg(&config)
        .arg("--nats")
        .arg(nats.url())
        .stdin(Stdio::null())
        .output()
        .expect("run rosey-db");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(FIRST) && stderr.contains("first"),
        "{stderr}"
    );
    // Refused before anything was written to it.
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file was changed");
}

/// A console deployment of two channels on `nats` with rosey-db started on `dir`'s
/// `bot_data.db`; `plugins` is its plugins section. Returns the configuration and rosey-db.
async fn console_pair(
    nats: &NatsServer,
    client: &async_nats::Client,
    dir: &Path,
    plugins: Value,
) -> (Value, ChildGuard) {
    let config = json!({
        "nats": {"server": nats.url()},
        "platform": {"type": "console", "channels": [{"name": "lobby"}, {"name": "second"}]},
        "database": {"path": dir.join("bot_data.db")},
        "plugins": plugins,
    });
    let file = write_config(dir, &config);
    let db = rosey_db_on_config(&file);
    wait_for_rosey_db(client, WAIT).await;
    (config, db)
}

#[tokio::test]
async fn plugin_storage_is_per_channel_when_asked_for() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let (_config, _db) = console_pair(&nats, &client, dir.path(), json!({})).await;
    let set = subjects::kv::subject("notes", subjects::kv::Op::Set).unwrap();
    let get = subjects::kv::subject("notes", subjects::kv::Op::Get).unwrap();
    for body in [
        json!({"key": "k", "value": "deployment"}),
        json!({"key": "k", "value": "in second", "channel": "second"}),
    ] {
        let _: Value = request_json(&client, &set, &body, WAIT).await.unwrap();
    }
    let value = |body: Value| {
        let (client, get) = (client.clone(), get.clone());
        async move {
            let reply: rosey_plugin_api::kv::GetReply =
                request_json(&client, &get, &body, WAIT).await.unwrap();
            reply.value
        }
    };
    assert_eq!(value(json!({"key": "k"})).await, Some(json!("deployment")));
    assert_eq!(
        value(json!({"key": "k", "channel": "lobby"})).await,
        Some(json!("deployment"))
    );
    assert_eq!(
        value(json!({"key": "k", "channel": "second"})).await,
        Some(json!("in second"))
    );
    let files = [
        dir.path().join("bot_data.db"),
        dir.path().join("bot_data.second.db"),
    ];
    for (file, expected) in files.iter().zip(["\"deployment\"", "\"in second\""]) {
        assert_eq!(
            rows(
                file,
                "SELECT value FROM rosey_plugin_kv WHERE plugin = 'notes'"
            ),
            [[expected.to_owned()]]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markov_learns_each_channels_own_recent_chat() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let plugins = json!({
        "directory": shipped_plugin_dir("markov"),
        "enabled": ["markov"], "hot_reload": false, "tick_interval": 0.1,
        "config": {"markov": {"commands": {"markov": {"cooldown": 0}}, "bootstrap_lines": 100}},
    });
    let (config, _db) = console_pair(&nats, &client, dir.path(), plugins).await;
    // Each channel's database heard a line before the plugin ever ran.
    let js = async_nats::jetstream::new(client.clone());
    for (subject, line) in [
        (
            subjects::db::MESSAGE_LOG.to_owned(),
            "lobby line about cats",
        ),
        (
            subjects::db::channel_write("second", subjects::db::MESSAGE_LOG).unwrap(),
            "second line about dogs",
        ),
    ] {
        js.publish(
            subject,
            json!({"username": "alice", "message": line})
                .to_string()
                .into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    wait_rows(
        &dir.path().join("bot_data.db"),
        "SELECT 1 FROM recent_chat",
        1,
    );
    wait_rows(
        &dir.path().join("bot_data.second.db"),
        "SELECT 1 FROM recent_chat",
        1,
    );

    let mut observer = Observer::new(&nats).await;
    let mut said = client
        .subscribe(subjects::platform::send("console", subjects::platform::action::CHAT).unwrap())
        .await
        .unwrap();
    let _runtime = start_runtime(&config);
    observer.event(lifecycle::PLUGIN_LOADED, "markov").await;
    for (channel, expected) in [("lobby", "lobby line"), ("second", "second line")] {
        let mut command = runtime_support::command_payload("markov", "", "mod", 2.0);
        command.channel = channel.to_owned();
        observer.publish_command(&command).await;
        let reply: rosey_plugin_api::actions::SendChat = next_json_within(&mut said, WAIT).await;
        assert_eq!(reply.channel, channel);
        assert!(
            reply.content.starts_with(expected),
            "{channel}: {:?}",
            reply.content
        );
    }
}

#[tokio::test]
async fn a_removed_channels_stream_and_file_are_kept_and_named() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let config = |channels: &[&str]| {
        let entries: Vec<Value> = channels.iter().map(|c| json!({"name": c})).collect();
        write_config(
            dir.path(),
            &json!({
                "nats": {"server": nats.url()},
                "platform": {"type": "console", "channels": entries},
                "database": {"path": dir.path().join("bot_data.db")},
            }),
        )
    };
    let rosey_db = |file: &Path| {
        let mut cmd = command("rosey-db");
        cmd.arg("--config")
            .arg(file)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        ChildGuard::spawn("rosey-db", cmd)
    };
    // Three channels served once: each of the others gets its stream and its file.
    let file = config(&["lobby", "second", "gone"]);
    let db = rosey_db(&file);
    wait_for_rosey_db(&client, WAIT).await;
    let gone_file = dir.path().join("bot_data.gone.db");
    let js = async_nats::jetstream::new(client.clone());
    let deadline = Instant::now() + WAIT;
    while !gone_file.exists() || js.get_stream("ROSEY_DB_CH_gone").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the third channel was never set up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(db);

    // "gone" is removed from the list: rosey-db starts without it and deletes nothing.
    let file = config(&["lobby", "second"]);
    let _db = rosey_db(&file);
    wait_for_rosey_db(&client, WAIT).await;
    let check = command("rosey")
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains(&format!(
            "{} belongs to no configured channel",
            gone_file.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("bot_data.second.db belongs"), "{stderr}");
    let status = command("rosey")
        .args(["status", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{stdout}");
    assert!(
        stdout.contains("stream ROSEY_DB_CH_gone belongs to no configured channel (gone)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{} belongs to no configured channel (gone)",
            gone_file.display()
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("ROSEY_DB_CH_second belongs"), "{stdout}");
    assert!(stdout.contains("database     second:"), "{stdout}");
    // Kept: the file and the stream are still there.
    assert!(gone_file.exists());
    assert!(js.get_stream("ROSEY_DB_CH_gone").await.is_ok());
}
