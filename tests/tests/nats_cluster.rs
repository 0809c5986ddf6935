//! Rosey across a three-node NATS cluster with three copies of its streams: the bot, the
//! runtime and rosey-db each connected to a different node keep answering through the loss of
//! a node. (rosey-db's own exactness under a node's loss is
//! `db_service::a_three_node_cluster_loses_the_stream_leader_mid_burst_and_nothing_is_lost_or_doubled`.)

use rosey_tests::bot_support::{ConsoleBot, WAIT};
use rosey_tests::runtime_support::start_runtime;
use rosey_tests::{command, target_dir, wait_for_rosey_db, ChildGuard, NatsCluster};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One configuration for every process, connected to `server` (one node's URL).
fn config_on(server: &str, dir: &std::path::Path) -> Value {
    json!({
        "nats": {"server": server},
        "platform": {
            "type": "console",
            "console_user": "tester",
            "credentials": {"username": "rosey"},
            "status_interval": 0.2,
            "outbound_poll_interval": 0.2,
            "flood": {"commands_per_minute": 1000, "block_seconds": 1}
        },
        "database": {"path": dir.join("rosey.db"), "stream": {"replicas": 3}},
        "plugins": {
            "directory": target_dir(),
            "enabled": ["quotes"],
            "tick_interval": 0.1,
            "watchdog_timeout": 5
        }
    })
}

/// Types `line` until the bot prints a line containing `answer` (the first tries may go
/// before the runtime has subscribed, or while a client is between nodes).
fn ask_until_answered(bot: &mut ConsoleBot, line: &str, answer: &str) {
    let deadline = Instant::now() + WAIT * 2;
    while Instant::now() < deadline {
        bot.type_line(line);
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(3) {
            match bot.next_stdout_within(Duration::from_millis(500)) {
                Some(said) if said.contains(answer) => return,
                _ => {}
            }
        }
    }
    panic!("nobody answered {line:?} with {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_runtime_and_rosey_db_on_different_nodes_answer_through_a_nodes_loss() {
    let mut cluster = NatsCluster::start(3);
    let client = async_nats::connect(cluster.nodes[0].url()).await.unwrap();
    cluster
        .wait_for_jetstream(&client, Duration::from_secs(60))
        .await;
    let dir = tempfile::tempdir().unwrap();

    // rosey-db on n0, the runtime on n1, the bot on n2.
    let db_config = dir.path().join("db.json");
    std::fs::write(
        &db_config,
        config_on(&cluster.nodes[0].url(), dir.path()).to_string(),
    )
    .unwrap();
    let mut db = command("rosey-db");
    db.arg("--config")
        .arg(&db_config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let _db = ChildGuard::spawn("rosey-db", db);
    wait_for_rosey_db(&client, WAIT).await;
    let _runtime = start_runtime(&config_on(&cluster.nodes[1].url(), dir.path()));
    let mut bot = ConsoleBot::start(&config_on(&cluster.nodes[2].url(), dir.path()));

    ask_until_answered(
        &mut bot,
        "!quote add the sky is blue -- alice",
        "Added quote #1.",
    );

    // The runtime's node goes: it reconnects to another and answers again, from the database.
    cluster.nodes[1].stop();
    ask_until_answered(&mut bot, "!quote 1", "#1: the sky is blue");
    cluster.nodes[1].restart();

    // The bot's node goes: its queued input reaches the others once it has moved over.
    cluster.nodes[2].stop();
    ask_until_answered(&mut bot, "!quote count", "1 quote.");
    cluster.nodes[2].restart();

    // rosey-db's node goes: writes wait in the replicated stream, requests move with it.
    cluster.nodes[0].stop();
    ask_until_answered(
        &mut bot,
        "!quote add water is wet -- bob",
        "Added quote #2.",
    );
}
