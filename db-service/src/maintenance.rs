//! Housekeeping: the original's daily maintenance (old history, sent outbound messages, revoked
//! tokens, then `VACUUM` and `ANALYZE`) and the periodic pruning of the recent chat and expired
//! plugin keys.

use crate::store;
use rosey_plugin_api::db::MaintenanceReport;
use rusqlite::{params, Connection, TransactionBehavior};

/// User-count history is kept this many days.
pub const HISTORY_DAYS: i64 = 30;
/// Sent outbound messages are kept this many days.
pub const SENT_OUTBOUND_DAYS: i64 = 7;
/// Revoked API tokens are kept this many days after creation.
pub const REVOKED_TOKEN_DAYS: i64 = 90;
/// Published dead letters are kept this many days in the local table.
pub const DEAD_LETTER_DAYS: i64 = 30;

const DAY: i64 = 86_400;

/// How long rows live, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Recent chat is kept this many hours (the original: 150).
    pub recent_chat_hours: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            recent_chat_hours: 150,
        }
    }
}

impl Retention {
    /// The oldest recent-chat timestamp kept at `now`.
    pub fn recent_chat_cutoff(&self, now: i64) -> i64 {
        now - i64::from(self.recent_chat_hours) * 3600
    }
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneReport {
    /// Recent chat lines past retention.
    pub recent_chat: usize,
    /// Expired plugin keys.
    pub kv_expired: usize,
}

/// The frequent, cheap pass: recent chat past retention and expired plugin keys.
pub fn prune(
    conn: &mut Connection,
    now: i64,
    retention: Retention,
) -> rusqlite::Result<PruneReport> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let report = PruneReport {
        recent_chat: store::prune_recent_chat(&tx, retention.recent_chat_cutoff(now))?,
        kv_expired: store::kv_purge_expired(&tx, now)?,
    };
    tx.commit()?;
    Ok(report)
}

/// The daily maintenance; the deletions commit together (or not at all), then the file is
/// compacted and its statistics refreshed.
pub fn run(
    conn: &mut Connection,
    now: i64,
    retention: Retention,
) -> rusqlite::Result<MaintenanceReport> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let history_deleted = tx.execute(
        "DELETE FROM user_count_history WHERE timestamp < ?1",
        [now - HISTORY_DAYS * DAY],
    )?;
    let outbound_deleted = tx.execute(
        "DELETE FROM outbound_messages
         WHERE sent = 1 AND COALESCE(sent_timestamp, timestamp) < ?1",
        [now - SENT_OUTBOUND_DAYS * DAY],
    )?;
    let tokens_deleted = tx.execute(
        "DELETE FROM api_tokens WHERE revoked = 1 AND created_at < ?1",
        [now - REVOKED_TOKEN_DAYS * DAY],
    )? + tx.execute(
        "DELETE FROM rosey_api_tokens WHERE revoked = 1 AND created_at < ?1",
        [now - REVOKED_TOKEN_DAYS * DAY],
    )?;
    let recent_chat_deleted = store::prune_recent_chat(&tx, retention.recent_chat_cutoff(now))?;
    let kv_expired_deleted = store::kv_purge_expired(&tx, now)?;
    tx.execute(
        "DELETE FROM rosey_dead_letters WHERE published = 1 AND created_at < ?1",
        params![now - DEAD_LETTER_DAYS * DAY],
    )?;
    tx.execute(
        "INSERT INTO rosey_maintenance (id, last_run) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET last_run = excluded.last_run",
        [now],
    )?;
    tx.commit()?;
    let mut log = vec![
        format!("Cleaned up {history_deleted} old user count history records"),
        format!("Deleted {outbound_deleted} old sent outbound messages"),
        format!("Deleted {tokens_deleted} old revoked API tokens"),
        format!("Deleted {recent_chat_deleted} recent chat lines past retention"),
        format!("Deleted {kv_expired_deleted} expired plugin keys"),
    ];
    conn.execute_batch("VACUUM")?;
    log.push("Database vacuumed".to_owned());
    conn.execute_batch("ANALYZE")?;
    log.push("Database analyzed".to_owned());
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    Ok(MaintenanceReport {
        history_deleted: n(history_deleted),
        outbound_deleted: n(outbound_deleted),
        tokens_deleted: n(tokens_deleted),
        kv_expired_deleted: n(kv_expired_deleted),
        recent_chat_deleted: n(recent_chat_deleted),
        log,
    })
}

