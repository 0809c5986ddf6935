//! `rosey-bot`: one channel's chat connection, normalized onto NATS.
//!
//! The bot holds no database and runs no plugins: it turns what the chat platform says into
//! the contract's events, commands and durable database writes, and carries out the actions
//! other processes ask of the platform.
//!
//! # Layout
//! - [`platform`]: the [`platform::Platform`] boundary (no NATS in it) and its connectors,
//!   [`platform::console`] and [`platform::cytube`]. Everything CyTube-specific lives under
//!   the latter: its frame codec ([`platform::cytube::protocol`]), the normalizer from its
//!   events to platform-neutral ones ([`platform::cytube::normalize`]: HTML decoding, users,
//!   intake rules, its permission defaults), discovery, media links and the SOCKS5 proxy. The
//!   core below imports none of it, so a second platform needs no change there.
//! - [`core`]: the event loop, publishing, the action server, the outbound poller.
//! - [`rules`]: the one rule book for actions (what the channel must allow), for NATS and the
//!   PM shell alike.
//! - [`state`], [`chat_queue`], [`flood`], [`shell`], [`db_publisher`], [`logfiles`]: the core's
//!   parts.
#![deny(missing_docs)]

pub mod chat_queue;
pub mod core;
pub mod db_publisher;
pub mod flood;
pub mod logfiles;
pub mod platform;
pub mod rules;
pub mod shell;
pub mod state;

use crate::core::BotSettings;
use crate::platform::console::ConsolePlatform;
use crate::platform::cytube::CytubePlatform;
use rosey_config::{Config, PlatformKind};
use std::future::Future;
use std::time::Duration;
use tracing::Instrument as _;

/// Runs the bot the configuration describes (its platform, bot name and `channel`, which may be
/// left out when the configuration names one channel) until the platform stops or `shutdown`
/// resolves; `rosey-bot` is this behind the shared start-up. Its logs name the channel.
pub async fn run(
    mut config: Config,
    channel: Option<&str>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let served = config.platform.channel_names();
    config
        .select_channel(channel)
        .map_err(|e| anyhow::anyhow!(e))?;
    let name = config
        .platform
        .channel
        .clone()
        .unwrap_or_else(|| "console".to_owned());
    // The deployment's first channel writes on the PRD's subjects (what a single-channel
    // deployment always did); every other names its channel in the subject.
    let db_channel = (served.first() != Some(&name)).then(|| name.clone());
    // Requests name the channel whenever there are several: rosey-db refuses an unnamed read
    // then, rather than answer from the first channel.
    let request_channel = (served.len() > 1).then(|| name.clone());
    let span = tracing::info_span!("bot", channel = %name);
    run_channel(config, db_channel, request_channel, shutdown)
        .instrument(span)
        .await
}

/// The least and the most time a channel of a shared process waits before its session is
/// started again after it ended (the pause doubles while sessions keep ending early).
const RESTART_PAUSE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));
/// A session that lasted this long ended on its own, not in a crash loop: its pause resets.
const RESTART_RESET_AFTER: Duration = Duration::from_secs(60);

/// Runs several channels of the configuration in one process (`rosey-bot --channel a --channel
/// b`), so a deployment of many channels needs not a process each: every channel is its own
/// session task with its own state, NATS connection, `$SRV` entry (its metadata naming the
/// channel, and `channels` listing the process's) and `channel` log span, exactly as a
/// `rosey-bot` of its own would run it. A channel whose session ends (an error, or its platform
/// stopping) is started again after a pause, as `rosey up` restarts a bot process, without
/// touching the others; `shutdown` stops them all.
pub async fn run_channels(
    config: Config,
    channels: &[String],
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut unique = channels.to_vec();
    unique.sort();
    unique.dedup();
    if unique.len() != channels.len() {
        anyhow::bail!("a channel is named twice in {channels:?}");
    }
    for channel in channels {
        config
            .clone()
            .select_channel(Some(channel))
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut sessions = tokio::task::JoinSet::new();
    for channel in channels {
        let (config, channel, mut stop) = (config.clone(), channel.clone(), stop_rx.clone());
        let together = channels.join(",");
        sessions.spawn(async move {
            let mut pause = RESTART_PAUSE.0;
            loop {
                let started = tokio::time::Instant::now();
                let mut session_stop = stop.clone();
                let ended = run_in_process(config.clone(), &channel, &together, async move {
                    let _ = session_stop.wait_for(|s| *s).await;
                })
                .await;
                if *stop.borrow() {
                    return;
                }
                if started.elapsed() >= RESTART_RESET_AFTER {
                    pause = RESTART_PAUSE.0;
                }
                match ended {
                    Ok(()) => tracing::warn!(channel, ?pause, "session ended; starting it again"),
                    Err(e) => {
                        tracing::error!(channel, ?pause, "session failed, starting it again: {e:#}")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                pause = (pause * 2).min(RESTART_PAUSE.1);
            }
        });
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while sessions.join_next().await.is_some() {}
    Ok(())
}

/// One channel's session in a process that serves `together` (comma-separated).
async fn run_in_process(
    mut config: Config,
    channel: &str,
    together: &str,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let served = config.platform.channel_names();
    config
        .select_channel(Some(channel))
        .map_err(|e| anyhow::anyhow!(e))?;
    let db_channel =
        (served.first().map(String::as_str) != Some(channel)).then(|| channel.to_owned());
    let request_channel = (served.len() > 1).then(|| channel.to_owned());
    let span = tracing::info_span!("bot", channel = %channel);
    let together = together.to_owned();
    run_channel_with(
        config,
        db_channel,
        request_channel,
        move |s| s.process_channels = Some(together),
        shutdown,
    )
    .instrument(span)
    .await
}

async fn run_channel(
    config: Config,
    db_channel: Option<String>,
    request_channel: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_channel_with(config, db_channel, request_channel, |_| {}, shutdown).await
}

async fn run_channel_with(
    config: Config,
    db_channel: Option<String>,
    request_channel: Option<String>,
    adjust: impl FnOnce(&mut BotSettings),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // The error already names the server and says what failed.
    let nats = rosey_config::connect::connect(&config.nats).await?;
    let mut settings = BotSettings::from_config(&config, db_channel, request_channel);
    adjust(&mut settings);
    let p = &config.platform;
    let bot_name = p.credentials.username.clone();
    match p.kind {
        PlatformKind::Console => {
            let channel = p.channel.clone().unwrap_or_else(|| "console".to_owned());
            let platform = ConsolePlatform::new(&channel, &p.console_user, &bot_name);
            core::run(platform, nats, settings, &bot_name, "console", shutdown).await
        }
        PlatformKind::Cytube => {
            let platform = CytubePlatform::from_config(p)?;
            let server = platform.domain().to_owned();
            core::run(platform, nats, settings, &bot_name, &server, shutdown).await
        }
    }
}
