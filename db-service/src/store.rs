//! Every SQL operation of the service, with the original Rosey's semantics.
//!
//! Each function takes the connection (or an open transaction) and the time it should act at,
//! so events applied late are accounted at their own time and tests can fix the clock. All SQL
//! is parameterized; the only identifiers built into SQL text come from constant tables.

use rosey_plugin_api::db::{
    ChannelStats, ChatLine, HighWaterMark, OutboundMessage, RecentChatGet, TopChatter,
    UserCountSample, UserStats,
};
use rosey_plugin_api::kv;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;

/// Outbound messages are retried at most this often unless the caller says otherwise.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The most rows one list request returns, so a reply stays well under NATS's payload limit.
pub const MAX_ROWS: u32 = 1000;
/// The user whose lines the original never kept in the recent chat (CyTube's server notices).
pub const SERVER_USER: &str = "server";

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The request is well-formed JSON but asks for something impossible.
    #[error("{0}")]
    Invalid(String),
    /// A value exceeds a size limit.
    #[error("{0}")]
    TooLarge(String),
}

impl StoreError {
    /// True when retrying later may succeed (the database is busy, locked or full).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => is_transient(e),
            _ => false,
        }
    }
}

/// True for SQLite failures that may pass: another writer, a full disk, an I/O hiccup.
pub fn is_transient(err: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        err.sqlite_error_code(),
        Some(
            C::DatabaseBusy | C::DatabaseLocked | C::DiskFull | C::SystemIoFailure | C::CannotOpen
        )
    )
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// ---- users and chat ---------------------------------------------------------------------------

/// A user joined: opens a session (creating the user on first sight).
///
/// Unlike the original, a join while a session is still open (its leave was missed: a crash,
/// a lost connection) first credits that session up to the user's last sign of presence (a
/// join, chat line or leave), so the time seen is kept and the unseen gap is not credited.
pub fn user_joined(conn: &Connection, username: &str, ts: i64) -> rusqlite::Result<()> {
    let updated = conn
        .prepare_cached(
            "UPDATE user_stats SET
                total_time_connected = COALESCE(total_time_connected, 0)
                    + CASE WHEN current_session_start IS NOT NULL
                           THEN MAX(MIN(COALESCE(last_seen, ?2), ?2) - current_session_start, 0)
                           ELSE 0 END,
                last_seen = MAX(last_seen, ?2),
                current_session_start = ?2
             WHERE username = ?1",
        )?
        .execute(params![username, ts])?;
    if updated == 0 {
        conn.prepare_cached(
            "INSERT INTO user_stats (username, first_seen, last_seen, current_session_start)
             VALUES (?1, ?2, ?2, ?2)",
        )?
        .execute(params![username, ts])?;
    }
    Ok(())
}

/// A user left: credits the open session's time (never negative) and closes it.
pub fn user_left(conn: &Connection, username: &str, ts: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE user_stats SET
            total_time_connected = COALESCE(total_time_connected, 0)
                + MAX(?2 - current_session_start, 0),
            last_seen = MAX(last_seen, ?2),
            current_session_start = NULL
         WHERE username = ?1 AND current_session_start IS NOT NULL",
    )?
    .execute(params![username, ts])?;
    Ok(())
}

/// A chat line: counts it for a known user and keeps it in the recent chat (except `server`).
///
/// Pruning the recent chat is periodic ([`prune_recent_chat`]), not done on every insert.
pub fn chat_message(
    conn: &Connection,
    username: &str,
    message: &str,
    ts: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE user_stats SET total_chat_lines = COALESCE(total_chat_lines, 0) + 1,
                last_seen = MAX(last_seen, ?2)
         WHERE username = ?1",
    )?
    .execute(params![username, ts])?;
    if !username.eq_ignore_ascii_case(SERVER_USER) {
        conn.prepare_cached(
            "INSERT INTO recent_chat (timestamp, username, message) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![ts, username, message])?;
    }
    Ok(())
}

/// Deletes recent chat older than `cutoff`; returns how many lines went.
pub fn prune_recent_chat(conn: &Connection, cutoff: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM recent_chat WHERE timestamp < ?1")?
        .execute([cutoff])
}

/// Records an audit row in `user_actions`.
pub fn log_user_action(
    conn: &Connection,
    username: &str,
    action_type: &str,
    details: Option<&str>,
    ts: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO user_actions (timestamp, username, action_type, details)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![ts, username, action_type, details])?;
    Ok(())
}

// ---- channel statistics -----------------------------------------------------------------------

