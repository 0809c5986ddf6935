//! `rosey-db`: starts the database service (see the library's documentation).

use clap::Parser;
use rosey_config::{service, signal::shutdown_signal, CommonArgs, Role};
use std::path::PathBuf;
use std::process::ExitCode;

/// The database service: owns the SQLite file and serves it over NATS.
#[derive(Debug, Parser)]
#[command(name = "rosey-db", version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// SQLite database file, overriding `database.path`
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match service::start(Role::Db, &args.common, |config| {
        if let Some(db) = args.db.clone() {
            config.set_database_path(db);
        }
    }) {
        Ok(config) => config,
        Err(e) => return service::exit_code("rosey-db", Err(e)),
    };
    // Ingestion and its blocking SQLite work take two workers; requests have a thread of their
    // own (see the library's `service` module).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(rosey_db_service::service::run(config, shutdown_signal())),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    service::exit_code("rosey-db", result)
}
