//! The markov plugin: learns each channel's chat as a word-level Markov chain and talks back.
//!
//! It speaks when addressed (by default, by the bot's name), on `!markov [seed words]`, and
//! unprompted with a configurable chance per chat line and a minimum interval. Moderators
//! change its settings per channel with `!markov order|learn|trigger|probability|interval`.
//!
//! State lives in three places, each for one kind of restart:
//! - in memory, per channel ([`channel::Channel`]);
//! - across hot reloads, in the state handed to the next generation ([`snapshot`]);
//! - across runtime restarts, in the key-value storage ([`persist`]), saved every
//!   `save_interval` seconds (ten channels per tick, so many channels' saves are spread out)
//!   and on shutdown, and restored when the plugin loads (retried on
//!   ticks while the storage is unreachable; nothing is saved until then, so an outage cannot
//!   overwrite a saved chain). A channel with nothing saved learns the recent chat first.
//!
//! # Layout
//! - [`chain`]: the chain and its corpus; [`generate`]: sentences from it.
//! - [`settings`]: configuration and per-channel settings; [`commands`]: `!markov` parsing.
//! - [`channel`]: one channel's state and answers.
//! - [`persist`], [`snapshot`]: saving for restarts and for hot reloads.
#![deny(missing_docs)]

pub mod chain;
pub mod channel;
pub mod commands;
pub mod generate;
pub mod persist;
pub mod settings;
pub mod snapshot;

use channel::Channel;
use commands::{MarkovCommand, USAGE};
use generate::Limits;
use persist::{Corpus, Index};
use rosey_plugin_api::actions::SendChat;
use rosey_plugin_api::db::{ChatLine, RecentChatGet};
use rosey_plugin_api::events::{self, Event};
use rosey_plugin_api::sdk::prelude::*;
use rosey_plugin_api::subjects;
use rosey_plugin_api::user::MODERATOR_RANK;
use rosey_plugin_api::Timestamp;
use settings::Config;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The command this plugin serves.
const COMMAND: &str = "markov";
/// Seconds to wait before trying the key-value storage again after a failed restore.
const RESTORE_RETRY_SECS: i64 = 2;
/// How long each request of a restore may take: short, so a database outage cannot hold
/// the plugin's worker (and the messages queued behind it) for long.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(1);
/// Channels saved per tick in a periodic save: a deployment of many channels spreads its saves
/// over a few ticks instead of writing every channel's chunks to storage at one instant (which
/// showed as a wave of slow answers across the whole machine in the 100-channel simulation).
const SAVES_PER_TICK: usize = 10;

/// The plugin: configuration, every channel's state, and persistence bookkeeping.
#[derive(Default)]
pub struct Markov {
    config: Config,
    /// Every channel served, with the bot's name there: each one never saved is bootstrapped
    /// from its own recent chat in the database.
    served: Vec<ChannelInfo>,
    channels: BTreeMap<String, Channel>,
    rng: fastrand::Rng,
    /// Whether the saved chains were read back: until then nothing is saved, so a storage
    /// outage at start-up cannot overwrite a large saved chain with a small new one.
    restored: bool,
    /// The key-value index as last written.
    index: Index,
    last_save: i64,
    /// The channels the current periodic save has still to write, a few per tick.
    save_round: VecDeque<String>,
    retry_restore_at: i64,
}

impl Plugin for Markov {
    fn init(&mut self, ctx: &Context, setup: Setup) -> Result<()> {
        let config: Config = setup.config()?;
        config
            .validate()
            .map_err(|e| Error::new(ErrorKind::Invalid, format!("markov configuration: {e}")))?;
        self.config = config;
        self.served = setup.channels.clone();
        self.last_save = now();
        if let Some(state) = &setup.saved_state {
            match snapshot::decode(state) {
                Ok(Some(snap)) => self.restore_snapshot(snap),
                Ok(None) => ctx.warn(format!(
                    "ignoring saved state of version {}; reading the key-value storage",
                    state.version
                )),
                Err(e) => ctx.warn(format!("{e}; reading the key-value storage")),
            }
        }
        if !self.restored {
            // Read the saved chains now, so chat is learned on top of them from the start;
            // when the storage is unreachable, the ticks retry.
            if let Err(e) = self.restore_from_storage(ctx) {
                ctx.warn(format!("cannot restore the saved chains yet: {e}"));
            }
        }
        ctx.subscribe(subjects::events::MESSAGE)?;
        Ok(())
    }