/// Appends a sample to the user-count history.
pub fn log_user_count(
    conn: &Connection,
    chat: u64,
    connected: u64,
    ts: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO user_count_history (timestamp, chat_users, connected_users) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![ts, to_i64(chat), to_i64(connected)])?;
    Ok(())
}

/// The user-count samples at or after `since`, oldest first: the newest [`MAX_ROWS`] × 50 at
/// most (30 days of the bot's default one sample a minute is 43,200).
pub fn user_count_history(conn: &Connection, since: i64) -> rusqlite::Result<Vec<UserCountSample>> {
    let mut stmt = conn.prepare_cached(
        "SELECT timestamp, chat_users, connected_users FROM user_count_history
         WHERE timestamp >= ?1 ORDER BY timestamp DESC, id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since, MAX_ROWS * 50], |r| {
        Ok(UserCountSample {
            timestamp: r.get(0)?,
            chat_users: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            connected_users: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
        })
    })?;
    let mut samples: Vec<UserCountSample> = rows.collect::<Result<_, _>>()?;
    samples.reverse();
    Ok(samples)
}

/// Which high-water marks a sample raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HighWaterChange {
    /// The chat-user record was raised.
    pub users: bool,
    /// The connected record was raised.
    pub connected: bool,
}

/// Raises the records when a count exceeds them; a zero or absent connected count leaves the
/// connected record alone (as the original did).
pub fn update_high_water(
    conn: &Connection,
    chat: u64,
    connected: Option<u64>,
    ts: i64,
) -> rusqlite::Result<HighWaterChange> {
    let users = conn
        .prepare_cached(
            "UPDATE channel_stats SET max_users = ?1, max_users_timestamp = ?2, last_updated = ?2
             WHERE id = 1 AND COALESCE(max_users, 0) < ?1",
        )?
        .execute(params![to_i64(chat), ts])?
        > 0;
    let connected = match connected {
        Some(count) if count > 0 => {
            conn.prepare_cached(
                "UPDATE channel_stats SET max_connected = ?1, max_connected_timestamp = ?2,
                        last_updated = ?2
                 WHERE id = 1 AND COALESCE(max_connected, 0) < ?1",
            )?
            .execute(params![to_i64(count), ts])?
                > 0
        }
        _ => false,
    };
    Ok(HighWaterChange { users, connected })
}

/// Sets whitelisted `current_status` columns (names from [`rosey_plugin_api::db::STATUS_COLUMNS`])
/// and always `last_updated`.
pub fn update_status(
    conn: &Connection,
    columns: &[(&'static str, SqlValue)],
    ts: i64,
) -> rusqlite::Result<()> {
    let mut sql = String::from("UPDATE current_status SET ");
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(columns.len() + 1);
    for (i, (column, value)) in columns.iter().enumerate() {
        debug_assert!(rosey_plugin_api::db::STATUS_COLUMNS.contains(column));
        sql.push_str(&format!("{column} = ?{}, ", i + 1));
        values.push(value);
    }
    sql.push_str(&format!(
        "last_updated = ?{} WHERE id = 1",
        columns.len() + 1
    ));
    values.push(&ts);
    conn.prepare_cached(&sql)?.execute(values.as_slice())?;
    Ok(())
}

/// The channel `current_status` names (the original's `channel_name`), when it names one: the
/// channel whose data the file holds.
pub fn status_channel_name(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'current_status')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(None);
    }
    let name: Option<Option<String>> = conn
        .query_row(
            "SELECT channel_name FROM current_status WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(name.flatten().filter(|n| !n.trim().is_empty()))
}

/// The high-water marks, top ten chatters and users seen.
pub fn channel_stats(conn: &Connection) -> rusqlite::Result<ChannelStats> {
    let row = conn
        .query_row(
            "SELECT max_users, max_users_timestamp, max_connected, max_connected_timestamp
             FROM channel_stats WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            },
        )
        .optional()?;
    let (users, users_ts, connected, connected_ts) = row.unwrap_or((None, None, None, None));
    Ok(ChannelStats {
        high_water_mark: HighWaterMark {
            users: users.unwrap_or(0),
            timestamp: users_ts,
        },
        high_water_connected: HighWaterMark {
            users: connected.unwrap_or(0),
            timestamp: connected_ts,
        },
        top_chatters: top_chatters(conn, 10)?,
        total_users_seen: conn.query_row("SELECT COUNT(*) FROM user_stats", [], |r| r.get(0))?,
    })
}

/// Users with at least one line, most lines first.
pub fn top_chatters(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<TopChatter>> {
    let mut stmt = conn.prepare_cached(
        "SELECT username, total_chat_lines FROM user_stats WHERE total_chat_lines > 0
         ORDER BY total_chat_lines DESC, username ASC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit], |r| {
        Ok(TopChatter {
            username: r.get(0)?,
            chat_lines: r.get(1)?,
        })
    })?;
    rows.collect()
}

