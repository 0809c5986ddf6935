//! The service as a whole: what `rosey-db` runs, callable from tests and benches.

use crate::maintenance::{self, Retention};
use crate::pool::Pool;
use crate::requests;
use crate::schema::{self, Role};
use crate::stats::Stats;
use crate::writer::{Writer, WriterConfig};
use crate::{ingest, store};
use anyhow::{Context as _, Result};
use rosey_config::Config;
use rosey_plugin_api::stream;
use rosey_plugin_api::subjects::db as subject;
use rosey_plugin_api::Timestamp;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument as _;

/// One channel's part of the service: its SQLite file, the writer thread applying its stream,
/// and the pools its requests use.
struct ChannelDb {
    channel: String,
    path: PathBuf,
    writer: Writer,
    writer_thread: std::thread::JoinHandle<()>,
    readers: Arc<Pool>,
    request_writer: Arc<Pool>,
    /// The channel's own ingestion counters (`$SRV.STATS` shows them per channel and summed).
    stats: Arc<Stats>,
    position: u64,
    undelivered_dead: Vec<store::StoredDeadLetter>,
}

/// Opens and prepares `channel`'s file and starts its writer thread. `token_home` is the first
/// channel's file when `channel` is a further one: API tokens are deployment-wide and live there.
fn open_channel(
    config: &Config,
    channel: &str,
    path: &Path,
    token_home: Option<&Path>,
    now: i64,
) -> Result<ChannelDb> {
    let db = &config.database;
    let busy_timeout = db.busy_timeout.as_duration();
    let mut conn = schema::open(path, Role::Writer, busy_timeout)
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    // The first file is the one a single-channel deployment always had: it stays with the
    // channel its status names, and is never handed to another channel of the list. Checked
    // before anything is written to it.
    let served = config.platform.channel_names();
    if served.len() > 1 {
        let holder = store::status_channel_name(&conn).context("cannot read current_status")?;
        if let Some(holder) = holder.filter(|h| h != channel && served.contains(h)) {
            anyhow::bail!(
                "{} holds the data of channel {holder:?} (its current_status), but {channel:?} \
                 is listed first in platform.channels: list {holder:?} first, so its data stays \
                 with it",
                path.display()
            );
        }
    }
    schema::enable_wal(&conn).context("cannot switch the database to WAL")?;
    schema::initialize(&mut conn, now)
        .with_context(|| format!("cannot prepare the schema of {}", path.display()))?;
    if let Some(home) = token_home {
        let moved = crate::tokens::gather_into(&conn, home).with_context(|| {
            format!(
                "cannot move the API tokens of {} into {}",
                path.display(),
                home.display()
            )
        })?;
        if moved > 0 {
            tracing::info!(
                channel,
                moved,
                "API tokens moved into the first channel's file (tokens are deployment-wide)"
            );
        }
    }
    let position = store::last_sequence(&conn).context("cannot read the stream position")?;
    let undelivered_dead =
        store::unpublished_dead_letters(&conn).context("cannot read pending dead letters")?;
    tracing::info!(channel, db = %path.display(), position, "database ready");
    let stats = Arc::new(Stats::default());
    let (writer, writer_thread) = Writer::start(
        conn,
        WriterConfig {
            max_redeliveries: u64::from(db.max_redeliveries),
        },
        stats.clone(),
    )
    .context("cannot start the writer thread")?;
    Ok(ChannelDb {
        channel: channel.to_owned(),
        path: path.to_path_buf(),
        writer,
        writer_thread,
        readers: Pool::new(
            path.to_path_buf(),
            Role::Reader,
            db.read_connections,
            busy_timeout,
        ),
        // SQLite has one writer at a time; a second request connection would only wait for it.
        request_writer: Pool::new(path.to_path_buf(), Role::Writer, 1, busy_timeout),
        stats,
        position,
        undelivered_dead,
    })
}

