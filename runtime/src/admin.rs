//! The administration subjects (`rosey.runtime.plugins.{list,reload,enable,disable}`), the
//! runtime's `!help`, and the `$SRV` discovery subjects.
//!
//! Enable and disable change the runtime's state only; the configuration file stays the source
//! of truth and wins at the next restart or file change.

use crate::commands::{help_text, reply_to, HELP};
use crate::error::{FailureKind, PluginError};
use crate::host::{Control, Host};
use async_nats::Message;
use bytes::Bytes;
use futures::StreamExt;
use rosey_plugin_api::admin::{PluginName, PluginsList};
use rosey_plugin_api::commands::Command;
use rosey_plugin_api::error::{ErrorBody, ErrorCode};
use rosey_plugin_api::reply::{error_reply, ok_reply};
use rosey_plugin_api::subjects;
use rosey_plugin_api::Timestamp;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The service name the runtime answers `$SRV` discovery with.
const SERVICE_NAME: &str = "rosey-runtime";

/// Counters for `$SRV.STATS`.
#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    errors: AtomicU64,
}

/// Subscribes to the admin subjects, `!help` and `$SRV.*`, and serves them until the
/// connection closes.
pub async fn serve(host: Arc<Host>) -> anyhow::Result<()> {
    let client = host.client.clone();
    let mut list = client.subscribe(subjects::runtime::PLUGINS_LIST).await?;
    let mut reload = client.subscribe(subjects::runtime::PLUGINS_RELOAD).await?;
    let mut enable = client.subscribe(subjects::runtime::PLUGINS_ENABLE).await?;
    let mut disable = client.subscribe(subjects::runtime::PLUGINS_DISABLE).await?;
    let help_subject = subjects::commands::command(HELP)?;
    let mut help = client.subscribe(help_subject).await?;
    let mut srv = client.subscribe(subjects::service::ALL).await?;
    client.flush().await?;
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let id = async_nats::Client::new_inbox(&client)
        .rsplit('.')
        .next()
        .unwrap_or("0")
        .to_owned();
    loop {
        let (kind, msg) = tokio::select! {
            Some(m) = list.next() => (Kind::List, m),
            Some(m) = reload.next() => (Kind::Reload, m),
            Some(m) = enable.next() => (Kind::Enable, m),
            Some(m) = disable.next() => (Kind::Disable, m),
            Some(m) = help.next() => (Kind::Help, m),
            Some(m) = srv.next() => (Kind::Srv, m),
            else => return Ok(()),
        };
        let host = host.clone();
        let stats = stats.clone();
        let id = id.clone();
        tokio::spawn(async move {
            match kind {
                Kind::Help => answer_help(&host, msg).await,
                Kind::Srv => answer_srv(&host, &stats, &id, started, msg).await,
                _ => {
                    stats.requests.fetch_add(1, Ordering::Relaxed);
                    let outcome = handle(&host, kind, &msg).await;
                    if outcome.is_err() {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    respond(&host, &msg, outcome).await;
                }
            }
        });
    }
}

#[derive(Clone, Copy)]
enum Kind {
    List,
    Reload,
    Enable,
    Disable,
    Help,
    Srv,
}

fn plugin_name(msg: &Message) -> Result<String, ErrorBody> {
    let req: PluginName = rosey_plugin_api::payload::decode(&msg.payload).map_err(|e| {
        ErrorBody::new(
            e.error.code,
            format!("expected {{\"name\": \"<plugin>\"}}: {}", e.error.message),
        )
    })?;
    if !subjects::is_plugin_name(&req.name) {
        return Err(ErrorBody::new(
            ErrorCode::InvalidJson,
            format!("{:?} is not a valid plugin name", req.name),
        ));
    }
    Ok(req.name)
}

/// Waits up to `plugins.admin_timeout` for a worker to finish a load.
async fn wait(
    host: &Host,
    name: &str,
    rx: tokio::sync::oneshot::Receiver<Result<(), PluginError>>,
) -> Result<(), ErrorBody> {
    let limit = host.settings.admin_timeout;
    let outcome = match tokio::time::timeout(limit, rx).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(PluginError::new(
            name,
            FailureKind::Stopped,
            "the plugin's worker ended before answering",
        )),
        Err(_) => Err(PluginError::new(
            name,
            FailureKind::Timeout,
            format!("no answer from the plugin's worker within {limit:?} (plugins.admin_timeout)"),
        )),
    };
    outcome.map_err(|e| error_body(&e))
}

/// The admin reply for a plugin's failure: its kind's code and its reason.
fn error_body(error: &PluginError) -> ErrorBody {
    ErrorBody::new(error.kind.code(), error.message.clone())
}

