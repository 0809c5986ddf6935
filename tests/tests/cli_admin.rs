//! `rosey status`, `rosey plugin list|reload|disable|enable` and `rosey dlq list|replay`,
//! run as the operator would against a running runtime and database service.

use rosey_plugin_api::db::{ChannelStats, DeadLetter, UserStats, UserStatsQuery};
use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects::{self, runtime as events};
use rosey_tests::runtime_support::{serve_loaded, Fixture, PATIENCE};
use rosey_tests::{command, wait_until_async, RoseyDb};
use std::process::Output;
use std::time::Duration;

fn rosey(args: &[&str], nats: &str) -> Output {
    command("rosey")
        .args(args)
        .arg("--nats")
        .arg(nats)
        .output()
        .expect("run rosey")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "rosey failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_admin_and_status_through_the_cli() {
    let fixture = Fixture::built("counter", "counter_cli");
    let (mut obs, served) = serve_loaded(&fixture).await;
    let url = served.nats.url();
    let db = RoseyDb::start(&served.nats, &obs.client, PATIENCE).await;

    let list = stdout(&rosey(&["plugin", "list"], &url));
    let row = list
        .lines()
        .find(|l| l.starts_with("counter_cli"))
        .unwrap_or_else(|| panic!("no row for the plugin:\n{list}"));
    assert!(row.contains("running"), "{row}");
    assert!(row.contains("0.1.0"), "{row}");

    stdout(&rosey(&["plugin", "reload", "counter_cli"], &url));
    let reloaded = obs.event(events::PLUGIN_RELOADED, "counter_cli").await;
    assert_eq!(reloaded.generation, 2);

    stdout(&rosey(&["plugin", "disable", "counter_cli"], &url));
    obs.event(events::PLUGIN_UNLOADED, "counter_cli").await;
    let unknown = rosey(&["plugin", "reload", "no_such_plugin"], &url);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("not_found"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    stdout(&rosey(&["plugin", "enable", "counter_cli"], &url));
    obs.event(events::PLUGIN_LOADED, "counter_cli").await;

    let status = stdout(&rosey(&["status"], &url));
    assert!(status.contains("jetstream true"), "{status}");
    assert!(status.contains("rosey-db"), "{status}");
    assert!(status.contains("rosey-runtime"), "{status}");
    assert!(status.contains("event(s) waiting"), "{status}");
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed() {
    let nats = rosey_tests::NatsServer::start();
    let client = nats.connect().await;
    let db = RoseyDb::start(&nats, &client, PATIENCE).await;
    let js = async_nats::jetstream::new(client.clone());
    // A write the service cannot apply: not JSON.
    js.publish(subjects::db::USER_JOINED, "{not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let url = nats.url();
    let mut listed = String::new();
    let found = wait_until_async(PATIENCE, || {
        listed = stdout(&rosey(&["dlq", "list"], &url));
        let done = listed.contains(subjects::db::USER_JOINED);
        async move { done }
    })
    .await;
    assert!(
        found,
        "the poison write never reached the dead-letter stream:\n{listed}"
    );
    assert!(listed.contains("{not json"), "{listed}");
    let seq = listed
        .lines()
        .find_map(|l| {
            l.strip_prefix('#')?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .expect("a numbered letter");

    // Replaying an unfixable letter fails again and lands back in the stream; replaying with
    // --all after the stream is empty is harmless.
    stdout(&rosey(&["dlq", "replay", &seq.to_string()], &url));
    let again = wait_until_async(PATIENCE, || {
        let out = stdout(&rosey(&["dlq", "list"], &url));
        async move {
            out.lines()
                .any(|l| l.starts_with('#') && !l.starts_with(&format!("#{seq} ")))
        }
    })
    .await;
    assert!(again, "the replayed poison write came back as a new letter");
    let nothing = rosey(&["dlq", "replay"], &url);
    assert!(!nothing.status.success(), "replay needs letters or --all");

    // A letter whose write is valid (as after an outage that outlasted its redeliveries) is
    // applied when replayed, and leaves the stream.
    let letter = DeadLetter {
        subject: subjects::db::USER_JOINED.to_owned(),
        payload: r#"{"username":"carol","timestamp":1700000000}"#.to_owned(),
        error: "database busy".to_owned(),
        stream_sequence: 99,
        deliveries: 6,
    };
    js.publish(
        subjects::db::DLQ,
        serde_json::to_vec(&letter).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let replayed = stdout(&rosey(&["dlq", "replay", "--all"], &url));
    assert!(
        replayed.contains("replayed on rosey.db.user.joined"),
        "{replayed}"
    );
    let applied = wait_until_async(PATIENCE, || async {
        let user: Result<UserStats, _> = request_json(
            &client,
            subjects::db::QUERY_USER_STATS,
            &UserStatsQuery {
                channel: None,
                username: "carol".into(),
            },
            Duration::from_secs(5),
        )
        .await;
        user.is_ok_and(|u| u.found && u.first_seen == Some(1_700_000_000))
    })
    .await;
    assert!(applied, "the replayed write was not applied");
    let stats: ChannelStats = request_json(
        &client,
        subjects::db::QUERY_CHANNEL_STATS,
        &serde_json::json!({}),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(stats.total_users_seen, 1);
    drop(db);
}
