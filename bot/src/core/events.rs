//! Platform events, each applied once to the channel state and published: normalized events,
//! commands, durable database writes and session bookkeeping.

use super::context::*;
use crate::chat_queue::{Destination, REFUSAL_PAUSE};
use crate::flood::FloodVerdict;
use crate::platform::{ChatOrigin, Meta, PlatformEvent, UserPatch};
use crate::shell;
use rosey_plugin_api::actions::PlatformError;
use rosey_plugin_api::commands::{parse_command_line, Command};
use rosey_plugin_api::db::{
    MessageLog, StatsHighWater, UserJoined, UserLeft, UserSessions, MAX_SESSION_NAMES,
};
use rosey_plugin_api::events::{
    self as ev, Media, MediaChange, PlaylistRemove, PollClose, UserCount,
};
use rosey_plugin_api::subjects::{self, platform as platform_subjects};
use rosey_plugin_api::{Timestamp, UserData};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Ends every open session at `at` and forgets the user list.
pub(crate) async fn close_sessions(ctx: &Ctx, at: Timestamp) {
    let users = std::mem::take(&mut ctx.state().users);
    let left = users.into_values().map(|u| u.username).collect();
    write_sessions(ctx, left, Vec::new(), at).await;
}

/// Sessions closed and opened at `at`, coalesced: one durable write per
/// [`MAX_SESSION_NAMES`] names instead of one per user (a user list of tens of thousands
/// would otherwise flood the backlog).
pub(crate) async fn write_sessions(
    ctx: &Ctx,
    left: Vec<String>,
    joined: Vec<String>,
    at: Timestamp,
) {
    let mut left = left.into_iter().peekable();
    let mut joined = joined.into_iter().peekable();
    while left.peek().is_some() || joined.peek().is_some() {
        let left_part: Vec<String> = left.by_ref().take(MAX_SESSION_NAMES).collect();
        let room = MAX_SESSION_NAMES - left_part.len();
        let joined_part: Vec<String> = joined.by_ref().take(room).collect();
        ctx.db
            .write(
                subjects::db::USER_SESSIONS,
                &UserSessions {
                    left: left_part,
                    joined: joined_part,
                    timestamp: Some(at),
                },
            )
            .await;
    }
}

/// What a user list changes: who left and who arrived since `known`, by hashing (linear in
/// both lists); each name once, as the list spells it.
pub fn user_list_diff(
    known: &BTreeMap<String, UserData>,
    users: &[UserData],
) -> (Vec<String>, Vec<String>) {
    let mut listed: HashSet<String> = HashSet::with_capacity(users.len());
    let mut arrived = Vec::new();
    for u in users {
        let key = u.username.to_lowercase();
        if !known.contains_key(&key) && !listed.contains(&key) {
            arrived.push(u.username.clone());
        }
        listed.insert(key);
    }
    let departed = known
        .iter()
        .filter(|(key, _)| !listed.contains(*key))
        .map(|(_, u)| u.username.clone())
        .collect();
    (departed, arrived)
}

