//! `rosey-runtime`: parses its arguments, loads the configuration and calls
//! [`rosey_runtime::run_watching`]; everything else is in the library.

use anyhow::Context as _;
use clap::Parser;
use rosey_config::{CommonArgs, Config};
use rosey_runtime::ConfigWatch;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(name = "rosey-runtime", version, about = "Rosey's plugin runtime")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Folder holding the plugin libraries (or plugin crates), overriding `plugins.directory`
    #[arg(long, value_name = "DIR")]
    plugins_dir: Option<PathBuf>,
}

impl Args {
    fn load_config(&self) -> anyhow::Result<Config> {
        let mut config = self.common.load_config()?;
        if let Some(dir) = &self.plugins_dir {
            config.set_plugins_dir(dir.clone());
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rosey-runtime: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_main(args: Args) -> anyhow::Result<()> {
    let config = args.load_config()?;
    rosey_config::logging::init(&config, "info")?;
    rosey_config::supervisor::follow_supervisor()?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shutdown_timeout = config.plugins.shutdown_timeout.as_duration();
    let args = Arc::new(args);
    let watch = args.common.config.clone().map(|path| {
        let args = args.clone();
        ConfigWatch {
            path,
            reload: Box::new(move || args.load_config()),
        }
    });
    let outcome = rt.block_on(rosey_runtime::run_watching(
        config,
        watch,
        rosey_config::signal::shutdown_signal(),
    ));
    // Plugin worker threads may be stuck in plugin code; do not wait for them.
    rt.shutdown_timeout(shutdown_timeout);
    outcome
}