/// One user's row, or `found: false`.
pub fn user_stats(conn: &Connection, username: &str) -> rusqlite::Result<UserStats> {
    let found = conn
        .prepare_cached(
            "SELECT username, first_seen, last_seen, total_chat_lines, total_time_connected,
                    current_session_start
             FROM user_stats WHERE username = ?1",
        )?
        .query_row([username], |r| {
            Ok(UserStats {
                found: true,
                username: Some(r.get(0)?),
                first_seen: Some(r.get(1)?),
                last_seen: Some(r.get(2)?),
                total_chat_lines: Some(r.get::<_, Option<i64>>(3)?.unwrap_or(0)),
                total_time_connected: Some(r.get::<_, Option<i64>>(4)?.unwrap_or(0)),
                current_session_start: r.get(5)?,
            })
        })
        .optional()?;
    Ok(found.unwrap_or(UserStats {
        found: false,
        username: None,
        first_seen: None,
        last_seen: None,
        total_chat_lines: None,
        total_time_connected: None,
        current_session_start: None,
    }))
}

/// The newest `limit` lines matching the filters, returned oldest first.
///
/// Lines older than `oldest` (the retention cut-off) are never returned, even before the
/// periodic prune has deleted them.
pub fn recent_chat(
    conn: &Connection,
    query: &RecentChatGet,
    oldest: i64,
) -> rusqlite::Result<Vec<ChatLine>> {
    let limit = query.limit.min(MAX_ROWS);
    let since = query.since.map_or(oldest, |t| t.secs().max(oldest));
    let mut stmt = conn.prepare_cached(
        "SELECT timestamp, username, message FROM recent_chat
         WHERE timestamp >= ?1 AND (?2 IS NULL OR username = ?2 COLLATE NOCASE)
         ORDER BY timestamp DESC, id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![since, query.username, limit], |r| {
        Ok(ChatLine {
            timestamp: r.get(0)?,
            username: r.get(1)?,
            message: r.get(2)?,
        })
    })?;
    let mut lines: Vec<ChatLine> = rows.collect::<Result<_, _>>()?;
    lines.reverse();
    Ok(lines)
}

// ---- outbound queue ---------------------------------------------------------------------------

/// Queues a message for the bot to send; returns its id.
pub fn enqueue_outbound(conn: &Connection, message: &str, now: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO outbound_messages (timestamp, message, sent) VALUES (?1, ?2, 0)",
    )?
    .execute(params![now, message])?;
    Ok(conn.last_insert_rowid())
}

