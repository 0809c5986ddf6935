//! The service: `rosey.llm.chat`, `rosey.llm.status` and `rosey.llm.usage` through the
//! async-nats service API (`$SRV.PING/INFO/STATS`) in a queue group, each request in a task of
//! its own so a slow provider never holds up another request.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use async_nats::service::{Service, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use rosey_config::Config;
use rosey_plugin_api::llm::{ChatRequest, StatusRequest, UsageRequest};
use rosey_plugin_api::reply::{error_reply, ok_reply};
use rosey_plugin_api::subjects::llm as subject;
use rosey_plugin_api::{actions, payload, ErrorBody};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::gateway::{Gateway, ANONYMOUS};
use crate::log_file::LlmLog;

/// The service name in `$SRV` discovery.
pub const SERVICE_NAME: &str = "rosey-llm";
/// The queue group every instance joins, so one instance answers each request.
pub const QUEUE_GROUP: &str = "rosey-llm";

/// One endpoint of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `rosey.llm.chat`.
    Chat,
    /// `rosey.llm.status`.
    Status,
    /// `rosey.llm.usage`.
    Usage,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 3] = [Endpoint::Chat, Endpoint::Status, Endpoint::Usage];

    /// The endpoint's name in `$SRV.INFO` and `$SRV.STATS`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Status => "status",
            Endpoint::Usage => "usage",
        }
    }

    /// The subject it listens on.
    pub fn subject(self) -> &'static str {
        match self {
            Endpoint::Chat => subject::CHAT,
            Endpoint::Status => subject::STATUS,
            Endpoint::Usage => subject::USAGE,
        }
    }
}

/// Runs the gateway the configuration describes until `shutdown` resolves. It serves even when
/// `llm.enabled` is off (an operator started it by hand), but says so.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if !config.llm.enabled {
        tracing::warn!("llm.enabled is false; serving anyway because rosey-llm was started");
    }
    let log = match &config.logging.llm_log_file {
        Some(path) => Some(
            LlmLog::open(path)
                .await
                .with_context(|| format!("cannot open the LLM log {}", path.display()))?,
        ),
        None => None,
    };
    let gateway = Arc::new(Gateway::new(&config.llm, log)?);
    let client = rosey_config::connect::connect(&config.nats).await?;
    let (service, tasks) = start(&client, gateway.clone(), env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the request service: {e}"))?;
    let status = gateway.status();
    tracing::info!(
        provider = %status.provider,
        model = %status.default_model,
        concurrency = status.concurrency,
        "rosey-llm serving"
    );
    shutdown.await;
    tracing::info!("shutting down");
    if let Err(e) = service.stop().await {
        tracing::debug!(error = %e, "stopping the service");
    }
    drop(tasks);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.flush()).await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Starts the service and one task per endpoint; each request is answered in a task of its own
/// (the gateway's concurrency limit bounds the provider calls, not the requests).
pub async fn start(
    client: &async_nats::Client,
    gateway: Arc<Gateway>,
    version: &str,
) -> Result<(Service, JoinSet<()>), async_nats::Error> {
    let stats = gateway.clone();
    let service = client
        .service_builder()
        .description("Rosey's LLM gateway: chats through the configured provider")
        .queue_group(QUEUE_GROUP)
        .stats_handler(move |_, _| stats.stats_json())
        .start(SERVICE_NAME, version)
        .await?;
    let mut tasks = JoinSet::new();
    for ep in Endpoint::ALL {
        let mut endpoint = service
            .endpoint_builder()
            .name(ep.name())
            .add(ep.subject())
            .await?;
        let gateway = gateway.clone();
        tasks.spawn(async move {
            while let Some(request) = endpoint.next().await {
                let gateway = gateway.clone();
                tokio::spawn(async move {
                    let source = request
                        .message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(actions::HEADER_SOURCE))
                        .map(|v| v.as_str().trim().to_owned())
                        .filter(|s| !s.is_empty() && s.len() <= actions::MAX_SOURCE_LEN)
                        .unwrap_or_else(|| ANONYMOUS.to_owned());
                    let result = handle(&gateway, ep, &source, &request.message.payload).await;
                    let sent = match result {
                        Ok(body) => request.respond(Ok(body)).await,
                        Err(error) => {
                            let (headers, body) = error_reply(&error);
                            request.respond_with_headers(Ok(body), headers).await
                        }
                    };
                    if let Err(e) = sent {
                        tracing::debug!(endpoint = ep.name(), error = %e, "could not send a reply");
                    }
                });
            }
        });
    }
    Ok((service, tasks))
}

/// Decodes a request body; an empty body counts as `{}` for the requests without fields.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ErrorBody> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return payload::decode(b"{}");
    }
    payload::decode(bytes)
}

/// Answers one request.
pub async fn handle(
    gateway: &Gateway,
    ep: Endpoint,
    source: &str,
    body: &[u8],
) -> Result<Bytes, ErrorBody> {
    match ep {
        Endpoint::Chat => {
            let request: ChatRequest = decode(body)?;
            let reply = gateway.chat(source, request).await?;
            ok_reply(&reply)
        }
        Endpoint::Status => {
            let _: StatusRequest = decode(body)?;
            ok_reply(&gateway.status())
        }
        Endpoint::Usage => {
            let _: UsageRequest = decode(body)?;
            ok_reply(&gateway.usage())
        }
    }
}
