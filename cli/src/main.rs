//! `rosey`: the operator's command. Runs Rosey, checks and converts configuration files, and
//! manages the running processes over NATS.

mod admin;
mod migrate;
mod nats_auth;
mod scaffold;
mod up;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use migrate::SourceFormat;
use rosey_config::CommonArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "rosey", version, about = "Run and manage the Rosey chat bot")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Start NATS (when local and not running), rosey-db, rosey-llm (when llm.enabled),
    /// rosey-runtime and rosey-bot, and keep
    /// them running until Ctrl-C.
    Up(CommonArgs),
    /// Manage the runtime's plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Show each process's health, the NATS connection and the database backlog.
    Status(CommonArgs),
    /// Inspect and replay database writes that could not be applied.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Convert the original Rosey's configuration (v1 flat or its "2.0") to Rosey's format.
    MigrateConfig(MigrateArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the nats-server `authorization` block giving each process (role) only what the
    /// contract gives it; passwords are `$ROSEY_NATS_<ROLE>_PASSWORD`, read by nats-server from
    /// its environment. With `--config`, the streams of its further channels are granted too.
    NatsConfig {
        /// Configuration file (JSON) whose channels the block serves; without it, one channel
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// `rosey migrate-config` arguments.
#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// The configuration file to convert.
    old: PathBuf,
    /// Write the result here instead of over OLD (refused when the file exists).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Copy OLD to OLD.bak, then write the result over OLD.
    #[arg(long)]
    backup: bool,
}

/// `rosey config ...`.
#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration and print the effective configuration, secrets hidden.
    Check {
        /// The file to check; without it, the embedded defaults are shown.
        file: Option<PathBuf>,
    },
}

/// `rosey plugin ...`.
#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Create plugins/NAME: a working plugin crate with a test, added to the workspace.
    New {
        /// The plugin's name (a-z, 0-9, '_' or '-').
        name: String,
        /// The workspace to add it to (default: the one around the current folder).
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// The plugin-api crate to build against (default: WORKSPACE/plugin-api).
        #[arg(long, value_name = "PATH")]
        api: Option<PathBuf>,
    },
    /// List the plugins with their state and counters.
    List(CommonArgs),
    /// Load a plugin's library again now.
    Reload(NamedPlugin),
    /// Load a plugin (until the runtime restarts; the config file stays the source of truth).
    Enable(NamedPlugin),
    /// Unload a plugin (until the runtime restarts).
    Disable(NamedPlugin),
}

/// A plugin name plus the common flags.
#[derive(Debug, clap::Args)]
struct NamedPlugin {
    /// The plugin's name.
    name: String,
    #[command(flatten)]
    common: CommonArgs,
}

