//! The `cli` feature's shared flags. (The NATS connection is tested against a real server in
//! `tests/tests/config_connect.rs`, with the shared test support.)
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};

use clap::Parser;
use rosey_config::{CommonArgs, LogFormat, Role};

use common::fixture;

/// A binary's parser with the shared flags flattened in, as the binaries do it.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// A binary-specific flag.
    #[arg(long)]
    db: Option<PathBuf>,
}

#[test]
fn flags_override_the_file_and_the_file_overrides_defaults() {
    let file = fixture("prd-v2-example.json");
    let cli = Cli::try_parse_from([
        "rosey-db".as_ref(),
        "--config".as_ref(),
        file.as_os_str(),
        "--nats".as_ref(),
        "nats://elsewhere:4222".as_ref(),
        "--log-format".as_ref(),
        "json".as_ref(),
        "--db".as_ref(),
        "other.db".as_ref(),
    ])
    .unwrap();
    let mut config = cli.common.load_config(Role::Db).unwrap();
    if let Some(db) = &cli.db {
        config.set_database_path(db);
    }
    assert_eq!(config.nats.server, "nats://elsewhere:4222");
    assert_eq!(config.logging.format, LogFormat::Json);
    assert_eq!(config.database.path, Path::new("other.db"));
    assert_eq!(config.nats.client_id.as_deref(), Some("rosey-bot-1"));
}

#[test]
fn without_config_the_defaults_are_used() {
    let cli = Cli::try_parse_from(["rosey-bot"]).unwrap();
    assert_eq!(cli.common, CommonArgs::default());
    let config = cli.common.load_config(Role::Bot).unwrap();
    assert_eq!(config, rosey_config::Config::default());
}

#[test]
fn bad_flags_are_rejected_by_clap() {
    assert!(Cli::try_parse_from(["x", "--log-format", "xml"]).is_err());
    assert!(Cli::try_parse_from(["x", "--nats", ""]).is_err());
}

#[test]
fn config_errors_come_through_load_config() {
    let cli = Cli::try_parse_from(["x", "--config", "/nonexistent/rosey.json"]).unwrap();
    let err = cli.common.load_config(Role::Runtime).unwrap_err();
    assert!(
        err.to_string().starts_with("/nonexistent/rosey.json: "),
        "{err}"
    );
}
