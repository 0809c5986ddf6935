//! The SQLite schema: the original Rosey v0.5.0 tables exactly as it created them (so its
//! databases open and are extended in place), plus Rosey's own versioned bookkeeping tables.

use rusqlite::{Connection, OptionalExtension};
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// The version of Rosey's own bookkeeping tables (`rosey_*`); the original's tables never change.
pub const SCHEMA_VERSION: i64 = 2;

/// The original's eight tables and four indexes, statement by statement.
///
/// The text (whitespace included) is the original's, so `sqlite_master` of a database created
/// here is identical to one the Python service created; SQLite drops `IF NOT EXISTS` from the
/// stored text.
const ORIGINAL_DDL: [&str; 12] = [
    "CREATE TABLE IF NOT EXISTS user_stats (
                username TEXT PRIMARY KEY,
                first_seen INTEGER NOT NULL,
                last_seen INTEGER NOT NULL,
                total_chat_lines INTEGER DEFAULT 0,
                total_time_connected INTEGER DEFAULT 0,
                current_session_start INTEGER
            )",
    "CREATE TABLE IF NOT EXISTS user_actions (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                timestamp INTEGER NOT NULL,
                username TEXT NOT NULL,
                action_type TEXT NOT NULL,
                details TEXT
            )",
    "CREATE TABLE IF NOT EXISTS channel_stats (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                max_users INTEGER DEFAULT 0,
                max_users_timestamp INTEGER,
                max_connected INTEGER DEFAULT 0,
                max_connected_timestamp INTEGER,
                last_updated INTEGER
            )",
    "CREATE TABLE IF NOT EXISTS user_count_history (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                timestamp INTEGER NOT NULL,
                chat_users INTEGER NOT NULL,
                connected_users INTEGER NOT NULL
            )",
    "CREATE INDEX IF NOT EXISTS idx_user_count_timestamp
            ON user_count_history(timestamp)
        ",
    "CREATE TABLE IF NOT EXISTS recent_chat (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                timestamp INTEGER NOT NULL,
                username TEXT NOT NULL,
                message TEXT NOT NULL
            )",
    "CREATE INDEX IF NOT EXISTS idx_recent_chat_timestamp
            ON recent_chat(timestamp DESC)
        ",
    "CREATE TABLE IF NOT EXISTS current_status (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                bot_name TEXT,
                bot_rank REAL,
                bot_afk INTEGER DEFAULT 0,
                channel_name TEXT,
                current_chat_users INTEGER DEFAULT 0,
                current_connected_users INTEGER DEFAULT 0,
                playlist_items INTEGER DEFAULT 0,
                current_media_title TEXT,
                current_media_duration INTEGER,
                bot_start_time INTEGER,
                bot_connected INTEGER DEFAULT 0,
                last_updated INTEGER
            )",
    "CREATE TABLE IF NOT EXISTS outbound_messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                timestamp INTEGER NOT NULL,
                message TEXT NOT NULL,
                sent INTEGER DEFAULT 0,
                sent_timestamp INTEGER,
                retry_count INTEGER DEFAULT 0,
                last_error TEXT
            )",
    "CREATE INDEX IF NOT EXISTS idx_outbound_sent
            ON outbound_messages(sent, timestamp)
        ",
    "CREATE TABLE IF NOT EXISTS api_tokens (
                token TEXT PRIMARY KEY,
                description TEXT,
                created_at INTEGER NOT NULL,
                last_used INTEGER,
                revoked INTEGER DEFAULT 0
            )",
    "CREATE INDEX IF NOT EXISTS idx_api_tokens_revoked
            ON api_tokens(revoked, token)
        ",
];

/// The original's tables, for checks that they are left unchanged.
pub const ORIGINAL_TABLES: [&str; 8] = [
    "user_stats",
    "user_actions",
    "channel_stats",
    "user_count_history",
    "recent_chat",
    "current_status",
    "outbound_messages",
    "api_tokens",
];

/// The original's inline migrations: columns added to databases older than v0.5.0.
const ORIGINAL_MIGRATIONS: [(&str, &str, &str); 4] = [
    ("outbound_messages", "retry_count", "INTEGER DEFAULT 0"),
    ("outbound_messages", "last_error", "TEXT"),
    ("channel_stats", "max_connected", "INTEGER DEFAULT 0"),
    ("channel_stats", "max_connected_timestamp", "INTEGER"),
];

/// Rosey's own tables: schema version, stream position, plugin storage, dead letters.
const ROSEY_DDL: &str = "
CREATE TABLE IF NOT EXISTS rosey_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rosey_stream_identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rosey_attempt (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sequence INTEGER NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rosey_maintenance (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_run INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rosey_stream_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_sequence INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rosey_plugin_kv (
    plugin TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires_at INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_rosey_plugin_kv_expires
    ON rosey_plugin_kv(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS rosey_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at INTEGER NOT NULL,
    stream_sequence INTEGER NOT NULL,
    subject TEXT NOT NULL,
    payload TEXT NOT NULL,
    error TEXT NOT NULL,
    deliveries INTEGER NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
";

/// The database could not be opened or brought to the expected schema.
#[derive(Debug, Error)]
pub enum SchemaError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer Rosey.
    #[error(
        "the database has Rosey schema version {found}; this build knows up to {SCHEMA_VERSION}"
    )]
    TooNew {
        /// The version in the file.
        found: i64,
    },
}

/// How a connection will be used, which decides its pragmas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Writes, committed with a full sync so an acknowledged event survives a power cut.
    Writer,
    /// Only reads; refuses writes so a query bug cannot change data.
    Reader,
}