/// Unsent messages due now: never tried, or tried `n` times and at least `2^n * 60` s past their
/// enqueue time, and tried fewer than `max_retries` times; oldest first.
pub fn unsent_outbound(
    conn: &Connection,
    limit: u32,
    max_retries: u32,
    now: i64,
) -> rusqlite::Result<Vec<OutboundMessage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, timestamp, message, COALESCE(retry_count, 0), last_error
         FROM outbound_messages
         WHERE sent = 0 AND COALESCE(retry_count, 0) < ?2
           AND (COALESCE(retry_count, 0) = 0
                OR timestamp + (1 << MIN(retry_count, 40)) * 60 <= ?3)
         ORDER BY timestamp ASC, id ASC LIMIT ?1",
    )?;
    let rows = stmt.query_map(params![limit.min(MAX_ROWS), max_retries, now], |r| {
        Ok(OutboundMessage {
            id: r.get(0)?,
            timestamp: r.get(1)?,
            message: r.get(2)?,
            retry_count: r.get(3)?,
            last_error: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Marks a message sent.
pub fn mark_outbound_sent(conn: &Connection, id: i64, ts: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE outbound_messages SET sent = 1, sent_timestamp = ?2 WHERE id = ?1",
    )?
    .execute(params![id, ts])?;
    Ok(())
}

/// Records a failed send: a permanent failure gives the message up (marks it sent), a transient
/// one counts a retry.
pub fn mark_outbound_failed(
    conn: &Connection,
    id: i64,
    error: &str,
    permanent: bool,
    ts: i64,
) -> rusqlite::Result<()> {
    if permanent {
        conn.prepare_cached(
            "UPDATE outbound_messages SET sent = 1, sent_timestamp = ?3,
                retry_count = COALESCE(retry_count, 0) + 1, last_error = ?2 WHERE id = ?1",
        )?
        .execute(params![id, error, ts])?;
    } else {
        conn.prepare_cached(
            "UPDATE outbound_messages SET retry_count = COALESCE(retry_count, 0) + 1,
                last_error = ?2 WHERE id = ?1",
        )?
        .execute(params![id, error])?;
    }
    Ok(())
}

// ---- stream bookkeeping -----------------------------------------------------------------------

/// The last stream sequence whose event is applied (0: none yet).
pub fn last_sequence(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: Option<i64> = conn
        .query_row(
            "SELECT last_sequence FROM rosey_stream_state WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}

/// The identity (creation time) of the stream the stored position belongs to, if recorded.
pub fn stream_identity(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT created FROM rosey_stream_identity WHERE id = 1",
        [],
        |r| r.get(0),
    )
    .optional()
}

/// Records the stream the stored position belongs to (in the transaction that sets it).
pub fn set_stream_identity(conn: &Connection, created: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO rosey_stream_identity (id, created) VALUES (1, ?1)
         ON CONFLICT(id) DO UPDATE SET created = excluded.created",
    )?
    .execute([created])?;
    Ok(())
}

/// Records that the event at `sequence` is about to be applied on its own, committed before
/// trying: if applying it ends the process, the count survives. Returns how many times it
/// has been tried so far, this one included.
pub fn note_attempt(conn: &Connection, sequence: u64) -> rusqlite::Result<u32> {
    conn.prepare_cached(
        "INSERT INTO rosey_attempt (id, sequence, attempts) VALUES (1, ?1, 1)
         ON CONFLICT(id) DO UPDATE SET
             attempts = CASE WHEN sequence = excluded.sequence THEN attempts + 1 ELSE 1 END,
             sequence = excluded.sequence",
    )?
    .execute([to_i64(sequence)])?;
    let attempts: i64 =
        conn.query_row("SELECT attempts FROM rosey_attempt WHERE id = 1", [], |r| {
            r.get(0)
        })?;
    Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
}

/// Forgets the attempt record (the event was applied or given up).
pub fn clear_attempt(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM rosey_attempt")?
        .execute([])?;
    Ok(())
}

/// Records the last applied stream sequence (in the transaction that applied it).
pub fn set_last_sequence(conn: &Connection, seq: u64, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO rosey_stream_state (id, last_sequence, updated_at) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET last_sequence = excluded.last_sequence,
                                       updated_at = excluded.updated_at",
    )?
    .execute(params![to_i64(seq), now])?;
    Ok(())
}

/// A dead letter kept locally until it is published to the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// Row id, to mark it published.
    pub id: i64,
    /// The letter.
    pub letter: rosey_plugin_api::db::DeadLetter,
}

/// Keeps a dead letter in the same transaction as the batch that gave it up, so it is published
/// even if the service dies right after committing.
pub fn insert_dead_letter(
    conn: &Connection,
    letter: &rosey_plugin_api::db::DeadLetter,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO rosey_dead_letters
            (created_at, stream_sequence, subject, payload, error, deliveries)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now,
        to_i64(letter.stream_sequence),
        letter.subject,
        letter.payload,
        letter.error,
        to_i64(letter.deliveries)
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Dead letters not yet published, oldest first.
pub fn unpublished_dead_letters(conn: &Connection) -> rusqlite::Result<Vec<StoredDeadLetter>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, stream_sequence, subject, payload, error, deliveries
         FROM rosey_dead_letters WHERE published = 0 ORDER BY id LIMIT 10000",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(StoredDeadLetter {
            id: r.get(0)?,
            letter: rosey_plugin_api::db::DeadLetter {
                stream_sequence: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                subject: r.get(2)?,
                payload: r.get(3)?,
                error: r.get(4)?,
                deliveries: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
            },
        })
    })?;
    rows.collect()
}

/// Marks dead letters as published.
pub fn mark_dead_letters_published(conn: &Connection, ids: &[i64]) -> rusqlite::Result<()> {
    let mut stmt =
        conn.prepare_cached("UPDATE rosey_dead_letters SET published = 1 WHERE id = ?1")?;
    for id in ids {
        stmt.execute([id])?;
    }
    Ok(())
}

// ---- plugin key-value storage -----------------------------------------------------------------

/// The default page size of `list`.
pub const DEFAULT_LIST_LIMIT: u32 = 100;

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::Invalid("key must not be empty".to_owned()));
    }
    if key.len() > kv::MAX_KEY_BYTES {
        return Err(StoreError::TooLarge(format!(
            "key is {} bytes; the limit is {}",
            key.len(),
            kv::MAX_KEY_BYTES
        )));
    }
    Ok(())
}

fn decode_value(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Invalid(format!("stored value is not JSON: {e}")))
}