/// Applies one platform event: state first, then what gets published.
pub async fn handle_event(ctx: &Arc<Ctx>, event: PlatformEvent) {
    match event {
        PlatformEvent::Raw { event, data } => match platform_subjects::raw(ctx.platform, &event) {
            Ok(subject) => ctx.publish_json(subject, &data).await,
            Err(e) => tracing::debug!(error = %e, "raw event not forwarded"),
        },
        PlatformEvent::Joined { bot_name } => on_joined(ctx, bot_name).await,
        PlatformEvent::Disconnected { reason } => on_disconnected(ctx, reason).await,
        PlatformEvent::Chat {
            user,
            content,
            origin,
            meta,
        } => {
            handle_chat(ctx, user, content, origin, meta).await;
        }
        PlatformEvent::Pm {
            user,
            recipient,
            content,
            meta,
        } => {
            handle_pm(ctx, user, recipient, content, meta).await;
        }
        PlatformEvent::UserList { users, meta } => on_user_list(ctx, users, meta).await,
        PlatformEvent::UserJoin { user, meta } => on_user_join(ctx, user, meta).await,
        PlatformEvent::UserLeave { user, meta } => on_user_leave(ctx, user, meta).await,
        PlatformEvent::UserUpdate { user, patch, meta } => {
            on_user_update(ctx, user, patch, meta).await
        }
        PlatformEvent::ConnectedCount { count, meta } => on_connected_count(ctx, count, meta).await,
        PlatformEvent::OwnRank(rank) => on_own_rank(ctx, rank).await,
        PlatformEvent::LoginFailed { error } => {
            tracing::error!(error, "login failed");
            // Whoever watches the platform's errors learns why the bot is not in the channel.
            report_error(ctx, "login", &error).await;
        }
        PlatformEvent::Permissions(map) => {
            ctx.state().permissions = map;
            ctx.refresh_chat_gate();
        }
        PlatformEvent::PlaylistLocked(locked) => ctx.state().playlist_locked = locked,
        PlatformEvent::SetCurrent(uid) => ctx.state().current_uid = Some(uid),
        PlatformEvent::MediaChange { media, meta } => on_media_change(ctx, media, meta).await,
        PlatformEvent::MediaUpdate {
            current_time,
            paused,
        } => {
            let mut s = ctx.state();
            s.media_time = current_time;
            s.paused = paused;
        }
        PlatformEvent::Playlist { items } => ctx.state().playlist = items,
        PlatformEvent::PlaylistAdd { add, meta } => {
            ctx.state().playlist_add(&add.item, add.after);
            ctx.publish_event(subjects::events::PLAYLIST_ADD, add, &meta)
                .await;
        }
        PlatformEvent::PlaylistRemove { uid, meta } => {
            ctx.state().playlist_remove(uid);
            ctx.publish_event(
                subjects::events::PLAYLIST_REMOVE,
                PlaylistRemove { uid },
                &meta,
            )
            .await;
        }
        PlatformEvent::PlaylistMove { moved, meta } => {
            ctx.state().playlist_move(moved.uid, moved.after);
            ctx.publish_event(subjects::events::PLAYLIST_MOVE, moved, &meta)
                .await;
        }
        PlatformEvent::SetTemp { uid, temporary } => {
            let mut s = ctx.state();
            if let Some(p) = s.position(uid) {
                s.playlist[p].temporary = temporary;
            }
        }
        PlatformEvent::PollOpen { poll, meta } => {
            ctx.publish_event(subjects::events::POLL_OPEN, poll, &meta)
                .await;
        }
        PlatformEvent::PollUpdate { poll, meta } => {
            ctx.publish_event(subjects::events::POLL_UPDATE, poll, &meta)
                .await;
        }
        PlatformEvent::PollClose { meta } => {
            ctx.publish_event(subjects::events::POLL_CLOSE, PollClose {}, &meta)
                .await;
        }
        PlatformEvent::Leader(name) => {
            ctx.state().leader = (!name.is_empty()).then_some(name);
        }
        PlatformEvent::Voteskip { count, need } => ctx.state().voteskip = Some((count, need)),
        PlatformEvent::Cooldown(pause) => {
            tracing::warn!(
                ?pause,
                "the server dropped a chat line (cooldown); pausing chat"
            );
            ctx.chat.cooldown(pause);
        }
        PlatformEvent::ChatRefused(msg) => {
            tracing::warn!(msg, "the server refuses the bot's chat");
            ctx.chat.pause(REFUSAL_PAUSE);
            report_error(ctx, platform_subjects::action::CHAT, &msg).await;
        }
        PlatformEvent::ServerError(msg) => tracing::warn!(msg, "server error"),
    }
}

/// A user list replaces what the bot knew: sessions open and close for the difference.
async fn on_joined(ctx: &Arc<Ctx>, bot_name: String) {
    {
        let mut s = ctx.state();
        s.bot_name = bot_name.clone();
        s.joined = true;
        s.connect_time = Some(Timestamp::now());
    }
    tracing::info!(bot_name, channel = ctx.channel, "joined the channel");
    ctx.refresh_chat_gate();
    ctx.publish_status().await;
    ctx.write_status().await;
}

