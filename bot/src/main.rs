//! `rosey-bot`: joins one channel and puts it on NATS.

use clap::Parser;
use rosey_bot::core::{self, Settings};
use rosey_bot::platform::console::ConsolePlatform;
use rosey_bot::platform::cytube::CytubePlatform;
use rosey_config::{CommonArgs, PlatformKind};
use std::process::ExitCode;

// glibc's malloc kept every byte of a burst (a 50,000-user list) once the channel was back to
// three users; mimalloc returns part of it, and nearly all with MIMALLOC_PURGE_DELAY=0 in the
// environment (BENCHMARKS.md, "rosey-bot under a huge user list").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Holds one channel's chat connection and publishes it on NATS.
#[derive(Debug, Parser)]
#[command(name = "rosey-bot", version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.common.load_config()?;
    rosey_config::logging::init(&config, "info")?;
    rosey_config::supervisor::follow_supervisor()?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    // The error already names the server and says what failed.
    let nats = rosey_config::connect::connect(&config.nats).await?;
    let settings = Settings::from_config(&config);
    let p = &config.platform;
    let bot_name = p.credentials.username.clone();
    match p.kind {
        PlatformKind::Console => {
            let channel = p.channel.clone().unwrap_or_else(|| "console".to_owned());
            let platform = ConsolePlatform::new(&channel, &p.console_user, &bot_name);
            core::run(
                platform,
                nats,
                settings,
                &bot_name,
                "console",
                rosey_config::signal::shutdown_signal(),
            )
            .await
        }
        PlatformKind::Cytube => {
            let platform = CytubePlatform::from_config(p)?;
            let server = platform.domain().to_owned();
            core::run(
                platform,
                nats,
                settings,
                &bot_name,
                &server,
                rosey_config::signal::shutdown_signal(),
            )
            .await
        }
    }
}

// One thread is plenty for one channel and keeps memory low (no per-worker allocator arenas).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rosey-bot: {e:#}");
            ExitCode::FAILURE
        }
    }
}
