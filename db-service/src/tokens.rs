//! API tokens for `/api/say`, kept as SHA-256 digests with an 8-character preview in
//! `rosey_api_tokens`, so a copy of the database file lets nobody in.
//!
//! The original kept tokens in plaintext in `api_tokens`; [`adopt_original_tokens`] moves them
//! here on start and overwrites their text with a marker no client can present (the row is
//! also revoked there, so the original itself would refuse it), leaving its schema unchanged.

use base64::Engine as _;
use rosey_plugin_api::db::{
    TokenCreated, TokenInfo, TokenVerdict, TOKEN_PREFIX_MIN, TOKEN_PREVIEW_CHARS,
};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

/// The table and index, created with Rosey's other tables.
pub const DDL: &str = "
CREATE TABLE IF NOT EXISTS rosey_api_tokens (
    hash TEXT PRIMARY KEY,
    preview TEXT NOT NULL,
    description TEXT,
    created_at INTEGER NOT NULL,
    last_used INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_rosey_api_tokens_preview ON rosey_api_tokens(preview);
";

/// What a moved token's text becomes in the original's table (followed by the row id, since
/// `token` is that table's primary key).
pub const MOVED_MARKER: &str = "rosey-moved:";

/// The hex SHA-256 of a token's text.
pub fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn preview_of(token: &str) -> String {
    token.chars().take(TOKEN_PREVIEW_CHARS).collect()
}

fn shown(preview: &str) -> String {
    format!("{preview}...")
}

/// One `api_tokens` row: rowid, token, description, created_at, last_used, revoked.
type OriginalToken = (i64, String, Option<String>, i64, Option<i64>, i64);

/// Moves the original's `api_tokens` rows into `rosey_api_tokens` (keeping description, dates
/// and revocation) and overwrites their text; returns how many moved. Idempotent.
pub fn adopt_original_tokens(conn: &Connection) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare(
        "SELECT rowid, token, description, created_at, last_used, COALESCE(revoked, 0)
         FROM api_tokens WHERE token NOT LIKE 'rosey-moved:%'",
    )?;
    let rows: Vec<OriginalToken> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (rowid, token, description, created_at, last_used, revoked) in &rows {
        conn.execute(
            "INSERT OR IGNORE INTO rosey_api_tokens
                 (hash, preview, description, created_at, last_used, revoked)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                digest(token),
                preview_of(token),
                description,
                created_at,
                last_used,
                i64::from(*revoked != 0)
            ],
        )?;
        conn.execute(
            "UPDATE api_tokens SET token = ?2, revoked = 1 WHERE rowid = ?1",
            params![rowid, format!("{MOVED_MARKER}{rowid}")],
        )?;
    }
    Ok(rows.len())
}

/// Moves every token of `further` (a further channel's file, already initialized) into the
/// deployment's token table in the file at `first`, keeping a token already there, then empties
/// `further`'s table; returns how many rows left `further`. Idempotent: a crash between the two
/// files' commits leaves copies that the next start moves again.
pub fn gather_into(further: &Connection, first: &std::path::Path) -> rusqlite::Result<usize> {
    let waiting: i64 =
        further.query_row("SELECT COUNT(*) FROM rosey_api_tokens", [], |r| r.get(0))?;
    if waiting == 0 {
        return Ok(0);
    }
    further.execute(
        "ATTACH DATABASE ?1 AS deployment",
        [first.to_string_lossy().as_ref()],
    )?;
    let moved = (|| {
        further.execute(
            "INSERT OR IGNORE INTO deployment.rosey_api_tokens
                 (hash, preview, description, created_at, last_used, revoked)
             SELECT hash, preview, description, created_at, last_used, revoked
             FROM main.rosey_api_tokens",
            [],
        )?;
        further.execute("DELETE FROM main.rosey_api_tokens", [])
    })();
    further.execute("DETACH DATABASE deployment", [])?;
    moved
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The operating system gave no randomness.
    #[error("no randomness for a token: {0}")]
    Random(String),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Makes a token like the original's `secrets.token_urlsafe(32)` and stores its digest.
pub fn create(conn: &Connection, description: &str, now: i64) -> Result<TokenCreated, CreateError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| CreateError::Random(e.to_string()))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let preview = preview_of(&token);
    conn.execute(
        "INSERT INTO rosey_api_tokens (hash, preview, description, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![digest(&token), preview, description, now],
    )?;
    Ok(TokenCreated {
        token_preview: shown(&preview),
        token,
        description: description.to_owned(),
        created_at: now,
    })
}

/// Tokens newest first, by preview.
pub fn list(conn: &Connection, include_revoked: bool) -> rusqlite::Result<Vec<TokenInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT preview, description, created_at, last_used, revoked FROM rosey_api_tokens
         WHERE ?1 OR revoked = 0 ORDER BY created_at DESC, rowid DESC",
    )?;
    let rows = stmt.query_map([include_revoked], |r| {
        Ok(TokenInfo {
            token_preview: shown(&r.get::<_, String>(0)?),
            description: r.get(1)?,
            created_at: r.get(2)?,
            last_used: r.get(3)?,
            revoked: r.get::<_, i64>(4)? != 0,
        })
    })?;
    rows.collect()
}

