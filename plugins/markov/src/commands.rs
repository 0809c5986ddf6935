//! `!markov` and its sub-commands, parsed from the command's words.

use crate::chain::{MAX_ORDER, MIN_ORDER};
use crate::settings::Trigger;

/// What a `!markov` line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum MarkovCommand {
    /// Say a sentence, around these seed words if any.
    Speak(Vec<String>),
    /// Lines learned and distinct states.
    Stats,
    /// The channel's settings.
    Settings,
    /// How to use it.
    Help,
    /// A moderator's change of a setting.
    Set(Change),
}

/// A setting a moderator changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Words of context (the chain is rebuilt from its lines).
    Order(usize),
    /// Whether chat is learned.
    Learn(bool),
    /// What addresses the bot.
    Trigger(Trigger),
    /// Chance per chat line of chiming in.
    Probability(f64),
    /// Seconds between two unprompted lines.
    Interval(u64),
}

/// The `!markov help` text, also the answer to every misuse.
pub const USAGE: &str = "!markov [seed words] | !markov stats | !markov settings | \
     moderators: !markov order <1-5> | learn on|off | trigger <word>|off|name | \
     probability <0-1> | interval <seconds>";

/// Parses the words after `!markov`; the error is the reply that explains the misuse.
pub fn parse(args: &[String]) -> Result<MarkovCommand, String> {
    let Some(first) = args.first() else {
        return Ok(MarkovCommand::Speak(Vec::new()));
    };
    let value = args.get(1).map(String::as_str);
    let extra = args.len() > 2;
    let word = first.to_lowercase();
    let change = |c: Result<Change, String>| c.map(MarkovCommand::Set);
    match word.as_str() {
        "stats" | "settings" | "help" if args.len() > 1 => {
            Err(format!("!markov {word} takes no arguments"))
        }
        "stats" => Ok(MarkovCommand::Stats),
        "settings" => Ok(MarkovCommand::Settings),
        "help" => Ok(MarkovCommand::Help),
        "order" | "learn" | "trigger" | "probability" | "interval" if extra => {
            Err(format!("!markov {word} takes one value"))
        }
        "order" => change(parse_order(value)),
        "learn" => change(parse_learn(value)),
        "trigger" => change(parse_trigger(value)),
        "probability" => change(parse_probability(value)),
        "interval" => change(parse_interval(value)),
        _ => Ok(MarkovCommand::Speak(args.to_vec())),
    }
}

fn parse_order(value: Option<&str>) -> Result<Change, String> {
    let usage = format!("usage: !markov order <{MIN_ORDER}-{MAX_ORDER}>");
    let n: usize = value.and_then(|v| v.parse().ok()).ok_or(usage.clone())?;
    if (MIN_ORDER..=MAX_ORDER).contains(&n) {
        Ok(Change::Order(n))
    } else {
        Err(usage)
    }
}

fn parse_learn(value: Option<&str>) -> Result<Change, String> {
    match value.map(str::to_lowercase).as_deref() {
        Some("on" | "true" | "yes") => Ok(Change::Learn(true)),
        Some("off" | "false" | "no") => Ok(Change::Learn(false)),
        _ => Err("usage: !markov learn on|off".to_owned()),
    }
}

fn parse_trigger(value: Option<&str>) -> Result<Change, String> {
    let usage = "usage: !markov trigger <word>|off|name (name: the bot's name)";
    match value {
        None => Err(usage.to_owned()),
        Some(v) if v.eq_ignore_ascii_case("off") => Ok(Change::Trigger(Trigger::Off)),
        Some(v) if v.eq_ignore_ascii_case("name") => Ok(Change::Trigger(Trigger::BotName)),
        Some(v) => Trigger::parse(v)
            .map(Change::Trigger)
            .map_err(|e| format!("{e}; {usage}")),
    }
}

fn parse_probability(value: Option<&str>) -> Result<Change, String> {
    let usage = "usage: !markov probability <0-1> (e.g. 0.05)";
    let p: f64 = value.and_then(|v| v.parse().ok()).ok_or(usage)?;
    if (0.0..=1.0).contains(&p) {
        Ok(Change::Probability(p))
    } else {
        Err(usage.to_owned())
    }
}

fn parse_interval(value: Option<&str>) -> Result<Change, String> {
    let usage = "usage: !markov interval <seconds> (at most 86400)";
    let s: u64 = value.and_then(|v| v.parse().ok()).ok_or(usage)?;
    if s <= 86_400 {
        Ok(Change::Interval(s))
    } else {
        Err(usage.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<MarkovCommand, String> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&args)
    }

    #[test]
    fn speaking_with_and_without_seed() {
        assert_eq!(p(""), Ok(MarkovCommand::Speak(vec![])));
        assert_eq!(
            p("hello World"),
            Ok(MarkovCommand::Speak(vec!["hello".into(), "World".into()]))
        );
        assert_eq!(p("STATS"), Ok(MarkovCommand::Stats));
        assert_eq!(p("settings"), Ok(MarkovCommand::Settings));
        assert_eq!(p("help"), Ok(MarkovCommand::Help));
        assert!(p("stats please")
            .unwrap_err()
            .contains("takes no arguments"));
    }

    #[test]
    fn settings_changes_and_their_errors() {
        assert_eq!(p("order 3"), Ok(MarkovCommand::Set(Change::Order(3))));
        assert_eq!(p("learn OFF"), Ok(MarkovCommand::Set(Change::Learn(false))));
        assert_eq!(p("learn on"), Ok(MarkovCommand::Set(Change::Learn(true))));
        assert_eq!(
            p("trigger bot"),
            Ok(MarkovCommand::Set(Change::Trigger(Trigger::Word(
                "bot".into()
            ))))
        );
        assert_eq!(
            p("trigger off"),
            Ok(MarkovCommand::Set(Change::Trigger(Trigger::Off)))
        );
        assert_eq!(
            p("trigger name"),
            Ok(MarkovCommand::Set(Change::Trigger(Trigger::BotName)))
        );
        assert_eq!(
            p("probability 0.25"),
            Ok(MarkovCommand::Set(Change::Probability(0.25)))
        );
        assert_eq!(
            p("interval 60"),
            Ok(MarkovCommand::Set(Change::Interval(60)))
        );
        for bad in [
            "order",
            "order 0",
            "order 6",
            "order two",
            "order 2 3",
            "learn",
            "learn maybe",
            "trigger",
            &format!("trigger {}", "x".repeat(40)),
            "probability",
            "probability 2",
            "probability -0.1",
            "probability NaN",
            "interval -1",
            "interval 999999",
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.contains("usage") || e.contains("takes"), "{bad}: {e}");
        }
    }
}