/// When the full maintenance last ran (by schedule or by request), if ever.
pub fn last_run(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT last_run FROM rosey_maintenance WHERE id = 1",
        [],
        |r| r.get(0),
    )
    .optional()
}

/// How long after start the first scheduled maintenance runs: when the last run is `every`
/// old (at once if that is past, or if it never ran), but never sooner than `settle` (so a
/// restart's catch-up is not slowed by a VACUUM). Counting from the last run, not from start,
/// is what lets a service restarted more often than `every` still run it.
pub fn first_run_delay(
    last_run: Option<i64>,
    now: i64,
    every: std::time::Duration,
    settle: std::time::Duration,
) -> std::time::Duration {
    let due_in = last_run.map_or(0, |last| {
        let every = i64::try_from(every.as_secs()).unwrap_or(i64::MAX);
        // A last run "in the future" (the clock went back) waits one period at most.
        last.saturating_add(every)
            .saturating_sub(now)
            .clamp(0, every)
    });
    std::time::Duration::from_secs(u64::try_from(due_in).unwrap_or(0)).max(settle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use std::time::Duration;

    #[test]
    fn the_first_scheduled_run_counts_from_the_last_run_not_from_start() {
        let (every, settle) = (Duration::from_secs(DAY as u64), Duration::from_secs(600));
        // Never ran, or overdue: as soon as the service has settled.
        assert_eq!(first_run_delay(None, 1_000_000, every, settle), settle);
        assert_eq!(
            first_run_delay(Some(1_000_000 - 3 * DAY), 1_000_000, every, settle),
            settle
        );
        // Ran 20 hours ago (the service restarts every few hours): in 4 hours, not 24.
        let last = 1_000_000 - 20 * 3600;
        assert_eq!(
            first_run_delay(Some(last), 1_000_000, every, settle),
            Duration::from_secs(4 * 3600)
        );
        // A clock that went backwards cannot postpone it beyond one period.
        assert!(
            first_run_delay(Some(2_000_000), 1_000_000, every, settle)
                <= Duration::from_secs(DAY as u64 + 1_000_000)
        );
    }

    #[test]
    fn maintenance_deletes_exactly_what_is_old() {
        let mut conn = Connection::open_in_memory().unwrap();
        let now = 100 * DAY;
        schema::initialize(&mut conn, now).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO user_count_history (timestamp, chat_users, connected_users) VALUES
                ({old}, 1, 1), ({new}, 2, 2);
             INSERT INTO outbound_messages (timestamp, message, sent, sent_timestamp) VALUES
                ({old}, 'old sent', 1, {old}), ({old}, 'old unsent', 0, NULL),
                ({new}, 'new sent', 1, {new});
             INSERT INTO api_tokens (token, created_at, revoked) VALUES
                ('old-revoked', {old}, 1), ('old-live', {old}, 0), ('new-revoked', {new}, 1);
             INSERT INTO recent_chat (timestamp, username, message) VALUES
                ({old}, 'a', 'old'), ({new}, 'a', 'new');",
            old = now - 91 * DAY,
            new = now - 60,
        ))
        .unwrap();
        store::kv_set(&conn, "p", "gone", &serde_json::json!(1), Some(1), now - 10).unwrap();
        store::kv_set(&conn, "p", "kept", &serde_json::json!(1), None, now - 10).unwrap();
        assert_eq!(last_run(&conn).unwrap(), None);
        let report = run(&mut conn, now, Retention::default()).unwrap();
        assert_eq!(last_run(&conn).unwrap(), Some(now));
        assert_eq!(
            (
                report.history_deleted,
                report.outbound_deleted,
                report.tokens_deleted,
                report.recent_chat_deleted,
                report.kv_expired_deleted
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(report.log.len(), 7);
        let messages: Vec<String> = conn
            .prepare("SELECT message FROM outbound_messages ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(messages, ["old unsent", "new sent"]);
        let tokens: Vec<String> = conn
            .prepare("SELECT token FROM api_tokens ORDER BY token")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(tokens, ["new-revoked", "old-live"]);
    }

    #[test]
    fn prune_uses_the_configured_retention() {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::initialize(&mut conn, 1).unwrap();
        let now = 1_000_000;
        for age_hours in [1, 149, 151, 200] {
            store::chat_message(&conn, "u", "m", now - age_hours * 3600).unwrap();
        }
        let report = prune(&mut conn, now, Retention::default()).unwrap();
        assert_eq!(report.recent_chat, 2);
        let short = Retention {
            recent_chat_hours: 2,
        };
        assert_eq!(prune(&mut conn, now, short).unwrap().recent_chat, 1);
    }
}
