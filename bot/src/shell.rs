//! The PM shell: the original's 20 operator commands, for moderators, by private message.
//!
//! Each command is audited through `rosey.db.action.pm_command`; `stats` and `user` ask the
//! database service. Replies go back by PM in chunks of at most 500 characters.

use crate::chat_queue::Destination;
use crate::core::Ctx;
use crate::logfiles::format_utc;
use crate::platform::PlatformAction;
use crate::rules;
use rosey_plugin_api::db::{
    ChannelStats, ChannelStatsQuery, PmCommand, PmCommandResult, UserStats, UserStatsQuery,
};
use rosey_plugin_api::events::{PlaylistAfter, Prepend};
use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects;
use rosey_plugin_api::Timestamp;
use std::sync::Arc;

/// The `help` text (the original's, `clear` included this time).
pub const HELP_TEXT: &str = "Commands: help, info, status, stats, users, user <name>, \
afk [on|off], say <message>, pm <user> <message>, clear, playlist [n], current, \
add <url> [temp|perm], remove <pos>, move <from> <to>, jump <pos>, next, pause, \
kick <user> [reason], voteskip";

/// The shell's sender name in the chat queue.
const SHELL_SOURCE: &str = "shell";

/// The longest PM reply chunk.
const CHUNK: usize = 500;

