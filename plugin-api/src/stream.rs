//! The one definition of the JetStream streams that carry durable database writes, used by
//! every process that publishes to or consumes from them.

use crate::subjects::db;
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType, Stream};
use async_nats::jetstream::Context;
use std::time::Duration;
use thiserror::Error;

pub use crate::subjects::jetstream::{
    channel_stream, CHANNEL_STREAM_PREFIX, DB_CONSUMER, DB_STREAM, DLQ_STREAM, LEASE_BUCKET,
};

/// The operator's limits for the streams (from the `database.stream` configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Events older than this are dropped even when unapplied.
    pub max_age: Duration,
    /// The stream's size limit in bytes.
    pub max_bytes: i64,
    /// How long a message id is remembered, so a re-published event is stored once.
    pub duplicate_window: Duration,
    /// How many JetStream servers keep a copy (`database.stream.replicas`).
    pub replicas: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 1 << 30,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        }
    }
}

/// A stream could not be created or brought to the contract's definition.
#[derive(Debug, Error)]
#[error("cannot set up JetStream stream {stream}: {message}")]
pub struct StreamError {
    /// The stream's name.
    pub stream: String,
    /// What the server said.
    pub message: String,
}

/// The contract's definition of [`DB_STREAM`]: exactly the write subjects, never a request
/// subject (a stream on a request subject would answer every request with a publish ack).
pub fn db_stream_config(limits: &StreamLimits) -> Config {
    Config {
        name: DB_STREAM.to_owned(),
        description: Some("Rosey durable database writes".to_owned()),
        subjects: db::WRITE_SUBJECTS.iter().map(|s| (*s).to_owned()).collect(),
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::Old,
        max_age: limits.max_age,
        max_bytes: limits.max_bytes,
        duplicate_window: limits.duplicate_window,
        num_replicas: limits.replicas,
        ..Default::default()
    }
}

/// The contract's definition of `channel`'s stream: its writes, with [`DB_STREAM`]'s limits.
pub fn channel_stream_config(limits: &StreamLimits, channel: &str) -> Option<Config> {
    Some(Config {
        name: channel_stream(channel)?,
        description: Some(format!(
            "Rosey durable database writes of channel {channel}"
        )),
        subjects: vec![crate::subjects::db::channel_writes(channel).ok()?],
        ..db_stream_config(limits)
    })
}

/// The definition of [`DLQ_STREAM`].
pub fn dlq_stream_config(limits: &StreamLimits) -> Config {
    Config {
        name: DLQ_STREAM.to_owned(),
        description: Some("Rosey database writes that could not be applied".to_owned()),
        subjects: vec![db::DLQ.to_owned()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::Old,
        max_age: limits.max_age,
        max_bytes: limits.max_bytes,
        num_replicas: limits.replicas,
        ..Default::default()
    }
}

async fn ensure(js: &Context, config: Config, name: &str) -> Result<Stream, StreamError> {
    let err = |e: &dyn std::fmt::Display| StreamError {
        stream: name.to_owned(),
        message: e.to_string(),
    };
    let mut stream = js
        .get_or_create_stream(config.clone())
        .await
        .map_err(|e| err(&e))?;
    let current = stream.info().await.map_err(|e| err(&e))?.config.clone();
    let differs = current.subjects != config.subjects
        || current.max_age != config.max_age
        || current.max_bytes != config.max_bytes
        || current.duplicate_window != config.duplicate_window
        || current.num_replicas != config.num_replicas;
    if differs {
        let replicas = (current.num_replicas, config.num_replicas);
        js.update_stream(config).await.map_err(|e| {
            if replicas.0 == replicas.1 {
                err(&e)
            } else {
                err(&format!(
                    "{e}; it has {} replicas and database.stream.replicas asks for {}: the \
                     cluster needs at least that many JetStream servers, or run \
                     `nats stream edit {name} --replicas {}` once it has them",
                    replicas.0, replicas.1, replicas.1
                ))
            }
        })?;
        stream = js.get_stream(name).await.map_err(|e| err(&e))?;
    }
    Ok(stream)
}

/// Creates [`DB_STREAM`] or brings an existing one to the contract's definition.
pub async fn ensure_db_stream(js: &Context, limits: &StreamLimits) -> Result<Stream, StreamError> {
    ensure(js, db_stream_config(limits), DB_STREAM).await
}

/// Creates [`DLQ_STREAM`] or brings an existing one to the contract's definition.
pub async fn ensure_dlq_stream(js: &Context, limits: &StreamLimits) -> Result<Stream, StreamError> {
    ensure(js, dlq_stream_config(limits), DLQ_STREAM).await
}

/// Says, in words for the operator, when a stream keeps fewer copies than
/// `database.stream.replicas` asks for: a standalone nats-server accepts any replica count and
/// keeps one, and a cluster smaller than the count cannot place them all.
pub fn replica_shortfall(
    info: &async_nats::jetstream::stream::Info,
    wanted: usize,
) -> Option<String> {
    let copies = info
        .cluster
        .as_ref()
        .map_or(1, |cluster| 1 + cluster.replicas.len());
    (copies < wanted).then(|| {
        format!(
            "stream {} keeps {copies} of the {wanted} copies database.stream.replicas asks for: \
             {}",
            info.config.name,
            if info.cluster.is_none() {
                "this nats-server is not part of a cluster, so it keeps one".to_owned()
            } else {
                format!("the cluster needs at least {wanted} JetStream servers")
            }
        )
    })
}

/// Creates `channel`'s stream or brings an existing one to the contract's definition.
pub async fn ensure_channel_stream(
    js: &Context,
    limits: &StreamLimits,
    channel: &str,
) -> Result<Stream, StreamError> {
    let config = channel_stream_config(limits, channel).ok_or_else(|| StreamError {
        stream: format!("{CHANNEL_STREAM_PREFIX}<channel>"),
        message: format!("{channel:?} cannot name a channel in a subject"),
    })?;
    let name = config.name.clone();
    ensure(js, config, &name).await
}

/// Creates both streams; every process that publishes writes or consumes them calls this.
pub async fn ensure_streams(js: &Context, limits: &StreamLimits) -> Result<Stream, StreamError> {
    ensure_dlq_stream(js, limits).await?;
    ensure_db_stream(js, limits).await
}
