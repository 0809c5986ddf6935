//! The request subjects, served through the async-nats `service` API (`$SRV.PING/INFO/STATS`)
//! in a queue group, concurrently with ingestion.
//!
//! Reads run on a pool of read-only connections (WAL readers never wait for the writer); writes
//! that requests make (enqueue, plugin storage, maintenance) run on their own connection. Error
//! replies carry the contract's headers and body; async-nats's `respond(Err(..))` would send no
//! body and count nothing we can see, so errors are published as ordinary replies with headers
//! and counted here, shown in each endpoint's `$SRV.STATS` data.

use crate::maintenance::{self, Retention};
use crate::pool::{Pool, PoolError};
use crate::stats::Stats;
use crate::store::{self, StoreError};
use crate::tokens;
use async_nats::service::{Service, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use rosey_plugin_api::db::{self as wire, Enqueued};
use rosey_plugin_api::reply::{error_reply, ok_reply};
use rosey_plugin_api::subjects::{db as subject, kv as kv_subject};
use rosey_plugin_api::{actions, kv, payload, ErrorBody, ErrorCode, Timestamp};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The longest description a token may carry.
pub const MAX_TOKEN_DESCRIPTION: usize = 1024;

/// The service name in `$SRV` discovery.
pub const SERVICE_NAME: &str = "rosey-db";
/// The queue group every instance joins, so one instance answers each request.
pub const QUEUE_GROUP: &str = "rosey-db";

/// One channel's database, as requests reach it.
pub struct ChannelPools {
    /// The channel's name.
    pub channel: String,
    /// Read-only connections.
    pub readers: Arc<Pool>,
    /// The connection for writes that requests make.
    pub writer: Arc<Pool>,
    /// The channel's ingestion counters.
    pub stats: Arc<Stats>,
}

/// What request handlers share.
pub struct Context {
    /// Every channel served, the deployment's first channel first.
    pub channels: Vec<ChannelPools>,
    /// Request error counters (each channel keeps its own ingestion counters).
    pub stats: Arc<Stats>,
    /// Row lifetimes for maintenance.
    pub retention: Retention,
}

/// One endpoint of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `rosey.db.messages.outbound.get`.
    OutboundGet,
    /// `rosey.db.messages.outbound.enqueue`.
    OutboundEnqueue,
    /// `rosey.db.stats.recent_chat.get`.
    RecentChat,
    /// `rosey.db.stats.user_count_history.get`.
    UserCountHistory,
    /// `rosey.db.query.channel_stats`.
    ChannelStats,
    /// `rosey.db.query.user_stats`.
    UserStats,
    /// `rosey.db.maintenance.run`.
    Maintenance,
    /// `rosey.db.kv.>`.
    Kv,
    /// `rosey.db.messages.outbound.recent`.
    OutboundRecent,
    /// `rosey.db.query.current_status`.
    CurrentStatus,
    /// `rosey.db.tokens.create`.
    TokensCreate,
    /// `rosey.db.tokens.list`.
    TokensList,
    /// `rosey.db.tokens.revoke`.
    TokensRevoke,
    /// `rosey.db.tokens.verify`.
    TokensVerify,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 14] = [
        Endpoint::OutboundGet,
        Endpoint::OutboundEnqueue,
        Endpoint::RecentChat,
        Endpoint::UserCountHistory,
        Endpoint::ChannelStats,
        Endpoint::UserStats,
        Endpoint::Maintenance,
        Endpoint::Kv,
        Endpoint::OutboundRecent,
        Endpoint::CurrentStatus,
        Endpoint::TokensCreate,
        Endpoint::TokensList,
        Endpoint::TokensRevoke,
        Endpoint::TokensVerify,
    ];

    /// The endpoint's name in `$SRV.INFO` and `$SRV.STATS`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::OutboundGet => "outbound-get",
            Endpoint::OutboundEnqueue => "outbound-enqueue",
            Endpoint::RecentChat => "recent-chat-get",
            Endpoint::UserCountHistory => "user-count-history-get",
            Endpoint::ChannelStats => "channel-stats",
            Endpoint::UserStats => "user-stats",
            Endpoint::Maintenance => "maintenance-run",
            Endpoint::Kv => "kv",
            Endpoint::OutboundRecent => "outbound-recent",
            Endpoint::CurrentStatus => "current-status",
            Endpoint::TokensCreate => "tokens-create",
            Endpoint::TokensList => "tokens-list",
            Endpoint::TokensRevoke => "tokens-revoke",
            Endpoint::TokensVerify => "tokens-verify",
        }
    }

    /// The subject it listens on.
    pub fn subject(self) -> &'static str {
        match self {
            Endpoint::OutboundGet => subject::OUTBOUND_GET,
            Endpoint::OutboundEnqueue => subject::OUTBOUND_ENQUEUE,
            Endpoint::RecentChat => subject::RECENT_CHAT_GET,
            Endpoint::UserCountHistory => subject::USER_COUNT_HISTORY_GET,
            Endpoint::ChannelStats => subject::QUERY_CHANNEL_STATS,
            Endpoint::UserStats => subject::QUERY_USER_STATS,
            Endpoint::Maintenance => subject::MAINTENANCE_RUN,
            Endpoint::Kv => kv_subject::ALL,
            Endpoint::OutboundRecent => subject::OUTBOUND_RECENT,
            Endpoint::CurrentStatus => subject::QUERY_CURRENT_STATUS,
            Endpoint::TokensCreate => subject::TOKENS_CREATE,
            Endpoint::TokensList => subject::TOKENS_LIST,
            Endpoint::TokensRevoke => subject::TOKENS_REVOKE,
            Endpoint::TokensVerify => subject::TOKENS_VERIFY,
        }
    }
}