/// Packs reply lines into chunks of at most `CHUNK` characters (a PM shows no line breaks,
/// so lines are joined with ` | `).
pub fn pack_lines(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let extra = if current.is_empty() { 0 } else { 3 };
        if !current.is_empty() && current.chars().count() + extra + line.chars().count() > CHUNK {
            chunks.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push_str(" | ");
        }
        current.push_str(line);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

fn duration_text(secs: f64) -> String {
    let secs = if secs.is_finite() && secs > 0.0 {
        secs as u64
    } else {
        0
    };
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn parse_bool(word: &str) -> Option<bool> {
    match word.to_lowercase().as_str() {
        "on" | "yes" | "true" | "1" => Some(true),
        "off" | "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// A 1-based playlist position argument as a uid.
fn uid_at(ctx: &Ctx, arg: Option<&str>) -> Result<u64, String> {
    let pos: usize = arg
        .and_then(|a| a.parse().ok())
        .filter(|p| *p >= 1)
        .ok_or("Give a playlist position (1, 2, ...)")?;
    let state = ctx.state();
    state.playlist.get(pos - 1).map(|i| i.uid).ok_or_else(|| {
        format!(
            "No item at position {pos} (playlist has {})",
            state.playlist.len()
        )
    })
}

/// Carries out an action under the rule book ([`rules`]), which the NATS action server uses too:
/// the shell only parses text into actions.
async fn perform(ctx: &Ctx, action: PlatformAction) -> Result<(), String> {
    rules::perform(ctx, SHELL_SOURCE, action)
        .await
        .map(drop)
        .map_err(|e| e.error.message)
}

/// Runs one shell line from moderator `user` and answers by PM.
pub async fn run_command(ctx: &Arc<Ctx>, user: &str, line: &str) {
    let line = line.trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let command = word.to_lowercase();
    let rest = rest.trim();
    let result = execute(ctx, &command, rest).await;
    let (reply, audit_result, error) = match result {
        Ok(text) => (text, PmCommandResult::Success, None),
        Err(e) => (format!("Error: {e}"), PmCommandResult::Error, Some(e)),
    };
    ctx.db
        .write(
            subjects::db::ACTION_PM_COMMAND,
            &PmCommand {
                username: user.to_owned(),
                command: command.clone(),
                args: rest.to_owned(),
                result: audit_result,
                error,
                timestamp: Some(Timestamp::now()),
            },
        )
        .await;
    for chunk in pack_lines(&reply) {
        if let Err(e) = ctx
            .chat
            .enqueue(SHELL_SOURCE, Destination::Pm(user.to_owned()), &chunk)
        {
            tracing::warn!(user, error = %e, "cannot send the shell reply");
            break;
        }
    }
}

async fn execute(ctx: &Arc<Ctx>, command: &str, rest: &str) -> Result<String, String> {
    let mut args = rest.split_whitespace();
    match command {
        "help" => Ok(HELP_TEXT.to_owned()),
        "info" => Ok(info(ctx)),
        "status" => Ok(status(ctx)),
        "stats" => stats(ctx).await,
        "users" => Ok(users(ctx)),
        "user" => {
            let name = args.next().ok_or("Usage: user <name>")?;
            user_info(ctx, name).await
        }
        "afk" => match args.next() {
            None => {
                let afk = ctx.state().own_user().is_some_and(|u| u.is_afk);
                Ok(format!("AFK: {}", if afk { "on" } else { "off" }))
            }
            Some(word) => {
                let want = parse_bool(word).ok_or("Usage: afk [on|off]")?;
                perform(ctx, PlatformAction::Afk(want)).await?;
                Ok(format!("AFK set {}", if want { "on" } else { "off" }))
            }
        },
        "say" => {
            if rest.is_empty() {
                return Err("Usage: say <message>".into());
            }
            perform(ctx, PlatformAction::Chat(rest.to_owned())).await?;
            Ok(format!("Sent: {rest}"))
        }
        "pm" => {
            let to = args.next().ok_or("Usage: pm <user> <message>")?;
            let text = rest[to.len()..].trim();
            if text.is_empty() {
                return Err("Usage: pm <user> <message>".into());
            }
            let pm = PlatformAction::Pm {
                to: to.to_owned(),
                content: text.to_owned(),
            };
            perform(ctx, pm).await?;
            Ok(format!("PM sent to {to}"))
        }
        "clear" => {
            perform(ctx, PlatformAction::Clear).await?;
            Ok("Chat cleared".into())
        }
        "playlist" => {
            let n: usize = args
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or(10)
                .max(1);
            Ok(playlist(ctx, n))
        }
        "current" => Ok(current(ctx)),
        "add" => {
            let url = args.next().ok_or("Usage: add <url> [temp]")?;
            let temporary = !matches!(
                args.next().map(str::to_lowercase).as_deref(),
                Some("no" | "false" | "0" | "perm")
            );
            let add = PlatformAction::PlaylistAdd {
                url: url.to_owned(),
                next: false,
                temporary,
            };
            perform(ctx, add).await?;
            Ok(format!(
                "Added {url}{}",
                if temporary { " (temporary)" } else { "" }
            ))
        }
        "remove" => {
            let uid = uid_at(ctx, args.next())?;
            perform(ctx, PlatformAction::PlaylistRemove(uid)).await?;
            Ok("Removed".into())
        }
        "move" => {
            let (from, to) = (args.next(), args.next());
            let uid = uid_at(ctx, from)?;
            let from_pos: usize = from.and_then(|f| f.parse().ok()).unwrap_or(0);
            let to_pos: usize = to
                .and_then(|t| t.parse().ok())
                .filter(|t| *t >= 1)
                .ok_or("Usage: move <from> <to>")?;
            // CyTube places the item after another one (or first). Moving down, the item that
            // ends up before it is the one now at <to>; moving up, the one at <to> - 1. (The
            // original always took <to> - 1, which put items moved down one place short, and
            // could not move to the top.)
            let after = match to_pos.cmp(&from_pos) {
                std::cmp::Ordering::Equal => return Ok(format!("Already at position {to_pos}")),
                std::cmp::Ordering::Greater => {
                    PlaylistAfter::Uid(uid_at(ctx, Some(&to_pos.to_string()))?)
                }
                std::cmp::Ordering::Less if to_pos == 1 => PlaylistAfter::Start(Prepend::Prepend),
                std::cmp::Ordering::Less => {
                    PlaylistAfter::Uid(uid_at(ctx, Some(&(to_pos - 1).to_string()))?)
                }
            };
            perform(ctx, PlatformAction::PlaylistMove { uid, after }).await?;
            Ok("Moved".into())
        }
        "jump" => {
            let uid = uid_at(ctx, args.next())?;
            perform(ctx, PlatformAction::PlaylistJump(uid)).await?;
            Ok("Jumped".into())
        }
        "next" => {
            let next_uid = {
                let s = ctx.state();
                let pos = s.current_uid.and_then(|u| s.position(u));
                match pos {
                    Some(p) if p + 1 < s.playlist.len() => Some(s.playlist[p + 1].uid),
                    Some(_) => None,
                    None => s.playlist.first().map(|i| i.uid),
                }
            };
            let uid = next_uid.ok_or("Already at last item")?;
            perform(ctx, PlatformAction::PlaylistJump(uid)).await?;
            Ok("Skipped to the next item".into())
        }
        "pause" => {
            let pause = {
                let s = ctx.state();
                let media = s.media.as_ref().ok_or("Nothing is playing")?;
                PlatformAction::Pause {
                    media_id: media.id.clone(),
                    kind: media.kind.clone(),
                    current_time: s.media_time,
                }
            };
            perform(ctx, pause).await?;
            Ok("Paused".into())
        }
        "kick" => {
            let target = args.next().ok_or("Usage: kick <user> [reason]")?;
            let reason = rest[target.len()..].trim();
            let kick = PlatformAction::Kick {
                user: target.to_owned(),
                reason: (!reason.is_empty()).then(|| reason.to_owned()),
            };
            perform(ctx, kick).await?;
            Ok(format!("Kicked {target}"))
        }
        "voteskip" => Ok(match ctx.state().voteskip {
            Some((count, need)) => format!("Voteskip: {count}/{need}"),
            None => "Voteskip: no votes".into(),
        }),
        other => Ok(format!(
            "Unknown command: {other}\nType 'help' for available commands"
        )),
    }
}

fn info(ctx: &Ctx) -> String {
    let s = ctx.state();
    let afk = s.own_user().is_some_and(|u| u.is_afk);
    let chat = s.chat_count();
    let users = match s.connected_count {
        Some(c) if c != chat => format!("{chat} in chat, {c} connected"),
        _ => format!("{chat}"),
    };
    let total: f64 = s.playlist.iter().map(|i| i.media.duration_s).sum();
    let playing = s
        .media
        .as_ref()
        .map_or("nothing".to_owned(), |m| m.title.clone());
    format!(
        "Bot: {} (rank {}{})\nChannel: {}\nUsers: {users}\nPlaylist: {} items, {}\nNow playing: {playing}",
        s.bot_name,
        s.own_rank,
        if afk { ", AFK" } else { "" },
        s.channel,
        s.playlist.len(),
        duration_text(total),
    )
}

fn status(ctx: &Ctx) -> String {
    let s = ctx.state();
    let uptime = (Timestamp::now().secs() - s.start_time.secs()).max(0);
    format!(
        "Uptime: {}\nConnected: {}\nServer: {}\nConnected since: {}\nChannel: {}\nLeader: {}\n{}",
        duration_text(uptime as f64),
        if s.joined { "yes" } else { "no" },
        s.server,
        s.connect_time
            .map_or("-".to_owned(), |t| format_utc(t) + " UTC"),
        s.channel,
        s.leader.as_deref().unwrap_or("none"),
        if s.paused { "Paused" } else { "Playing" },
    )
}

async fn stats(ctx: &Ctx) -> Result<String, String> {
    let (chat, connected) = {
        let s = ctx.state();
        (
            s.chat_count(),
            s.connected_count.unwrap_or_else(|| s.chat_count()),
        )
    };
    let stats: ChannelStats = request_json(
        &ctx.nats,
        subjects::db::QUERY_CHANNEL_STATS,
        &ChannelStatsQuery {
            channel: ctx.settings.request_channel.clone(),
        },
        ctx.settings.request_timeout,
    )
    .await
    .map_err(|e| format!("stats unavailable: {e}"))?;
    let when = |t: Option<i64>| {
        t.and_then(Timestamp::from_secs)
            .map_or("-".to_owned(), |t| format_utc(t) + " UTC")
    };
    let mut text = format!(
        "Now: {chat} in chat, {connected} connected\nPeak chat: {} ({})\nPeak connected: {} ({})\nTotal users seen: {}",
        stats.high_water_mark.users,
        when(stats.high_water_mark.timestamp),
        stats.high_water_connected.users,
        when(stats.high_water_connected.timestamp),
        stats.total_users_seen,
    );
    if !stats.top_chatters.is_empty() {
        text.push_str("\nTop chatters:");
        for (i, c) in stats.top_chatters.iter().take(5).enumerate() {
            text.push_str(&format!(
                "\n{}. {} ({} lines)",
                i + 1,
                c.username,
                c.chat_lines
            ));
        }
    }
    Ok(text)
}

fn users(ctx: &Ctx) -> String {
    let s = ctx.state();
    let mut list: Vec<_> = s.users.values().collect();
    list.sort_by(|a, b| {
        b.rank
            .total_cmp(&a.rank)
            .then_with(|| a.username.cmp(&b.username))
    });
    let mut lines = vec![format!("{} users:", list.len())];
    for u in list {
        let mut flags = Vec::new();
        if u.is_afk {
            flags.push("AFK");
        }
        if u.is_muted {
            flags.push("MUTED");
        }
        if s.leader.as_deref() == Some(u.username.as_str()) {
            flags.push("LEADER");
        }
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", flags.join(", "))
        };
        lines.push(format!("[{}] {}{flags}", u.rank, u.username));
    }
    lines.join("\n")
}

async fn user_info(ctx: &Ctx, name: &str) -> Result<String, String> {
    let known = {
        let s = ctx.state();
        s.user(name).map(|u| {
            format!(
                "User: {}\nRank: {}\nAFK: {}\nMuted: {}\nLeader: {}",
                u.username,
                u.rank,
                if u.is_afk { "yes" } else { "no" },
                if u.is_muted { "yes" } else { "no" },
                if s.leader.as_deref() == Some(u.username.as_str()) {
                    "yes"
                } else {
                    "no"
                },
            )
        })
    };
    let stats = request_json::<_, UserStats>(
        &ctx.nats,
        subjects::db::QUERY_USER_STATS,
        &UserStatsQuery {
            channel: ctx.settings.request_channel.clone(),
            username: name.to_owned(),
        },
        ctx.settings.request_timeout,
    )
    .await;
    let mut text = known
        .clone()
        .unwrap_or_else(|| format!("User: {name} (not in the channel)"));
    match stats {
        Ok(st) if st.found => {
            text.push_str(&format!(
                "\nChat messages: {}\nTime connected: {}",
                st.total_chat_lines.unwrap_or(0),
                duration_text(st.total_time_connected.unwrap_or(0) as f64),
            ));
        }
        Ok(_) if known.is_none() => return Err(format!("User {name} not found")),
        Ok(_) => {}
        Err(e) => text.push_str(&format!("\n(stats unavailable: {e})")),
    }
    Ok(text)
}

fn playlist(ctx: &Ctx, n: usize) -> String {
    let s = ctx.state();
    if s.playlist.is_empty() {
        return "Playlist is empty".into();
    }
    let mut lines = Vec::new();
    for (i, item) in s.playlist.iter().take(n).enumerate() {
        let marker = if Some(item.uid) == s.current_uid {
            "► "
        } else {
            ""
        };
        lines.push(format!(
            "{marker}{}. {} ({})",
            i + 1,
            item.media.title,
            duration_text(item.media.duration_s)
        ));
    }
    if s.playlist.len() > n {
        lines.push(format!("... and {} more", s.playlist.len() - n));
    }
    lines.join("\n")
}

fn current(ctx: &Ctx) -> String {
    let s = ctx.state();
    let Some(media) = &s.media else {
        return "Nothing is playing".into();
    };
    let item = s.current_item();
    format!(
        "Title: {}\nDuration: {}\nQueued by: {}\nURL: {}:{}\nTemporary: {}\n{} at {}s",
        media.title,
        duration_text(media.duration_s),
        item.and_then(|i| i.queued_by.as_deref())
            .unwrap_or("unknown"),
        media.kind,
        media.id,
        if item.is_some_and(|i| i.temporary) {
            "yes"
        } else {
            "no"
        },
        if s.paused { "Paused" } else { "Playing" },
        s.media_time.max(0.0) as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_pack_into_chunks() {
        assert_eq!(pack_lines("a\nb\n\nc"), ["a | b | c"]);
        let long: String = (0..100).map(|i| format!("line number {i}\n")).collect();
        let chunks = pack_lines(&long);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.chars().count() <= CHUNK));
        assert!(chunks[0].starts_with("line number 0 | line number 1"));
    }

    #[test]
    fn helpers() {
        assert_eq!(duration_text(212.0), "3:32");
        assert_eq!(duration_text(3725.0), "1:02:05");
        assert_eq!(duration_text(f64::NAN), "0:00");
        assert_eq!(parse_bool("ON"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(HELP_TEXT.split(", ").count(), 20);
    }
}