/// `rosey dlq ...`.
#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Publish dead letters again on their subjects and remove them from the dead-letter stream.
    Replay {
        /// The letters' numbers, as `rosey dlq list` shows them.
        sequences: Vec<u64>,
        /// Replay every letter.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::MigrateConfig(args) => migrate_config(&args),
        Command::NatsConfig { config } => nats_auth::print_config(config.as_deref()),
        Command::Config(ConfigCommand::Check { file }) => config_check(file.as_deref()),
        Command::Up(common) => {
            run_async(common.load_config(rosey_config::Role::Operator), |config| {
                up::run(
                    up::UpOptions {
                        config_file: common.config.clone(),
                        nats: common.nats.clone(),
                    },
                    config,
                )
            })
        }
        Command::Status(common) => {
            with_runtime(
                &common,
                |config| async move { admin::status(&config).await },
            )
        }
        Command::Plugin(PluginCommand::New {
            name,
            workspace,
            api,
        }) => plugin_new(&name, workspace, api.as_deref()),
        Command::Plugin(PluginCommand::List(common)) => {
            with_runtime(&common, |config| async move {
                admin::plugin_list(&config).await
            })
        }
        Command::Plugin(PluginCommand::Reload(p)) => plugin_action(p, admin::PluginAction::Reload),
        Command::Plugin(PluginCommand::Enable(p)) => plugin_action(p, admin::PluginAction::Enable),
        Command::Plugin(PluginCommand::Disable(p)) => {
            plugin_action(p, admin::PluginAction::Disable)
        }
        Command::Dlq(DlqCommand::List { limit, common }) => {
            with_runtime(&common, |config| async move {
                admin::dlq_list(&config, limit).await
            })
        }
        Command::Dlq(DlqCommand::Replay {
            sequences,
            all,
            common,
        }) => with_runtime(&common, |config| async move {
            admin::dlq_replay(&config, &sequences, all).await
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rosey: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration (logged in as the operator of a `rosey up` running beside it, see
/// [`nats_auth::use_operator_file`]), then runs `f` on a tokio runtime.
fn with_runtime<F, Fut>(common: &CommonArgs, f: F) -> Result<()>
where
    F: FnOnce(rosey_config::Config) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut config = common.load_config(rosey_config::Role::Operator)?;
    // The admin commands log in as the operator of a `rosey up` running beside the same
    // configuration, unless the configuration or the environment says otherwise.
    nats_auth::use_operator_file(&up::state_dir(common.config.as_deref()), &mut config)?;
    run_async(Ok(config), f)
}

/// Runs `f` on a tokio runtime with the loaded configuration.
fn run_async<F, Fut>(
    config: Result<rosey_config::Config, rosey_config::ConfigError>,
    f: F,
) -> Result<()>
where
    F: FnOnce(rosey_config::Config) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let config = config?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(f(config))
}

fn plugin_new(name: &str, workspace: Option<PathBuf>, api: Option<&Path>) -> Result<()> {
    let workspace = match workspace {
        Some(dir) => dir,
        None => {
            let here = std::env::current_dir().context("cannot read the current folder")?;
            scaffold::find_workspace(&here).with_context(|| {
                format!(
                    "{} is not inside a Cargo workspace (pass --workspace DIR)",
                    here.display()
                )
            })?
        }
    };
    let made = scaffold::new_plugin(&workspace, name, api)?;
    println!("created {}", made.dir.display());
    if made.registered {
        println!("added plugins/{name} to the workspace members");
    } else {
        println!("add \"plugins/{name}\" to the workspace members in Cargo.toml");
    }
    println!(
        "next: add \"{name}\" to plugins.enabled, run `cargo build` in {}, and type !{name}",
        made.dir.display()
    );
    Ok(())
}

fn plugin_action(p: NamedPlugin, action: admin::PluginAction) -> Result<()> {
    with_runtime(&p.common, |config| async move {
        admin::plugin_action(&config, action, &p.name).await
    })
}

fn migrate_config(args: &MigrateArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.old)
        .with_context(|| format!("cannot read {}", args.old.display()))?;
    let input: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", args.old.display()))?;
    let migration = migrate::migrate(&input).with_context(|| args.old.display().to_string())?;
    if migration.source == SourceFormat::Current {
        println!(
            "{} is already in Rosey's format; left untouched",
            args.old.display()
        );
        return Ok(());
    }
    for warning in &migration.warnings {
        eprintln!("warning: {}: {warning}", args.old.display());
    }
    let target = match (&args.output, args.backup) {
        (Some(out), _) => {
            if out.exists() {
                bail!(
                    "{} exists; refusing to overwrite it (choose another --output)",
                    out.display()
                );
            }
            out.clone()
        }
        (None, true) => {
            let backup = backup_path(&args.old);
            std::fs::copy(&args.old, &backup)
                .with_context(|| format!("cannot write the backup {}", backup.display()))?;
            eprintln!("backup: {}", backup.display());
            args.old.clone()
        }
        (None, false) => bail!(
            "refusing to overwrite {} without --backup; or write elsewhere with --output NEW",
            args.old.display()
        ),
    };
    let mut text = serde_json::to_string_pretty(&migration.output)?;
    text.push('\n');
    // Validate before writing, so a conversion we got wrong never replaces a working file.
    let base = target
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Err(err) =
        rosey_config::Config::from_json_str(&text, &target.display().to_string(), &base)
    {
        eprintln!("warning: the converted configuration does not load yet: {err}");
    }
    std::fs::write(&target, text).with_context(|| format!("cannot write {}", target.display()))?;
    println!(
        "converted {} ({}) to {}{}",
        args.old.display(),
        match migration.source {
            SourceFormat::OriginalV1 => "original v1 format",
            _ => "original 2.0 format",
        },
        target.display(),
        if migration.warnings.is_empty() {
            String::new()
        } else {
            format!(" with {} warning(s)", migration.warnings.len())
        }
    );
    Ok(())
}

/// `OLD.bak`, or `OLD.bak.N` when earlier backups exist: a backup never replaces another.
fn backup_path(old: &Path) -> PathBuf {
    let mut name = old.as_os_str().to_owned();
    name.push(".bak");
    let first = PathBuf::from(&name);
    if !first.exists() {
        return first;
    }
    (1..)
        .map(|n| {
            let mut candidate = name.clone();
            candidate.push(format!(".{n}"));
            PathBuf::from(candidate)
        })
        .find(|p| !p.exists())
        .unwrap_or(first)
}

fn config_check(file: Option<&Path>) -> Result<()> {
    let config = match file {
        Some(path) => rosey_config::Config::load(path)?,
        None => rosey_config::Config::default(),
    };
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&config.to_redacted_json())?
    );
    // Which file rosey-db keeps each channel's data in (the first is database.path itself).
    for (channel, path) in config.channel_databases() {
        let state = if path.exists() {
            ""
        } else {
            " (created on first start)"
        };
        eprintln!("database: channel {channel} in {}{state}", path.display());
    }
    // A removed channel's file stays (nothing is deleted automatically): say so.
    for (channel, path) in config.unclaimed_channel_databases() {
        eprintln!(
            "database: {} belongs to no configured channel (channel {channel} was removed?); \
             kept as it is, rosey-db does not open it",
            path.display()
        );
    }
    let llm = &config.llm;
    if llm.enabled {
        eprintln!(
            "llm: enabled, provider {} with model {} (rosey up starts rosey-llm)",
            llm.provider.as_str(),
            llm.default_model()
        );
    } else {
        eprintln!("llm: disabled (rosey-llm is not started)");
    }
    eprintln!(
        "{}: ok",
        file.map(|p| p.display().to_string())
            .unwrap_or_else(|| "embedded defaults".to_owned())
    );
    Ok(())
}
