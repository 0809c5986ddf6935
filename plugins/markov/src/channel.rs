//! One channel's chain, settings and speaking state, and what its commands answer.

use crate::chain::{Chain, MAX_ORDER};
use crate::commands::Change;
use crate::generate::{self, Limits, Sentence};
use crate::settings::{self, Settings, Trigger};

/// What the plugin keeps per channel.
#[derive(Debug, Clone)]
pub struct Channel {
    /// The learned chain.
    pub chain: Chain,
    /// Its settings.
    pub settings: Settings,
    /// The platform it is on (from the last event), where unprompted lines go.
    pub platform: String,
    /// Chat lines heard since the bot last spoke here, for chiming in.
    pub heard: u32,
    /// When the bot last spoke here (Unix seconds).
    pub last_spoke: Option<i64>,
    /// Changed since it was last saved to the key-value storage.
    pub dirty: bool,
    /// Lines learned since the last save, the ones a save appends.
    pub unsaved: usize,
}

impl Channel {
    /// A channel that has learned nothing yet (an order out of range, say from damaged
    /// storage, is clamped).
    pub fn new(mut settings: Settings, max_lines: usize, platform: &str) -> Channel {
        settings.order = crate::chain::clamp_order(settings.order);
        Channel {
            chain: Chain::new(settings.order, max_lines),
            settings,
            platform: platform.to_owned(),
            heard: 0,
            last_spoke: None,
            dirty: false,
            unsaved: 0,
        }
    }

    /// A channel from saved settings and lines.
    pub fn restored<S: AsRef<str>>(
        settings: Settings,
        max_lines: usize,
        platform: &str,
        lines: impl IntoIterator<Item = S>,
    ) -> Channel {
        let mut channel = Channel::new(settings, max_lines, platform);
        for line in lines {
            channel.chain.learn(line.as_ref());
        }
        channel
    }

    /// The word that addresses the bot here, if any.
    pub fn trigger<'a>(&'a self, bot_name: &'a str) -> Option<&'a str> {
        self.settings.trigger.word(bot_name)
    }

    /// Whether `line` addresses the bot.
    pub fn is_addressed(&self, line: &str, bot_name: &str) -> bool {
        self.trigger(bot_name)
            .is_some_and(|word| settings::mentions(line, word))
    }

    /// Hears a chat line: counts it for chiming in and learns it (without mentions of the
    /// trigger) when learning is on.
    pub fn hear(&mut self, line: &str, bot_name: &str) {
        self.heard = self.heard.saturating_add(1);
        if self.settings.learn {
            let text = settings::without_mentions(line, self.trigger(bot_name));
            if self.chain.learn(&text) {
                self.dirty = true;
                self.unsaved += 1;
            }
        }
    }

    /// Lines learned from chat the plugin did not see (bootstrap), without counting them as
    /// heard.
    pub fn learn_history<S: AsRef<str>>(&mut self, lines: impl IntoIterator<Item = S>) -> usize {
        let learned = lines
            .into_iter()
            .filter(|l| self.chain.learn(l.as_ref()))
            .count();
        if learned > 0 {
            self.dirty = true;
            self.unsaved += learned;
        }
        learned
    }

    /// A sentence around `seed`; records that the bot spoke at `now`.
    pub fn speak(
        &mut self,
        seed: &[&str],
        limits: &Limits,
        rng: &mut fastrand::Rng,
        now: i64,
    ) -> Option<Sentence> {
        let sentence = generate::sentence(&self.chain, seed, limits, rng)?;
        self.heard = 0;
        self.last_spoke = Some(now);
        Some(sentence)
    }

    /// Applies a moderator's change and says what changed.
    pub fn apply(&mut self, change: Change, bot_name: &str) -> String {
        self.dirty = true;
        match change {
            Change::Order(order) => {
                let order = order.min(MAX_ORDER);
                if order != self.chain.order() {
                    self.chain = self.chain.rebuilt(order, self.chain.max_lines());
                }
                self.settings.order = order;
                format!(
                    "Order set to {order}; relearned {} lines.",
                    self.chain.stats().lines
                )
            }
            Change::Learn(on) => {
                self.settings.learn = on;
                format!("Learning is {}.", if on { "on" } else { "off" })
            }
            Change::Trigger(trigger) => {
                self.settings.trigger = trigger;
                format!("Trigger: {}.", self.trigger_text(bot_name))
            }
            Change::Probability(p) => {
                self.settings.probability = p;
                format!("Chance of chiming in per chat line: {p}.")
            }
            Change::Interval(s) => {
                self.settings.min_interval = s;
                format!("At least {s} s between unprompted lines.")
            }
        }
    }

