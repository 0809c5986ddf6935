//! Ingestion of durable writes: a JetStream durable pull consumer on the contract's stream,
//! applied in batches in stream order, acknowledged only after the batch commits.
//!
//! The stream sequence is the source of truth for order and completeness: the writer stores the
//! last applied sequence in the same transaction as the batch, skips anything at or below it,
//! and a gap in delivered sequences (an in-flight delivery lost when the NATS connection
//! dropped) is filled by reading the missing messages from the stream directly, so a later event
//! is never applied (and acknowledged with "ack all") before an earlier one.
//!
//! Without JetStream on the server the service falls back to plain subscriptions, loudly.

use crate::stats::Stats;
use crate::store::StoredDeadLetter;
use crate::writer::{Incoming, Writer, WriterGone};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, stream::Stream as JsStream};
use async_nats::HeaderMap;
use futures::StreamExt;
use rosey_plugin_api::stream::DB_CONSUMER;
use rosey_plugin_api::subjects::db as subject;
use rosey_plugin_api::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Batching and consumer settings, from the `database` configuration.
#[derive(Debug, Clone, Copy)]
pub struct IngestSettings {
    /// Most events in one transaction.
    pub batch_size: usize,
    /// How long a batch waits for more events before committing.
    pub batch_wait: Duration,
    /// How long the server waits for an acknowledgement before redelivering.
    pub ack_wait: Duration,
    /// The pull stream's idle heartbeat, so a dead connection is noticed; at most half of
    /// `pull_expiry`, or the server refuses the pull request.
    pub pull_heartbeat: Duration,
    /// How long one pull request stays open before the client renews it.
    pub pull_expiry: Duration,
}

/// Why ingestion stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The writer thread is gone.
    #[error(transparent)]
    Writer(#[from] WriterGone),
    /// JetStream refused to set up the consumer.
    #[error("cannot set up the durable consumer: {0}")]
    Consumer(String),
    /// A core subscription failed.
    #[error("cannot subscribe: {0}")]
    Subscribe(String),
}

/// Creates (or finds) the durable consumer the service reads the stream with.
pub async fn ensure_consumer(
    stream: &JsStream,
    settings: IngestSettings,
) -> Result<PullConsumer, IngestError> {
    let pending = i64::try_from(settings.batch_size.saturating_mul(4)).unwrap_or(i64::MAX);
    let consumer: PullConsumer = stream
        .get_or_create_consumer(
            DB_CONSUMER,
            pull::Config {
                durable_name: Some(DB_CONSUMER.to_owned()),
                description: Some("rosey-db applies durable writes".to_owned()),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::All,
                ack_wait: settings.ack_wait,
                // The service counts deliveries itself and dead-letters; the server must keep
                // delivering so it can.
                max_deliver: -1,
                max_ack_pending: pending.max(1000),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| IngestError::Consumer(e.to_string()))?;
    // An existing durable consumer keeps the settings it was created with.
    let current = consumer.cached_info().config.ack_wait;
    if current != settings.ack_wait {
        tracing::warn!(
            configured = ?settings.ack_wait,
            current = ?current,
            consumer = DB_CONSUMER,
            "the existing durable consumer keeps its ack wait; delete the consumer to apply \
             database.ack_wait"
        );
    }
    Ok(consumer)
}

/// Publishes dead letters to the dead-letter stream; returns the ids that made it.
async fn publish_dead_letters(
    js: Option<&jetstream::Context>,
    client: &async_nats::Client,
    letters: &[StoredDeadLetter],
    stats: &Stats,
) -> Vec<i64> {
    let mut done = Vec::with_capacity(letters.len());
    for stored in letters {
        let body = match serde_json::to_vec(&stored.letter) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a dead letter");
                continue;
            }
        };
        let ok = match js {
            Some(js) => {
                let mut headers = HeaderMap::new();
                // Re-publishing after a crash is deduplicated by the stream.
                headers.insert(
                    "Nats-Msg-Id",
                    format!("rosey-db-dlq-{}", stored.id).as_str(),
                );
                match js
                    .publish_with_headers(subject::DLQ, headers, body.into())
                    .await
                {
                    Ok(ack) => ack.await.is_ok(),
                    // Letters are capped well below the default limit; a server configured
                    // smaller still must not block every later letter behind this one.
                    Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                        tracing::error!(id = stored.id, error = %e, "dead letter too large for this NATS server; kept only in the database");
                        true
                    }
                    Err(_) => false,
                }
            }
            None => client.publish(subject::DLQ, body.into()).await.is_ok(),
        };
        if ok {
            done.push(stored.id);
            stats.add("ingest.dead_lettered", 1);
        } else {
            stats.add("ingest.dead_letter_publish_failures", 1);
            tracing::warn!(id = stored.id, "dead letter not published yet; will retry");
            break;
        }
    }
    done
}

