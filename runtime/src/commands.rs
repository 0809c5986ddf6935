//! Chat commands: which plugin serves which command, the rank and cooldown rules enforced
//! before delivery, and the runtime's own `!help`.

use rosey_config::CommandOverride;
use rosey_plugin_api::actions::{SendChat, SendPm};
use rosey_plugin_api::commands::Command;
use rosey_plugin_api::ffi::FfiCommandSpec;
use rosey_plugin_api::subjects;
use rosey_plugin_api::user::MODERATOR_RANK;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The command the runtime answers itself.
pub const HELP: &str = "help";

/// One command and the rules that apply to it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRule {
    /// The plugin that serves it.
    pub plugin: String,
    /// The command word.
    pub name: String,
    /// One line for `!help`.
    pub description: String,
    /// The lowest rank allowed.
    pub min_rank: f64,
    /// Per-user pause between uses (moderators are exempt).
    pub cooldown: Duration,
}

/// Which plugin serves which command; a command has one owner.
#[derive(Debug, Default)]
pub struct CommandTable {
    rules: BTreeMap<String, CommandRule>,
}

/// Why a plugin's set of commands was refused (the instance then fails to initialize).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// A declared name is not a command name.
    #[error("command {0:?} is not a valid command name (1 to 32 of a-z, 0-9, _ or -)")]
    InvalidName(String),
    /// The plugin declared the runtime's own `!help`.
    #[error("command !{HELP} is reserved for the runtime")]
    Reserved,
    /// Another plugin serves the command already.
    #[error("command !{command} is already served by plugin {plugin:?}; rename it or disable one of them")]
    Taken {
        /// The command.
        command: String,
        /// The plugin serving it.
        plugin: String,
    },
}

impl CommandTable {
    /// Claims `specs` for `plugin` (replacing what it claimed before), applying overrides
    /// from `plugins.config.<plugin>.commands.<name>.{min_rank, cooldown}`; refuses the whole
    /// set when one is invalid or served by another plugin.
    pub fn claim(
        &mut self,
        plugin: &str,
        specs: &[FfiCommandSpec],
        overrides: &BTreeMap<String, CommandOverride>,
    ) -> Result<Vec<String>, ClaimError> {
        let mut new_rules = Vec::new();
        for spec in specs {
            let name = spec.name.as_str();
            if !subjects::is_command_name(name) {
                return Err(ClaimError::InvalidName(name.to_owned()));
            }
            if name == HELP {
                return Err(ClaimError::Reserved);
            }
            if let Some(owner) = self.rules.get(name).filter(|r| r.plugin != plugin) {
                return Err(ClaimError::Taken {
                    command: name.to_owned(),
                    plugin: owner.plugin.clone(),
                });
            }
            let over = overrides.get(name).copied().unwrap_or_default();
            let min_rank = over.min_rank.unwrap_or(spec.min_rank);
            let cooldown = over
                .cooldown
                .map_or(Duration::from_millis(spec.cooldown_ms), |s| s.as_duration());
            new_rules.push(CommandRule {
                plugin: plugin.to_owned(),
                name: name.to_owned(),
                description: spec.description.to_string(),
                min_rank,
                cooldown,
            });
        }
        self.release(plugin);
        let names = new_rules.iter().map(|r| r.name.clone()).collect();
        for rule in new_rules {
            self.rules.insert(rule.name.clone(), rule);
        }
        Ok(names)
    }

    /// Forgets every command of `plugin`.
    pub fn release(&mut self, plugin: &str) {
        self.rules.retain(|_, r| r.plugin != plugin);
    }

    /// The rule for `command`, whichever plugin serves it.
    pub fn rule(&self, command: &str) -> Option<CommandRule> {
        self.rules.get(command).cloned()
    }

    /// Whether `plugin` may subscribe to `command` itself: it serves it, or no plugin (nor
    /// the runtime) does.
    pub fn may_subscribe(&self, plugin: &str, command: &str) -> bool {
        match self.rules.get(command) {
            Some(rule) => rule.plugin == plugin,
            None => command != HELP,
        }
    }

    /// Every command, by name.
    pub fn all(&self) -> Vec<CommandRule> {
        self.rules.values().cloned().collect()
    }
}

/// Past this many remembered uses, entries whose cooldown has passed are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// When each user last used each command, with the cooldown that use started.
#[derive(Debug, Default)]
pub struct Cooldowns {
    last: HashMap<(String, String), (Instant, Duration)>,
}