    /// The `!markov stats` answer.
    pub fn stats_text(&self) -> String {
        let s = self.chain.stats();
        format!(
            "{} lines learned, {} distinct states, {} words (order {}).",
            s.lines,
            s.states,
            s.words,
            self.chain.order()
        )
    }

    /// The `!markov settings` answer.
    pub fn settings_text(&self, bot_name: &str) -> String {
        let s = &self.settings;
        format!(
            "order {}, learning {}, trigger {}, chance per line {}, interval {} s",
            s.order,
            if s.learn { "on" } else { "off" },
            self.trigger_text(bot_name),
            s.probability,
            s.min_interval
        )
    }

    fn trigger_text(&self, bot_name: &str) -> String {
        match &self.settings.trigger {
            Trigger::Off => "off".to_owned(),
            Trigger::BotName => format!("the bot's name ({bot_name})"),
            Trigger::Word(w) => format!("\"{w}\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Config;

    fn channel() -> Channel {
        Channel::new(Config::default().channel_settings(), 1000, "cytube")
    }

    #[test]
    fn hearing_learns_without_the_bots_name() {
        let mut c = channel();
        c.hear("hey rosey, the weather is nice", "rosey");
        assert!(c.dirty);
        assert_eq!((c.heard, c.unsaved), (1, 1));
        assert_eq!(
            c.chain.lines().collect::<Vec<_>>(),
            ["hey the weather is nice"]
        );
        assert!(c.is_addressed("ROSEY: hi", "rosey"));
        assert!(!c.is_addressed("rosemary hi", "rosey"));
    }

    #[test]
    fn learning_off_still_counts_lines() {
        let mut c = channel();
        assert!(c.apply(Change::Learn(false), "rosey").contains("off"));
        c.dirty = false;
        c.hear("something new", "rosey");
        assert_eq!(c.heard, 1);
        assert!(c.chain.is_empty());
        assert!(!c.dirty);
    }

    #[test]
    fn speaking_resets_the_counter() {
        let mut c = channel();
        c.hear("one two three", "rosey");
        let mut rng = fastrand::Rng::with_seed(1);
        let s = c.speak(&[], &Limits::default(), &mut rng, 100).unwrap();
        assert_eq!(s.text, "one two three");
        assert_eq!((c.heard, c.last_spoke), (0, Some(100)));
        let mut empty = channel();
        assert!(empty.speak(&[], &Limits::default(), &mut rng, 1).is_none());
    }

    #[test]
    fn changes_are_applied_and_reported() {
        let mut c = channel();
        c.learn_history(["a b c", "d e f"]);
        let reply = c.apply(Change::Order(3), "rosey");
        assert_eq!(reply, "Order set to 3; relearned 2 lines.");
        assert_eq!(c.chain.order(), 3);
        c.apply(Change::Trigger(Trigger::Word("bot".into())), "rosey");
        assert!(c.is_addressed("hi bot", "rosey"));
        assert!(!c.is_addressed("hi rosey", "rosey"));
        c.apply(Change::Trigger(Trigger::Off), "rosey");
        assert!(!c.is_addressed("hi bot", "rosey"));
        c.apply(Change::Probability(0.5), "rosey");
        c.apply(Change::Interval(7), "rosey");
        assert_eq!(
            c.settings_text("rosey"),
            "order 3, learning on, trigger off, chance per line 0.5, interval 7 s"
        );
        // (S,S,S) is shared; each line adds (S,S,x) (S,x,y) (x,y,z).
        assert_eq!(
            c.stats_text(),
            "2 lines learned, 7 distinct states, 6 words (order 3)."
        );
    }

    #[test]
    fn out_of_range_order_is_clamped() {
        let mut settings = Config::default().channel_settings();
        settings.order = 99;
        let c = Channel::new(settings, 10, "x");
        assert_eq!((c.settings.order, c.chain.order()), (5, 5));
    }

    #[test]
    fn restored_channels_are_clean() {
        let c = channel();
        let r = Channel::restored(c.settings.clone(), 10, "console", ["x y", "  "]);
        assert_eq!(r.chain.stats().lines, 1);
        assert!(!r.dirty);
    }
}