async fn handle(host: &Arc<Host>, kind: Kind, msg: &Message) -> Result<Bytes, ErrorBody> {
    match kind {
        Kind::List => {
            let plugins = host.slots().iter().map(|s| s.info()).collect();
            ok_reply(&PluginsList { plugins })
        }
        Kind::Reload => {
            let name = plugin_name(msg)?;
            let slot = host
                .slot(&name)
                .filter(|s| !s.stopped.load(Ordering::SeqCst))
                .ok_or_else(|| {
                    ErrorBody::new(
                        ErrorCode::NotFound,
                        format!("plugin {name:?} is not enabled"),
                    )
                })?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            slot.control_tx
                .send(Control::Load {
                    path: None,
                    force: true,
                    ack: Some(tx),
                })
                .map_err(|_| ErrorBody::new(ErrorCode::Internal, "the plugin's worker is gone"))?;
            wait(host, &name, rx).await?;
            ok_reply(&rosey_plugin_api::actions::Ok::YES)
        }
        Kind::Enable => {
            let name = plugin_name(msg)?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            crate::lease::enable(host, &name, Some(tx)).await;
            wait(host, &name, rx).await?;
            ok_reply(&rosey_plugin_api::actions::Ok::YES)
        }
        Kind::Disable => {
            let name = plugin_name(msg)?;
            host.disable(&name, false)
                .await
                .map_err(|e| error_body(&e))?;
            ok_reply(&rosey_plugin_api::actions::Ok::YES)
        }
        Kind::Help | Kind::Srv => Err(ErrorBody::new(ErrorCode::Internal, "not an admin request")),
    }
}

async fn respond(host: &Host, msg: &Message, outcome: Result<Bytes, ErrorBody>) {
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    let sent = match outcome {
        Ok(body) => host.client.publish(reply, body).await,
        Err(err) => {
            tracing::info!(subject = %msg.subject, "admin request refused: {err}");
            let (headers, body) = error_reply(&err);
            host.client.publish_with_headers(reply, headers, body).await
        }
    };
    if let Err(e) = sent {
        tracing::warn!("cannot answer an admin request: {e}");
    }
}

async fn answer_help(host: &Host, msg: Message) {
    let Ok(command) = rosey_plugin_api::payload::decode::<Command>(&msg.payload) else {
        tracing::warn!("dropping a malformed !help command");
        return;
    };
    // Only commands that would be answered here: their plugin takes messages and serves this
    // channel.
    let rules: Vec<_> = host
        .command_rules()
        .into_iter()
        .filter(|r| {
            host.slot(&r.plugin).is_some_and(|slot| {
                slot.accepting.load(Ordering::SeqCst)
                    && slot.with_settings(|s| s.serves_channel(&command.channel))
            })
        })
        .collect();
    let text = help_text(&rules, &command, &host.settings.command_prefix);
    match reply_to(&command, text) {
        Ok((subject, body)) => {
            if let Err(e) = host.client.publish(subject, Bytes::from(body)).await {
                tracing::warn!("cannot answer !help: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot answer !help: {e}"),
    }
}

/// `$SRV.PING|INFO|STATS[.rosey-runtime[.<id>]]`: the NATS service discovery protocol, so
/// `nats micro ls` finds the runtime.
async fn answer_srv(host: &Host, stats: &Stats, id: &str, started: Instant, msg: Message) {
    let mut tokens = msg.subject.split('.').skip(1);
    let verb = tokens.next().unwrap_or("");
    if let Some(name) = tokens.next() {
        if name != SERVICE_NAME {
            return;
        }
    }
    if let Some(target) = tokens.next() {
        if target != id {
            return;
        }
    }
    let base = serde_json::json!({
        "name": SERVICE_NAME,
        "id": id,
        "version": env!("CARGO_PKG_VERSION"),
        "metadata": {},
    });
    let mut body = base.clone();
    let Some(obj) = body.as_object_mut() else {
        return;
    };
    let admin = [
        subjects::runtime::PLUGINS_LIST,
        subjects::runtime::PLUGINS_RELOAD,
        subjects::runtime::PLUGINS_ENABLE,
        subjects::runtime::PLUGINS_DISABLE,
    ];
    match verb {
        "PING" => {
            obj.insert("type".into(), "io.nats.micro.v1.ping_response".into());
        }
        "INFO" => {
            obj.insert("type".into(), "io.nats.micro.v1.info_response".into());
            obj.insert("description".into(), "Rosey's plugin runtime".into());
            let endpoints: Vec<_> = admin
                .iter()
                .map(|s| serde_json::json!({"name": s, "subject": s, "queue_group": "", "metadata": {}}))
                .collect();
            obj.insert("endpoints".into(), endpoints.into());
        }
        "STATS" => {
            obj.insert("type".into(), "io.nats.micro.v1.stats_response".into());
            let started_at = chrono_like(started);
            obj.insert("started".into(), started_at.into());
            let requests = stats.requests.load(Ordering::Relaxed);
            let errors = stats.errors.load(Ordering::Relaxed);
            obj.insert(
                "endpoints".into(),
                serde_json::json!([{
                    "name": "admin", "subject": "rosey.runtime.plugins.*", "queue_group": "",
                    "num_requests": requests, "num_errors": errors,
                    "processing_time": 0, "average_processing_time": 0, "last_error": ""
                }]),
            );
            obj.insert(
                "plugins".into(),
                serde_json::to_value(host.slots().iter().map(|s| s.info()).collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
        }
        _ => return,
    }
    if let Some(reply) = msg.reply {
        match serde_json::to_vec(&body) {
            Ok(bytes) => {
                let _ = host.client.publish(reply, Bytes::from(bytes)).await;
            }
            Err(e) => tracing::warn!("cannot encode a $SRV answer: {e}"),
        }
    }
}

/// The start time as RFC 3339 in UTC, computed from the monotonic start and the wall clock.
fn chrono_like(started: Instant) -> String {
    let start = Timestamp::now().secs() - i64::try_from(started.elapsed().as_secs()).unwrap_or(0);
    Timestamp::from_secs(start)
        .unwrap_or_else(Timestamp::now)
        .rfc3339()
}
