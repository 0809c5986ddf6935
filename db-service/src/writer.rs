//! The ingestion writer: one thread owning the write connection, applying a batch of events in
//! one transaction together with the last applied stream sequence.
//!
//! Events already applied (sequence at or below the stored one) are skipped, so a redelivered
//! batch is never applied twice. An event that can never apply (undecodable, invalid, refused by
//! SQLite for a reason retrying cannot fix, or delivered too often) becomes a dead letter, kept
//! in the same transaction until it is published. Failures that may pass (a busy or full
//! database) are retried in place, so later events never overtake earlier ones.

use crate::events;
use crate::stats::Stats;
use crate::store::{self, StoredDeadLetter};
use bytes::Bytes;
use rosey_plugin_api::db::DeadLetter;
use rosey_plugin_api::Timestamp;
use rusqlite::{Connection, TransactionBehavior};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// One write event as it arrived.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Its stream sequence; 0 without JetStream (no position to record).
    pub sequence: u64,
    /// The subject it was published on.
    pub subject: String,
    /// The raw payload.
    pub payload: Bytes,
    /// How often the stream delivered it.
    pub deliveries: u64,
    /// When this service read it, in Unix seconds by this service's clock: the time given to an
    /// event that carries none. Never the stream's own time, which is nats-server's clock (another
    /// machine's, in a cluster), so retention and "last N hours" agree with how it was stamped.
    pub received: i64,
}

/// What a committed batch did.
#[derive(Debug, Default)]
pub struct Committed {
    /// Events applied.
    pub applied: usize,
    /// Events skipped as already applied.
    pub skipped: usize,
    /// The stored stream position after the batch.
    pub last_sequence: u64,
    /// When this batch wrote dead letters or marked some published: every dead letter still
    /// unpublished, to publish.
    pub dead: Option<Vec<StoredDeadLetter>>,
}

/// The writer thread is gone (it only stops when the service does).
#[derive(Debug, Error)]
#[error("the database writer has stopped")]
pub struct WriterGone;

enum Job {
    Apply {
        items: Vec<Incoming>,
        published: Vec<i64>,
        reply: oneshot::Sender<Committed>,
    },
    ReadIdentity {
        reply: oneshot::Sender<Option<String>>,
    },
    SetPosition {
        to: Option<u64>,
        identity: String,
        reply: oneshot::Sender<()>,
    },
}

/// Settings of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// An event whose application ended the service more often than this (each try counted
    /// in SQLite before it starts) is dead-lettered instead of tried again.
    pub max_redeliveries: u64,
}

/// The handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

/// The largest payload text kept in a dead letter.
const MAX_DEAD_PAYLOAD: usize = events::MAX_TEXT_BYTES;

/// The largest encoded dead letter: well under NATS's default 1 MiB `max_payload`, however
/// much JSON escaping (up to six bytes per control byte) grows the kept payload.
pub const MAX_DEAD_LETTER_BYTES: usize = 256 * 1024;

impl Writer {
    /// Starts the writer thread on `conn` (already initialized).
    pub fn start(
        conn: Connection,
        config: WriterConfig,
        stats: Arc<Stats>,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(2);
        let handle = std::thread::Builder::new()
            .name("rosey-db-writer".to_owned())
            .spawn(move || run(conn, config, stats, rx))?;
        Ok((Writer { jobs: tx }, handle))
    }

    /// Applies a batch; `published` are dead-letter ids published since the last batch.
    pub async fn apply(
        &self,
        items: Vec<Incoming>,
        published: Vec<i64>,
    ) -> Result<Committed, WriterGone> {
        self.ask(|reply| Job::Apply {
            items,
            published,
            reply,
        })
        .await
    }

    /// The identity (creation time) of the stream the stored position belongs to.
    pub async fn stream_identity(&self) -> Result<Option<String>, WriterGone> {
        self.ask(|reply| Job::ReadIdentity { reply }).await
    }

