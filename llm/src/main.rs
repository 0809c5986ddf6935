//! `rosey-llm`: starts the LLM gateway (see the library's documentation).

use clap::Parser;
use rosey_config::{service, signal::shutdown_signal, CommonArgs, Role};
use std::process::ExitCode;

/// The LLM gateway: answers `rosey.llm.*` requests through the configured provider.
#[derive(Debug, Parser)]
#[command(name = "rosey-llm", version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match service::start(Role::Llm, &args.common, |_| {}) {
        Ok(config) => config,
        Err(e) => return service::exit_code("rosey-llm", Err(e)),
    };
    // Chats are I/O waits on the provider; two workers are plenty and leave the machine's other
    // cores to the bot and the runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(rosey_llm::run(config, shutdown_signal())),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    service::exit_code("rosey-llm", result)
}
