//! The bot core: applies each platform event once to the channel state, publishes the
//! normalized events, commands and durable database writes, and serves the actions other
//! processes send to the platform.
//!
//! # Layout
//! - `context`: the settings and the context every task shares ([`Ctx`]).
//! - `events`: platform events, applied once and published ([`handle_event`]).
//! - `actions`: the action server (what other processes ask of the platform).
//! - `timers`: the outbound poller and the periodic status and counts.
//! - this module: [`run`], which starts them and ends the session cleanly.

mod actions;
mod context;
mod events;
mod timers;

pub use context::{BotSettings, Ctx};
pub use events::{handle_event, report_error, user_list_diff};

use crate::chat_queue::{ChatQueue, TokenBucket};
use crate::db_publisher::DbPublisher;
use crate::flood::FloodGuard;
use crate::logfiles::LogFiles;
use crate::platform::{ActionRequest, Platform, PlatformAction, PlatformEvent};
use crate::state::ChannelState;
use actions::*;
use anyhow::Context as _;
use events::*;
use rosey_plugin_api::subjects::platform as platform_subjects;
use rosey_plugin_api::Timestamp;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timers::*;
use tokio::sync::mpsc;
use tracing::Instrument as _;

/// Runs the bot on `platform` until the platform stops or `shutdown` resolves.
pub async fn run<P: Platform>(
    platform: P,
    nats: async_nats::Client,
    settings: BotSettings,
    bot_name: &str,
    server: &str,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let name = platform.name();
    let channel = platform.channel().to_owned();
    let (events_tx, mut events_rx) = mpsc::channel::<PlatformEvent>(1024);
    let (actions_tx, actions_rx) = mpsc::channel::<ActionRequest>(64);
    let db = DbPublisher::start(
        nats.clone(),
        settings.stream_limits,
        settings.db_timing,
        settings.db_channel.clone(),
    );
    let chat = ChatQueue::new(settings.max_message_len);
    let ctx = Arc::new(Ctx {
        nats: nats.clone(),
        platform: name,
        channel: channel.clone(),
        state: Mutex::new(ChannelState::new(name, &channel, bot_name, server)),
        chat: chat.clone(),
        db,
        actions: actions_tx.clone(),
        logs: LogFiles::open(
            settings.chat_log_file.as_deref(),
            settings.media_log_file.as_deref(),
        ),
        flood: Mutex::new(FloodGuard::new(
            settings.flood_per_minute,
            settings.flood_block,
        )),
        joins_over_cap: AtomicU64::new(0),
        default_rank: P::default_rank,
        settings,
    });

    let send_subject = platform_subjects::send_all(name).context("platform name")?;
    let actions_sub = nats
        .subscribe(send_subject.clone())
        .await
        .with_context(|| format!("cannot subscribe to {send_subject}"))?;
    // Make sure the subscription is registered before anyone is told we are up.
    nats.flush().await.context("NATS flush")?;

    let platform_task = tokio::spawn(platform.run(events_tx, actions_rx).in_current_span());
    let worker = tokio::spawn(
        chat.clone()
            .run_worker(
                TokenBucket::new(ctx.settings.chat_burst, ctx.settings.chat_per_second),
                actions_tx,
            )
            .in_current_span(),
    );
    let serve = tokio::spawn(serve_actions(ctx.clone(), actions_sub).in_current_span());
    let outbound = tokio::spawn(poll_outbound(ctx.clone()).in_current_span());
    let timers = tokio::spawn(periodic(ctx.clone()).in_current_span());
    tracing::info!(platform = name, channel, "rosey-bot running");

    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            event = events_rx.recv() => match event {
                Some(event) => handle_event(&ctx, event).await,
                None => break Ok(()),
            },
            () = &mut shutdown => {
                tracing::info!("shutting down");
                break Ok(());
            }
        }
    };
    chat.close();
    for task in [serve, outbound, timers] {
        task.abort();
    }
    worker.abort();
    leave_platform(&ctx, &mut events_rx, platform_task).await;
    ctx.state().joined = false;
    // As the original's close(): whoever is present stops being counted when the bot stops.
    close_sessions(&ctx, Timestamp::now()).await;
    ctx.publish_status().await;
    ctx.write_status().await;
    // Queued durable writes are stored, and the last publishes sent, before we go; one
    // deadline bounds both, since NATS may be down.
    let deadline = tokio::time::Instant::now() + ctx.settings.shutdown_flush_timeout;
    if tokio::time::timeout_at(deadline, ctx.db.flush())
        .await
        .is_err()
    {
        let lost = ctx.db.pending();
        tracing::error!(
            lost_writes = lost.writes,
            lost_chat_lines = lost.chat_lines,
            lost_bytes = lost.bytes,
            "NATS did not store every database write before shutdown; these are lost"
        );
    }
    if !matches!(
        tokio::time::timeout_at(deadline, nats.flush()).await,
        Ok(Ok(()))
    ) {
        tracing::warn!("the last publishes may not have reached NATS before shutdown");
    }
    result
}

/// How long the platform may take to leave the channel at shutdown.
pub(crate) const LEAVE_TIMEOUT: Duration = Duration::from_secs(4);

/// Asks the platform to leave cleanly (CyTube: a websocket close frame) and applies what it
/// still reports meanwhile, within [`LEAVE_TIMEOUT`].
pub(crate) async fn leave_platform(
    ctx: &Arc<Ctx>,
    events_rx: &mut mpsc::Receiver<PlatformEvent>,
    mut task: tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let deadline = tokio::time::Instant::now() + LEAVE_TIMEOUT;
    let (done, _answer) = tokio::sync::oneshot::channel();
    let request = ctx.actions.send((PlatformAction::Disconnect, done));
    tokio::pin!(request);
    let mut requested = false;
    loop {
        tokio::select! {
            sent = &mut request, if !requested => {
                requested = true;
                if sent.is_err() {
                    break;
                }
            }
            // The request may queue behind events the platform is handing over.
            event = events_rx.recv() => match event {
                Some(event) => handle_event(ctx, event).await,
                None => break,
            },
            _ = &mut task => return,
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!("the platform did not leave in time; closing without a goodbye");
                break;
            }
        }
    }
    task.abort();
}
