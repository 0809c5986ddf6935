//! The core's timed work: the outbound queue's poller and the periodic status and counts.

use super::context::*;
use crate::chat_queue::Destination;
use rosey_plugin_api::db::{
    OutboundGet, OutboundMarkFailed, OutboundMarkSent, OutboundMessage, StatsUserCount,
};
use rosey_plugin_api::reply::{request_json, RequestError};
use rosey_plugin_api::subjects;
use rosey_plugin_api::Timestamp;
use std::collections::HashMap;
use std::sync::Arc;

/// A timer ticking every `period`, first after a random part of it. Channels started together
/// (a process serving many, or a deployment started at once) would otherwise poll, write their
/// status and their counts at the same instant every period: the simulation of 100 channels saw
/// every such instant as a wave of slow commands. Spread over the period, the same work is a
/// steady trickle.
fn spread_interval(period: std::time::Duration) -> tokio::time::Interval {
    let phase = period.mul_f64(fastrand::f64());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Sends the database's queued outbound messages and marks each sent or failed.
pub(crate) async fn poll_outbound(ctx: Arc<Ctx>) {
    let mut tick = spread_interval(ctx.settings.outbound_poll_interval);
    // Marks travel through the stream, so the database may list a message again before it
    // applied our mark: remember what we just handled, so nothing is sent twice.
    let mut handled: HashMap<i64, tokio::time::Instant> = HashMap::new();
    let retry_pause = ctx.settings.outbound_retry_pause;
    loop {
        tick.tick().await;
        let now = tokio::time::Instant::now();
        handled.retain(|_, until| *until > now);
        if !ctx.state().joined {
            continue;
        }
        // Each channel's queue is its own: only its bot asks for (and sends) its messages.
        let request = OutboundGet {
            channel: ctx.settings.request_channel.clone(),
            limit: 20,
            max_retries: 3,
        };
        let messages: Vec<OutboundMessage> = match request_json(
            &ctx.nats,
            subjects::db::OUTBOUND_GET,
            &request,
            ctx.settings.outbound_request_timeout,
        )
        .await
        {
            Ok(m) => m,
            Err(RequestError::Timeout { .. }) => continue,
            Err(RequestError::Nats { source, .. })
                if source.kind() == async_nats::RequestErrorKind::NoResponders =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbound message poll failed");
                continue;
            }
        };
        for m in messages {
            if handled.contains_key(&m.id) {
                continue;
            }
            let result = ctx.say("outbound", Destination::Chat, &m.message).await;
            let pause = match &result {
                Err(e) if !e.is_permanent() => retry_pause,
                _ => ctx.settings.outbound_duplicate_window,
            };
            handled.insert(m.id, tokio::time::Instant::now() + pause);
            let now = Some(Timestamp::now());
            match result {
                Ok(()) => {
                    ctx.db
                        .write(
                            subjects::db::OUTBOUND_MARK_SENT,
                            &OutboundMarkSent {
                                message_id: m.id,
                                timestamp: now,
                            },
                        )
                        .await
                }
                Err(e) => {
                    tracing::warn!(id = m.id, error = %e, "outbound message not sent");
                    ctx.db
                        .write(
                            subjects::db::OUTBOUND_MARK_FAILED,
                            &OutboundMarkFailed {
                                message_id: m.id,
                                error: e.to_string(),
                                permanent: e.is_permanent(),
                                timestamp: now,
                            },
                        )
                        .await;
                }
            }
        }
    }
}

/// Publishes the bot's status and user-count samples periodically.
pub(crate) async fn periodic(ctx: Arc<Ctx>) {
    // Joining publishes the status: the first periodic one comes later.
    let mut status = spread_interval(ctx.settings.status_interval);
    let mut counts = spread_interval(ctx.settings.user_count_interval);
    loop {
        tokio::select! {
            _ = status.tick() => {
                ctx.publish_status().await;
                if ctx.state().joined {
                    ctx.write_status().await;
                }
            }
            _ = counts.tick() => {
                let sample = {
                    let s = ctx.state();
                    s.joined.then(|| StatsUserCount {
                        chat_count: s.chat_count(),
                        connected_count: s.connected_count.unwrap_or_else(|| s.chat_count()),
                        timestamp: Some(Timestamp::now()),
                    })
                };
                if let Some(sample) = sample {
                    ctx.db.write(subjects::db::STATS_USER_COUNT, &sample).await;
                }
            }
        }
    }
}