/// Starts the service and one task per endpoint, handling at most `max_in_flight` requests at
/// once (more wait in their subscription); the tasks end when the service stops.
pub async fn start(
    client: &async_nats::Client,
    ctx: Arc<Context>,
    version: &str,
    max_in_flight: usize,
) -> Result<(Service, JoinSet<()>), async_nats::Error> {
    let stats_ctx = ctx.clone();
    let service = client
        .service_builder()
        .description("Rosey's database: durable writes, queries and plugin storage")
        .queue_group(QUEUE_GROUP)
        .stats_handler(move |endpoint, _| stats_ctx.stats_data(&endpoint))
        .start(SERVICE_NAME, version)
        .await?;
    let in_flight = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    for ep in Endpoint::ALL {
        let mut endpoint = service
            .endpoint_builder()
            .name(ep.name())
            .add(ep.subject())
            .await?;
        let ctx = ctx.clone();
        let in_flight = in_flight.clone();
        tasks.spawn(async move {
            while let Some(request) = endpoint.next().await {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let result =
                        handle(&ctx, ep, &request.message.subject, &request.message.payload).await;
                    let sent = match result {
                        Ok(body) => request.respond(Ok(body)).await,
                        Err(error) => {
                            ctx.stats.add(
                                &format!("requests.errors.{}.{}", ep.name(), error.error.code),
                                1,
                            );
                            if error.error.code == ErrorCode::Internal {
                                tracing::error!(endpoint = ep.name(), %error, "request failed");
                            }
                            let (headers, body) = error_reply(&error);
                            request.respond_with_headers(Ok(body), headers).await
                        }
                    };
                    if let Err(e) = sent {
                        tracing::debug!(endpoint = ep.name(), error = %e, "could not send a reply");
                    }
                    drop(permit);
                });
            }
        });
    }
    Ok((service, tasks))
}