/// Revokes by prefix as the original did: a whole token matches itself; a prefix of at least
/// [`TOKEN_PREFIX_MIN`] characters matches every token with that preview (the stored part of a
/// token is its first 8 characters). Returns how many were revoked; shorter prefixes revoke
/// nothing unless they are a whole token.
pub fn revoke(conn: &Connection, prefix: &str) -> rusqlite::Result<u64> {
    let exact = conn.execute(
        "UPDATE rosey_api_tokens SET revoked = 1 WHERE hash = ?1 AND revoked = 0",
        [digest(prefix)],
    )?;
    if exact > 0 || prefix.chars().count() < TOKEN_PREFIX_MIN {
        return Ok(exact as u64);
    }
    let by_preview = conn.execute(
        "UPDATE rosey_api_tokens SET revoked = 1 WHERE preview = ?1 AND revoked = 0",
        [preview_of(prefix)],
    )?;
    Ok(by_preview as u64)
}

/// Whether `token` is known and not revoked; a valid token's `last_used` becomes `now`.
pub fn verify(conn: &Connection, token: &str, now: i64) -> rusqlite::Result<TokenVerdict> {
    let hash = digest(token);
    let preview: Option<String> = conn
        .query_row(
            "SELECT preview FROM rosey_api_tokens WHERE hash = ?1 AND revoked = 0",
            [&hash],
            |r| r.get(0),
        )
        .optional()?;
    if preview.is_some() {
        conn.execute(
            "UPDATE rosey_api_tokens SET last_used = ?2 WHERE hash = ?1",
            params![hash, now],
        )?;
    }
    Ok(TokenVerdict {
        valid: preview.is_some(),
        token_preview: preview.as_deref().map(shown),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::initialize(&mut conn, 1_700_000_000).unwrap();
        conn
    }

    #[test]
    fn original_tokens_move_and_keep_working() {
        let conn = db();
        conn.execute(
            "INSERT INTO api_tokens (token, description, created_at) VALUES ('plain-token-123', 'old', 5)",
            [],
        )
        .unwrap();
        assert_eq!(adopt_original_tokens(&conn).unwrap(), 1);
        assert_eq!(adopt_original_tokens(&conn).unwrap(), 0, "idempotent");
        let text: String = conn
            .query_row("SELECT token FROM api_tokens", [], |r| r.get(0))
            .unwrap();
        assert!(text.starts_with(MOVED_MARKER), "{text}");
        assert!(verify(&conn, "plain-token-123", 9).unwrap().valid);
        assert!(!verify(&conn, &text, 9).unwrap().valid);
        let listed = list(&conn, false).unwrap();
        assert_eq!(listed[0].token_preview, "plain-to...");
        assert_eq!(listed[0].last_used, Some(9));
    }

    #[test]
    fn a_further_files_tokens_join_the_first_file() {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            let mut conn = Connection::open(dir.path().join(name)).unwrap();
            crate::schema::initialize(&mut conn, 1_700_000_000).unwrap();
            conn
        };
        let first = open("bot_data.db");
        let further = open("bot_data.second.db");
        let kept = create(&first, "first", 1).unwrap();
        let stray = create(&further, "made by an older rosey-db", 2).unwrap();
        revoke(&further, &stray.token).unwrap();
        let live = create(&further, "still live", 3).unwrap();
        let path = dir.path().join("bot_data.db");
        assert_eq!(gather_into(&further, &path).unwrap(), 2);
        assert_eq!(gather_into(&further, &path).unwrap(), 0, "idempotent");
        assert!(list(&further, true).unwrap().is_empty());
        assert!(verify(&first, &kept.token, 4).unwrap().valid);
        assert!(verify(&first, &live.token, 4).unwrap().valid);
        assert!(
            !verify(&first, &stray.token, 4).unwrap().valid,
            "stays revoked"
        );
        assert_eq!(list(&first, true).unwrap().len(), 3);
    }

    #[test]
    fn create_verify_revoke() {
        let conn = db();
        let made = create(&conn, "overlay", 10).unwrap();
        assert_eq!(made.token.len(), 43);
        assert!(verify(&conn, &made.token, 11).unwrap().valid);
        assert!(!verify(&conn, "nope", 11).unwrap().valid);
        assert_eq!(revoke(&conn, &made.token[..7]).unwrap(), 0, "too short");
        assert_eq!(revoke(&conn, &made.token[..8]).unwrap(), 1);
        assert!(!verify(&conn, &made.token, 12).unwrap().valid);
        assert!(list(&conn, false).unwrap().is_empty());
        assert!(list(&conn, true).unwrap()[0].revoked);
        let stored: String = conn
            .query_row("SELECT hash FROM rosey_api_tokens", [], |r| r.get(0))
            .unwrap();
        assert!(!stored.contains(&made.token));
    }
}