/// Opens a connection to the database file with the pragmas every connection needs;
/// `busy_timeout` is how long it waits for another writer before reporting the file busy.
///
/// No exclusive locking: other processes may read the file and insert rows.
pub fn open(path: &Path, role: Role, busy_timeout: Duration) -> Result<Connection, SchemaError> {
    let conn = Connection::open(path)?;
    configure(&conn, role, busy_timeout)?;
    Ok(conn)
}

/// Applies the per-connection pragmas.
pub fn configure(conn: &Connection, role: Role, busy_timeout: Duration) -> Result<(), SchemaError> {
    conn.busy_timeout(busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(64);
    match role {
        Role::Writer => {
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        Role::Reader => {
            conn.pragma_update(None, "query_only", true)?;
            // A small page cache per reader keeps the service's memory low.
            conn.pragma_update(None, "cache_size", -1024)?;
        }
    }
    Ok(())
}

/// Switches the file to write-ahead logging, so readers never wait for the writer.
pub fn enable_wal(conn: &Connection) -> Result<(), SchemaError> {
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite refused write-ahead logging (in-memory or read-only database?)");
    }
    Ok(())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, rusqlite::Error> {
    let mut stmt = conn.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
    stmt.exists(rusqlite::params![table, column])
}

/// Creates whatever is missing (tables, indexes, seed rows, migrated columns) without touching
/// what exists; `now` stamps the seed rows.
pub fn initialize(conn: &mut Connection, now: i64) -> Result<(), SchemaError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for ddl in ORIGINAL_DDL {
        tx.execute(ddl, [])?;
    }
    for (table, column, decl) in ORIGINAL_MIGRATIONS {
        if !has_column(&tx, table, column)? {
            // Identifiers come from the constant table above, never from input.
            tx.execute(
                &format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"),
                [],
            )?;
        }
    }
    let status_rows: i64 = tx.query_row("SELECT COUNT(*) FROM current_status", [], |r| r.get(0))?;
    if status_rows == 0 {
        tx.execute(
            "INSERT INTO current_status (id, last_updated) VALUES (1, ?1)",
            [now],
        )?;
    }
    let channel_rows: i64 = tx.query_row("SELECT COUNT(*) FROM channel_stats", [], |r| r.get(0))?;
    if channel_rows == 0 {
        tx.execute(
            "INSERT INTO channel_stats (id, max_users, last_updated) VALUES (1, 0, ?1)",
            [now],
        )?;
    }
    tx.execute_batch(ROSEY_DDL)?;
    let version: Option<i64> = tx
        .query_row(
            "SELECT schema_version FROM rosey_meta WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match version {
        None => {
            tx.execute(
                "INSERT INTO rosey_meta (id, schema_version, created_at) VALUES (1, ?1, ?2)",
                [SCHEMA_VERSION, now],
            )?;
        }
        Some(found) if found > SCHEMA_VERSION => return Err(SchemaError::TooNew { found }),
        Some(found) if found < SCHEMA_VERSION => {
            tx.execute(
                "UPDATE rosey_meta SET schema_version = ?1 WHERE id = 1",
                [SCHEMA_VERSION],
            )?;
        }
        Some(_) => {}
    }
    tx.execute_batch(crate::tokens::DDL)?;
    let moved = crate::tokens::adopt_original_tokens(&tx)?;
    if moved > 0 {
        tracing::info!(
            moved,
            "API tokens moved from api_tokens to rosey_api_tokens (kept as SHA-256)"
        );
    }
    tx.execute(
        "INSERT OR IGNORE INTO rosey_stream_state (id, last_sequence, updated_at) VALUES (1, 0, ?1)",
        [now],
    )?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_sql(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL \
                 AND name NOT LIKE 'rosey_%' AND name NOT LIKE 'idx_rosey_%' ORDER BY name",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn fixture() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/rosey-v0.5-sample.db")
    }

    #[test]
    fn fresh_schema_is_the_originals_text_for_text() {
        let mut conn = Connection::open_in_memory().unwrap();
        initialize(&mut conn, 1_700_000_000).unwrap();
        let path = fixture();
        if !path.exists() {
            eprintln!(
                "fixture {} missing; skipping the comparison",
                path.display()
            );
            return;
        }
        let original =
            Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        assert_eq!(schema_sql(&conn), schema_sql(&original));
    }

    #[test]
    fn seeds_once_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        initialize(&mut conn, 100).unwrap();
        initialize(&mut conn, 200).unwrap();
        let (n, updated): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), MAX(last_updated) FROM current_status",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, updated), (1, 100));
        let max_users: i64 = conn
            .query_row(
                "SELECT max_users FROM channel_stats WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(max_users, 0);
        let version: i64 = conn
            .query_row("SELECT schema_version FROM rosey_meta", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn old_tables_get_the_migrated_columns() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE outbound_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, \
             timestamp INTEGER NOT NULL, message TEXT NOT NULL, sent INTEGER DEFAULT 0, \
             sent_timestamp INTEGER);
             CREATE TABLE channel_stats (id INTEGER PRIMARY KEY CHECK (id = 1), \
             max_users INTEGER DEFAULT 0, max_users_timestamp INTEGER, last_updated INTEGER);",
        )
        .unwrap();
        initialize(&mut conn, 5).unwrap();
        for (table, column, _) in ORIGINAL_MIGRATIONS {
            assert!(
                has_column(&conn, table, column).unwrap(),
                "{table}.{column}"
            );
        }
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        initialize(&mut conn, 5).unwrap();
        conn.execute("UPDATE rosey_meta SET schema_version = 99", [])
            .unwrap();
        assert!(matches!(
            initialize(&mut conn, 6),
            Err(SchemaError::TooNew { found: 99 })
        ));
    }
}
