//! Durable database writes (`rosey.db.*`): JetStream-acknowledged publishes with message ids.
//!
//! One task publishes the writes in order and waits for each acknowledgement; a failed publish
//! is retried with the same message id, so a NATS restart neither loses a write (it stays in
//! memory until acknowledged) nor duplicates one (the stream drops a repeated id). Nothing here
//! waits for the database service: the stream holds writes until it comes. A write larger than
//! the server's `max_payload` can never be stored: it is logged and dropped, not retried.

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use bytes::Bytes;
use rosey_plugin_api::stream::{ensure_streams, StreamLimits};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Writes that may wait while NATS is away before new ones are dropped (and logged).
pub const BACKLOG: usize = 100_000;

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

/// How long stream set-up and write retries wait (`platform.stream_setup_timeout`,
/// `platform.stream_setup_max_delay`, `platform.db_write_retry_max_delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbTiming {
    /// How long one attempt to set up the database stream may take.
    pub setup_timeout: Duration,
    /// Largest pause between stream set-up attempts.
    pub setup_max_delay: Duration,
    /// Largest pause between attempts to publish one write.
    pub retry_max_delay: Duration,
}

/// The handle the core queues writes through; cheap to clone.
#[derive(Clone)]
pub struct DbWriter {
    tx: mpsc::Sender<Job>,
    prefix: Arc<str>,
    seq: Arc<AtomicU64>,
}

impl DbWriter {
    /// Starts the publishing task on `client`.
    pub fn start(client: async_nats::Client, limits: StreamLimits, timing: DbTiming) -> DbWriter {
        let (tx, rx) = mpsc::channel(BACKLOG);
        tokio::spawn(run(client, limits, timing, rx));
        // Ids unique to this process's life: a random prefix and a counter.
        let prefix = format!("rosey-bot-{:016x}", fastrand::u64(..));
        DbWriter {
            tx,
            prefix: prefix.into(),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues one write; it is published (and retried) in the background.
    pub fn write<T: Serialize>(&self, subject: &'static str, payload: &T) {
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
        if let Err(e) = self.tx.try_send(Job::Write(write)) {
            tracing::error!(subject, error = %e, "database write backlog is full; write dropped");
        }
    }

    /// Waits until every write queued so far is stored (for a clean shutdown).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Job::Flush(tx)).await.is_ok() {
            let _ = rx.await;
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
) -> Mode {
    let mut delay = Duration::from_millis(100).min(timing.setup_max_delay);
    loop {
        match tokio::time::timeout(timing.setup_timeout, ensure_streams(js, limits)).await {
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

async fn run(
    client: async_nats::Client,
    limits: StreamLimits,
    timing: DbTiming,
    mut rx: mpsc::Receiver<Job>,
) {
    let js = jetstream::new(client.clone());
    let mut mode = set_up(&client, &js, &limits, &timing).await;
    while let Some(job) = rx.recv().await {
        let write = match job {
            Job::Write(write) => write,
            Job::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        if mode == Mode::Plain {
            if let Err(e) = client.publish(write.subject, write.payload).await {
                tracing::warn!(subject = write.subject, error = %e, "plain database write failed");
            }
            continue;
        }
        let mut delay = Duration::from_millis(50).min(timing.retry_max_delay);
        let mut attempt = 0u32;
        loop {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, write.msg_id.as_str());
            let result = match js
                .publish_with_headers(write.subject, headers, write.payload.clone())
                .await
            {
                Ok(ack) => ack.await.map(|_| ()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => break,
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
                    if attempt == 1 || attempt % 20 == 0 {
                        tracing::warn!(
                            subject = write.subject,
                            attempt,
                            error = %e,
                            "database write not acknowledged; retrying with the same id"
                        );
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(timing.retry_max_delay);
                    // The server may have lost its store (or the stream was deleted).
                    if attempt % 5 == 0 {
                        mode = set_up(&client, &js, &limits, &timing).await;
                        if mode == Mode::Plain {
                            let _ = client.publish(write.subject, write.payload.clone()).await;
                            break;
                        }
                    }
                }
            }
        }
    }
}