    fn commands(&self) -> Vec<CommandSpec> {
        vec![CommandSpec::new(
            COMMAND,
            "says something in the style of this channel's chat; !markov help for more",
        )
        .cooldown(Duration::from_secs(2))]
    }

    fn on_message(&mut self, ctx: &Context, msg: Message) -> Result<()> {
        if let Some(cmd) = msg.command() {
            return if cmd.command == COMMAND {
                self.on_command(ctx, cmd)
            } else {
                Ok(())
            };
        }
        if msg.subject == subjects::events::MESSAGE {
            return self.on_chat(ctx, msg.decode()?);
        }
        Ok(())
    }

    fn on_tick(&mut self, ctx: &Context) -> Result<()> {
        let now = now();
        if !self.restored && now >= self.retry_restore_at {
            if let Err(e) = self.restore_from_storage(ctx) {
                self.retry_restore_at = now + RESTORE_RETRY_SECS;
                ctx.warn(format!("cannot restore the saved chains yet: {e}"));
            }
        }
        self.chime_in(ctx, now)?;
        let interval = i64::try_from(self.config.save_interval).unwrap_or(i64::MAX);
        if self.restored
            && self.save_round.is_empty()
            && now.saturating_sub(self.last_save) >= interval
        {
            self.save_round = self.dirty_channels();
            self.last_save = now;
        }
        self.save_some(ctx, SAVES_PER_TICK)
    }

    fn save_state(&mut self) -> Result<Option<SavedState>> {
        snapshot::encode(self.restored, &self.index, self.last_save, &self.channels).map(Some)
    }

    fn shutdown(&mut self, ctx: &Context) -> Result<()> {
        self.save_to_storage(ctx)
    }
}

rosey_plugin!(Markov);

impl Markov {
    fn on_chat(&mut self, ctx: &Context, event: Event<events::Message>) -> Result<()> {
        let line = &event.body;
        if line.is_command || ctx.is_bot(&event.platform, &event.channel, &line.user) {
            return Ok(());
        }
        let bot_name = ctx
            .bot_name_in(&event.platform, &event.channel)
            .unwrap_or_default();
        let limits = self.limits();
        let channel = channel_entry(&mut self.channels, &self.config, &event.channel);
        channel.platform.clone_from(&event.platform);
        let reply = if channel.is_addressed(&line.content, bot_name) {
            let rest = settings::without_mentions(&line.content, channel.trigger(bot_name));
            let seed: Vec<&str> = rest.split_whitespace().collect();
            channel.speak(&seed, &limits, &mut self.rng, now())
        } else {
            None
        };
        channel.hear(&line.content, bot_name);
        match reply {
            Some(sentence) => say(
                ctx,
                &event.platform,
                &event.channel,
                format!("{}: {}", line.user, sentence.text),
            ),
            None => Ok(()),
        }
    }