impl Cooldowns {
    /// Whether `command` may be delivered under `rule` now; a refused command gets no reply.
    pub fn admit(&mut self, rule: &CommandRule, command: &Command, now: Instant) -> bool {
        let rank = command.user_data.rank;
        if rank < rule.min_rank {
            tracing::debug!(command = %rule.name, user = %command.user, rank, "refused: rank too low");
            return false;
        }
        if command.user_data.is_moderator || rank >= MODERATOR_RANK || rule.cooldown.is_zero() {
            return true;
        }
        if self.last.len() > PRUNE_ABOVE {
            // Each entry is kept exactly as long as its own cooldown, however long that is.
            self.last
                .retain(|_, (at, cooldown)| now.duration_since(*at) < *cooldown);
        }
        let key = (rule.name.clone(), command.user.clone());
        if let Some((at, _)) = self.last.get(&key) {
            if now.duration_since(*at) < rule.cooldown {
                tracing::debug!(command = %rule.name, user = %command.user, "refused: cooldown");
                return false;
            }
        }
        self.last.insert(key, (now, rule.cooldown));
        true
    }
}

/// The `!help` answer: every command, or one command's details.
pub fn help_text(rules: &[CommandRule], command: &Command, prefix: &str) -> String {
    match command.args.first() {
        None => {
            if rules.is_empty() {
                return format!(
                    "No commands for you here; say {prefix}{HELP} <command> about one."
                );
            }
            // Only what the asker may use; `!help <command>` still explains any command.
            let rank = command.user_data.rank;
            let list: Vec<String> = rules
                .iter()
                .filter(|r| rank >= r.min_rank || command.user_data.is_moderator)
                .map(|r| format!("{prefix}{}", r.name))
                .collect();
            if list.is_empty() {
                return format!(
                    "No commands for you here; say {prefix}{HELP} <command> about one."
                );
            }
            format!(
                "Commands: {} (say {prefix}{HELP} <command> for details)",
                list.join(", ")
            )
        }
        Some(word) => {
            let word = word.trim_start_matches(prefix).to_lowercase();
            match rules.iter().find(|r| r.name == word) {
                Some(r) => {
                    let mut text = format!("{prefix}{}: {}", r.name, r.description);
                    if r.min_rank > 0.0 {
                        text.push_str(&format!(" (rank {} and up)", r.min_rank));
                    }
                    if !r.cooldown.is_zero() {
                        text.push_str(&format!(" (once every {:.0?})", r.cooldown));
                    }
                    text
                }
                None => format!("No command {prefix}{word}."),
            }
        }
    }
}

