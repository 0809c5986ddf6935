//! `rosey-runtime`: parses its arguments, starts as every service does
//! ([`rosey_config::service::start`]) and calls [`rosey_runtime::run_watching`]; everything else
//! is in the library.

use anyhow::Context as _;
use clap::Parser;
use rosey_config::{service, CommonArgs, Config, Role};
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
    /// This binary's own flags over the configuration (after the shared ones).
    fn adjust(&self, config: &mut Config) {
        if let Some(dir) = &self.plugins_dir {
            config.set_plugins_dir(dir.clone());
        }
    }

    /// The configuration as the flags read it, again (when the file changes).
    fn load_config(&self) -> anyhow::Result<Config> {
        let mut config = self.common.load_config(Role::Runtime)?;
        self.adjust(&mut config);
        Ok(config)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match service::start(Role::Runtime, &args.common, |config| args.adjust(config)) {
        Ok(config) => serve(args, config),
        Err(e) => Err(e.into()),
    };
    service::exit_code("rosey-runtime", result)
}

fn serve(args: Args, config: Config) -> anyhow::Result<()> {
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
