//! The one rule book for actions: what the channel must allow before the bot acts, checked in
//! one place whether the action came over NATS (the action server in [`crate::core`]) or from a
//! moderator's PM ([`crate::shell`]). Both only turn their input into a [`PlatformAction`] and
//! call [`perform`], so the two paths cannot drift apart again (the shell's `add <url> perm` once
//! skipped `addnontemp`).

use crate::chat_queue::{ChatError, Destination};
use crate::core::Ctx;
use crate::platform::{ActionError, PlatformAction};
use rosey_plugin_api::{ErrorBody, ErrorCode};
use tokio::sync::oneshot;

/// The channel permissions (CyTube's names) the bot's rank must meet for `action`, in the order
/// they are checked.
pub fn permissions_for(action: &PlatformAction) -> &'static [&'static str] {
    use PlatformAction as A;
    match action {
        A::Chat(_) => &["chat"],
        A::PlaylistAdd {
            next: true,
            temporary: true,
            ..
        } => &["playlistnext"],
        A::PlaylistAdd {
            next: true,
            temporary: false,
            ..
        } => &["playlistnext", "addnontemp"],
        A::PlaylistAdd {
            next: false,
            temporary: true,
            ..
        } => &["playlistadd"],
        A::PlaylistAdd {
            next: false,
            temporary: false,
            ..
        } => &["playlistadd", "addnontemp"],
        A::PlaylistRemove(_) => &["playlistdelete"],
        A::PlaylistJump(_) | A::PlaylistNext => &["playlistjump"],
        A::PlaylistMove { .. } => &["playlistmove"],
        A::Kick { .. } => &["kick"],
        A::Clear => &["chatclear"],
        // PMs, AFK and pausing need no channel permission (pausing needs the leader instead);
        // leaving is the bot's own, never asked for from outside.
        A::Pm { .. } | A::Afk(_) | A::Pause { .. } | A::Disconnect => &[],
    }
}

/// Checks `action` against the rule book: the bot's rank for every permission it needs, and
/// what it names (a user to kick, a playlist item, the leadership to pause) against the channel
/// as the bot sees it.
pub fn authorize(ctx: &Ctx, action: &PlatformAction) -> Result<(), ErrorBody> {
    use PlatformAction as A;
    if let A::Pm { to, .. } = action {
        if to.trim().is_empty() {
            return Err(ErrorBody::new(ErrorCode::InvalidJson, "`to` is empty"));
        }
        if !ctx.state().joined {
            return Err(not_connected());
        }
    }
    for permission in permissions_for(action) {
        ctx.check_permission(permission)?;
    }
    let s = ctx.state();
    match action {
        A::PlaylistRemove(uid) | A::PlaylistJump(uid) if s.position(*uid).is_none() => Err(
            ErrorBody::new(ErrorCode::NotFound, format!("no playlist item {uid}")),
        ),
        A::Kick { user, .. } => {
            let target = s.user(user).ok_or_else(|| {
                ErrorBody::new(ErrorCode::NotFound, format!("{user} is not in the channel"))
            })?;
            if target.rank >= s.own_rank {
                return Err(ErrorBody::new(
                    ErrorCode::Denied,
                    format!("{user} has a rank the bot cannot kick"),
                ));
            }
            Ok(())
        }
        A::Pause { .. }
            if !s
                .leader
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(&s.bot_name)) =>
        {
            Err(ErrorBody::new(
                ErrorCode::Denied,
                "The bot must be the leader to pause",
            ))
        }
        _ => Ok(()),
    }
}

/// How an authorized action was carried out.
#[derive(Debug)]
pub enum Performed {
    /// The platform did it (or there was nothing to do).
    Done,
    /// The text waits in the rate-limited chat queue; the receiver tells when it was sent, or why
    /// it was not.
    Queued(oneshot::Receiver<Result<(), ChatError>>),
}

/// Authorizes `action` and carries it out; chat and PM text goes through the chat queue under
/// `source` (the queue's sender, which keeps senders' turns fair).
pub async fn perform(
    ctx: &Ctx,
    source: &str,
    action: PlatformAction,
) -> Result<Performed, ErrorBody> {
    authorize(ctx, &action)?;
    let queued = |destination: Destination, text: &str| {
        ctx.chat
            .enqueue(source, destination, text)
            .map(Performed::Queued)
            .map_err(chat_failure)
    };
    match action {
        PlatformAction::Chat(text) => queued(Destination::Chat, &text),
        PlatformAction::Pm { to, content } => queued(Destination::Pm(to), &content),
        PlatformAction::Afk(want) if ctx.state().own_user().map(|u| u.is_afk) == Some(want) => {
            Ok(Performed::Done)
        }
        other => ctx
            .act(other)
            .await
            .map(|()| Performed::Done)
            .map_err(platform_failure),
    }
}

fn not_connected() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Internal,
        "the bot is not connected to the channel",
    )
}

/// The contract's error for a platform's refusal or failure.
pub fn platform_failure(e: ActionError) -> ErrorBody {
    match e {
        ActionError::Invalid(m) => ErrorBody::new(ErrorCode::InvalidJson, m),
        other => ErrorBody::new(ErrorCode::Internal, other.to_string()),
    }
}

/// The contract's error for text the chat queue did not take or could not send.
pub fn chat_failure(e: ChatError) -> ErrorBody {
    match e {
        ChatError::QueueFull(_) | ChatError::TooLong(_) => {
            ErrorBody::new(ErrorCode::TooLarge, e.to_string())
        }
        ChatError::Muted(_) | ChatError::Denied(_) => {
            ErrorBody::new(ErrorCode::Denied, e.to_string())
        }
        ChatError::Invalid(_) => ErrorBody::new(ErrorCode::InvalidJson, e.to_string()),
        ChatError::Platform(_) | ChatError::Closed => {
            ErrorBody::new(ErrorCode::Internal, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosey_plugin_api::events::{Append, PlaylistAfter};

    #[test]
    fn every_permanent_add_needs_addnontemp_and_temporary_ones_do_not() {
        for next in [false, true] {
            for temporary in [false, true] {
                let add = PlatformAction::PlaylistAdd {
                    url: "yt:abc".into(),
                    next,
                    temporary,
                };
                let needed = permissions_for(&add);
                assert_eq!(needed.contains(&"addnontemp"), !temporary, "{add:?}");
                assert_eq!(needed[0], if next { "playlistnext" } else { "playlistadd" });
            }
        }
    }

    #[test]
    fn moderation_and_playlist_actions_name_their_permission() {
        let cases = [
            (PlatformAction::Chat("hi".into()), "chat"),
            (PlatformAction::PlaylistRemove(1), "playlistdelete"),
            (PlatformAction::PlaylistJump(1), "playlistjump"),
            (PlatformAction::PlaylistNext, "playlistjump"),
            (
                PlatformAction::PlaylistMove {
                    uid: 1,
                    after: PlaylistAfter::End(Append::Append),
                },
                "playlistmove",
            ),
            (
                PlatformAction::Kick {
                    user: "x".into(),
                    reason: None,
                },
                "kick",
            ),
            (PlatformAction::Clear, "chatclear"),
        ];
        for (action, permission) in cases {
            assert_eq!(permissions_for(&action), [permission], "{action:?}");
        }
    }
}