async fn on_disconnected(ctx: &Arc<Ctx>, reason: String) {
    ctx.state().joined = false;
    tracing::warn!(reason, "disconnected from the platform");
    // Nobody is seen while we are away: sessions end now, and the next user list
    // opens them again (else the outage would be credited to everyone present).
    close_sessions(ctx, Timestamp::now()).await;
    ctx.refresh_chat_gate();
    ctx.publish_status().await;
    ctx.write_status().await;
}

async fn on_own_rank(ctx: &Arc<Ctx>, rank: f64) {
    let changed = {
        let mut s = ctx.state();
        let changed = s.own_rank != rank;
        s.own_rank = rank;
        changed
    };
    if changed {
        ctx.refresh_chat_gate();
        ctx.publish_status().await;
    }
}

async fn on_media_change(ctx: &Arc<Ctx>, media: Media, meta: Meta) {
    let queued_by = {
        let mut s = ctx.state();
        s.media = Some(media.clone());
        s.media_time = 0.0;
        s.current_item()
            .filter(|i| i.media.id == media.id)
            .and_then(|i| i.queued_by.clone())
    };
    ctx.logs
        .media(meta.timestamp, &media.kind, &media.id, &media.title);
    ctx.publish_event(
        subjects::events::MEDIA_CHANGE,
        MediaChange { media, queued_by },
        &meta,
    )
    .await;
}

async fn on_user_list(ctx: &Arc<Ctx>, users: Vec<UserData>, meta: Meta) {
    let count = users.len();
    let (chat_count, connected, departed, arrived) = {
        let mut s = ctx.state();
        // The list replaces what we knew: whoever appeared or vanished meanwhile (at
        // start-up, everyone present) opens or closes a session, so their time and
        // lines are counted, as if they had joined or left in front of us.
        let (departed, arrived) = user_list_diff(&s.users, &users);
        s.set_users(&users);
        (s.chat_count(), s.connected_count, departed, arrived)
    };
    write_sessions(ctx, departed, arrived, meta.timestamp).await;
    ctx.refresh_chat_gate();
    ctx.publish_event(
        subjects::events::USER_LIST,
        ev::UserList { users, count },
        &meta,
    )
    .await;
    publish_count(ctx, &meta).await;
    write_high_water(ctx, chat_count, connected, meta.timestamp).await;
}

/// One user joined (unless the channel is at `max_users`).
async fn on_user_join(ctx: &Arc<Ctx>, user: UserData, meta: Meta) {
    let (added, chat_count, connected) = {
        let mut s = ctx.state();
        let added = s.add_user(&user, ctx.settings.max_users);
        (added, s.chat_count(), s.connected_count)
    };
    if !added {
        let n = ctx.joins_over_cap.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                user = user.username,
                max_users = ctx.settings.max_users,
                refused_so_far = n,
                "a join past platform.max_users is ignored"
            );
        }
        return;
    }
    let name = user.username.clone();
    ctx.publish_event(
        subjects::events::USER_JOIN,
        ev::UserJoin {
            user: name.clone(),
            user_data: user.clone(),
        },
        &meta,
    )
    .await;
    publish_count(ctx, &meta).await;
    ctx.db
        .write(
            subjects::db::USER_JOINED,
            &UserJoined {
                username: name,
                timestamp: Some(meta.timestamp),
                user_data: Some(user),
            },
        )
        .await;
    write_high_water(ctx, chat_count, connected, meta.timestamp).await;
    ctx.refresh_chat_gate();
}

/// One user left.
async fn on_user_leave(ctx: &Arc<Ctx>, user: String, meta: Meta) {
    let last = ctx.state().remove_user(&user);
    ctx.publish_event(
        subjects::events::USER_LEAVE,
        ev::UserLeave {
            user: user.clone(),
            user_data: last.clone(),
        },
        &meta,
    )
    .await;
    publish_count(ctx, &meta).await;
    ctx.db
        .write(
            subjects::db::USER_LEFT,
            &UserLeft {
                username: user,
                timestamp: Some(meta.timestamp),
                user_data: last,
            },
        )
        .await;
}

