//! rosey-web: the operator's status page, live dashboard and HTTP API, over NATS only.
//!
//! It never opens SQLite: it loads the state through requests (the bots' snapshots, rosey-db's
//! recent chat, stats, history and outbound report, the runtime's plugins, `$SRV` for the
//! services) at start and after every NATS reconnect, then follows the events, so a page or an
//! `/api/current` opened at any time is complete and served from memory.
//!
//! # Layout
//! - [`state`]: what it knows, and the change feed the live page follows.
//! - [`follow`]: loading and following it over NATS.
//! - [`http`]: the routes (page, live feed, chart, API, `/metrics`, `/health`).
//! - [`auth`]: who may read and who may administer; CSRF.
//! - [`page`], [`chart`], [`metrics`]: the HTML, the SVG chart, the Prometheus text.
//! - [`discovery`]: this process's `$SRV` answers.
//! - [`memory`]: giving a burst's memory back once it is over.

// The one exception is glibc's malloc_trim, in `memory`.
#![deny(unsafe_code)]

pub mod auth;
pub mod chart;
pub mod discovery;
pub mod follow;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod page;
pub mod state;

use anyhow::Context as _;
use rosey_config::Config;
use std::future::{Future, IntoFuture};
use std::sync::Arc;

/// The service name in `$SRV` discovery.
pub const SERVICE_NAME: &str = "rosey-web";

/// Serves the page and the API until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let web = &config.web;
    let addr = web.listen_addr().map_err(anyhow::Error::msg)?;
    let loopback = addr.ip().is_loopback();
    // An unresolved or empty secret is no credential (it would accept an empty password).
    let password = web
        .password
        .clone()
        .filter(|p| p.is_resolved() && !p.expose().is_empty());
    if !loopback && password.is_none() {
        anyhow::bail!(
            "web.listen {addr} is beyond loopback but no admin credential is configured: set \
             web.password (or web.password_env / web.password_file), or listen on 127.0.0.1"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (web.listen)"))?;
    let local = listener.local_addr().context("listen address")?;
    let client = rosey_config::connect::connect(&config.nats).await?;
    let shared = state::Shared::new(rosey_plugin_api::Timestamp::now().secs());
    let follower = follow::Follower {
        client: client.clone(),
        shared,
        chat_lines: web.chat_lines,
        demand: Arc::default(),
        configured: config.platform.channel_names(),
    };
    let access = auth::Access {
        loopback,
        public_read: web.public_read,
        password,
        csrf: auth::new_csrf_token(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_rx_server = stop_rx.clone();
    let app = Arc::new(http::App::new(
        follower.clone(),
        access,
        web.say_per_minute,
        web.say_max_chars,
        stop_rx,
    ));
    let srv = tokio::spawn(discovery::serve(client.clone(), app.clone(), local));
    let follow_task = tokio::spawn(follower.run());
    let counted = app.clone();
    let trim_task = tokio::spawn(memory::trim_when_quiet(move || {
        counted
            .counters
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }));
    let url = format!("http://{local}/");
    tracing::info!(%url, "rosey-web listening");
    // `rosey up` and the tests read the address from this line.
    println!("rosey-web listening on {url}");
    let mut stopped = stop_rx_server;
    let serve = axum::serve(listener, http::router(app))
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .into_future();
    tokio::pin!(serve);
    tokio::pin!(shutdown);
    let served = tokio::select! {
        served = &mut serve => served,
        () = &mut shutdown => {
            // Ends the live feeds too, so the graceful shutdown does not wait for open pages.
            let _ = stop_tx.send(true);
            serve.await
        }
    };
    srv.abort();
    follow_task.abort();
    trim_task.abort();
    served.context("HTTP server")?;
    tracing::info!("rosey-web stopped");
    Ok(())
}
