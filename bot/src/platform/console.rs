//! The console platform: standard input is the chat of one local moderator, standard output
//! shows what the bot says. For trying the bot and its plugins without a CyTube server.
//!
//! Every stdin line is a chat line from `platform.console_user`; a line starting with `/pm `
//! is a PM to the bot. Stdout carries only the bot's words (`<botname> text`, `[pm] text`),
//! flushed per line, so scripts can read it; diagnostics go to stderr.

use super::{ActionRequest, ChatOrigin, Meta, Platform, PlatformAction, PlatformEvent, UserPatch};
use rosey_plugin_api::{Timestamp, UserData};
use serde_json::{json, Map, Value};
use std::io::Write;
use tokio::sync::mpsc;

/// The console user's rank: a moderator, so the shell and moderator commands can be tried.
pub const CONSOLE_USER_RANK: f64 = 2.0;
/// The bot's rank on the console: above the user, so every action is permitted.
pub const CONSOLE_BOT_RANK: f64 = 3.0;

/// The console connector.
#[derive(Debug, Clone)]
pub struct ConsolePlatform {
    channel: String,
    user: String,
    bot_name: String,
}

impl ConsolePlatform {
    /// A console where `user` talks to `bot_name` in `channel`.
    pub fn new(channel: &str, user: &str, bot_name: &str) -> Self {
        ConsolePlatform {
            channel: channel.to_owned(),
            user: user.to_owned(),
            bot_name: bot_name.to_owned(),
        }
    }

    /// The platform event one typed line stands for.
    pub fn line_event(&self, line: &str) -> Option<PlatformEvent> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return None;
        }
        let meta = Meta {
            timestamp: Timestamp::now(),
            platform_data: json!({"user": self.user, "line": line}),
        };
        Some(match line.strip_prefix("/pm ") {
            Some(text) => PlatformEvent::Pm {
                user: self.user.clone(),
                recipient: self.bot_name.clone(),
                content: text.trim().to_owned(),
                meta,
            },
            None => PlatformEvent::Chat {
                user: self.user.clone(),
                content: line.to_owned(),
                origin: ChatOrigin::Live,
                meta,
            },
        })
    }

    fn say(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (the reader went away) must not stop the bot.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

impl Platform for ConsolePlatform {
    fn default_rank(_action: &str) -> f64 {
        // The console has no channel rules: the person typing may do anything.
        0.0
    }

    fn name(&self) -> &'static str {
        "console"
    }

    fn channel(&self) -> &str {
        &self.channel
    }

    async fn run(
        self,
        events: mpsc::Sender<PlatformEvent>,
        mut actions: mpsc::Receiver<ActionRequest>,
    ) -> anyhow::Result<()> {
        let meta = || Meta {
            timestamp: Timestamp::now(),
            platform_data: Value::Null,
        };
        let users = vec![
            UserData::new(self.user.clone(), CONSOLE_USER_RANK),
            UserData::new(self.bot_name.clone(), CONSOLE_BOT_RANK),
        ];
        for event in [
            PlatformEvent::Permissions(Map::new()),
            PlatformEvent::OwnRank(CONSOLE_BOT_RANK),
            PlatformEvent::UserList {
                users,
                meta: meta(),
            },
            PlatformEvent::ConnectedCount {
                count: 2,
                meta: meta(),
            },
            PlatformEvent::Joined {
                bot_name: self.bot_name.clone(),
            },
        ] {
            events.send(event).await?;
        }

        // Standard input is read on a plain thread: tokio's stdin reads on a blocking-pool
        // thread that the runtime waits for at exit, so an open terminal would keep the bot from
        // stopping on SIGTERM. A detached thread blocked in `read` does not.
        let reader = self.clone();
        let line_events = events.clone();
        let spawned = std::thread::Builder::new()
            .name("console-stdin".into())
            .spawn(move || {
                use std::io::BufRead;
                for line in std::io::stdin().lock().lines() {
                    let line = match line {
                        Ok(line) => line,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read standard input; ignoring it");
                            return;
                        }
                    };
                    if let Some(event) = reader.line_event(&line) {
                        let raw = PlatformEvent::Raw {
                            event: "line".into(),
                            data: json!({"user": reader.user, "line": line}),
                        };
                        if line_events.blocking_send(raw).is_err()
                            || line_events.blocking_send(event).is_err()
                        {
                            return;
                        }
                    }
                }
                tracing::info!("end of input; the bot keeps running until stopped");
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot read standard input; ignoring it");
        }

        while let Some((action, done)) = actions.recv().await {
            match action {
                PlatformAction::Chat(text) => {
                    self.say(&format!("<{}> {text}", self.bot_name));
                    // As a chat server echoes the bot's own line.
                    let echo = PlatformEvent::Chat {
                        user: self.bot_name.clone(),
                        content: text,
                        origin: ChatOrigin::Own,
                        meta: meta(),
                    };
                    let _ = events.send(echo).await;
                }
                PlatformAction::Pm { content, .. } => self.say(&format!("[pm] {content}")),
                PlatformAction::Afk(afk) => {
                    let update = PlatformEvent::UserUpdate {
                        user: self.bot_name.clone(),
                        patch: UserPatch {
                            afk: Some(afk),
                            ..Default::default()
                        },
                        meta: meta(),
                    };
                    let _ = events.send(update).await;
                }
                PlatformAction::Disconnect => {
                    let _ = done.send(Ok(()));
                    return Ok(());
                }
                other => tracing::info!(action = ?other, "console: action accepted"),
            }
            let _ = done.send(Ok(()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_chat_or_pm() {
        let c = ConsolePlatform::new("console", "console", "rosey");
        match c.line_event("!roll 2d6\n") {
            Some(PlatformEvent::Chat {
                user,
                content,
                origin: ChatOrigin::Live,
                meta,
            }) => {
                assert_eq!((user.as_str(), content.as_str()), ("console", "!roll 2d6"));
                assert_eq!(meta.platform_data["line"], "!roll 2d6");
            }
            other => panic!("{other:?}"),
        }
        match c.line_event("/pm status") {
            Some(PlatformEvent::Pm {
                user,
                recipient,
                content,
                ..
            }) => {
                assert_eq!(
                    (user.as_str(), recipient.as_str(), content.as_str()),
                    ("console", "rosey", "status")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(c.line_event("   ").is_none());
    }
}