    fn on_command(&mut self, ctx: &Context, cmd: Command) -> Result<()> {
        let bot_name = ctx
            .bot_name_in(&cmd.platform, &cmd.channel)
            .unwrap_or_default();
        let limits = self.limits();
        let channel = channel_entry(&mut self.channels, &self.config, &cmd.channel);
        if channel.platform.is_empty() {
            channel.platform.clone_from(&cmd.platform);
        }
        let reply = match commands::parse(&cmd.args) {
            Err(usage) => usage,
            Ok(MarkovCommand::Help) => USAGE.to_owned(),
            Ok(MarkovCommand::Stats) => channel.stats_text(),
            Ok(MarkovCommand::Settings) => channel.settings_text(bot_name),
            Ok(MarkovCommand::Speak(seed)) => {
                let seed: Vec<&str> = seed.iter().map(String::as_str).collect();
                match channel.speak(&seed, &limits, &mut self.rng, now()) {
                    Some(sentence) => sentence.text,
                    None => "I have not learned anything in this channel yet; chat a little first."
                        .to_owned(),
                }
            }
            Ok(MarkovCommand::Set(_)) if !is_moderator(&cmd) => {
                "Only moderators can change the markov settings.".to_owned()
            }
            Ok(MarkovCommand::Set(change)) => channel.apply(change, bot_name),
        };
        ctx.reply(&cmd, reply)
    }

