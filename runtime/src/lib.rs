//! The plugin runtime, as a library that the thin `rosey-runtime` binary and tests call
//! ([`run`]): loads the enabled plugins (`cdylib` libraries built against `rosey-plugin-api`),
//! hands each one only a NATS handle, and hot-reloads them when a new build appears.
//!
//! # Layout
//! - [`loader`]: finding libraries, loading each generation from a fresh copy.
//! - [`host`]: shared state, plugin slots, host-owned subscriptions, dispatch.
//! - [`worker`]: each plugin's thread; swaps, restarts and stops happen there.
//! - [`boundary`]: the typed interface of every call a plugin makes into the runtime.
//! - [`bus`]: the host handle a plugin gets, with [`permissions`] checks; [`deferred`]: the
//!   requests whose answers come back later.
//! - [`commands`]: command ownership, rank and cooldown rules, `!help`.
//! - [`admin`]: `rosey.runtime.plugins.*` and `$SRV`.
//! - [`watch`]: library and configuration file watching.
//! - [`watchdog`]: replaces plugins stuck in one call.
//! - [`cpu_guard`]: stops a plugin in a host process whose own threads spin outside its calls.
//! - [`error`]: failures about one plugin, with their kind.
//! - [`remote`], [`frames`], [`plugin_host`], [`sandbox`]: a plugin in a sandboxed host
//!   process of its own (`isolation: process`).
//!
//! Native plugin code runs in this process: the SDK turns a panic into an error value, but an
//! abort, a stack overflow or a segfault in a plugin ends the runtime (`rosey up` restarts it).

mod admin;
mod boundary;
mod bus;
mod commands;
mod cpu_guard;
mod deferred;
mod error;
mod frames;
mod host;
mod instance;
mod lease;
mod loader;
mod permissions;
pub mod plugin_host;
mod remote;
mod sandbox;
mod watch;
mod watchdog;
mod worker;

use anyhow::Context as _;
use host::{Host, RuntimeSettings};
use rosey_config::Config;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

/// The configuration file to follow while running: its path, and how to read it again (the
/// binary's command-line overrides applied), so edits are applied without a restart.
pub struct ConfigWatch {
    /// The file.
    pub path: PathBuf,
    /// Reads it again.
    pub reload: Box<dyn Fn() -> anyhow::Result<Config> + Send + 'static>,
}

/// Runs the runtime with `config` until `shutdown` completes, without following a
/// configuration file: connects to NATS through the shared helper, loads the enabled plugins,
/// serves the admin subjects, watches the libraries, then unloads every plugin.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    run_watching(config, None, shutdown).await
}

/// [`run`], also applying edits of the configuration file `watch` names.
pub async fn run_watching(
    config: Config,
    watch: Option<ConfigWatch>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let client = rosey_config::connect::connect(&config.nats).await?;
    serve(client, config, watch, shutdown).await
}

/// When an enabled plugin runs in `process` isolation: checks once, with the host binary's
/// `--probe`, that this kernel lets a host sandbox itself (Landlock, seccomp, rlimits), and
/// refuses to start otherwise, instead of failing every plugin's load one by one.
async fn check_sandbox(plugins: &rosey_config::PluginsConfig) -> anyhow::Result<()> {
    let isolated: Vec<String> = plugins
        .enabled
        .iter()
        .filter(|name| plugins.isolation_of(name) == rosey_config::Isolation::Process)
        .cloned()
        .collect();
    if isolated.is_empty() {
        return Ok(());
    }
    let probed = tokio::task::spawn_blocking(remote::probe_sandbox)
        .await
        .context("the sandbox probe")?;
    probed.map_err(|e| {
        anyhow::anyhow!(
            "plugins {} run with isolation \"process\", which needs Landlock (ABI 6) and seccomp, and the sandbox probe failed: {e}. Run rosey-runtime where both are available, or set plugins.isolation (or plugins.config.<name>.isolation) to \"in_process\"",
            isolated.join(", ")
        )
    })
}

/// Serves on `client` until `shutdown` completes.
async fn serve(
    client: async_nats::Client,
    config: Config,
    config_watch: Option<ConfigWatch>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let plugins = config.runtime_plugins();
    check_sandbox(&plugins).await?;
    let settings = RuntimeSettings {
        tick_interval: plugins.tick_interval.as_duration(),
        checkpoint_interval: plugins.checkpoint_interval.as_duration(),
        watchdog_timeout: plugins.watchdog_timeout.as_duration(),
        queue_capacity: plugins.queue_capacity,
        reload_debounce: plugins.reload_debounce.as_duration(),
        restart_backoff_max: plugins.restart_backoff_max.as_duration(),
        max_failures: plugins.max_failures,
        reload_copies_warn: plugins.reload_copies_warn,
        admin_timeout: plugins.admin_timeout.as_duration(),
        max_request_timeout: plugins.max_request_timeout.as_duration(),
        hot_reload: plugins.hot_reload,
        channels: config.platform.served_channels(),
        command_prefix: config.platform.command_prefix.clone(),
    };
    let lib_dirs = loader::library_dirs(&plugins.directory);
    let copy_base =
        loader::copy_base(plugins.copy_directory.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    let copies = loader::CopyDir::create(&copy_base).with_context(|| {
        format!(
            "cannot create the folder for plugin library copies in {}",
            copy_base.display()
        )
    })?;
    tracing::info!(
        dirs = ?lib_dirs,
        copies = %copies.path().display(),
        interface = loader::interface_name(),
        "plugin runtime starting"
    );
    let leases = Arc::new(
        lease::Leases::open(
            &client,
            plugins.lease_ttl.as_duration(),
            usize::from(config.database.stream.replicas),
        )
        .await,
    );
    let host = Host::new(
        client,
        tokio::runtime::Handle::current(),
        settings,
        lib_dirs,
        copies,
        plugins.clone(),
        leases,
    );
    let mut tasks = tokio::task::JoinSet::new();
    {
        let host = host.clone();
        tasks.spawn(async move { admin::serve(host).await.context("admin subjects") });
    }
    // The admin subjects must be live before the first lifecycle event goes out.
    host.client.flush().await.context("NATS flush")?;
    if host.settings.hot_reload {
        let host = host.clone();
        tasks.spawn(async move {
            watch::watch_libraries(host)
                .await
                .context("library watcher")
        });
    }
    if let Some(ConfigWatch { path, reload }) = config_watch {
        let host = host.clone();
        tasks.spawn(async move {
            watch::watch_config(host, path, reload)
                .await
                .context("configuration watcher")
        });
    }
    {
        let host = host.clone();
        tasks.spawn(async move {
            watchdog::run(host).await;
            Ok(())
        });
    }
    {
        let host = host.clone();
        tasks.spawn(async move {
            cpu_guard::run(host).await;
            Ok(())
        });
    }
    {
        // Enables each configured plugin once this runtime holds its lease, and keeps the
        // leases renewed.
        let host = host.clone();
        tasks.spawn(async move {
            lease::keep(host).await;
            Ok(())
        });
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = tasks.join_next() => {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("{e:#}"),
                    Err(e) => tracing::error!("a runtime task ended: {e}"),
                }
            }
        }
    }
    tracing::info!("shutting down: unloading plugins");
    // All at once: each may wait for its plugin's `shutdown`.
    futures::future::join_all(
        host.slots()
            .iter()
            .map(|slot| host.disable(&slot.name, true)),
    )
    .await;
    // A standby runtime takes over at once instead of after a lease's lifetime.
    host.leases.release_all().await;
    let _ = host.client.flush().await;
    host.copies.remove();
    Ok(())
}