impl Context {
    /// The channel a request about a channel's data names: the named one, or, when it names
    /// none, the only one served (what a single-channel deployment always did). With several
    /// channels served a request must name one: a read that silently answered from the first
    /// channel would pass off one channel's data as another's. A channel this service does not
    /// hold is `not_found`; both errors list the channels served.
    pub fn channel(&self, name: Option<&str>) -> Result<&ChannelPools, ErrorBody> {
        match name {
            None if self.channels.len() > 1 => Err(ErrorBody::new(
                ErrorCode::MissingField,
                format!(
                    "rosey-db serves several channels ({}); name one in \"channel\"",
                    self.channel_list()
                ),
            )),
            None => self
                .channels
                .first()
                .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, "rosey-db serves no channel")),
            Some(name) => self.named(name),
        }
    }

    /// The file a deployment-wide request (plugin storage without `channel`, API tokens) uses
    /// when it names no channel: the first channel's, where that data always was.
    pub fn channel_or_first(&self, name: Option<&str>) -> Result<&ChannelPools, ErrorBody> {
        match name {
            None => self
                .channels
                .first()
                .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, "rosey-db serves no channel")),
            Some(name) => self.named(name),
        }
    }

    fn named(&self, name: &str) -> Result<&ChannelPools, ErrorBody> {
        self.channels
            .iter()
            .find(|c| c.channel == name)
            .ok_or_else(|| {
                ErrorBody::new(
                    ErrorCode::NotFound,
                    format!(
                        "rosey-db serves no channel {name:?} (it serves {})",
                        self.channel_list()
                    ),
                )
            })
    }

    /// An endpoint's `$SRV.STATS` data: its error replies by code, the ingestion counters of
    /// every channel summed (`ingest`), and each channel's own (`channels.<name>.ingest`), so
    /// one channel's dead letters or retries are not hidden in a deployment-wide total.
    pub fn stats_data(&self, endpoint: &str) -> serde_json::Value {
        let mut total = BTreeMap::<String, u64>::new();
        let mut channels = serde_json::Map::new();
        for ch in &self.channels {
            let ingest = ch.stats.with_prefix("ingest.");
            for (name, n) in &ingest {
                let sum = total.entry(name.clone()).or_default();
                *sum = sum.saturating_add(*n);
            }
            channels.insert(ch.channel.clone(), serde_json::json!({ "ingest": ingest }));
        }
        serde_json::json!({
            "errors": self.stats.with_prefix(&format!("requests.errors.{endpoint}.")),
            "ingest": total,
            "channels": channels,
        })
    }

    fn channel_list(&self) -> String {
        self.channels
            .iter()
            .map(|c| c.channel.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Where API tokens live, whatever channel a token request names: the first channel's file
    /// (tokens are deployment-wide, so a token request need not name a channel even when
    /// several are served). A named channel must still be one this service holds.
    pub fn token_store(&self, named: Option<&str>) -> Result<&ChannelPools, ErrorBody> {
        if let Some(name) = named {
            self.named(name)?;
        }
        self.channel_or_first(None)
    }
}

/// Decodes a request body; an empty body counts as `{}` (every field optional).
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ErrorBody> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return payload::decode(b"{}");
    }
    payload::decode(bytes)
}

fn internal(e: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, e.to_string())
}

fn from_store(e: StoreError) -> ErrorBody {
    match e {
        StoreError::Invalid(m) => ErrorBody::new(ErrorCode::InvalidJson, m),
        StoreError::TooLarge(m) => ErrorBody::new(ErrorCode::TooLarge, m),
        StoreError::Sqlite(e) if store::is_transient(&e) => {
            ErrorBody::new(ErrorCode::Internal, format!("database busy, retry: {e}"))
        }
        StoreError::Sqlite(e) => internal(e),
    }
}

fn from_pool(e: PoolError) -> ErrorBody {
    internal(e)
}

/// Runs a read on the reader pool and encodes its reply.
async fn read<T, F>(ctx: &ChannelPools, f: F) -> Result<Bytes, ErrorBody>
where
    T: Serialize + Send + 'static,
    F: FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
{
    let value = ctx
        .readers
        .run_inline(move |c| f(c))
        .await
        .map_err(from_pool)?
        .map_err(from_store)?;
    ok_reply(&value)
}