    /// Says something unprompted where the chance and the interval allow it.
    fn chime_in(&mut self, ctx: &Context, now: i64) -> Result<()> {
        let limits = self.limits();
        for (name, channel) in &mut self.channels {
            if channel.platform.is_empty() {
                continue;
            }
            let since = channel
                .last_spoke
                .map(|t| u64::try_from(now.saturating_sub(t)).unwrap_or(0));
            if !settings::should_chime_in(&channel.settings, channel.heard, since, self.rng.f64()) {
                continue;
            }
            if let Some(sentence) = channel.speak(&[], &limits, &mut self.rng, now) {
                say(ctx, &channel.platform, name, sentence.text)?;
            }
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        Limits {
            max_chars: self.config.max_chars,
            ..Limits::default()
        }
    }

    fn restore_snapshot(&mut self, snap: snapshot::Snapshot) {
        self.restored = snap.header.restored;
        self.index = snap.header.index;
        self.last_save = snap.header.last_save;
        for (header, lines) in snap.header.channels.into_iter().zip(snap.lines) {
            let mut channel = Channel::restored(
                header.settings,
                self.config.max_lines,
                &header.platform,
                lines.iter().map(String::as_str),
            );
            channel.heard = header.heard;
            channel.last_spoke = header.last_spoke;
            channel.dirty = header.dirty;
            channel.unsaved = header.unsaved;
            self.channels.insert(header.name, channel);
        }
    }

    /// Reads every saved channel (and, for each served channel never saved, its recent chat);
    /// changes nothing unless every read succeeded.
    fn restore_from_storage(&mut self, ctx: &Context) -> Result<()> {
        let storage = ctx.kv().with_timeout(RESTORE_TIMEOUT);
        let index = persist::load_index(&storage)?;
        let mut saved = Vec::with_capacity(index.channels.len());
        for (name, entry) in &index.channels {
            saved.push((name.clone(), persist::load_channel(&storage, name, entry)?));
        }
        let mut histories = Vec::new();
        if self.config.bootstrap_lines > 0 {
            let several = self.served.len() > 1;
            for served in &self.served {
                if !index.channels.contains_key(&served.channel) {
                    // A single-channel deployment asks without naming its channel, exactly as
                    // before; with several, rosey-db answers only a request that names one.
                    let named = several.then_some(served.channel.as_str());
                    histories.push((
                        served.channel.clone(),
                        self.recent_chat(ctx, named, &served.bot_name)?,
                    ));
                }
            }
        }

        for (name, loaded) in saved {
            let mut channel = Channel::restored(
                loaded.settings,
                self.config.max_lines,
                &loaded.platform,
                loaded.lines.iter().map(String::as_str),
            );
            // Chat heard before the restore goes after the saved lines.
            if let Some(current) = self.channels.remove(&name) {
                channel.learn_history(current.chain.lines());
                channel.heard = current.heard;
                channel.last_spoke = current.last_spoke;
                if !current.platform.is_empty() {
                    channel.platform = current.platform;
                }
            }
            self.channels.insert(name, channel);
        }
        for (name, history) in histories.into_iter().filter(|(_, h)| !h.is_empty()) {
            let channel = channel_entry(&mut self.channels, &self.config, &name);
            let learned = channel.learn_history(history.iter().map(String::as_str));
            ctx.info(format!("learned {learned} lines of recent chat in {name}"));
        }
        self.index = index;
        self.restored = true;
        Ok(())
    }

    /// A channel's recent chat from the database (`channel`: `None` when it is the only one), without
    /// commands, the bot's own lines (`bot_name` there) or its name.
    fn recent_chat(
        &self,
        ctx: &Context,
        channel: Option<&str>,
        bot_name: &str,
    ) -> Result<Vec<String>> {
        let request = RecentChatGet {
            channel: channel.map(str::to_owned),
            limit: self.config.bootstrap_lines,
            username: None,
            since: None,
        };
        let lines: Vec<ChatLine> =
            ctx.request_json(subjects::db::RECENT_CHAT_GET, &request, RESTORE_TIMEOUT)?;
        let trigger = self.config.channel_settings().trigger;
        let prefix = ctx.command_prefix();
        Ok(lines
            .into_iter()
            .filter(|l| !l.username.eq_ignore_ascii_case(bot_name))
            .filter(|l| prefix.is_empty() || !l.message.starts_with(prefix))
            .map(|l| settings::without_mentions(&l.message, trigger.word(bot_name)))
            .collect())
    }

    /// Saves every changed channel; does nothing before the saved chains were restored.
    /// Saves every changed channel now (at shutdown).
    fn save_to_storage(&mut self, ctx: &Context) -> Result<()> {
        if !self.restored {
            return Ok(());
        }
        self.save_round = self.dirty_channels();
        self.save_some(ctx, usize::MAX)?;
        self.last_save = now();
        Ok(())
    }

    /// The channels changed since they were last saved.
    fn dirty_channels(&self) -> VecDeque<String> {
        self.channels
            .iter()
            .filter(|(_, c)| c.dirty)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Saves up to `at_most` channels of the current round; a channel whose save fails is
    /// tried again first at the next tick.
    fn save_some(&mut self, ctx: &Context, at_most: usize) -> Result<()> {
        if !self.restored {
            return Ok(());
        }
        let storage = ctx.kv();
        let mut saved = 0;
        while saved < at_most {
            let Some(name) = self.save_round.pop_front() else {
                break;
            };
            let Some(channel) = self.channels.get_mut(&name).filter(|c| c.dirty) else {
                continue;
            };
            let lines: Vec<String> = channel.chain.lines().collect();
            let corpus = Corpus {
                lines: &lines,
                unsaved: channel.unsaved,
            };
            let written = persist::save_channel(
                &storage,
                &mut self.index,
                &name,
                &channel.settings,
                &channel.platform,
                corpus,
            );
            if let Err(e) = written {
                // First again at the next tick, as before rounds: an outage retries each tick.
                self.save_round.push_front(name);
                return Err(e);
            }
            channel.dirty = false;
            channel.unsaved = 0;
            saved += 1;
        }
        Ok(())
    }
}

/// The channel's state, created with the configured settings on first use.
fn channel_entry<'a>(
    channels: &'a mut BTreeMap<String, Channel>,
    config: &Config,
    name: &str,
) -> &'a mut Channel {
    channels
        .entry(name.to_owned())
        .or_insert_with(|| Channel::new(config.channel_settings(), config.max_lines, ""))
}

/// Says `text` in a channel's chat.
fn say(ctx: &Context, platform: &str, channel: &str, text: String) -> Result<()> {
    let subject = subjects::platform::send(platform, subjects::platform::action::CHAT)?;
    ctx.publish_json(
        &subject,
        &SendChat {
            channel: channel.to_owned(),
            content: text,
        },
    )
}

fn is_moderator(cmd: &Command) -> bool {
    cmd.user_data.is_moderator || cmd.user_data.rank >= MODERATOR_RANK
}

fn now() -> i64 {
    Timestamp::now().secs()
}
