//! Durable database writes (`rosey.db.*`): JetStream-acknowledged publishes with message ids.
//!
//! One task publishes the writes in order and waits for each acknowledgement; a failed publish
//! is retried with the same message id, so a NATS restart neither loses a write (it stays in
//! memory until acknowledged) nor duplicates one (the stream drops a repeated id). Nothing here
//! waits for the database service: the stream holds writes until it comes. A write larger than
//! the server's `max_payload` can never be stored: it is logged and dropped, not retried.
//!
//! The backlog is bounded (`platform.db_write_backlog` writes, [`BACKLOG`] by default, and
//! [`BACKLOG_BYTES`] bytes). When it is full the
//! publisher waits for room, which stops the event loop and so the reading of the chat socket
//! (backpressure) instead of dropping a write. While NATS is reachable, room comes with the
//! next acknowledgement (NATS stores about 10,000 writes a second), so a stall lasts
//! milliseconds, far below the 145 s CyTube waits for a pong (25 s ping interval plus 120 s
//! ping timeout). While NATS is unreachable and the backlog is full, status and count samples
//! (replaced by the next sample anyway) are dropped to make room; chat lines, sessions and
//! outbound marks never are, so the chat stops being read until NATS returns (see
//! `report_outage` for what the log says).

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use bytes::Bytes;
use rosey_plugin_api::stream::{ensure_channel_stream, ensure_streams, StreamLimits};
use rosey_plugin_api::subjects;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tracing::Instrument as _;

/// Default most writes waiting in memory for NATS (`platform.db_write_backlog`); a full
/// backlog holds up the event loop (and so the reading of the chat socket) instead of dropping
/// a write.
pub const BACKLOG: usize = rosey_config::sections::platform::DEFAULT_DB_WRITE_BACKLOG;
/// Most bytes of payload waiting in memory (a chat line may be 64 KiB).
pub const BACKLOG_BYTES: usize = 64 << 20;
/// How long NATS may fail to store writes before the log says what is held and what may go.
pub const LONG_OUTAGE: Duration = Duration::from_secs(30);

struct Write {
    subject: &'static str,
    payload: Bytes,
    msg_id: String,
}

/// What the publishing task is asked to do, in order.
enum Job {
    /// Publish one write.
    Write(Write),
    /// Answer once every earlier write is stored.
    Flush(oneshot::Sender<()>),
}

/// Samples of a state that a later sample replaces (status, counts, high-water marks): the
/// only writes ever dropped, and only while NATS is unreachable and the backlog is full.
fn is_sample(subject: &str) -> bool {
    [
        subjects::db::STATUS_UPDATE,
        subjects::db::STATS_USER_COUNT,
        subjects::db::STATS_HIGH_WATER,
    ]
    .contains(&subject)
}

/// The writes waiting for the publishing task.
struct Queue {
    /// Most writes held (`platform.db_write_backlog`).
    limit: usize,
    jobs: VecDeque<Job>,
    /// Writes in `jobs`.
    writes: usize,
    /// Payload bytes in `jobs`.
    bytes: usize,
    /// Chat lines in `jobs`.
    chat_lines: usize,
    /// Samples in `jobs`.
    samples: usize,
    /// Samples dropped (NATS away, backlog full) since the last report.
    dropped_samples: u64,
}

impl Queue {
    fn new(limit: usize) -> Self {
        Queue {
            limit,
            jobs: VecDeque::new(),
            writes: 0,
            bytes: 0,
            chat_lines: 0,
            samples: 0,
            dropped_samples: 0,
        }
    }

    fn has_room(&self, size: usize) -> bool {
        self.writes < self.limit && self.bytes + size <= BACKLOG_BYTES.max(size)
    }

    fn count(&mut self, w: &Write, sign: isize) {
        let add = |n: &mut usize, by: usize| {
            *n = if sign > 0 {
                *n + by
            } else {
                n.saturating_sub(by)
            }
        };
        add(&mut self.writes, 1);
        add(&mut self.bytes, w.payload.len());
        if w.subject == subjects::db::MESSAGE_LOG {
            add(&mut self.chat_lines, 1);
        }
        if is_sample(w.subject) {
            add(&mut self.samples, 1);
        }
    }

