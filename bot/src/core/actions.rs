//! The action server: requests on `rosey.platform.<platform>.send.*`, read into platform
//! actions and carried out under the rule book ([`crate::rules`]).

use super::context::*;
use super::events::*;
use crate::platform::PlatformAction;
use crate::rules::{self, Performed};
use bytes::Bytes;
use rosey_plugin_api::actions::{
    Ok as OkReply, QueuePosition, SendAfk, SendChannelAction, SendChat, SendKick, SendPlaylistAdd,
    SendPlaylistEntry, SendPlaylistMove, SendPm,
};
use rosey_plugin_api::reply::error_reply;
use rosey_plugin_api::subjects::platform as platform_subjects;
use rosey_plugin_api::{ErrorBody, ErrorCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;

/// The largest action payload accepted.
pub(crate) const MAX_ACTION_BYTES: usize = 64 * 1024;

pub(crate) async fn serve_actions(ctx: Arc<Ctx>, mut sub: async_nats::Subscriber) {
    use futures::StreamExt;
    // One at a time, in arrival order: two `send.chat` (or two `playlist.add`) from one
    // publisher must reach the channel in the order they were sent. Every action is quick
    // (chat is only queued; platform actions are one websocket write).
    while let Some(msg) = sub.next().await {
        serve_action(&ctx, msg).await;
    }
}

pub(crate) fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ErrorBody> {
    rosey_plugin_api::payload::decode(payload)
}

pub(crate) fn channel_of(payload: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get("channel")?.as_str().map(str::to_owned)
}

pub(crate) async fn serve_action(ctx: &Arc<Ctx>, msg: async_nats::Message) {
    let Some(action) = platform_subjects::action_of(ctx.platform, &msg.subject).map(str::to_owned)
    else {
        return;
    };
    let result = if msg.payload.len() > MAX_ACTION_BYTES {
        Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!(
                "action payload is {} bytes; the limit is {MAX_ACTION_BYTES}",
                msg.payload.len()
            ),
        ))
    } else {
        match channel_of(&msg.payload) {
            // Another channel's bot answers it.
            Some(channel) if channel != ctx.channel => return,
            _ => {
                let source = action_source(msg.headers.as_ref());
                run_action(ctx, &action, &source, &msg.payload).await
            }
        }
    };
    if let Err(body) = &result {
        tracing::warn!(action, error = %body, "action failed");
        report_error(ctx, &action, &body.error.message).await;
    }
    if let Some(reply) = msg.reply {
        let sent = match result {
            Ok(()) => match serde_json::to_vec(&OkReply::YES) {
                Ok(b) => ctx.nats.publish(reply, Bytes::from(b)).await,
                Err(_) => return,
            },
            Err(body) => {
                let (headers, payload) = error_reply(&body);
                ctx.nats.publish_with_headers(reply, headers, payload).await
            }
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot send the action reply");
        }
    }
}

/// The outgoing-queue source of an action: `send:<name>` from the sender's
/// [`HEADER_SOURCE`](rosey_plugin_api::actions::HEADER_SOURCE) header (the runtime sets it to
/// the plugin's name), or plain `send` for senders that give none. The prefix keeps senders
/// apart from the bot's own sources (`shell`, `outbound`).
pub(crate) fn action_source(headers: Option<&async_nats::HeaderMap>) -> String {
    use rosey_plugin_api::actions::{HEADER_SOURCE, MAX_SOURCE_LEN};
    match headers.and_then(|h| h.get(HEADER_SOURCE)) {
        Some(name) if !name.as_str().trim().is_empty() => {
            let name: String = name.as_str().trim().chars().take(MAX_SOURCE_LEN).collect();
            format!("send:{name}")
        }
        _ => "send".to_owned(),
    }
}

pub(crate) async fn run_action(
    ctx: &Arc<Ctx>,
    action: &str,
    source: &str,
    payload: &[u8],
) -> Result<(), ErrorBody> {
    match rules::perform(ctx, source, decode_action(action, payload)?).await? {
        Performed::Done => {}
        Performed::Queued(done) => {
            let ctx = ctx.clone();
            let action = action.to_owned();
            // The reply means "accepted"; a later send failure is still reported.
            tokio::spawn(async move {
                if let Ok(Err(e)) = done.await {
                    report_error(&ctx, &action, &e.to_string()).await;
                }
            });
        }
    }
    Ok(())
}

/// Reads an action request (the last token of its subject, and its payload) as the platform
/// action it asks for; what it may do is the rule book's ([`rules`]) to decide.
pub(crate) fn decode_action(name: &str, payload: &[u8]) -> Result<PlatformAction, ErrorBody> {
    use platform_subjects::action;
    Ok(match name {
        action::CHAT => PlatformAction::Chat(decode::<SendChat>(payload)?.content),
        action::PM => {
            let req: SendPm = decode(payload)?;
            PlatformAction::Pm {
                to: req.to,
                content: req.content,
            }
        }
        action::PLAYLIST_ADD => {
            let req: SendPlaylistAdd = decode(payload)?;
            PlatformAction::PlaylistAdd {
                url: req.url,
                next: req.position == QueuePosition::Next,
                temporary: req.temporary,
            }
        }
        action::PLAYLIST_REMOVE => {
            PlatformAction::PlaylistRemove(decode::<SendPlaylistEntry>(payload)?.uid)
        }
        action::PLAYLIST_JUMP => {
            PlatformAction::PlaylistJump(decode::<SendPlaylistEntry>(payload)?.uid)
        }
        action::PLAYLIST_MOVE => {
            let req: SendPlaylistMove = decode(payload)?;
            PlatformAction::PlaylistMove {
                uid: req.uid,
                after: req.after,
            }
        }
        action::PLAYLIST_NEXT => {
            decode::<SendChannelAction>(payload)?;
            PlatformAction::PlaylistNext
        }
        action::KICK => {
            let req: SendKick = decode(payload)?;
            PlatformAction::Kick {
                user: req.user,
                reason: req.reason,
            }
        }
        action::CLEAR => {
            decode::<SendChannelAction>(payload)?;
            PlatformAction::Clear
        }
        action::AFK => PlatformAction::Afk(decode::<SendAfk>(payload)?.afk),
        other => {
            return Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("unknown action {other}"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::action_source;
    use rosey_plugin_api::actions::HEADER_SOURCE;

    #[test]
    fn actions_are_queued_by_their_sender() {
        let mut h = async_nats::HeaderMap::new();
        assert_eq!(action_source(None), "send");
        assert_eq!(action_source(Some(&h)), "send");
        h.insert(HEADER_SOURCE, "quotes");
        assert_eq!(action_source(Some(&h)), "send:quotes");
        h.insert(HEADER_SOURCE, "x".repeat(500).as_str());
        assert_eq!(action_source(Some(&h)).len(), "send:".len() + 64);
        h.insert(HEADER_SOURCE, "  ");
        assert_eq!(action_source(Some(&h)), "send");
    }
}