/// Finds the stored position to resume from, correcting it when the stream was recreated or
/// the database is new to an existing consumer.
async fn resume_position(
    stream: &mut JsStream,
    consumer: &mut PullConsumer,
    writer: &Writer,
    stored: u64,
) -> Result<u64, IngestError> {
    let info = stream
        .info()
        .await
        .map_err(|e| IngestError::Consumer(e.to_string()))?;
    let stream_last = info.state.last_sequence;
    let created = info.created.unix_timestamp_nanos().to_string();
    let ack_floor = consumer
        .info()
        .await
        .map(|i| i.ack_floor.stream_sequence)
        .map_err(|e| IngestError::Consumer(e.to_string()))?;
    let previous = writer.stream_identity().await?;
    let same_stream = previous.as_deref().map(|p| p == created);
    let (position, why) = decide_resume(stored, stream_last, ack_floor, same_stream);
    if position != stored {
        tracing::warn!(stored, stream_last, ack_floor, position, "{why}");
    }
    writer
        .set_position((position != stored).then_some(position), created)
        .await?;
    Ok(position)
}

/// Where ingestion resumes, from the stored position, the stream's last sequence, the
/// consumer's ack floor and whether the stream is the one the position was recorded on
/// (`None`: not known, a database from before identities were kept); and why, when it is
/// not the stored position.
fn decide_resume(
    stored: u64,
    stream_last: u64,
    ack_floor: u64,
    same_stream: Option<bool>,
) -> (u64, &'static str) {
    match same_stream {
        Some(false) => (
            ack_floor,
            "the stream was recreated; following the new stream from its consumer's position",
        ),
        Some(true) if stored > stream_last => (
            stream_last,
            "the stream lost its last events (a crash of its server): everything up to its end \
             is applied already, so it resumes there instead of applying them twice",
        ),
        None if stored > stream_last => (
            ack_floor,
            "the database has applied events beyond the stream's end: the stream was \
             recreated; following the new stream from its consumer's position",
        ),
        _ if stored == 0 && ack_floor > 0 => (
            ack_floor,
            "this database has never applied stream events but the consumer has; following the \
             consumer's position (events before it are not replayed)",
        ),
        _ => (stored, ""),
    }
}