    fn push(&mut self, w: Write) {
        self.count(&w, 1);
        self.jobs.push_back(Job::Write(w));
    }

    fn pop(&mut self) -> Option<Job> {
        let job = self.jobs.pop_front()?;
        if let Job::Write(w) = &job {
            self.count(w, -1);
        }
        Some(job)
    }

    /// Drops the oldest queued sample to make room for a write that must be kept.
    fn evict_sample(&mut self) -> bool {
        if self.samples == 0 {
            return false;
        }
        let at = self
            .jobs
            .iter()
            .position(|j| matches!(j, Job::Write(w) if is_sample(w.subject)));
        match at.and_then(|i| self.jobs.remove(i)) {
            Some(Job::Write(w)) => {
                self.count(&w, -1);
                self.dropped_samples += 1;
                true
            }
            Some(job) => {
                // Never reached (the position matched a write); put it back untouched.
                self.jobs.push_front(job);
                false
            }
            None => false,
        }
    }
}

/// What is held in memory, for the log and for shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pending {
    /// Writes waiting.
    pub writes: usize,
    /// Of which chat lines.
    pub chat_lines: usize,
    /// Their payload bytes.
    pub bytes: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Something was queued.
    queued: Notify,
    /// Room was made.
    room: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every change is one step; a poisoned lock still holds consistent counts.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long stream set-up and write retries wait (`platform.stream_setup_timeout`,
/// `platform.stream_setup_max_delay`, `platform.db_write_retry_max_delay`), and how many
/// writes may wait (`platform.db_write_backlog`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbTiming {
    /// How long one attempt to set up the database stream may take.
    pub setup_timeout: Duration,
    /// Largest pause between stream set-up attempts.
    pub setup_max_delay: Duration,
    /// Largest pause between attempts to publish one write.
    pub retry_max_delay: Duration,
    /// Most writes held in memory (`platform.db_write_backlog`).
    pub backlog: usize,
}

/// The handle the core queues writes through; cheap to clone.
#[derive(Clone)]
pub struct DbPublisher {
    shared: Arc<Shared>,
    client: async_nats::Client,
    prefix: Arc<str>,
    seq: Arc<AtomicU64>,
}

impl DbPublisher {
    /// Starts the publishing task on `client`.
    /// Writes of a channel other than the deployment's first (`channel`) go on its
    /// `rosey.db.channel.<channel>.<write>` subjects.
    pub fn start(
        client: async_nats::Client,
        limits: StreamLimits,
        timing: DbTiming,
        channel: Option<String>,
    ) -> DbPublisher {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new(timing.backlog)),
            queued: Notify::new(),
            room: Notify::new(),
        });
        // Its logs name the channel as the rest of the bot's do.
        tokio::spawn(
            run(client.clone(), limits, timing, shared.clone(), channel).in_current_span(),
        );
        // Ids unique to this process's life: a random prefix and a counter.
        let prefix = format!("rosey-bot-{:016x}", fastrand::u64(..));
        DbPublisher {
            shared,
            client,
            prefix: prefix.into(),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues one write; it is published (and retried) in the background.
    ///
    /// While the backlog is full this waits for room (backpressure: the event loop, and so
    /// the reading of the chat socket, pauses) rather than dropping anything. Only when NATS
    /// is unreachable too are status and count samples dropped, oldest first, to make room
    /// for the rest; a chat line is never dropped.
    pub async fn write<T: Serialize>(&self, subject: &'static str, payload: &T) {
        let payload = match serde_json::to_vec(payload) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                tracing::error!(subject, error = %e, "cannot encode database write");
                return;
            }
        };
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let write = Write {
            subject,
            payload,
            msg_id: format!("{}-{n}", self.prefix),
        };
        let mut waiting_since: Option<Instant> = None;
        loop {
            // Registered before the check, so room made in between is not missed.
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut q = self.shared.lock();
                let connected =
                    self.client.connection_state() == async_nats::connection::State::Connected;
                let fits = q.has_room(write.payload.len())
                    || (!connected && !is_sample(subject) && q.evict_sample());
                if fits {
                    q.push(write);
                    drop(q);
                    self.shared.queued.notify_one();
                    if let Some(since) = waiting_since {
                        tracing::info!(
                            waited = ?since.elapsed(),
                            "database write backlog has room again; reading the chat again"
                        );
                    }
                    return;
                }
                if !connected && is_sample(subject) {
                    q.dropped_samples += 1;
                    if q.dropped_samples == 1 {
                        tracing::warn!(
                            subject,
                            "NATS is unreachable and the write backlog is full: status and \
                             count samples are dropped (chat lines, sessions and marks are kept)"
                        );
                    }
                    return;
                }
                if waiting_since.is_none() {
                    waiting_since = Some(Instant::now());
                    tracing::warn!(
                        writes = q.writes,
                        bytes = q.bytes,
                        chat_lines = q.chat_lines,
                        nats_connected = connected,
                        "database write backlog is full: the bot stops reading the chat until \
                         NATS stores some (nothing is dropped; CyTube keeps a silent connection \
                         for about 145 s: its 25 s ping interval plus 120 s ping timeout)"
                    );
                }
            }
            // Woken by room; the periodic look notices NATS going away meanwhile.
            tokio::select! {
                () = &mut room => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Waits until every write queued so far is stored (for a clean shutdown).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.shared.lock().jobs.push_back(Job::Flush(tx));
        self.shared.queued.notify_one();
        let _ = rx.await;
    }

    /// What is still held in memory.
    pub fn pending(&self) -> Pending {
        let q = self.shared.lock();
        Pending {
            writes: q.writes,
            chat_lines: q.chat_lines,
            bytes: q.bytes,
        }
    }
}

