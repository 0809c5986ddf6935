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
use rosey_plugin_api::Timestamp;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Runs the database service the configuration describes until `shutdown` resolves (or
/// ingestion fails): opens and prepares the SQLite file, sets up the stream, serves requests on a
/// thread of its own and applies the stream's writes. `rosey-db` is this behind the shared
/// start-up.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let db = &config.database;
    let path = db.path.clone();
    let now = Timestamp::now().secs();
    let busy_timeout = db.busy_timeout.as_duration();
    let mut conn = schema::open(&path, Role::Writer, busy_timeout)
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    schema::enable_wal(&conn).context("cannot switch the database to WAL")?;
    schema::initialize(&mut conn, now)
        .with_context(|| format!("cannot prepare the schema of {}", path.display()))?;
    let position = store::last_sequence(&conn).context("cannot read the stream position")?;
    let undelivered_dead =
        store::unpublished_dead_letters(&conn).context("cannot read pending dead letters")?;
    tracing::info!(db = %path.display(), position, "database ready");

    let stats = Arc::new(Stats::default());
    let (writer, writer_thread) = Writer::start(
        conn,
        WriterConfig {
            max_redeliveries: u64::from(db.max_redeliveries),
        },
        stats.clone(),
    )
    .context("cannot start the writer thread")?;
    let retention = Retention {
        recent_chat_hours: db.recent_chat_retention_hours,
    };
    let readers = Pool::new(
        path.clone(),
        Role::Reader,
        db.read_connections,
        busy_timeout,
    );
    // SQLite has one writer at a time; a second request connection would only wait for it.
    let request_writer = Pool::new(path.clone(), Role::Writer, 1, busy_timeout);

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
    // The stream and the durable consumer exist before the first request is answered, so
    // nothing published after that answer can be missed.
    let jetstream = match stream::ensure_streams(&js, &limits).await {
        Ok(s) => {
            if let Some(shortfall) = stream::replica_shortfall(s.cached_info(), limits.replicas) {
                tracing::warn!("{shortfall}");
            }
            let consumer = ingest::ensure_consumer(&s, settings).await?;
            Some((s, consumer))
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
        readers,
        writer: request_writer.clone(),
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
    tracing::info!(jetstream = jetstream.is_some(), "rosey-db serving");
    let stop_tx = Arc::new(stop_tx);
    let signal_stop = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing the current batch");
        let _ = signal_stop.send(true);
    });
    let housekeeping = tokio::spawn(housekeeping(
        request_writer,
        retention,
        db.recent_chat_prune_interval.as_duration(),
        db.maintenance_interval.as_duration(),
        stop_rx.clone(),
    ));

    let ingest_result = match jetstream {
        Some((s, consumer)) => {
            ingest::run_jetstream(
                client.clone(),
                js,
                s,
                consumer,
                writer,
                position,
                settings,
                stats,
                stop_rx,
                undelivered_dead,
            )
            .await
        }
        None => {
            ingest::run_core(
                client.clone(),
                writer,
                settings,
                stats,
                stop_rx,
                undelivered_dead,
            )
            .await
        }
    };
    // Whatever ended ingestion, the request thread stops too.
    let _ = stop_tx.send(true);
    housekeeping.abort();
    // Acks are buffered; send them before exiting.
    let _ = tokio::time::timeout(flush_timeout, client.flush()).await;
    let _ = tokio::task::spawn_blocking(move || {
        let _ = request_thread.join();
        writer_thread.join()
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
