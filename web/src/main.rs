//! `rosey-web`: starts the status page and HTTP API (see the library's documentation).

use clap::Parser;
use rosey_config::{service, signal::shutdown_signal, CommonArgs, Role};
use std::process::ExitCode;

/// The status page, live dashboard and HTTP API, over NATS only.
#[derive(Debug, Parser)]
#[command(name = "rosey-web", version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on, overriding `web.listen` (port 0 picks a free port)
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match service::start(Role::Web, &args.common, |config| {
        if let Some(listen) = args.listen.clone() {
            config.web.listen = listen;
        }
    }) {
        Ok(config) => config,
        Err(e) => return service::exit_code("rosey-web", Err(e)),
    };
    // Two workers serve hundreds of page clients; the process idles small.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(rosey_web::run(config, shutdown_signal())),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    service::exit_code("rosey-web", result)
}