/// Whether the writes go through JetStream or, when the server has none, plain publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    JetStream,
    Plain,
}

async fn set_up(
    client: &async_nats::Client,
    js: &jetstream::Context,
    limits: &StreamLimits,
    timing: &DbTiming,
    channel: Option<&str>,
) -> Mode {
    let mut delay = Duration::from_millis(100).min(timing.setup_max_delay);
    let ensure = || async {
        ensure_streams(js, limits).await?;
        if let Some(channel) = channel {
            ensure_channel_stream(js, limits, channel).await?;
        }
        Ok::<_, rosey_plugin_api::stream::StreamError>(())
    };
    loop {
        match tokio::time::timeout(timing.setup_timeout, ensure()).await {
            Ok(Ok(_)) => return Mode::JetStream,
            Ok(Err(e)) => {
                if !client.server_info().jetstream
                    && client.connection_state() == async_nats::connection::State::Connected
                {
                    tracing::warn!(
                        error = %e,
                        "the NATS server has no JetStream: database writes fall back to plain \
                         publishes and are lost while nothing listens"
                    );
                    return Mode::Plain;
                }
                tracing::warn!(error = %e, "cannot set up the database stream yet; retrying");
            }
            Err(_) => tracing::warn!("setting up the database stream timed out; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(timing.setup_max_delay);
    }
}

/// Takes the next job, waiting for one.
async fn next_job(shared: &Shared) -> Job {
    loop {
        if let Some(job) = shared.lock().pop() {
            shared.room.notify_waiters();
            return job;
        }
        shared.queued.notified().await;
    }
}

/// Says what is held and what may go while NATS does not store writes.
fn report_outage(shared: &Shared, down_for: Duration) {
    let q = shared.lock();
    tracing::error!(
        ?down_for,
        held_writes = q.writes,
        held_chat_lines = q.chat_lines,
        held_bytes = q.bytes,
        backlog_writes = q.limit,
        backlog_bytes = BACKLOG_BYTES,
        "NATS has not stored a database write for a long time. Kept: every held write, in \
         order, in memory, stored once NATS is back. When the backlog is full, status and count \
         samples are dropped first; then the bot stops reading the chat, CyTube drops the \
         connection about 145 s later, and what is said in the channel until NATS is back and \
         the bot rejoins is not seen. Held writes are lost only if the bot is stopped first."
    );
}

async fn run(
    client: async_nats::Client,
    limits: StreamLimits,
    timing: DbTiming,
    shared: Arc<Shared>,
    channel: Option<String>,
) {
    let js = jetstream::new(client.clone());
    // The subject each write goes out on: the PRD's, or the channel's own.
    let subject_of = |write: &'static str| -> String {
        match &channel {
            None => write.to_owned(),
            // A channel the configuration accepted always makes a valid subject.
            Some(channel) => {
                subjects::db::channel_write(channel, write).unwrap_or_else(|_| write.to_owned())
            }
        }
    };
    let mut mode = set_up(&client, &js, &limits, &timing, channel.as_deref()).await;
    loop {
        let write = match next_job(&shared).await {
            Job::Write(write) => write,
            Job::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let subject = subject_of(write.subject);
        if mode == Mode::Plain {
            if let Err(e) = client.publish(subject, write.payload).await {
                tracing::warn!(subject = write.subject, error = %e, "plain database write failed");
            }
            continue;
        }
        let mut delay = Duration::from_millis(50).min(timing.retry_max_delay);
        let mut attempt = 0u32;
        let mut failing_since: Option<Instant> = None;
        let mut reported = false;
        loop {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, write.msg_id.as_str());
            let result = match js
                .publish_with_headers(subject.clone(), headers, write.payload.clone())
                .await
            {
                Ok(ack) => ack.await.map(|_| ()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    if let Some(since) = failing_since {
                        let dropped = std::mem::take(&mut shared.lock().dropped_samples);
                        tracing::info!(
                            down_for = ?since.elapsed(),
                            held = shared.lock().writes,
                            dropped_samples = dropped,
                            "NATS stores database writes again; the held ones follow in order"
                        );
                    }
                    break;
                }
                // No retry can make it fit; waiting on it would hold up every later write.
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    tracing::error!(
                        subject = write.subject,
                        size = write.payload.len(),
                        limit = client.server_info().max_payload,
                        "database write larger than the NATS server accepts; dropped"
                    );
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if attempt == 1 || attempt % 20 == 0 {
                        tracing::warn!(
                            subject = write.subject,
                            attempt,
                            error = %e,
                            "database write not acknowledged; retrying with the same id"
                        );
                    }
                    if !reported && since.elapsed() >= LONG_OUTAGE {
                        reported = true;
                        report_outage(&shared, since.elapsed());
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(timing.retry_max_delay);
                    // The server may have lost its store (or the stream was deleted).
                    if attempt % 5 == 0 {
                        mode = set_up(&client, &js, &limits, &timing, channel.as_deref()).await;
                        if mode == Mode::Plain {
                            let _ = client.publish(subject.clone(), write.payload.clone()).await;
                            break;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(subject: &'static str, size: usize) -> Write {
        Write {
            subject,
            payload: Bytes::from(vec![b'x'; size]),
            msg_id: String::new(),
        }
    }

    #[test]
    fn the_queue_counts_and_evicts_only_samples() {
        let mut q = Queue::new(BACKLOG);
        q.push(write(subjects::db::STATUS_UPDATE, 10));
        q.push(write(subjects::db::MESSAGE_LOG, 20));
        q.push(write(subjects::db::STATS_USER_COUNT, 30));
        assert_eq!((q.writes, q.bytes, q.chat_lines, q.samples), (3, 60, 1, 2));
        assert!(q.evict_sample());
        assert!(q.evict_sample());
        assert!(!q.evict_sample(), "a chat line is never evicted");
        assert_eq!((q.writes, q.bytes, q.chat_lines, q.samples), (1, 20, 1, 0));
        assert_eq!(q.dropped_samples, 2);
        assert!(matches!(q.pop(), Some(Job::Write(w)) if w.subject == subjects::db::MESSAGE_LOG));
        assert_eq!((q.writes, q.bytes), (0, 0));
        assert!(q.has_room(BACKLOG_BYTES));
        // A single write larger than the byte limit still fits an empty queue.
        assert!(q.has_room(BACKLOG_BYTES + 1));
        q.push(write(subjects::db::MESSAGE_LOG, 1));
        assert!(!q.has_room(BACKLOG_BYTES));
    }
}