/// Runs the database service the configuration describes until `shutdown` resolves (or
/// ingestion fails): opens and prepares each served channel's SQLite file
/// ([`Config::channel_databases`]), sets up the streams, serves requests on a thread of its
/// own and applies each channel's writes from its own stream with a consumer and a writer of
/// its own, so one channel's burst or poison event never delays another. `rosey-db` is this
/// behind the shared start-up.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let db = &config.database;
    let now = Timestamp::now().secs();
    let stats = Arc::new(Stats::default());
    let mut files = config.channel_databases();
    if files.is_empty() {
        // A CyTube configuration always names a channel; keep the file anyway.
        files.push((String::new(), db.path.clone()));
    }
    let mut channels = Vec::with_capacity(files.len());
    let token_home = files[0].1.clone();
    for (i, (channel, path)) in files.iter().enumerate() {
        let home = (i > 0).then_some(token_home.as_path());
        channels.push(open_channel(&config, channel, path, home, now)?);
    }
    let retention = Retention {
        recent_chat_hours: db.recent_chat_retention_hours,
    };

    let client = rosey_config::connect::connect(&config.nats).await?;
    let js = async_nats::jetstream::new(client.clone());
    let limits = db.stream.limits();
    let settings = ingest::IngestSettings {
        batch_size: db.batch_size,
        batch_wait: db.batch_wait.as_duration(),
        ack_wait: db.ack_wait.as_duration(),
        pull_heartbeat: db.pull_heartbeat.as_duration(),
        pull_expiry: db.pull_expiry.as_duration(),
    };
    let flush_timeout = db.shutdown_flush_timeout.as_duration();
    // The streams and the durable consumers exist before the first request is answered, so
    // nothing published after that answer can be missed.
    let jetstream = match stream::ensure_streams(&js, &limits).await {
        Ok(s) => {
            if let Some(shortfall) = stream::replica_shortfall(s.cached_info(), limits.replicas) {
                tracing::warn!("{shortfall}");
            }
            let mut consumers = Vec::with_capacity(channels.len());
            for (i, ch) in channels.iter().enumerate() {
                // The first channel's writes are the PRD's subjects in the main stream; every
                // other channel's are in its own.
                let stream = if i == 0 {
                    s.clone()
                } else {
                    stream::ensure_channel_stream(&js, &limits, &ch.channel).await?
                };
                let consumer = ingest::ensure_consumer(&stream, settings).await?;
                consumers.push((stream, consumer));
            }
            Some(consumers)
        }
        Err(e) => {
            // The server's own word (its INFO), not an account query: async-nats 0.51 cannot read
            // nats-server 2.9's account info, and a failed setup must never be mistaken for a
            // server without JetStream (that would silently give up durability).
            if client.server_info().jetstream {
                return Err(e).context("JetStream is available but the stream cannot be set up");
            }
            tracing::debug!(error = %e, "no JetStream");
            None
        }
    };

    let ctx = Arc::new(requests::Context {
        channels: channels
            .iter()
            .map(|ch| requests::ChannelPools {
                channel: ch.channel.clone(),
                readers: ch.readers.clone(),
                writer: ch.request_writer.clone(),
                stats: ch.stats.clone(),
            })
            .collect(),
        stats: stats.clone(),
        retention,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let request_thread = spawn_request_thread(
        config.nats.clone(),
        ctx,
        RequestLimits {
            max_in_flight: db.request_concurrency,
            flush_timeout,
        },
        stop_rx.clone(),
    )
    .await?;
    tracing::info!(
        jetstream = jetstream.is_some(),
        channels = channels.len(),
        "rosey-db serving"
    );
    let stop_tx = Arc::new(stop_tx);
    let signal_stop = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing the current batch");
        let _ = signal_stop.send(true);
    });

    let mut housekeepers = Vec::with_capacity(channels.len());
    let mut writer_threads = Vec::with_capacity(channels.len());
    let mut ingests = tokio::task::JoinSet::new();
    let mut consumers = jetstream.map(Vec::into_iter);
    for (i, ch) in channels.into_iter().enumerate() {
        let span = tracing::info_span!("channel", channel = %ch.channel);
        housekeepers.push(tokio::spawn(
            housekeeping(
                ch.request_writer.clone(),
                retention,
                db.recent_chat_prune_interval.as_duration(),
                db.maintenance_interval.as_duration(),
                stop_rx.clone(),
            )
            .instrument(span.clone()),
        ));
        writer_threads.push(ch.writer_thread);
        tracing::debug!(channel = %ch.channel, db = %ch.path.display(), "ingesting");
        let (client, stats, stop_rx) = (client.clone(), ch.stats.clone(), stop_rx.clone());
        match consumers.as_mut().and_then(Iterator::next) {
            Some((s, consumer)) => {
                let js = js.clone();
                ingests.spawn(
                    async move {
                        ingest::run_jetstream(
                            client,
                            js,
                            s,
                            consumer,
                            ch.writer,
                            ch.position,
                            settings,
                            stats,
                            stop_rx,
                            ch.undelivered_dead,
                        )
                        .await
                    }
                    .instrument(span),
                );
            }
            None => {
                let subjects = if i == 0 {
                    subject::WRITE_SUBJECTS
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect()
                } else {
                    vec![subject::channel_writes(&ch.channel)?]
                };
                ingests.spawn(
                    async move {
                        ingest::run_core(
                            client,
                            subjects,
                            ch.writer,
                            settings,
                            stats,
                            stop_rx,
                            ch.undelivered_dead,
                        )
                        .await
                    }
                    .instrument(span),
                );
            }
        }
    }
    // Every channel's ingestion runs until shutdown; whichever fails first stops them all.
    let mut ingest_result = Ok(());
    while let Some(ended) = ingests.join_next().await {
        let result = match ended {
            Ok(result) => result.map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::anyhow!("an ingestion task failed: {e}")),
        };
        if let Err(e) = result {
            let _ = stop_tx.send(true);
            if ingest_result.is_ok() {
                ingest_result = Err(e);
            }
        }
    }
    // Whatever ended ingestion, the request thread stops too.
    let _ = stop_tx.send(true);
    for housekeeping in housekeepers {
        housekeeping.abort();
    }
    // Acks are buffered; send them before exiting.
    let _ = tokio::time::timeout(flush_timeout, client.flush()).await;
    let _ = tokio::task::spawn_blocking(move || {
        let _ = request_thread.join();
        for thread in writer_threads {
            let _ = thread.join();
        }
    })
    .await;
    ingest_result.context("ingestion stopped")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// How the request thread is bounded, from the `database` configuration.
