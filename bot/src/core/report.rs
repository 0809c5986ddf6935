//! What the bot says about itself on request: `rosey.bot.snapshot` (its live state, so a page
//! opened at any time is complete) and the `$SRV` discovery subjects, with metadata naming its
//! platform and channel.

use super::context::Ctx;
use bytes::Bytes;
use futures::StreamExt;
use rosey_plugin_api::bot::{Snapshot, SnapshotRequest};
use rosey_plugin_api::discovery::{self, Identity, Verb};
use rosey_plugin_api::reply::error_reply;
use rosey_plugin_api::{payload, subjects, Timestamp};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The service name the bot answers `$SRV` discovery with.
pub const SERVICE_NAME: &str = "rosey-bot";

/// The bot's live state, from the channel state.
pub fn snapshot(ctx: &Ctx) -> Snapshot {
    let s = ctx.state();
    Snapshot {
        platform: ctx.platform.to_owned(),
        channel: ctx.channel.clone(),
        bot_name: s.bot_name.clone(),
        bot_rank: s.own_rank,
        connected: s.joined,
        connected_since: s.joined.then(|| s.connect_time.map(|t| t.secs())).flatten(),
        started_at: s.start_time.secs(),
        users: s.users.values().cloned().collect(),
        chat_count: s.chat_count(),
        connected_count: s.connected_count,
        media: s.media.clone(),
        playlist: s.playlist.clone(),
    }
}

/// Serves the snapshot requests and `$SRV` until the subscriptions end.
pub(crate) async fn serve(
    ctx: Arc<Ctx>,
    mut snapshots: async_nats::Subscriber,
    mut srv: async_nats::Subscriber,
) {
    let id = async_nats::Client::new_inbox(&ctx.nats)
        .rsplit('.')
        .next()
        .unwrap_or("bot")
        .to_owned();
    let mut metadata = serde_json::Map::new();
    metadata.insert("platform".into(), ctx.platform.into());
    metadata.insert("channel".into(), ctx.channel.clone().into());
    if let Some(together) = &ctx.settings.process_channels {
        // One process serving several channels: each has its own entry, and says its company.
        metadata.insert("channels".into(), together.clone().into());
    }
    let identity = Identity {
        name: SERVICE_NAME.to_owned(),
        id,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        description: "Rosey's bot: one channel's chat connection".to_owned(),
        metadata,
    };
    let started = Timestamp::now().rfc3339();
    let answered = AtomicU64::new(0);
    loop {
        tokio::select! {
            msg = snapshots.next() => {
                let Some(msg) = msg else { break };
                let Some(reply) = msg.reply else { continue };
                let body = match payload::decode::<SnapshotRequest>(if msg.payload.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &msg.payload }) {
                    Ok(req) if req.channel.as_deref().is_some_and(|c| c != ctx.channel) => continue,
                    Ok(_) => serde_json::to_vec(&snapshot(&ctx)).map(Bytes::from).map(|b| (None, b)),
                    Err(e) => {
                        let (headers, body) = error_reply(&e);
                        Ok((Some(headers), body))
                    }
                };
                answered.fetch_add(1, Ordering::Relaxed);
                let sent = match body {
                    Ok((Some(headers), body)) => ctx.nats.publish_with_headers(reply, headers, body).await,
                    Ok((None, body)) => ctx.nats.publish(reply, body).await,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode the snapshot");
                        continue;
                    }
                };
                if let Err(e) = sent {
                    tracing::debug!(error = %e, "cannot answer a snapshot request");
                }
            }
            msg = srv.next() => {
                let Some(msg) = msg else { break };
                let Some(reply) = msg.reply else { continue };
                let Some(verb) = discovery::addressed(&msg.subject, SERVICE_NAME, &identity.id) else { continue };
                let data = match verb {
                    Verb::Stats => {
                        let s = ctx.state();
                        serde_json::json!({
                            "connected": s.joined,
                            "users": s.users.len(),
                            "snapshots_answered": answered.load(Ordering::Relaxed),
                        })
                    }
                    _ => serde_json::Value::Null,
                };
                let body = discovery::answer(&identity, verb, &[subjects::bot::SNAPSHOT], &started, data);
                match serde_json::to_vec(&body) {
                    Ok(bytes) => {
                        let _ = ctx.nats.publish(reply, Bytes::from(bytes)).await;
                    }
                    Err(e) => tracing::warn!("cannot encode a $SRV answer: {e}"),
                }
            }
        }
    }
}
