//! Shared by the tests that start from the original's sample database: a copy of it rebased to
//! today, so retention windows see its rows whatever the date.

/// The sample database of the original Rosey v0.5 (tests copy it, never modify it in place).
pub fn sample_db() -> std::path::PathBuf {
    crate::shared_dir().join("fixtures/rosey-v0.5-sample.db")
}

/// Every time column of the original's schema, as (table, column).
const ORIGINAL_TIME_COLUMNS: &[(&str, &str)] = &[
    ("user_stats", "first_seen"),
    ("user_stats", "last_seen"),
    ("user_stats", "current_session_start"),
    ("user_actions", "timestamp"),
    ("channel_stats", "max_users_timestamp"),
    ("channel_stats", "max_connected_timestamp"),
    ("channel_stats", "last_updated"),
    ("user_count_history", "timestamp"),
    ("recent_chat", "timestamp"),
    ("current_status", "bot_start_time"),
    ("current_status", "last_updated"),
    ("outbound_messages", "timestamp"),
    ("outbound_messages", "sent_timestamp"),
    ("api_tokens", "created_at"),
    ("api_tokens", "last_used"),
];

/// Shifts every timestamp of a copy of the fixture by one offset so that its newest row is two
/// minutes old: the fixture was written on one day, and retention ("last 150 hours") would
/// otherwise hide its rows on any later one. Relative order and gaps are kept exactly.
pub fn rebase_to_now(path: &std::path::Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let newest: i64 = ORIGINAL_TIME_COLUMNS
        .iter()
        .map(|(table, column)| {
            c.query_row(
                &format!("SELECT COALESCE(MAX({column}), 0) FROM {table}"),
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
        })
        .max()
        .unwrap_or(0);
    assert!(newest > 0, "the fixture has no timestamps to rebase");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let offset = now - 120 - newest;
    for (table, column) in ORIGINAL_TIME_COLUMNS {
        c.execute(
            &format!("UPDATE {table} SET {column} = {column} + ?1 WHERE {column} IS NOT NULL"),
            [offset],
        )
        .unwrap();
    }
}
