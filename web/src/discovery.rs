//! rosey-web's own `$SRV.PING|INFO|STATS` answers, so `rosey status` lists it.

use crate::http::App;
use bytes::Bytes;
use futures::StreamExt;
use rosey_plugin_api::discovery::{self, Identity};
use rosey_plugin_api::{subjects, Timestamp};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Answers discovery until the subscription ends; the metadata carries the page's URL.
pub async fn serve(client: async_nats::Client, app: Arc<App>, local: SocketAddr) {
    let mut sub = match client.subscribe(subjects::service::ALL).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::warn!(error = %e, "cannot answer $SRV discovery");
            return;
        }
    };
    let id = client
        .new_inbox()
        .rsplit('.')
        .next()
        .unwrap_or("web")
        .to_owned();
    let mut metadata = serde_json::Map::new();
    metadata.insert("url".into(), format!("http://{local}/").into());
    let identity = Identity {
        name: crate::SERVICE_NAME.to_owned(),
        id,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        description: "Rosey's status page and HTTP API".to_owned(),
        metadata,
    };
    let started = Timestamp::now().rfc3339();
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply else { continue };
        let Some(verb) = discovery::addressed(&msg.subject, crate::SERVICE_NAME, &identity.id)
        else {
            continue;
        };
        let data = serde_json::json!({
            "http_requests": app.counters.requests.load(Ordering::Relaxed),
            "http_errors": app.counters.errors.load(Ordering::Relaxed),
        });
        let body = discovery::answer(&identity, verb, &[], &started, data);
        if let Ok(bytes) = serde_json::to_vec(&body) {
            let _ = client.publish(reply, Bytes::from(bytes)).await;
        }
    }
}