/// Runs a write in one immediate transaction on the request writer and encodes its reply.
async fn write<T, F>(ctx: &ChannelPools, f: F) -> Result<Bytes, ErrorBody>
where
    T: Serialize + Send + 'static,
    F: FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
{
    let value = ctx
        .writer
        .run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok::<_, StoreError>(value)
        })
        .await
        .map_err(from_pool)?
        .map_err(from_store)?;
    ok_reply(&value)
}

/// Answers one request.
pub async fn handle(
    ctx: &Context,
    ep: Endpoint,
    subject_name: &str,
    body: &[u8],
) -> Result<Bytes, ErrorBody> {
    let now = Timestamp::now().secs();
    match ep {
        Endpoint::OutboundGet => {
            let q: wire::OutboundGet = decode(body)?;
            let ch = ctx.channel(q.channel.as_deref())?;
            read(ch, move |c| {
                Ok(store::unsent_outbound(c, q.limit, q.max_retries, now)?)
            })
            .await
        }
        Endpoint::OutboundEnqueue => {
            let q: wire::OutboundEnqueue = decode(body)?;
            if q.message.trim().is_empty() {
                return Err(ErrorBody::new(
                    ErrorCode::InvalidJson,
                    "message must not be empty",
                ));
            }
            if q.message.len() > crate::events::MAX_TEXT_BYTES {
                return Err(ErrorBody::new(
                    ErrorCode::TooLarge,
                    format!(
                        "message is {} bytes; the limit is {}",
                        q.message.len(),
                        crate::events::MAX_TEXT_BYTES
                    ),
                ));
            }
            let ch = ctx.channel(q.channel.as_deref())?;
            write(ch, move |c| {
                Ok(Enqueued {
                    id: store::enqueue_outbound(c, &q.message, now)?,
                })
            })
            .await
        }
        Endpoint::RecentChat => {
            let q: wire::RecentChatGet = decode(body)?;
            let oldest = ctx.retention.recent_chat_cutoff(Timestamp::now().secs());
            let ch = ctx.channel(q.channel.as_deref())?;
            read(ch, move |c| Ok(store::recent_chat(c, &q, oldest)?)).await
        }
        Endpoint::UserCountHistory => {
            let q: wire::UserCountHistoryGet = decode(body)?;
            // The history keeps 30 days; asking further back returns what there is.
            let hours = i64::from(q.hours.min(24 * 30));
            let since = Timestamp::now().secs() - hours * 3600;
            let ch = ctx.channel(q.channel.as_deref())?;
            read(ch, move |c| Ok(store::user_count_history(c, since)?)).await
        }
        Endpoint::ChannelStats => {
            let q: wire::ChannelStatsQuery = decode(body)?;
            let ch = ctx.channel(q.channel.as_deref())?;
            read(ch, |c| Ok(store::channel_stats(c)?)).await
        }
        Endpoint::UserStats => {
            let q: wire::UserStatsQuery = decode(body)?;
            let ch = ctx.channel(q.channel.as_deref())?;
            read(ch, move |c| Ok(store::user_stats(c, &q.username)?)).await
        }
        Endpoint::Maintenance => {
            let q: wire::MaintenanceRun = decode(body)?;
            let ch = ctx.channel(q.channel.as_deref())?;
            let retention = ctx.retention;
            let report = ch
                .writer
                .run(move |c| maintenance::run(c, now, retention))
                .await
                .map_err(from_pool)?
                .map_err(|e| from_store(e.into()))?;
            tracing::info!(channel = %ch.channel, log = ?report.log, "maintenance run on request");
            ok_reply(&report)
        }
        Endpoint::Kv => handle_kv(ctx, subject_name, body, now).await,
        Endpoint::OutboundRecent => {
            let q: wire::OutboundRecent = decode(body)?;
            let ch = ctx.channel(q.channel.as_deref())?;
            read(ch, move |c| Ok(store::outbound_recent(c, q.limit)?)).await
        }
        Endpoint::CurrentStatus => {
            let q: wire::CurrentStatusQuery = decode(body)?;
            let ch = ctx.channel(q.channel.as_deref())?;
            read(ch, |c| Ok(store::current_status(c)?)).await
        }
        Endpoint::TokensCreate => {
            let q: wire::TokenCreate = decode(body)?;
            if q.description.len() > MAX_TOKEN_DESCRIPTION {
                return Err(ErrorBody::new(
                    ErrorCode::TooLarge,
                    format!("description is over {MAX_TOKEN_DESCRIPTION} bytes"),
                ));
            }
            let ch = ctx.token_store(q.channel.as_deref())?;
            write(ch, move |c| {
                tokens::create(c, &q.description, now).map_err(|e| match e {
                    tokens::CreateError::Sqlite(e) => StoreError::Sqlite(e),
                    other => StoreError::Invalid(other.to_string()),
                })
            })
            .await
        }
        Endpoint::TokensList => {
            let q: wire::TokenList = decode(body)?;
            let ch = ctx.token_store(q.channel.as_deref())?;
            read(ch, move |c| {
                Ok(wire::TokenListReply {
                    tokens: tokens::list(c, q.include_revoked)?,
                })
            })
            .await
        }
        Endpoint::TokensRevoke => {
            let q: wire::TokenRevoke = decode(body)?;
            if q.prefix.chars().count() < wire::TOKEN_PREFIX_MIN {
                return Err(ErrorBody::new(
                    ErrorCode::InvalidJson,
                    format!(
                        "prefix must have at least {} characters",
                        wire::TOKEN_PREFIX_MIN
                    ),
                ));
            }
            let ch = ctx.token_store(q.channel.as_deref())?;
            write(ch, move |c| {
                Ok(wire::TokensRevoked {
                    revoked: tokens::revoke(c, &q.prefix)?,
                })
            })
            .await
        }
        Endpoint::TokensVerify => {
            let q: wire::TokenVerify = decode(body)?;
            if q.token.is_empty() || q.token.len() > 512 {
                return ok_reply(&wire::TokenVerdict {
                    valid: false,
                    token_preview: None,
                });
            }
            let ch = ctx.token_store(q.channel.as_deref())?;
            write(ch, move |c| Ok(tokens::verify(c, &q.token, now)?)).await
        }
    }
}