/// A user's rank, AFK or mute changed.
async fn on_user_update(ctx: &Arc<Ctx>, user: String, patch: UserPatch, meta: Meta) {
    let updated = ctx.state().update_user(&user, &patch);
    match updated {
        Some((user_data, changed)) if !changed.is_empty() => {
            ctx.refresh_chat_gate();
            ctx.publish_event(
                subjects::events::USER_UPDATE,
                ev::UserUpdate {
                    user: user_data.username.clone(),
                    user_data,
                    changed,
                },
                &meta,
            )
            .await;
        }
        Some(_) => {}
        None => tracing::debug!(user, "update for an unknown user ignored"),
    }
}

/// The count of everyone connected, chat or not.
async fn on_connected_count(ctx: &Arc<Ctx>, count: u64, meta: Meta) {
    let chat_count = {
        let mut s = ctx.state();
        s.connected_count = Some(count);
        s.chat_count()
    };
    ctx.publish_event(
        subjects::events::USER_COUNT,
        UserCount {
            chat_count,
            connected_count: count,
        },
        &meta,
    )
    .await;
    write_high_water(ctx, chat_count, Some(count), meta.timestamp).await;
}

/// Records the channel's counts as a candidate high-water mark (rosey-db keeps the highest).
async fn write_high_water(ctx: &Ctx, chat_count: u64, connected: Option<u64>, at: Timestamp) {
    ctx.db
        .write(
            subjects::db::STATS_HIGH_WATER,
            &StatsHighWater {
                chat_count,
                connected_count: connected,
                timestamp: Some(at),
            },
        )
        .await;
}

pub(crate) async fn handle_chat(
    ctx: &Arc<Ctx>,
    user: String,
    content: String,
    origin: ChatOrigin,
    meta: Meta,
) {
    match origin {
        ChatOrigin::History | ChatOrigin::Shadow | ChatOrigin::Server => return,
        ChatOrigin::Own => {
            ctx.logs.chat(meta.timestamp, &user, &content);
            ctx.db
                .write(
                    subjects::db::MESSAGE_LOG,
                    &MessageLog {
                        username: user,
                        message: content,
                        timestamp: Some(meta.timestamp),
                        user_data: None,
                    },
                )
                .await;
            return;
        }
        ChatOrigin::Live => {}
    }
    let user_data = ctx.state().user(&user).cloned();
    let parsed = parse_command_line(&content, &ctx.settings.command_prefix);
    ctx.logs.chat(meta.timestamp, &user, &content);
    ctx.publish_event(
        subjects::events::MESSAGE,
        ev::Message {
            user: user.clone(),
            user_data: user_data.clone(),
            content: content.clone(),
            is_command: parsed.is_some(),
        },
        &meta,
    )
    .await;
    ctx.db
        .write(
            subjects::db::MESSAGE_LOG,
            &MessageLog {
                username: user.clone(),
                message: content.clone(),
                timestamp: Some(meta.timestamp),
                user_data: user_data.clone(),
            },
        )
        .await;
    if let Some(parsed) = parsed {
        publish_command(ctx, parsed, content, user, user_data, false, meta.timestamp).await;
    }
}

pub(crate) async fn handle_pm(
    ctx: &Arc<Ctx>,
    user: String,
    recipient: String,
    content: String,
    meta: Meta,
) {
    ctx.logs.pm(meta.timestamp, &user, &recipient, &content);
    ctx.publish_event(
        subjects::events::PM,
        ev::Pm {
            user: user.clone(),
            recipient,
            content: content.clone(),
        },
        &meta,
    )
    .await;
    let user_data = ctx.state().user(&user).cloned();
    if let Some(parsed) = parse_command_line(&content, &ctx.settings.command_prefix) {
        publish_command(ctx, parsed, content, user, user_data, true, meta.timestamp).await;
        return;
    }
    let is_mod = user_data.as_ref().is_some_and(|u| u.is_moderator);
    if ctx.settings.shell_enabled && is_mod {
        let ctx = ctx.clone();
        tokio::spawn(async move { shell::run_command(&ctx, &user, &content).await });
    } else if ctx.settings.shell_enabled {
        tracing::info!(
            user,
            "PM from a non-moderator is not a shell command; ignored"
        );
    }
}

