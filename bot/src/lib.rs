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

async fn run_channel(
    config: Config,
    db_channel: Option<String>,
    request_channel: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // The error already names the server and says what failed.
    let nats = rosey_config::connect::connect(&config.nats).await?;
    let settings = BotSettings::from_config(&config, db_channel, request_channel);
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