async fn handle_kv(
    ctx: &Context,
    subject_name: &str,
    body: &[u8],
    now: i64,
) -> Result<Bytes, ErrorBody> {
    let Some((plugin, op)) = kv_subject::parse(subject_name) else {
        return Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!(
                "{subject_name:?} is not a key-value subject (rosey.db.kv.<plugin>.<get|set|delete|list|incr>)"
            ),
        ));
    };
    let plugin = plugin.to_owned();
    match op {
        kv_subject::Op::Get => {
            let q: kv::Get = decode(body)?;
            let ch = ctx.channel_or_first(q.channel.as_deref())?;
            read(ch, move |c| {
                let value = store::kv_get(c, &plugin, &q.key, now)?;
                Ok(kv::GetReply {
                    found: value.is_some(),
                    value,
                })
            })
            .await
        }
        kv_subject::Op::Set => {
            let q: kv::Set = decode(body)?;
            let ch = ctx.channel_or_first(q.channel.as_deref())?;
            write(ch, move |c| {
                store::kv_set(c, &plugin, &q.key, &q.value, q.ttl_seconds, now)?;
                Ok(actions::Ok::YES)
            })
            .await
        }
        kv_subject::Op::Delete => {
            let q: kv::Delete = decode(body)?;
            let ch = ctx.channel_or_first(q.channel.as_deref())?;
            write(ch, move |c| {
                Ok(kv::DeleteReply {
                    deleted: store::kv_delete(c, &plugin, &q.key, now)?,
                })
            })
            .await
        }
        kv_subject::Op::List => {
            let q: kv::List = decode(body)?;
            let ch = ctx.channel_or_first(q.channel.as_deref())?;
            read(ch, move |c| store::kv_list(c, &plugin, &q, now)).await
        }
        kv_subject::Op::Incr => {
            let q: kv::Incr = decode(body)?;
            let ch = ctx.channel_or_first(q.channel.as_deref())?;
            write(ch, move |c| {
                Ok(kv::IncrReply {
                    value: store::kv_incr(c, &plugin, &q.key, q.by, now)?,
                })
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Role;
    use std::time::Duration;

    fn context(names: &[&str]) -> Context {
        let pool = || Pool::new("unused.db".into(), Role::Reader, 1, Duration::from_secs(1));
        Context {
            channels: names
                .iter()
                .map(|name| ChannelPools {
                    channel: (*name).to_owned(),
                    readers: pool(),
                    writer: pool(),
                    stats: Arc::new(Stats::default()),
                })
                .collect(),
            stats: Arc::new(Stats::default()),
            retention: Retention {
                recent_chat_hours: 24,
            },
        }
    }

    #[test]
    fn one_channel_answers_requests_that_name_none() {
        let ctx = context(&["lobby"]);
        assert_eq!(ctx.channel(None).unwrap().channel, "lobby");
        assert_eq!(ctx.channel(Some("lobby")).unwrap().channel, "lobby");
        assert_eq!(ctx.channel_or_first(None).unwrap().channel, "lobby");
        let unknown = ctx.channel(Some("other")).err().unwrap();
        assert_eq!(unknown.error.code, ErrorCode::NotFound);
        assert!(unknown.error.message.contains("lobby"), "{unknown}");
    }

    #[test]
    fn several_channels_refuse_a_channel_read_naming_none_but_keep_deployment_storage() {
        let ctx = context(&["lobby", "second", "third"]);
        let refused = ctx.channel(None).err().unwrap();
        assert_eq!(refused.error.code, ErrorCode::MissingField);
        for name in ["lobby", "second", "third"] {
            assert!(refused.error.message.contains(name), "{refused}");
        }
        assert_eq!(ctx.channel(Some("third")).unwrap().channel, "third");
        // Plugin storage and tokens without a channel are the deployment's: the first file.
        assert_eq!(ctx.channel_or_first(None).unwrap().channel, "lobby");
        assert_eq!(
            ctx.channel_or_first(Some("nowhere"))
                .err()
                .unwrap()
                .error
                .code,
            ErrorCode::NotFound
        );
    }

    #[test]
    fn stats_show_each_channels_ingestion_and_their_sum() {
        let ctx = context(&["lobby", "second"]);
        ctx.channels[0].stats.add("ingest.applied", 3);
        ctx.channels[1].stats.add("ingest.applied", 4);
        ctx.channels[1].stats.add("ingest.dead_lettered", 1);
        ctx.stats.add("requests.errors.kv.not_found", 2);
        let data = ctx.stats_data("kv");
        assert_eq!(data["ingest"]["applied"], 7);
        assert_eq!(data["ingest"]["dead_lettered"], 1);
        assert_eq!(data["channels"]["lobby"]["ingest"]["applied"], 3);
        assert!(data["channels"]["lobby"]["ingest"]["dead_lettered"].is_null());
        assert_eq!(data["channels"]["second"]["ingest"]["applied"], 4);
        assert_eq!(data["channels"]["second"]["ingest"]["dead_lettered"], 1);
        assert_eq!(data["errors"]["not_found"], 2);
        assert!(ctx.stats_data("channel-stats")["errors"]
            .as_object()
            .unwrap()
            .is_empty());
    }
}
