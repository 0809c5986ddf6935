//! `rosey-bot`: joins one channel (or several, each in a session of its own) and puts it on NATS.

use clap::Parser;
use rosey_config::{service, signal::shutdown_signal, CommonArgs, Role};
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
    /// The channel of `platform.channels` this bot serves (needed when it lists several);
    /// given several times, one process serves each of them in a session of its own
    #[arg(long, value_name = "NAME")]
    channel: Vec<String>,
}

// One thread is plenty for one channel and keeps memory low (no per-worker allocator arenas).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match service::start(Role::Bot, &args.common, |_| {}) {
        Ok(config) if args.channel.len() > 1 => {
            rosey_bot::run_channels(config, &args.channel, shutdown_signal()).await
        }
        Ok(config) => {
            let channel = args.channel.first().map(String::as_str);
            rosey_bot::run(config, channel, shutdown_signal()).await
        }
        Err(e) => Err(e.into()),
    };
    service::exit_code("rosey-bot", result)
}