/// Reads the events `from..to` straight from the stream (a lost in-flight delivery); false
/// when it stopped short because the service is shutting down.
async fn fill_gap(
    stream: &JsStream,
    from: u64,
    to: u64,
    shutdown: &watch::Receiver<bool>,
    out: &mut Vec<Incoming>,
    stats: &Stats,
) -> bool {
    let first = match stream.get_info().await {
        Ok(info) => info.state.first_sequence,
        Err(_) => from,
    };
    if first > from {
        tracing::warn!(
            missing = first.min(to) - from,
            "events expired from the stream (max_age/max_bytes) before they were applied"
        );
        stats.add("ingest.expired_unapplied", first.min(to) - from);
    }
    let mut seq = from.max(first);
    let mut pause = Duration::from_millis(50);
    while seq < to {
        match stream.get_raw_message(seq).await {
            Ok(msg) => {
                out.push(Incoming {
                    sequence: seq,
                    subject: msg.subject.to_string(),
                    payload: msg.payload,
                    deliveries: 1,
                    received: Timestamp::now().secs(),
                });
                stats.add("ingest.gap_filled", 1);
                seq += 1;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound
                ) || e.to_string().contains("no message found") =>
            {
                seq += 1;
            }
            Err(e) => {
                if *shutdown.borrow() {
                    return false;
                }
                tracing::warn!(seq, error = %e, "cannot read a missing event from the stream yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
    true
}

/// Consumes the stream until `shutdown` turns true; the batch in hand is committed and
/// acknowledged before returning.
#[allow(clippy::too_many_arguments)]
pub async fn run_jetstream(
    client: async_nats::Client,
    js: jetstream::Context,
    mut stream: JsStream,
    mut consumer: PullConsumer,
    writer: Writer,
    stored_position: u64,
    settings: IngestSettings,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
    initial_dead: Vec<StoredDeadLetter>,
) -> Result<(), IngestError> {
    let mut applied_to =
        resume_position(&mut stream, &mut consumer, &writer, stored_position).await?;
    let mut published = publish_dead_letters(Some(&js), &client, &initial_dead, &stats).await;
    let mut pending_dead: Vec<StoredDeadLetter> = Vec::new();
    'outer: loop {
        if *shutdown.borrow() {
            break;
        }
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(settings.batch_size)
            .expires(settings.pull_expiry)
            .heartbeat(settings.pull_heartbeat)
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start pulling from the stream; retrying");
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.changed() => break 'outer,
                m = messages.next() => m,
            };
            let mut batch = Vec::with_capacity(settings.batch_size);
            match first {
                None => {
                    tracing::warn!("the pull stream ended; restarting it");
                    continue 'outer;
                }
                Some(Err(e)) => {
                    // Missed heartbeats, a server restart: a fresh pull is the surest way back
                    // (an old one may wait on requests the restarted server never saw).
                    tracing::warn!(error = %e, "pull stream error; pulling afresh");
                    stats.add("ingest.pull_errors", 1);
                    tokio::select! {
                        _ = shutdown.changed() => break 'outer,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue 'outer,
                    }
                }
                Some(Ok(m)) => batch.push(m),
            }
            let deadline = Instant::now() + settings.batch_wait;
            while batch.len() < settings.batch_size {
                match tokio::time::timeout_at(deadline, messages.next()).await {
                    Ok(Some(Ok(m))) => batch.push(m),
                    Ok(Some(Err(e))) => {
                        tracing::warn!(error = %e, "pull stream error");
                        stats.add("ingest.pull_errors", 1);
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            let mut items = Vec::with_capacity(batch.len());
            let mut ack_index = None;
            let mut max_seq = 0;
            for (i, m) in batch.iter().enumerate() {
                let Ok(info) = m.info() else {
                    tracing::warn!(subject = %m.subject, "message without JetStream metadata; ignored");
                    continue;
                };
                let seq = info.stream_sequence;
                if seq > applied_to + 1
                    && !fill_gap(&stream, applied_to + 1, seq, &shutdown, &mut items, &stats).await
                {
                    // Stopping with the gap unread: nothing past it may be applied or
                    // acknowledged (an ack covers every earlier sequence), so it is redelivered.
                    break;
                }
                if seq > max_seq {
                    max_seq = seq;
                    ack_index = Some(i);
                }
                items.push(Incoming {
                    sequence: seq,
                    subject: m.subject.to_string(),
                    payload: m.payload.clone(),
                    deliveries: u64::try_from(info.delivered).unwrap_or(1),
                    received: Timestamp::now().secs(),
                });
                applied_to = applied_to.max(seq);
            }
            let committed = writer.apply(items, std::mem::take(&mut published)).await?;
            applied_to = applied_to.max(committed.last_sequence);
            if let Some(dead) = committed.dead {
                pending_dead = dead;
            }
            if !pending_dead.is_empty() {
                let done = publish_dead_letters(Some(&js), &client, &pending_dead, &stats).await;
                pending_dead.retain(|d| !done.contains(&d.id));
                published.extend(done);
            }
            if let Some(m) = ack_index.and_then(|i| batch.get(i)) {
                // Ack-all: everything up to this sequence is committed.
                if let Err(e) = m.ack().await {
                    tracing::debug!(error = %e, "ack not sent; the batch will be redelivered and skipped");
                }
            }
        }
    }
    // Record what was published so it is not re-sent next time.
    if !published.is_empty() {
        writer.apply(Vec::new(), published).await?;
    }
    Ok(())
}

/// The fallback without JetStream: plain subscriptions (to `subjects`: one channel's writes),
/// no durability and no cross-subject ordering guarantee.
pub async fn run_core(
    client: async_nats::Client,
    subjects: Vec<String>,
    writer: Writer,
    settings: IngestSettings,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
    initial_dead: Vec<StoredDeadLetter>,
) -> Result<(), IngestError> {
    tracing::error!(
        "JetStream is not available on the NATS server: durable writes fall back to plain \
         subscriptions. Events published while rosey-db is down WILL BE LOST. Start nats-server \
         with -js to fix this."
    );
    let mut subs = Vec::new();
    for s in subjects {
        subs.push(
            client
                .subscribe(s)
                .await
                .map_err(|e| IngestError::Subscribe(e.to_string()))?,
        );
    }
    let mut merged = futures::stream::select_all(subs);
    let mut published = publish_dead_letters(None, &client, &initial_dead, &stats).await;
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            m = merged.next() => m,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let deadline = Instant::now() + settings.batch_wait;
        while batch.len() < settings.batch_size {
            match tokio::time::timeout_at(deadline, merged.next()).await {
                Ok(Some(m)) => batch.push(m),
                Ok(None) | Err(_) => break,
            }
        }
        let now = Timestamp::now().secs();
        let items = batch
            .into_iter()
            .map(|m| Incoming {
                sequence: 0,
                subject: m.subject.to_string(),
                payload: m.payload,
                deliveries: 1,
                received: now,
            })
            .collect();
        let committed = writer.apply(items, std::mem::take(&mut published)).await?;
        if let Some(dead) = committed.dead {
            published = publish_dead_letters(None, &client, &dead, &stats).await;
        }
    }
    if !published.is_empty() {
        writer.apply(Vec::new(), published).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_follows_the_stream_it_was_recorded_on() {
        // The normal case.
        assert_eq!(decide_resume(80, 100, 70, Some(true)).0, 80);
        // Same stream, its tail lost: resume at its end, not at the ack floor (which would
        // apply 50..80 a second time).
        assert_eq!(decide_resume(100, 80, 50, Some(true)).0, 80);
        // A recreated stream, even one already holding more than `stored`: follow its consumer
        // (skipping its first 100 events as "already applied" would lose them).
        assert_eq!(decide_resume(100, 500, 0, Some(false)).0, 0);
        // No identity recorded yet (an older database): the old rule.
        assert_eq!(decide_resume(100, 80, 50, None).0, 50);
        assert_eq!(decide_resume(0, 80, 30, None).0, 30);
    }
}