    /// Records, in one transaction, the position to resume from (when it changes) and the
    /// stream it belongs to: a crash in between must not pair one stream's position with the
    /// other's identity.
    pub async fn set_position(&self, to: Option<u64>, identity: String) -> Result<(), WriterGone> {
        self.ask(|reply| Job::SetPosition {
            to,
            identity,
            reply,
        })
        .await
    }

    /// Sends the job `make` builds around a reply channel and waits for the answer.
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Job) -> Result<T, WriterGone> {
        let (reply, rx) = oneshot::channel();
        self.jobs.send(make(reply)).await.map_err(|_| WriterGone)?;
        rx.await.map_err(|_| WriterGone)
    }
}

fn run(mut conn: Connection, config: WriterConfig, stats: Arc<Stats>, mut rx: mpsc::Receiver<Job>) {
    while let Some(job) = rx.blocking_recv() {
        match job {
            Job::Apply {
                items,
                published,
                reply,
            } => {
                let committed = if items.iter().any(|i| i.deliveries > SUSPECT_DELIVERIES) {
                    apply_one_by_one(&mut conn, &items, &published, config, &stats)
                } else {
                    retrying(&stats, || {
                        apply_batch(&mut conn, &items, &published, config, &stats, 0)
                    })
                };
                let _ = reply.send(committed);
            }
            Job::ReadIdentity { reply } => {
                let identity = retrying(&stats, || store::stream_identity(&conn));
                let _ = reply.send(identity);
            }
            Job::SetPosition {
                to,
                identity,
                reply,
            } => {
                retrying(&stats, || {
                    let tx = conn.transaction()?;
                    if let Some(to) = to {
                        store::set_last_sequence(&tx, to, Timestamp::now().secs())?;
                    }
                    store::set_stream_identity(&tx, &identity)?;
                    tx.commit()
                });
                let _ = reply.send(());
            }
        }
    }
}

/// Deliveries past which a batch is suspected of having ended the service (a crash while
/// applying it): it is then applied one event per transaction.
const SUSPECT_DELIVERIES: u64 = 2;

/// Applies `items` one per transaction, each try of each event counted in SQLite first: if
/// one of them keeps ending the service, it is the first unapplied one, and only it is given
/// up. Events merely redelivered (a restart, a lost ack) are applied like any other.
fn apply_one_by_one(
    conn: &mut Connection,
    items: &[Incoming],
    published: &[i64],
    config: WriterConfig,
    stats: &Stats,
) -> Committed {
    let mut total = Committed::default();
    let mut published = published;
    for item in items {
        let already = retrying(stats, || store::last_sequence(conn));
        let attempts = if item.sequence == 0 || item.sequence <= already {
            0
        } else {
            retrying(stats, || store::note_attempt(conn, item.sequence))
        };
        let one = retrying(stats, || {
            apply_batch(
                conn,
                std::slice::from_ref(item),
                published,
                config,
                stats,
                attempts,
            )
        });
        published = &[];
        total.applied += one.applied;
        total.skipped += one.skipped;
        total.last_sequence = one.last_sequence;
        if one.dead.is_some() {
            total.dead = one.dead;
        }
    }
    if items.is_empty() {
        return retrying(stats, || {
            apply_batch(conn, &[], published, config, stats, 0)
        });
    }
    total
}