pub(crate) async fn publish_command(
    ctx: &Arc<Ctx>,
    parsed: rosey_plugin_api::commands::ParsedCommand,
    raw: String,
    user: String,
    user_data: Option<UserData>,
    is_pm: bool,
    timestamp: Timestamp,
) {
    let user_data = user_data.unwrap_or_else(|| UserData::new(user.clone(), 0.0));
    if !user_data.is_moderator {
        let verdict = ctx
            .flood
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(&user, tokio::time::Instant::now());
        match verdict {
            FloodVerdict::Allow => {}
            FloodVerdict::Block => return,
            FloodVerdict::BlockAndWarn => {
                tracing::warn!(user, "command flood: ignoring the user for a while");
                let minutes = ctx.settings.flood_block.as_secs().div_ceil(60).max(1);
                let text = format!(
                    "{user}: too many commands; I will ignore yours for {minutes} minute(s)."
                );
                let dest = if is_pm {
                    Destination::Pm(user.clone())
                } else {
                    Destination::Chat
                };
                if let Err(e) = ctx.chat.enqueue("core", dest, &text) {
                    tracing::warn!(error = %e, "cannot send the flood warning");
                }
                return;
            }
        }
    }
    let Ok(subject) = subjects::commands::command(&parsed.command) else {
        return;
    };
    let command = Command {
        command: parsed.command,
        args: parsed.args,
        text: parsed.text,
        raw,
        user,
        user_data,
        is_pm,
        platform: ctx.platform.to_owned(),
        channel: ctx.channel.clone(),
        timestamp,
    };
    ctx.publish_json(subject, &command).await;
}

/// Publishes `rosey.events.user.count` from the state, once the connected count is known.
pub(crate) async fn publish_count(ctx: &Ctx, meta: &Meta) {
    let counts = {
        let s = ctx.state();
        s.connected_count.map(|connected| UserCount {
            chat_count: s.chat_count(),
            connected_count: connected,
        })
    };
    if let Some(counts) = counts {
        ctx.publish_event(subjects::events::USER_COUNT, counts, meta)
            .await;
    }
}

/// Publishes an action failure on `rosey.platform.<p>.error`.
pub async fn report_error(ctx: &Ctx, action: &str, error: &str) {
    let Ok(subject) = platform_subjects::error(ctx.platform) else {
        return;
    };
    ctx.publish_json(
        subject,
        &PlatformError {
            action: action.to_owned(),
            error: error.to_owned(),
            channel: ctx.channel.clone(),
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::user_list_diff;
    use rosey_plugin_api::UserData;
    use std::collections::BTreeMap;

    #[test]
    fn user_list_diffs_find_who_left_and_arrived() {
        let known: BTreeMap<String, UserData> = ["Alice", "bob", "carol"]
            .iter()
            .map(|n| (n.to_lowercase(), UserData::new(*n, 0.0)))
            .collect();
        let list: Vec<UserData> = ["alice", "Dave", "carol", "dave", "erin"]
            .iter()
            .map(|n| UserData::new(*n, 0.0))
            .collect();
        let (departed, arrived) = user_list_diff(&known, &list);
        assert_eq!(departed, ["bob"]);
        // Each new name once, spelled as the list first spells it.
        assert_eq!(arrived, ["Dave", "erin"]);
    }

    #[test]
    fn replacing_two_disjoint_50k_lists_is_a_full_diff() {
        let list = |prefix: &str| -> Vec<UserData> {
            (0..50_000)
                .map(|i| UserData::new(format!("{prefix}{i}"), 0.0))
                .collect()
        };
        let a = list("a");
        let known: BTreeMap<String, UserData> = a
            .iter()
            .map(|u| (u.username.to_lowercase(), u.clone()))
            .collect();
        let (departed, arrived) = user_list_diff(&known, &list("b"));
        assert_eq!((departed.len(), arrived.len()), (50_000, 50_000));
        let (departed, arrived) = user_list_diff(&known, &a);
        assert!(departed.is_empty() && arrived.is_empty());
    }
}