/// A live (unexpired) value.
pub fn kv_get(
    conn: &Connection,
    plugin: &str,
    key: &str,
    now: i64,
) -> Result<Option<serde_json::Value>, StoreError> {
    check_key(key)?;
    let text: Option<String> = conn
        .prepare_cached(
            "SELECT value FROM rosey_plugin_kv
             WHERE plugin = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
        )?
        .query_row(params![plugin, key, now], |r| r.get(0))
        .optional()?;
    text.map(|t| decode_value(&t)).transpose()
}

/// Stores a value, replacing any other, expiring `ttl_seconds` after `now` when given.
pub fn kv_set(
    conn: &Connection,
    plugin: &str,
    key: &str,
    value: &serde_json::Value,
    ttl_seconds: Option<u64>,
    now: i64,
) -> Result<(), StoreError> {
    check_key(key)?;
    let text = serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("cannot encode value: {e}")))?;
    if text.len() > kv::MAX_VALUE_BYTES {
        return Err(StoreError::TooLarge(format!(
            "value is {} bytes of JSON; the limit is {}",
            text.len(),
            kv::MAX_VALUE_BYTES
        )));
    }
    let expires_at = match ttl_seconds {
        Some(0) => {
            return Err(StoreError::Invalid(
                "ttl_seconds must be at least 1 (omit it for no expiry)".to_owned(),
            ))
        }
        Some(ttl) => Some(now.saturating_add(to_i64(ttl))),
        None => None,
    };
    conn.prepare_cached(
        "INSERT INTO rosey_plugin_kv (plugin, key, value, expires_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(plugin, key) DO UPDATE SET value = excluded.value,
             expires_at = excluded.expires_at, updated_at = excluded.updated_at",
    )?
    .execute(params![plugin, key, text, expires_at, now])?;
    Ok(())
}

/// Deletes a key; true when a live key was deleted.
pub fn kv_delete(conn: &Connection, plugin: &str, key: &str, now: i64) -> Result<bool, StoreError> {
    check_key(key)?;
    let live = kv_get(conn, plugin, key, now)?.is_some();
    conn.prepare_cached("DELETE FROM rosey_plugin_kv WHERE plugin = ?1 AND key = ?2")?
        .execute(params![plugin, key])?;
    Ok(live)
}