/// Where and what to publish to answer `command` with `content`.
pub fn reply_to(command: &Command, content: String) -> Result<(String, Vec<u8>), String> {
    let (action, body) = if command.is_pm {
        (
            subjects::platform::action::PM,
            serde_json::to_vec(&SendPm {
                channel: command.channel.clone(),
                to: command.user.clone(),
                content,
            }),
        )
    } else {
        (
            subjects::platform::action::CHAT,
            serde_json::to_vec(&SendChat {
                channel: command.channel.clone(),
                content,
            }),
        )
    };
    let subject = subjects::platform::send(&command.platform, action).map_err(|e| e.to_string())?;
    Ok((subject, body.map_err(|e| e.to_string())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosey_plugin_api::{Timestamp, UserData};

    fn spec(name: &str, min_rank: f64, cooldown_ms: u64) -> FfiCommandSpec {
        FfiCommandSpec {
            name: name.into(),
            description: format!("does {name}").into(),
            min_rank,
            cooldown_ms,
        }
    }

    fn cmd(name: &str, user: &str, rank: f64, args: &[&str]) -> Command {
        Command {
            command: name.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            text: args.join(" "),
            raw: format!("!{name}"),
            user: user.into(),
            user_data: UserData::new(user, rank),
            is_pm: false,
            platform: "console".into(),
            channel: "lobby".into(),
            timestamp: Timestamp::now(),
        }
    }

    #[test]
    fn conflicts_and_reserved_names_are_refused() {
        let mut t = CommandTable::default();
        let none = BTreeMap::new();
        assert_eq!(
            t.claim("a", &[spec("quote", 0.0, 0)], &none).unwrap(),
            ["quote"]
        );
        let err = t.claim("b", &[spec("quote", 0.0, 0)], &none).unwrap_err();
        assert_eq!(
            err,
            ClaimError::Taken {
                command: "quote".into(),
                plugin: "a".into()
            }
        );
        assert!(
            err.to_string().contains("already served by plugin \"a\""),
            "{err}"
        );
        assert_eq!(
            t.claim("b", &[spec("help", 0.0, 0)], &none),
            Err(ClaimError::Reserved)
        );
        assert_eq!(
            t.claim("b", &[spec("a.b", 0.0, 0)], &none),
            Err(ClaimError::InvalidName("a.b".into()))
        );
        // A reload of the same plugin may change its own set.
        assert_eq!(
            t.claim("a", &[spec("quotes", 0.0, 0)], &none).unwrap(),
            ["quotes"]
        );
        assert!(t.claim("b", &[spec("quote", 0.0, 0)], &none).is_ok());
        assert!(t.may_subscribe("a", "quotes"));
        assert!(!t.may_subscribe("a", "quote"));
        assert!(t.may_subscribe("a", "unclaimed"));
        assert!(!t.may_subscribe("a", HELP));
        t.release("a");
        assert!(t.rule("quotes").is_none());
        assert_eq!(t.rule("quote").map(|r| r.plugin), Some("b".to_owned()));
    }

    #[test]
    fn rank_cooldown_and_overrides() {
        let mut t = CommandTable::default();
        let over: BTreeMap<String, CommandOverride> =
            serde_json::from_value(serde_json::json!({"slow": {"cooldown": 60, "min_rank": 1}}))
                .unwrap();
        t.claim("p", &[spec("slow", 0.0, 0), spec("mod", 2.0, 0)], &over)
            .unwrap();
        let slow = t.rule("slow").unwrap();
        assert_eq!(slow.cooldown, Duration::from_secs(60));
        let mut c = Cooldowns::default();
        let now = Instant::now();
        assert!(!c.admit(&slow, &cmd("slow", "guest", 0.0, &[]), now));
        assert!(c.admit(&slow, &cmd("slow", "ann", 1.0, &[]), now));
        assert!(!c.admit(
            &slow,
            &cmd("slow", "ann", 1.0, &[]),
            now + Duration::from_secs(1)
        ));
        assert!(c.admit(
            &slow,
            &cmd("slow", "bob", 1.0, &[]),
            now + Duration::from_secs(1)
        ));
        assert!(c.admit(
            &slow,
            &cmd("slow", "ann", 1.0, &[]),
            now + Duration::from_secs(61)
        ));
        // Moderators are exempt from cooldowns.
        assert!(c.admit(&slow, &cmd("slow", "mo", 2.0, &[]), now));
        assert!(c.admit(&slow, &cmd("slow", "mo", 2.0, &[]), now));
        let m = t.rule("mod").unwrap();
        assert!(!c.admit(&m, &cmd("mod", "ann", 1.5, &[]), now));
        assert!(c.admit(&m, &cmd("mod", "mo", 2.0, &[]), now));
    }

    #[test]
    fn pruning_keeps_cooldowns_longer_than_an_hour_and_drops_expired_ones() {
        let mut t = CommandTable::default();
        t.claim(
            "p",
            &[spec("daily", 0.0, 2 * 3_600_000), spec("quick", 0.0, 1000)],
            &BTreeMap::new(),
        )
        .unwrap();
        let daily = t.rule("daily").unwrap();
        let quick = t.rule("quick").unwrap();
        let mut c = Cooldowns::default();
        let start = Instant::now();
        assert!(c.admit(&daily, &cmd("daily", "ann", 1.0, &[]), start));
        for n in 0..PRUNE_ABOVE {
            assert!(c.admit(&quick, &cmd("quick", &format!("u{n}"), 1.0, &[]), start));
        }
        let later = start + Duration::from_secs(5400);
        // This use crosses the threshold: the expired `quick` entries go, ann's stays.
        assert!(c.admit(&quick, &cmd("quick", "bob", 1.0, &[]), later));
        assert_eq!(c.last.len(), 2);
        assert!(!c.admit(&daily, &cmd("daily", "ann", 1.0, &[]), later));
        assert!(c.admit(
            &daily,
            &cmd("daily", "ann", 1.0, &[]),
            start + Duration::from_secs(7200)
        ));
    }

    #[test]
    fn help_lists_and_details() {
        let mut t = CommandTable::default();
        t.claim(
            "p",
            &[spec("count", 0.0, 2000), spec("ban", 3.0, 0)],
            &BTreeMap::new(),
        )
        .unwrap();
        let rules = t.all();
        let all = help_text(&rules, &cmd("help", "u", 3.0, &[]), "!");
        assert_eq!(
            all,
            "Commands: !ban, !count (say !help <command> for details)"
        );
        // A guest is not offered what it may not use.
        let guest = help_text(&rules, &cmd("help", "u", 0.0, &[]), "!");
        assert_eq!(guest, "Commands: !count (say !help <command> for details)");
        let one = help_text(&rules, &cmd("help", "u", 0.0, &["!count"]), "!");
        assert_eq!(one, "!count: does count (once every 2s)");
        let one = help_text(&rules, &cmd("help", "u", 0.0, &["ban"]), "!");
        assert_eq!(one, "!ban: does ban (rank 3 and up)");
        let none = help_text(&rules, &cmd("help", "u", 0.0, &["nope"]), "!");
        assert_eq!(none, "No command !nope.");
        let (subject, body) = reply_to(&cmd("help", "u", 0.0, &[]), "x".into()).unwrap();
        assert_eq!(subject, "rosey.platform.console.send.chat");
        assert_eq!(body, br#"{"channel":"lobby","content":"x"}"#);
    }
}
