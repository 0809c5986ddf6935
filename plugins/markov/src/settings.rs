//! The plugin's configuration, the per-channel settings moderators change, and the small
//! decisions that depend on them: is a line addressed to the bot, is it time to chime in.

use crate::chain::{DEFAULT_ORDER, MAX_ORDER, MIN_ORDER};
use serde::{Deserialize, Serialize};

/// `plugins.config.markov`: every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Words of context per step (1 to 5).
    pub order: usize,
    /// Whether chat is learned.
    pub learn: bool,
    /// The word that addresses the bot; absent: the bot's name; empty: never addressed.
    pub trigger: Option<String>,
    /// Chance, per chat line heard, of chiming in unprompted (0 to 1).
    pub probability: f64,
    /// Seconds between two unprompted lines at least.
    pub min_interval: u64,
    /// Longest sentence, in characters (one chat message).
    pub max_chars: usize,
    /// Lines kept per channel; the oldest are forgotten beyond this.
    pub max_lines: usize,
    /// Seconds between two saves of a changed chain to the key-value storage.
    pub save_interval: u64,
    /// Recent chat lines learned when a channel has no saved chain (0: none).
    pub bootstrap_lines: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            order: DEFAULT_ORDER,
            learn: true,
            trigger: None,
            probability: 0.0,
            min_interval: 300,
            max_chars: 200,
            max_lines: 75_000,
            save_interval: 60,
            bootstrap_lines: 1000,
        }
    }
}

impl Config {
    /// Checks the ranges serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_ORDER..=MAX_ORDER).contains(&self.order) {
            return Err(format!(
                "order must be {MIN_ORDER} to {MAX_ORDER}, not {}",
                self.order
            ));
        }
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(format!(
                "probability must be 0 to 1, not {}",
                self.probability
            ));
        }
        if self.max_chars < 20 {
            return Err(format!(
                "max_chars must be at least 20, not {}",
                self.max_chars
            ));
        }
        if self.max_lines == 0 {
            return Err("max_lines must be at least 1".to_owned());
        }
        if let Some(t) = &self.trigger {
            Trigger::parse(t)?;
        }
        Ok(())
    }

    /// The settings a channel starts with.
    pub fn channel_settings(&self) -> Settings {
        Settings {
            order: self.order,
            learn: self.learn,
            trigger: match &self.trigger {
                None => Trigger::BotName,
                Some(t) => Trigger::parse(t).unwrap_or(Trigger::BotName),
            },
            probability: self.probability,
            min_interval: self.min_interval,
        }
    }
}

/// What addresses the bot in a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The bot's user name.
    BotName,
    /// Nothing: the bot speaks only on `!markov` and at random.
    Off,
    /// This word.
    Word(String),
}

impl Trigger {
    /// Reads a trigger as typed: a word, or empty for none.
    pub fn parse(text: &str) -> Result<Trigger, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Trigger::Off);
        }
        if text.chars().count() > 32 || text.contains(char::is_whitespace) {
            return Err("a trigger is one word of at most 32 characters".to_owned());
        }
        Ok(Trigger::Word(text.to_owned()))
    }

    /// The word to look for, if any.
    pub fn word<'a>(&'a self, bot_name: &'a str) -> Option<&'a str> {
        match self {
            Trigger::BotName if !bot_name.is_empty() => Some(bot_name),
            Trigger::Word(w) => Some(w),
            _ => None,
        }
    }
}

/// One channel's settings: start from [`Config`], changed by moderators, saved with the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Words of context per step.
    pub order: usize,
    /// Whether chat is learned.
    pub learn: bool,
    /// What addresses the bot.
    pub trigger: Trigger,
    /// Chance per chat line of chiming in unprompted.
    pub probability: f64,
    /// Seconds between two unprompted lines at least.
    pub min_interval: u64,
}

/// Whether `line` mentions `word` as a word of its own (ignoring case, and punctuation such
/// as `@rosey:` or `rosey,`).
pub fn mentions(line: &str, word: &str) -> bool {
    line.split_whitespace().any(|w| same_word(w, word))
}

/// `line` without the mentions of `word`, so the bot does not learn to say its own name.
pub fn without_mentions(line: &str, word: Option<&str>) -> String {
    match word {
        None => line.to_owned(),
        Some(word) => line
            .split_whitespace()
            .filter(|w| !same_word(w, word))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn same_word(token: &str, word: &str) -> bool {
    let bare = token.trim_matches(|c: char| !c.is_alphanumeric() && c != '_' && c != '-');
    !bare.is_empty() && bare.to_lowercase() == word.to_lowercase()
}

/// Whether to chime in now: `heard` lines arrived since the bot last spoke, each giving a
/// `probability` chance, and at least `min_interval` seconds have passed. `roll` is uniform
/// in `0..1`.
pub fn should_chime_in(
    settings: &Settings,
    heard: u32,
    since_last: Option<u64>,
    roll: f64,
) -> bool {
    if heard == 0 || settings.probability <= 0.0 {
        return false;
    }
    if since_last.is_some_and(|s| s < settings.min_interval) {
        return false;
    }
    let exponent = i32::try_from(heard).unwrap_or(i32::MAX);
    let chance = 1.0 - (1.0 - settings.probability.min(1.0)).powi(exponent);
    roll < chance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let c: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(c, Config::default());
        assert!(c.validate().is_ok());
        let c: Config = serde_json::from_str(r#"{"order": 3, "trigger": "bot"}"#).unwrap();
        assert_eq!(c.channel_settings().trigger, Trigger::Word("bot".into()));
        for bad in [
            r#"{"order": 0}"#,
            r#"{"order": 6}"#,
            r#"{"probability": 1.5}"#,
            r#"{"max_chars": 3}"#,
            r#"{"trigger": "two words"}"#,
        ] {
            let c: Config = serde_json::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
        assert!(
            serde_json::from_str::<Config>(r#"{"ordr": 3}"#).is_err(),
            "typos are refused"
        );
    }

    #[test]
    fn triggers() {
        assert_eq!(Trigger::parse("  ").unwrap(), Trigger::Off);
        assert_eq!(Trigger::BotName.word("rosey"), Some("rosey"));
        assert_eq!(Trigger::BotName.word(""), None);
        assert_eq!(Trigger::Off.word("rosey"), None);
        assert!(mentions("hey @Rosey: how are you", "rosey"));
        assert!(mentions("ROSEY, hi", "rosey"));
        assert!(!mentions("roseyfan says hi", "rosey"));
        assert!(!mentions("", "rosey"));
        assert_eq!(
            without_mentions("hi rosey, you ok", Some("Rosey")),
            "hi you ok"
        );
        assert_eq!(without_mentions("hi  there", None), "hi  there");
    }

    #[test]
    fn chiming_in_needs_chat_chance_and_interval() {
        let mut s = Config::default().channel_settings();
        assert!(
            !should_chime_in(&s, 10, None, 0.0),
            "probability 0 never speaks"
        );
        s.probability = 1.0;
        assert!(should_chime_in(&s, 1, None, 0.99));
        assert!(
            !should_chime_in(&s, 0, None, 0.0),
            "nothing heard, nothing said"
        );
        assert!(!should_chime_in(&s, 1, Some(10), 0.0), "too soon");
        assert!(should_chime_in(&s, 1, Some(300), 0.0));
        s.probability = 0.1;
        // One line: 10 %; twenty lines: 1 - 0.9^20 = 88 %.
        assert!(!should_chime_in(&s, 1, None, 0.5));
        assert!(should_chime_in(&s, 20, None, 0.5));
    }
}