#[derive(Debug, Clone, Copy)]
struct RequestLimits {
    /// Requests handled at once.
    max_in_flight: usize,
    /// How long stopping waits to send buffered replies.
    flush_timeout: Duration,
}

/// Serves requests on a thread of its own with a single-threaded runtime and its own NATS
/// connection: a reply never queues behind stream deliveries on the ingestion connection, and
/// a request is read, answered and sent without hopping between threads, which is what keeps
/// its latency low while ingestion keeps the other cores busy. Returns once it is serving.
async fn spawn_request_thread(
    nats: rosey_config::NatsConfig,
    ctx: Arc<requests::Context>,
    limits: RequestLimits,
    mut stop: watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<()>> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let handle = std::thread::Builder::new()
        .name("rosey-db-requests".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(4)
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start the request runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let client = match rosey_config::connect::connect(&nats).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let (service, tasks) = match requests::start(
                    &client,
                    ctx,
                    env!("CARGO_PKG_VERSION"),
                    limits.max_in_flight,
                )
                .await
                {
                    Ok(started) => started,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(format!("cannot start the request service: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
                if let Err(e) = service.stop().await {
                    tracing::debug!(error = %e, "stopping the service");
                }
                drop(tasks);
                let _ = tokio::time::timeout(limits.flush_timeout, client.flush()).await;
            });
        })
        .context("cannot start the request thread")?;
    match ready_rx.await {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(anyhow::anyhow!(e)),
        Err(_) => Err(anyhow::anyhow!(
            "the request thread stopped during start-up"
        )),
    }
}

/// Prunes the recent chat and expired keys often, and runs the full maintenance daily.
async fn housekeeping(
    pool: Arc<Pool>,
    retention: Retention,
    prune_every: Duration,
    maintain_every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let start = tokio::time::Instant::now();
    let last_run = match pool.run(|c| maintenance::last_run(c)).await {
        Ok(Ok(last)) => last,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read when maintenance last ran");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read when maintenance last ran");
            None
        }
    };
    let first = maintenance::first_run_delay(
        last_run,
        Timestamp::now().secs(),
        maintain_every,
        prune_every,
    );
    tracing::debug!(?first, "first scheduled maintenance");
    let mut prune = tokio::time::interval_at(start + prune_every, prune_every);
    let mut maintain = tokio::time::interval_at(start + first, maintain_every);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    maintain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = prune.tick() => {
                let now = Timestamp::now().secs();
                match pool.run(move |c| maintenance::prune(c, now, retention)).await {
                    Ok(Ok(r)) => tracing::debug!(recent_chat = r.recent_chat, kv_expired = r.kv_expired, "pruned"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "pruning failed; will retry"),
                    Err(e) => tracing::warn!(error = %e, "pruning failed; will retry"),
                }
            }
            _ = maintain.tick() => {
                let now = Timestamp::now().secs();
                match pool.run(move |c| maintenance::run(c, now, retention)).await {
                    Ok(Ok(r)) => tracing::info!(log = ?r.log, "daily maintenance done"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "maintenance failed; will retry"),
                    Err(e) => tracing::warn!(error = %e, "maintenance failed; will retry"),
                }
            }
        }
    }
}
