//! The database service's timing and sizing keys: their defaults, values read from the file,
//! and values that would break the service rejected with the key path.

mod common;

use std::time::Duration;

use rosey_config::Config;

use common::{assert_rejects, load};

#[test]
fn defaults_match_the_services_former_constants() {
    let db = Config::default().database;
    assert_eq!(db.ack_wait.as_duration(), Duration::from_secs(60));
    assert_eq!(db.pull_heartbeat.as_duration(), Duration::from_secs(5));
    assert_eq!(db.pull_expiry.as_duration(), Duration::from_secs(30));
    assert_eq!(db.busy_timeout.as_duration(), Duration::from_secs(5));
    assert_eq!(db.read_connections, 2);
    assert_eq!(db.request_concurrency, 64);
    assert_eq!(
        db.shutdown_flush_timeout.as_duration(),
        Duration::from_secs(5)
    );
    // An empty section gives the same values as no section (the path aside, which is
    // resolved against the file's folder).
    let mut loaded = load(r#"{"database": {}}"#).unwrap().database;
    loaded.path = db.path.clone();
    assert_eq!(loaded, db);
}

#[test]
fn values_are_read_in_seconds_and_counts() {
    let config = load(
        r#"{"database": {"ack_wait": 0.5, "pull_heartbeat": 0.01, "pull_expiry": 0.02,
            "busy_timeout": 0.25, "read_connections": 4, "request_concurrency": 8,
            "shutdown_flush_timeout": 0.1}}"#,
    )
    .unwrap();
    let db = config.database;
    assert_eq!(db.ack_wait.as_duration(), Duration::from_millis(500));
    assert_eq!(db.pull_heartbeat.as_duration(), Duration::from_millis(10));
    assert_eq!(db.pull_expiry.as_duration(), Duration::from_millis(20));
    assert_eq!(db.busy_timeout.as_duration(), Duration::from_millis(250));
    assert_eq!(db.read_connections, 4);
    assert_eq!(db.request_concurrency, 8);
    assert_eq!(
        db.shutdown_flush_timeout.as_duration(),
        Duration::from_millis(100)
    );
}

#[test]
fn zero_durations_are_rejected() {
    for key in [
        "ack_wait",
        "pull_heartbeat",
        "pull_expiry",
        "busy_timeout",
        "shutdown_flush_timeout",
    ] {
        assert_rejects(
            &format!(r#"{{"database": {{"{key}": 0}}}}"#),
            &format!("database.{key}"),
            "must be greater than 0",
        );
    }
}

#[test]
fn zero_counts_are_rejected() {
    for key in ["read_connections", "request_concurrency"] {
        assert_rejects(
            &format!(r#"{{"database": {{"{key}": 0}}}}"#),
            &format!("database.{key}"),
            "must be at least 1",
        );
    }
}

#[test]
fn wrong_types_and_negative_values_are_rejected() {
    assert_rejects(
        r#"{"database": {"read_connections": -1}}"#,
        "database.read_connections",
        "invalid value: integer `-1`",
    );
    assert_rejects(
        r#"{"database": {"ack_wait": "60s"}}"#,
        "database.ack_wait",
        "invalid type: string \"60s\"",
    );
    assert_rejects(
        r#"{"database": {"busy_timeout": -5}}"#,
        "database.busy_timeout",
        "expected a non-negative number of seconds",
    );
}

#[test]
fn a_heartbeat_longer_than_half_the_expiry_is_rejected() {
    // The server refuses such a pull request, so the service would never receive an event.
    assert_rejects(
        r#"{"database": {"pull_heartbeat": 16}}"#,
        "database.pull_heartbeat",
        "at most half of database.pull_expiry (30 s)",
    );
    assert_rejects(
        r#"{"database": {"pull_heartbeat": 2, "pull_expiry": 3}}"#,
        "database.pull_heartbeat",
        "at most half",
    );
    // Exactly half is what the server accepts.
    let config = load(r#"{"database": {"pull_heartbeat": 1.5, "pull_expiry": 3}}"#).unwrap();
    assert_eq!(
        config.database.pull_heartbeat.as_duration(),
        Duration::from_millis(1500)
    );
}

#[test]
fn files_of_channels_no_longer_configured_are_named_not_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bot_data.db");
    for name in [
        "bot_data.db",
        "bot_data.second.db",
        "bot_data.gone.db",
        "bot_data.gone.db-wal",
        "bot_data.old-room.db",
        "bot_data.not a channel.db",
        "other.lobby.db",
        "bot_data.db.bak",
    ] {
        std::fs::write(dir.path().join(name), b"").unwrap();
    }
    let config = load(
        &serde_json::json!({
            "platform": {"type": "cytube", "domain": "https://cytu.be",
                         "channels": [{"name": "lobby"}, {"name": "second"}, {"name": "third"}]},
            "database": {"path": db},
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(
        config.unclaimed_channel_databases(),
        [
            ("gone".to_owned(), dir.path().join("bot_data.gone.db")),
            (
                "old-room".to_owned(),
                dir.path().join("bot_data.old-room.db")
            ),
        ]
    );
    // A single-channel deployment claims only database.path: every channel file is unclaimed.
    let single = load(
        &serde_json::json!({
            "platform": {"type": "cytube", "domain": "https://cytu.be", "channel": "lobby"},
            "database": {"path": db},
        })
        .to_string(),
    )
    .unwrap();
    let names: Vec<String> = single
        .unclaimed_channel_databases()
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(names, ["gone", "old-room", "second"]);
}