/// One page of live keys in byte order, with `next` when more follow.
pub fn kv_list(
    conn: &Connection,
    plugin: &str,
    request: &kv::List,
    now: i64,
) -> Result<kv::ListReply, StoreError> {
    let limit = request
        .limit
        .unwrap_or(DEFAULT_LIST_LIMIT)
        .clamp(1, kv::MAX_LIST_LIMIT);
    let prefix = request.prefix.as_deref().unwrap_or("");
    let after = request.after.as_deref();
    let mut stmt = conn.prepare_cached(
        "SELECT key, value FROM rosey_plugin_kv
         WHERE plugin = ?1 AND (expires_at IS NULL OR expires_at > ?2)
           AND key >= ?3 AND substr(key, 1, length(?3)) = ?3
           AND (?4 IS NULL OR key > ?4)
         ORDER BY key LIMIT ?5",
    )?;
    let rows = stmt.query_map(params![plugin, now, prefix, after, limit + 1], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut items = Vec::new();
    let mut more = false;
    for row in rows {
        let (key, text) = row?;
        if items.len() == limit as usize {
            more = true;
            break;
        }
        let value = if request.values {
            Some(decode_value(&text)?)
        } else {
            None
        };
        items.push(kv::ListItem { key, value });
    }
    let next = if more {
        items.last().map(|i: &kv::ListItem| i.key.clone())
    } else {
        None
    };
    Ok(kv::ListReply { items, next })
}

/// Adds `by` to an integer value (a missing or expired key counts as 0) and returns the sum;
/// the key keeps its expiry. Call inside a transaction so concurrent increments are atomic.
pub fn kv_incr(
    conn: &Connection,
    plugin: &str,
    key: &str,
    by: i64,
    now: i64,
) -> Result<i64, StoreError> {
    check_key(key)?;
    let current: Option<(String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT value, expires_at FROM rosey_plugin_kv
             WHERE plugin = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
        )?
        .query_row(params![plugin, key, now], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (base, expires_at) = match current {
        None => (0, None),
        Some((text, expires_at)) => {
            let value = decode_value(&text)?;
            let n = value.as_i64().ok_or_else(|| {
                StoreError::Invalid(format!("key {key:?} holds {value}, not an integer"))
            })?;
            (n, expires_at)
        }
    };
    let sum = base
        .checked_add(by)
        .ok_or_else(|| StoreError::Invalid(format!("{base} + {by} overflows a 64-bit integer")))?;
    conn.prepare_cached(
        "INSERT INTO rosey_plugin_kv (plugin, key, value, expires_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(plugin, key) DO UPDATE SET value = excluded.value,
             expires_at = excluded.expires_at, updated_at = excluded.updated_at",
    )?
    .execute(params![plugin, key, sum.to_string(), expires_at, now])?;
    Ok(sum)
}

/// Deletes expired keys of every plugin; returns how many.
pub fn kv_purge_expired(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM rosey_plugin_kv WHERE expires_at IS NOT NULL AND expires_at <= ?1",
    )?
    .execute([now])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use rosey_plugin_api::Timestamp;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::initialize(&mut conn, 1_000).unwrap();
        conn
    }

    fn row(conn: &Connection, user: &str) -> (i64, i64, i64, i64, Option<i64>) {
        conn.query_row(
            "SELECT first_seen, last_seen, total_chat_lines, total_time_connected,
                    current_session_start FROM user_stats WHERE username = ?1",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
    }

    #[test]
    fn sessions_are_accounted_at_event_time() {
        let conn = db();
        user_joined(&conn, "alice", 100).unwrap();
        assert_eq!(row(&conn, "alice"), (100, 100, 0, 0, Some(100)));
        user_left(&conn, "alice", 160).unwrap();
        assert_eq!(row(&conn, "alice"), (100, 160, 0, 60, None));
        // A second leave without a join credits nothing.
        user_left(&conn, "alice", 500).unwrap();
        assert_eq!(row(&conn, "alice").3, 60);
        user_joined(&conn, "alice", 1000).unwrap();
        // A leave timestamped before the join (clock skew) never subtracts.
        user_left(&conn, "alice", 900).unwrap();
        assert_eq!(row(&conn, "alice"), (100, 1000, 0, 60, None));
        // A join while a session is open (its leave was missed) credits that session up to the
        // user's last sign of presence, not the unseen gap (here 30 days).
        user_joined(&conn, "alice", 2000).unwrap();
        chat_message(&conn, "alice", "still here", 2020).unwrap();
        user_joined(&conn, "alice", 2000 + 30 * 86_400).unwrap();
        user_left(&conn, "alice", 2010 + 30 * 86_400).unwrap();
        assert_eq!(row(&conn, "alice").3, 60 + 20 + 10);
        // Leaving an unknown user does nothing.
        user_left(&conn, "ghost", 10).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM user_stats", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn user_count_history_comes_back_oldest_first_from_a_time() {
        let conn = db();
        log_user_count(&conn, 3, 5, 300).unwrap();
        log_user_count(&conn, 1, 2, 100).unwrap();
        log_user_count(&conn, 2, 4, 200).unwrap();
        let got: Vec<(i64, u64, u64)> = user_count_history(&conn, 150)
            .unwrap()
            .iter()
            .map(|s| (s.timestamp, s.chat_users, s.connected_users))
            .collect();
        assert_eq!(got, [(200, 2, 4), (300, 3, 5)]);
    }

    #[test]
    fn chat_counts_known_users_and_skips_server_in_recent_chat() {
        let conn = db();
        user_joined(&conn, "bob", 10).unwrap();
        chat_message(&conn, "bob", "hi", 20).unwrap();
        chat_message(&conn, "bob", "'; DROP TABLE user_stats; --\0", 21).unwrap();
        chat_message(&conn, "stranger", "who?", 22).unwrap();
        chat_message(&conn, "Server", "notice", 23).unwrap();
        assert_eq!(row(&conn, "bob").2, 2);
        assert_eq!(row(&conn, "bob").1, 21);
        let lines = recent_chat(&conn, &RecentChatGet::default(), i64::MIN).unwrap();
        let texts: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(texts, ["hi", "'; DROP TABLE user_stats; --\0", "who?"]);
        let users: i64 = conn
            .query_row("SELECT COUNT(*) FROM user_stats", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 1, "chat never inserts users");
    }

    #[test]
    fn recent_chat_filters_and_orders_oldest_first() {
        let conn = db();
        for i in 0..10 {
            let user = if i % 2 == 0 { "Even" } else { "odd" };
            chat_message(&conn, user, &format!("m{i}"), 100 + i).unwrap();
        }
        let q = RecentChatGet {
            channel: None,
            limit: 3,
            username: None,
            since: None,
        };
        let got: Vec<String> = recent_chat(&conn, &q, i64::MIN)
            .unwrap()
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(got, ["m7", "m8", "m9"]);
        let q = RecentChatGet {
            channel: None,
            limit: 50,
            username: Some("even".to_owned()),
            since: Timestamp::from_secs(104),
        };
        let got: Vec<String> = recent_chat(&conn, &q, i64::MIN)
            .unwrap()
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(got, ["m4", "m6", "m8"]);
        // Past retention, a line is not returned even before the prune deletes it, whatever
        // `since` asks for.
        let got: Vec<String> = recent_chat(&conn, &q, 107)
            .unwrap()
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(got, ["m8"]);
        assert_eq!(prune_recent_chat(&conn, 105).unwrap(), 5);
        assert_eq!(
            recent_chat(&conn, &RecentChatGet::default(), i64::MIN)
                .unwrap()
                .len(),
            5
        );
    }

    #[test]
    fn high_water_only_rises_and_ignores_zero_connected() {
        let conn = db();
        let c = update_high_water(&conn, 5, Some(8), 100).unwrap();
        assert_eq!(
            c,
            HighWaterChange {
                users: true,
                connected: true
            }
        );
        let c = update_high_water(&conn, 4, Some(0), 200).unwrap();
        assert_eq!(c, HighWaterChange::default());
        let c = update_high_water(&conn, 5, None, 250).unwrap();
        assert_eq!(c, HighWaterChange::default(), "equal is not a record");
        let c = update_high_water(&conn, 6, Some(7), 300).unwrap();
        assert_eq!(
            c,
            HighWaterChange {
                users: true,
                connected: false
            }
        );
        let stats = channel_stats(&conn).unwrap();
        assert_eq!(
            stats.high_water_mark,
            HighWaterMark {
                users: 6,
                timestamp: Some(300)
            }
        );
        assert_eq!(
            stats.high_water_connected,
            HighWaterMark {
                users: 8,
                timestamp: Some(100)
            }
        );
    }

    #[test]
    fn outbound_backoff_is_measured_from_enqueue_time() {
        let conn = db();
        let id = enqueue_outbound(&conn, "hello", 1_000).unwrap();
        assert_eq!(unsent_outbound(&conn, 50, 3, 1_000).unwrap().len(), 1);
        mark_outbound_failed(&conn, id, "muted", false, 1_010).unwrap();
        // retry 1: due at enqueue + 2^1 * 60 = 1120.
        assert!(unsent_outbound(&conn, 50, 3, 1_119).unwrap().is_empty());
        let due = unsent_outbound(&conn, 50, 3, 1_120).unwrap();
        assert_eq!(due[0].retry_count, 1);
        assert_eq!(due[0].last_error.as_deref(), Some("muted"));
        mark_outbound_failed(&conn, id, "muted", false, 1_130).unwrap();
        // retry 2: due at 1000 + 240.
        assert!(unsent_outbound(&conn, 50, 3, 1_239).unwrap().is_empty());
        assert_eq!(unsent_outbound(&conn, 50, 3, 1_240).unwrap().len(), 1);
        mark_outbound_failed(&conn, id, "muted", false, 1_250).unwrap();
        // Three failures: given up with the default max_retries, still there with more.
        assert!(unsent_outbound(&conn, 50, 3, 100_000).unwrap().is_empty());
        assert_eq!(unsent_outbound(&conn, 50, 4, 100_000).unwrap().len(), 1);

        let other = enqueue_outbound(&conn, "bye", 2_000).unwrap();
        mark_outbound_failed(&conn, other, "banned", true, 2_001).unwrap();
        assert!(unsent_outbound(&conn, 50, 10, 100_000)
            .unwrap()
            .iter()
            .all(|m| m.id != other));
        let third = enqueue_outbound(&conn, "ok", 3_000).unwrap();
        mark_outbound_sent(&conn, third, 3_001).unwrap();
        let (sent, at): (i64, i64) = conn
            .query_row(
                "SELECT sent, sent_timestamp FROM outbound_messages WHERE id = ?1",
                [third],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((sent, at), (1, 3_001));
    }

    #[test]
    fn outbound_is_oldest_first_and_limited() {
        let conn = db();
        for i in 0..5 {
            enqueue_outbound(&conn, &format!("m{i}"), 100 + i).unwrap();
        }
        let got: Vec<String> = unsent_outbound(&conn, 2, 3, 200)
            .unwrap()
            .into_iter()
            .map(|m| m.message)
            .collect();
        assert_eq!(got, ["m0", "m1"]);
    }

    #[test]
    fn status_update_sets_columns_and_last_updated() {
        let conn = db();
        update_status(
            &conn,
            &[
                ("bot_name", SqlValue::Text("Rosey".into())),
                ("bot_rank", SqlValue::Real(1.5)),
                ("bot_connected", SqlValue::Integer(1)),
            ],
            777,
        )
        .unwrap();
        let got: (String, f64, i64, i64) = conn
            .query_row(
                "SELECT bot_name, bot_rank, bot_connected, last_updated FROM current_status",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(got, ("Rosey".to_owned(), 1.5, 1, 777));
    }

    #[test]
    fn user_stats_found_and_not_found() {
        let conn = db();
        user_joined(&conn, "carol", 50).unwrap();
        let s = user_stats(&conn, "carol").unwrap();
        assert!(s.found);
        assert_eq!(s.current_session_start, Some(50));
        assert!(!user_stats(&conn, "nobody").unwrap().found);
        let top = channel_stats(&conn).unwrap();
        assert_eq!(top.total_users_seen, 1);
        assert!(top.top_chatters.is_empty());
    }

    #[test]
    fn kv_namespaces_ttl_incr_and_paging() {
        let conn = db();
        kv_set(
            &conn,
            "quotes",
            "a",
            &serde_json::json!({"x": 1}),
            None,
            100,
        )
        .unwrap();
        assert!(kv_get(&conn, "markov", "a", 100).unwrap().is_none());
        assert_eq!(
            kv_get(&conn, "quotes", "a", 100).unwrap(),
            Some(serde_json::json!({"x": 1}))
        );
        kv_set(&conn, "quotes", "t", &serde_json::json!(1), Some(10), 100).unwrap();
        assert!(kv_get(&conn, "quotes", "t", 109).unwrap().is_some());
        assert!(kv_get(&conn, "quotes", "t", 110).unwrap().is_none());
        assert!(!kv_delete(&conn, "quotes", "t", 110).unwrap());
        assert_eq!(kv_incr(&conn, "quotes", "n", 1, 100).unwrap(), 1);
        assert_eq!(kv_incr(&conn, "quotes", "n", 41, 100).unwrap(), 42);
        assert_eq!(kv_incr(&conn, "quotes", "n", -50, 100).unwrap(), -8);
        assert!(matches!(
            kv_incr(&conn, "quotes", "a", 1, 100),
            Err(StoreError::Invalid(_))
        ));
        kv_set(
            &conn,
            "quotes",
            "max",
            &serde_json::json!(i64::MAX),
            None,
            100,
        )
        .unwrap();
        assert!(matches!(
            kv_incr(&conn, "quotes", "max", 1, 100),
            Err(StoreError::Invalid(_))
        ));
        let big = serde_json::Value::String("x".repeat(kv::MAX_VALUE_BYTES));
        assert!(matches!(
            kv_set(&conn, "quotes", "big", &big, None, 100),
            Err(StoreError::TooLarge(_))
        ));
        assert!(matches!(
            kv_set(&conn, "quotes", "", &big, None, 100),
            Err(StoreError::Invalid(_))
        ));

        for i in 0..7 {
            kv_set(
                &conn,
                "paged",
                &format!("k{i}"),
                &serde_json::json!(i),
                None,
                100,
            )
            .unwrap();
        }
        kv_set(&conn, "paged", "other", &serde_json::json!(0), None, 100).unwrap();
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page = kv_list(
                &conn,
                "paged",
                &kv::List {
                    channel: None,
                    prefix: Some("k".into()),
                    after: after.clone(),
                    limit: Some(3),
                    values: true,
                },
                100,
            )
            .unwrap();
            assert!(page.items.iter().all(|i| i.value.is_some()));
            keys.extend(page.items.into_iter().map(|i| i.key));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4", "k5", "k6"]);
        assert!(kv_delete(&conn, "paged", "k0", 100).unwrap());
        kv_set(&conn, "paged", "brief", &serde_json::json!(1), Some(5), 100).unwrap();
        assert_eq!(kv_purge_expired(&conn, 1_000).unwrap(), 1);
        assert!(kv_get(&conn, "paged", "k1", 1_000).unwrap().is_some());
    }

    #[test]
    fn stream_position_and_dead_letters_persist() {
        let conn = db();
        assert_eq!(last_sequence(&conn).unwrap(), 0);
        set_last_sequence(&conn, 42, 5).unwrap();
        assert_eq!(last_sequence(&conn).unwrap(), 42);
        let letter = rosey_plugin_api::db::DeadLetter {
            subject: "s".into(),
            payload: "{".into(),
            error: "bad".into(),
            stream_sequence: 7,
            deliveries: 1,
        };
        let id = insert_dead_letter(&conn, &letter, 5).unwrap();
        assert_eq!(unpublished_dead_letters(&conn).unwrap()[0].letter, letter);
        mark_dead_letters_published(&conn, &[id]).unwrap();
        assert!(unpublished_dead_letters(&conn).unwrap().is_empty());
    }
}