/// Runs `op` until it succeeds, backing off; events must not be skipped or reordered, so a
/// failing database stalls ingestion (loudly) rather than losing data.
fn retrying<T>(stats: &Stats, mut op: impl FnMut() -> rusqlite::Result<T>) -> T {
    let mut pause = Duration::from_millis(20);
    let mut attempt = 0_u32;
    loop {
        match op() {
            Ok(v) => {
                if attempt > 0 {
                    tracing::info!(
                        attempts = attempt + 1,
                        "database write succeeded after retrying"
                    );
                }
                return v;
            }
            Err(e) => {
                attempt += 1;
                stats.add("ingest.write_retries", 1);
                if store::is_transient(&e) {
                    if attempt == 1 || attempt % 50 == 0 {
                        tracing::warn!(error = %e, attempt, "database busy; retrying the batch");
                    }
                } else {
                    tracing::error!(error = %e, attempt, "database write failed; retrying the batch");
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn dead_letter(item: &Incoming, error: String) -> DeadLetter {
    let mut keep = item.payload.len().min(MAX_DEAD_PAYLOAD);
    loop {
        let letter = DeadLetter {
            subject: item.subject.clone(),
            payload: String::from_utf8_lossy(&item.payload[..keep]).into_owned(),
            error: error.clone(),
            stream_sequence: item.sequence,
            deliveries: item.deliveries,
        };
        // Encoded, it must stay publishable: a letter NATS refuses would block every later one.
        let size = serde_json::to_vec(&letter).map_or(0, |v| v.len());
        if size <= MAX_DEAD_LETTER_BYTES || keep == 0 {
            return letter;
        }
        keep /= 2;
    }
}

fn note_bad(stats: &Stats, kind: &str, item: &Incoming, error: &str) {
    let key = format!("ingest.dead.{kind}.{}", item.subject);
    if stats.first_of_kind(&key) {
        tracing::warn!(
            subject = %item.subject,
            sequence = item.sequence,
            %error,
            "write event cannot be applied; sent to the dead-letter stream (further ones of this kind are only counted)"
        );
    }
}

/// Applies `items` in one transaction. `tries` is how many times the single event in `items`
/// has been tried already (0 when not counted): past the limit it is given up.
fn apply_batch(
    conn: &mut Connection,
    items: &[Incoming],
    published: &[i64],
    config: WriterConfig,
    stats: &Stats,
    tries: u32,
) -> rusqlite::Result<Committed> {
    let now = Timestamp::now().secs();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    store::mark_dead_letters_published(&tx, published)?;
    let start = store::last_sequence(&tx)?;
    let mut last = start;
    let mut out = Committed::default();
    let mut dead_now = false;
    for item in items {
        if item.sequence != 0 && item.sequence <= last {
            out.skipped += 1;
            continue;
        }
        let result: Result<(), (String, String)> = if u64::from(tries) > config.max_redeliveries {
            Err((
                "redeliveries".to_owned(),
                format!(
                    "applying it ended the service {} times (limit {}); given up",
                    tries - 1,
                    config.max_redeliveries
                ),
            ))
        } else {
            match events::decode(&item.subject, &item.payload) {
                Err(body) => Err((body.error.code.as_str().to_owned(), body.to_string())),
                Ok(event) => {
                    let sp = tx.event_savepoint()?;
                    match event.apply(&sp, item.received) {
                        Ok(()) => {
                            sp.commit()?;
                            if let events::WriteEvent::Status(s) = &event {
                                for key in &s.ignored {
                                    let kind = "ingest.ignored_status_key";
                                    if stats.first_of_kind(&format!("{kind}.{key}")) {
                                        tracing::warn!(%key, "status.update key is not a status column; ignored");
                                    }
                                }
                            }
                            Ok(())
                        }
                        // Rolls back to the savepoint on drop; the whole batch is retried.
                        Err(e) if store::is_transient(&e) => return Err(e),
                        Err(e) => Err(("sqlite".to_owned(), format!("sqlite refused it: {e}"))),
                    }
                }
            }
        };
        match result {
            Ok(()) => out.applied += 1,
            Err((kind, error)) => {
                note_bad(stats, &kind, item, &error);
                store::insert_dead_letter(&tx, &dead_letter(item, error), now)?;
                dead_now = true;
            }
        }
        if item.sequence != 0 {
            last = item.sequence;
        }
    }
    if last != start {
        store::set_last_sequence(&tx, last, now)?;
    }
    if tries > 0 {
        store::clear_attempt(&tx)?;
    }
    if dead_now || !published.is_empty() {
        out.dead = Some(store::unpublished_dead_letters(&tx)?);
    }
    tx.commit()?;
    out.last_sequence = last;
    stats.add("ingest.applied", out.applied as u64);
    stats.add("ingest.skipped_duplicates", out.skipped as u64);
    Ok(out)
}

/// Savepoints on a shared transaction reference (rusqlite's `Transaction::savepoint` wants
/// `&mut`, which the loop above cannot give while it also uses the transaction).
trait SavepointExt {
    fn event_savepoint(&self) -> rusqlite::Result<Savepoint<'_>>;
}

impl SavepointExt for rusqlite::Transaction<'_> {
    fn event_savepoint(&self) -> rusqlite::Result<Savepoint<'_>> {
        self.execute_batch("SAVEPOINT rosey_event")?;
        Ok(Savepoint {
            conn: self,
            done: false,
        })
    }
}

/// A savepoint released by `commit` and rolled back when dropped uncommitted.
struct Savepoint<'a> {
    conn: &'a Connection,
    done: bool,
}

impl Savepoint<'_> {
    fn commit(mut self) -> rusqlite::Result<()> {
        self.done = true;
        self.conn.execute_batch("RELEASE rosey_event")
    }
}

impl std::ops::Deref for Savepoint<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .conn
                .execute_batch("ROLLBACK TO rosey_event; RELEASE rosey_event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use rosey_plugin_api::subjects::db as subject;

    fn item(seq: u64, subject: &str, payload: &str) -> Incoming {
        Incoming {
            sequence: seq,
            subject: subject.to_owned(),
            payload: Bytes::from(payload.to_owned()),
            deliveries: 1,
            received: 500,
        }
    }

    fn conn() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        schema::initialize(&mut c, 1).unwrap();
        c
    }

    const CONFIG: WriterConfig = WriterConfig {
        max_redeliveries: 5,
    };

    #[test]
    fn a_dead_letter_stays_publishable_whatever_its_payload() {
        // NUL bytes are escaped as \u0000: six bytes each once encoded.
        let mut nuls = item(9, subject::MESSAGE_LOG, "");
        nuls.payload = Bytes::from(vec![0_u8; 300 * 1024]);
        let letter = dead_letter(&nuls, "not JSON".into());
        let size = serde_json::to_vec(&letter).unwrap().len();
        assert!(size <= MAX_DEAD_LETTER_BYTES, "{size}");
        assert!(letter.payload.len() > 10_000, "as much as fits is kept");
        assert_eq!(
            (letter.stream_sequence, letter.error.as_str()),
            (9, "not JSON")
        );
    }

    #[test]
    fn applies_in_order_records_position_and_skips_replays() {
        let mut c = conn();
        let stats = Stats::default();
        let batch = vec![
            item(
                1,
                subject::USER_JOINED,
                r#"{"username":"a","timestamp":100}"#,
            ),
            item(
                2,
                subject::MESSAGE_LOG,
                r#"{"username":"a","message":"hi"}"#,
            ),
            item(3, subject::USER_LEFT, r#"{"username":"a","timestamp":130}"#),
        ];
        let out = apply_batch(&mut c, &batch, &[], CONFIG, &stats, 0).unwrap();
        assert_eq!((out.applied, out.skipped, out.last_sequence), (3, 0, 3));
        let again = apply_batch(&mut c, &batch, &[], CONFIG, &stats, 0).unwrap();
        assert_eq!((again.applied, again.skipped), (0, 3));
        let (lines, time, last_seen): (i64, i64, i64) = c
            .query_row(
                "SELECT total_chat_lines, total_time_connected, last_seen FROM user_stats",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        // The chat line had no timestamp: it is accounted at the stream's receipt time.
        assert_eq!((lines, time, last_seen), (1, 30, 500));
    }

    #[test]
    fn transient_failures_are_retried_until_they_pass() {
        let stats = Stats::default();
        let mut failures = 2;
        let value = retrying(&stats, || {
            if failures > 0 {
                failures -= 1;
                Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("database is locked".to_owned()),
                ))
            } else {
                Ok(7)
            }
        });
        assert_eq!(value, 7);
        assert_eq!(stats.get("ingest.write_retries"), 2);
    }

    #[test]
    fn a_locked_database_stalls_the_batch_instead_of_losing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.db");
        // A short busy timeout, so the locked attempt fails fast.
        let mut writer =
            schema::open(&path, schema::Role::Writer, Duration::from_millis(10)).unwrap();
        schema::enable_wal(&writer).unwrap();
        schema::initialize(&mut writer, 1).unwrap();
        let mut other = Connection::open(&path).unwrap();
        let lock = other
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let stats = Stats::default();
        let batch = vec![item(1, subject::USER_JOINED, r#"{"username":"a"}"#)];
        let err = apply_batch(&mut writer, &batch, &[], CONFIG, &stats, 0).unwrap_err();
        assert!(store::is_transient(&err), "{err}");
        lock.rollback().unwrap();
        let out = apply_batch(&mut writer, &batch, &[], CONFIG, &stats, 0).unwrap();
        assert_eq!((out.applied, out.last_sequence), (1, 1));
    }

    #[test]
    fn bad_events_become_dead_letters_and_do_not_stop_the_batch() {
        let mut c = conn();
        let stats = Stats::default();
        let mut redelivered = item(3, subject::USER_JOINED, r#"{"username":"late"}"#);
        redelivered.deliveries = 6;
        let batch = vec![
            item(1, subject::USER_JOINED, "{nope"),
            item(2, subject::USER_JOINED, r#"{"username":"ok"}"#),
            redelivered,
            item(4, subject::MESSAGE_LOG, "\u{0}\u{ffff}"),
        ];
        let out = apply_batch(&mut c, &batch, &[], CONFIG, &stats, 0).unwrap();
        // Delivered six times is no reason to give up a valid event.
        assert_eq!(out.applied, 2);
        assert_eq!(out.last_sequence, 4);
        let dead = out.dead.unwrap();
        let seqs: Vec<u64> = dead.iter().map(|d| d.letter.stream_sequence).collect();
        assert_eq!(seqs, [1, 4]);
        let ids: Vec<i64> = dead.iter().map(|d| d.id).collect();
        let next = apply_batch(&mut c, &[], &ids, CONFIG, &stats, 0).unwrap();
        assert_eq!(next.dead, Some(Vec::new()));
        assert!(store::unpublished_dead_letters(&c).unwrap().is_empty());
    }

    #[test]
    fn redelivered_events_are_applied_one_by_one_not_given_up() {
        let mut c = conn();
        let stats = Stats::default();
        let batch: Vec<Incoming> = (1..=3)
            .map(|seq| {
                let mut i = item(
                    seq,
                    subject::USER_JOINED,
                    &format!(r#"{{"username":"u{seq}"}}"#),
                );
                i.deliveries = 9;
                i
            })
            .collect();
        let out = apply_one_by_one(&mut c, &batch, &[], CONFIG, &stats);
        assert_eq!((out.applied, out.last_sequence), (3, 3));
        assert!(out.dead.is_none());
    }

    #[test]
    fn an_event_that_keeps_ending_the_service_is_given_up_alone() {
        let mut c = conn();
        let stats = Stats::default();
        // Five earlier tries of sequence 1 never finished (the service died each time).
        for _ in 0..5 {
            store::note_attempt(&c, 1).unwrap();
        }
        let mut culprit = item(1, subject::USER_JOINED, r#"{"username":"boom"}"#);
        culprit.deliveries = 7;
        let mut next = item(2, subject::USER_JOINED, r#"{"username":"fine"}"#);
        next.deliveries = 7;
        let out = apply_one_by_one(&mut c, &[culprit, next], &[], CONFIG, &stats);
        assert_eq!((out.applied, out.last_sequence), (1, 2));
        let dead = out.dead.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].letter.stream_sequence, 1);
        assert!(
            dead[0].letter.error.contains("ended the service 5 times"),
            "{}",
            dead[0].letter.error
        );
        let marker: i64 = c
            .query_row("SELECT COUNT(*) FROM rosey_attempt", [], |r| r.get(0))
            .unwrap();
        assert_eq!(marker, 0, "the attempt record is cleared");
    }
}
