//! The LLM chat plugin: answers through rosey-llm (`rosey.llm.chat`) on the original Rosey's
//! triggers, keeping a conversation history per (channel, user).
//!
//! Every answer is a deferred request ([`Context::request_json_later`]): the plugin's worker
//! never waits on the provider, so a second user is answered while a first answer is slow.
//! Pending requests and histories are in the saved state, so both survive a hot reload.
//!
//! # Layout
//! - [`settings`]: the configuration; [`triggers`]: reading a line; [`history`]: conversations;
//!   [`recent`]: the bounded per-user times (cooldowns, last seen).
//! - [`LlmChat`]: the plugin.
#![deny(missing_docs)]

pub mod history;
pub mod recent;
pub mod settings;
pub mod triggers;

use history::Histories;
use recent::Recent;
use rosey_plugin_api::actions::{SendChat, SendPm};
use rosey_plugin_api::events::{self, Event};
use rosey_plugin_api::llm::{ChatReply, ChatRequest};
use rosey_plugin_api::sdk::prelude::*;
use rosey_plugin_api::subjects;
use serde::{Deserialize, Serialize};
use settings::{Config, SpecificUser};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The format version of the state handed to the next generation.
const STATE_VERSION: u32 = 1;
/// What a user hears when the provider fails on a command, a mention or a PM.
pub const APOLOGY: &str = "Sorry, I can't think right now; please try again later.";
/// What `!ai` says when LLM chat is off.
pub const NOT_CONFIGURED: &str = "LLM chat is not configured.";
/// Pause between two "not configured" notices in one channel.
const NOT_CONFIGURED_COOLDOWN: Duration = Duration::from_secs(60);

/// Why the plugin asked: decides where the answer goes and whether a failure is apologized for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// `!ai` / `!ask` in chat.
    Command,
    /// `!ai` / `!ask` by PM.
    PmCommand,
    /// A line naming the bot.
    Mention,
    /// A private message to the bot.
    Pm,
    /// A keyword line.
    Keyword,
    /// An ambient reply.
    Ambient,
    /// A greeting on join or on coming back from AFK.
    Greeting,
}

impl Trigger {
    fn by_pm(self) -> bool {
        matches!(self, Trigger::Pm | Trigger::PmCommand)
    }

    fn apologizes(self) -> bool {
        matches!(
            self,
            Trigger::Command | Trigger::PmCommand | Trigger::Mention | Trigger::Pm
        )
    }
}

/// A request sent to rosey-llm whose answer has not come yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// Where the conversation is.
    pub platform: String,
    /// The channel.
    pub channel: String,
    /// Who is answered.
    pub user: String,
    /// The prompt, recorded in the history with the answer.
    pub prompt: String,
    /// Why it was asked.
    pub trigger: Trigger,
}

/// What one generation hands to the next.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    histories: Histories,
    pending: BTreeMap<u64, Pending>,
    next_token: u64,
    /// Seconds since each user was last seen, so the greetings' idle threshold survives a reload
    /// (absent from states saved before it existed).
    #[serde(default)]
    seen_ago: BTreeMap<String, f64>,
}

/// The plugin.
#[derive(Default)]
pub struct LlmChat {
    config: Config,
    command_prefix: String,
    commands: Vec<String>,
    state: State,
    rng: fastrand::Rng,
    last_answer: Recent<String>,
    phrase_fired: Recent<(String, String)>,
    /// Per channel, so bounded by the channels served.
    ambient_left: BTreeMap<String, u32>,
    last_seen: Recent<String>,
    not_configured_said: Recent<String>,
}

impl Plugin for LlmChat {
    fn init(&mut self, ctx: &Context, setup: Setup) -> Result<()> {
        let config: Config = setup.config()?;
        self.rng = match config.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        self.commands = triggers::command_names(&config.triggers.commands, &setup.command_prefix);
        self.command_prefix.clone_from(&setup.command_prefix);
        self.config = config;
        if let Some(saved) = &setup.saved_state {
            match saved.decode_json::<State>(STATE_VERSION) {
                Ok(Some(mut state)) => {
                    let now = Instant::now();
                    for (user, ago) in std::mem::take(&mut state.seen_ago) {
                        let at = Duration::try_from_secs_f64(ago)
                            .ok()
                            .and_then(|ago| now.checked_sub(ago));
                        if let Some(at) = at {
                            self.last_seen.insert(user, at);
                        }
                    }
                    self.state = state;
                }
                Ok(None) => ctx.warn(format!("ignoring saved state of version {}", saved.version)),
                Err(e) => ctx.warn(format!("ignoring damaged saved state: {e}")),
            }
        }
        if self.config.enabled {
            ctx.subscribe(subjects::events::MESSAGE)?;
            ctx.subscribe(subjects::events::PM)?;
            ctx.subscribe(subjects::events::USER_JOIN)?;
            ctx.subscribe(subjects::events::USER_LEAVE)?;
            ctx.subscribe(subjects::events::USER_UPDATE)?;
        }
        Ok(())
    }

    fn commands(&self) -> Vec<CommandSpec> {
        self.commands
            .iter()
            .map(|name| CommandSpec::new(name.clone(), "ask the AI: !ai <question>"))
            .collect()
    }

    fn on_message(&mut self, ctx: &Context, msg: Message) -> Result<()> {
        if let Some(token) = msg.answer_token() {
            let token = token.to_owned();
            self.on_answer(ctx, &token, msg.answer_json::<ChatReply>());
            return Ok(());
        }
        if let Some(cmd) = msg.command() {
            if self.commands.contains(&cmd.command) {
                self.on_command(ctx, &cmd)?;
            }
            return Ok(());
        }
        if !self.config.enabled {
            return Ok(());
        }
        match msg.subject.as_str() {
            subjects::events::MESSAGE => {
                let event: Event<events::Message> = msg.decode()?;
                self.on_chat(ctx, &event)
            }
            subjects::events::PM => {
                let event: Event<events::Pm> = msg.decode()?;
                self.on_pm(ctx, &event)
            }
            subjects::events::USER_JOIN => {
                let event: Event<events::UserJoin> = msg.decode()?;
                self.on_join(ctx, &event)
            }
            subjects::events::USER_LEAVE => {
                let event: Event<events::UserLeave> = msg.decode()?;
                let key = history::key(&event.platform, &event.channel, &event.body.user);
                self.last_seen.insert(key, Instant::now());
                Ok(())
            }
            subjects::events::USER_UPDATE => {
                let event: Event<events::UserUpdate> = msg.decode()?;
                self.on_user_update(ctx, &event)
            }
            _ => Ok(()),
        }
    }

    fn save_state(&mut self) -> Result<Option<SavedState>> {
        let now = Instant::now();
        self.state.seen_ago = self
            .last_seen
            .iter()
            .map(|(user, at)| (user.clone(), now.duration_since(at).as_secs_f64()))
            .collect();
        SavedState::json(STATE_VERSION, &self.state).map(Some)
    }
}

rosey_plugin!(LlmChat);

impl LlmChat {
    /// `!ai <prompt>`: always answered (the answer, an apology, a usage line or "not configured").
    fn on_command(&mut self, ctx: &Context, cmd: &Command) -> Result<()> {
        if !self.config.enabled {
            let now = Instant::now();
            let key = format!("{}/{}", cmd.platform, cmd.channel);
            let recent = self
                .not_configured_said
                .get(&key)
                .is_some_and(|at| now.duration_since(at) < NOT_CONFIGURED_COOLDOWN);
            if !recent {
                self.not_configured_said.insert(key, now);
                ctx.reply(cmd, NOT_CONFIGURED)?;
            }
            return Ok(());
        }
        let prompt = cmd.text.trim();
        if prompt.is_empty() {
            return ctx.reply(
                cmd,
                format!(
                    "Ask me something: {}{} <question>",
                    self.command_prefix, cmd.command
                ),
            );
        }
        let trigger = if cmd.is_pm {
            Trigger::PmCommand
        } else {
            Trigger::Command
        };
        if let Err(e) = self.ask(ctx, &cmd.platform, &cmd.channel, &cmd.user, prompt, trigger) {
            ctx.warn(format!("!{} not sent to rosey-llm: {e}", cmd.command));
            ctx.reply(cmd, APOLOGY)?;
        }
        Ok(())
    }

    /// Whether a line's author must never be answered.
    fn ignored(&self, ctx: &Context, platform: &str, channel: &str, user: &str) -> bool {
        triggers::is_server_line(user)
            || ctx.is_bot(platform, channel, user)
            || self
                .config
                .ignore_users
                .iter()
                .any(|u| u.eq_ignore_ascii_case(user))
    }

    /// Whether `user` was answered less than the per-user cooldown ago (and if not, marks now).
    fn cooling_down(&mut self, key: &str) -> bool {
        let now = Instant::now();
        let pause = Duration::from_secs_f64(self.config.user_cooldown_seconds.max(0.0));
        if let Some(at) = self.last_answer.get(key) {
            if now.duration_since(at) < pause {
                return true;
            }
        }
        self.last_answer.insert(key.to_owned(), now);
        false
    }

    fn on_chat(&mut self, ctx: &Context, event: &Event<events::Message>) -> Result<()> {
        let line = &event.body;
        let (platform, channel) = (event.platform.as_str(), event.channel.as_str());
        if line.is_command || self.ignored(ctx, platform, channel, &line.user) {
            return Ok(());
        }
        let key = history::key(platform, channel, &line.user);
        self.last_seen.insert(key.clone(), Instant::now());
        let triggers = self.config.triggers.clone();
        if !triggers.enabled {
            return Ok(());
        }
        if triggers.direct_mention {
            let name = ctx
                .bot_name_in(platform, channel)
                .unwrap_or_default()
                .to_owned();
            if let Some(prompt) = triggers::mention_prompt(&line.content, &name) {
                if !prompt.is_empty() && !self.cooling_down(&key) {
                    self.ask_or_log(
                        ctx,
                        platform,
                        channel,
                        &line.user,
                        &prompt,
                        Trigger::Mention,
                    );
                }
                return Ok(());
            }
        }
        let now = Instant::now();
        for keyword in &triggers.keywords {
            let Some(phrase) = triggers::matching_phrase(&line.content, &keyword.phrases) else {
                continue;
            };
            let fired = (channel.to_owned(), phrase.to_lowercase());
            let pause = Duration::from_secs_f64(keyword.cooldown_seconds.max(0.0));
            if self
                .phrase_fired
                .get(&fired)
                .is_some_and(|at| now.duration_since(at) < pause)
            {
                continue;
            }
            if self.rng.f64() < keyword.probability {
                self.phrase_fired.insert(fired, now);
                if !self.cooling_down(&key) {
                    self.ask_or_log(
                        ctx,
                        platform,
                        channel,
                        &line.user,
                        &line.content,
                        Trigger::Keyword,
                    );
                }
                return Ok(());
            }
        }
        let ambient = &triggers.ambient_chat;
        if ambient.enabled && ambient.every_n_messages > 0 {
            let left_key = format!("{platform}/{channel}");
            let left = match self.ambient_left.get(&left_key) {
                Some(left) => *left,
                None => self.ambient_spacing(),
            };
            if left <= 1 {
                let next = self.ambient_spacing();
                self.ambient_left.insert(left_key, next);
                self.ask_or_log(
                    ctx,
                    platform,
                    channel,
                    &line.user,
                    &line.content,
                    Trigger::Ambient,
                );
            } else {
                self.ambient_left.insert(left_key, left - 1);
            }
        }
        Ok(())
    }

    /// Lines until the next ambient reply: `every_n_messages` spread by `randomness`.
    fn ambient_spacing(&mut self) -> u32 {
        let ambient = &self.config.triggers.ambient_chat;
        let n = f64::from(ambient.every_n_messages);
        let spread = n * ambient.randomness.clamp(0.0, 1.0);
        let value = n - spread + self.rng.f64() * 2.0 * spread;
        value.round().max(1.0) as u32
    }

    fn on_pm(&mut self, ctx: &Context, event: &Event<events::Pm>) -> Result<()> {
        let pm = &event.body;
        let (platform, channel) = (event.platform.as_str(), event.channel.as_str());
        if self.ignored(ctx, platform, channel, &pm.user)
            || !self.config.triggers.enabled
            || pm.content.trim().is_empty()
            || (!self.command_prefix.is_empty()
                && pm.content.trim_start().starts_with(&self.command_prefix))
        {
            return Ok(());
        }
        if let Some(bot) = ctx.bot_name_in(platform, channel) {
            if !pm.recipient.eq_ignore_ascii_case(bot) {
                return Ok(());
            }
        }
        let key = history::key(platform, channel, &pm.user);
        if !self.cooling_down(&key) {
            let content = pm.content.trim().to_owned();
            self.ask_or_log(ctx, platform, channel, &pm.user, &content, Trigger::Pm);
        }
        Ok(())
    }

    fn on_join(&mut self, ctx: &Context, event: &Event<events::UserJoin>) -> Result<()> {
        let join = &event.body;
        let (platform, channel) = (event.platform.as_str(), event.channel.as_str());
        let greetings = &self.config.triggers.greetings;
        let on_join = greetings.on_join.clone();
        let key = history::key(platform, channel, &join.user);
        let last_seen = self.last_seen.insert(key, Instant::now());
        if !self.config.triggers.enabled
            || !greetings.enabled
            || !on_join.enabled
            || self.ignored(ctx, platform, channel, &join.user)
            || (on_join.moderators_only && !join.user_data.is_moderator)
        {
            return Ok(());
        }
        let idle = Duration::from_secs_f64((on_join.idle_threshold_minutes * 60.0).max(0.0));
        if last_seen.is_some_and(|at| at.elapsed() < idle) {
            return Ok(());
        }
        let specific = on_join
            .specific_users
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&join.user))
            .map(|(_, rule)| rule.clone());
        let probability = match &specific {
            Some(SpecificUser::Probability(p)) => *p,
            Some(SpecificUser::Greeting(_)) => 1.0,
            None => on_join.probability,
        };
        if self.rng.f64() >= probability {
            return Ok(());
        }
        if let Some(SpecificUser::Greeting(text)) = specific {
            return self.say(ctx, platform, channel, &join.user, Trigger::Greeting, &text);
        }
        let prompt = format!("{} just joined the channel. Greet them briefly.", join.user);
        self.ask_or_log(
            ctx,
            platform,
            channel,
            &join.user,
            &prompt,
            Trigger::Greeting,
        );
        Ok(())
    }

    /// A user back from AFK (their AFK flag went off): greeted with
    /// `greetings.on_status_change.probability`, as a greeting on join would be.
    fn on_user_update(&mut self, ctx: &Context, event: &Event<events::UserUpdate>) -> Result<()> {
        let update = &event.body;
        let (platform, channel) = (event.platform.as_str(), event.channel.as_str());
        let greetings = &self.config.triggers.greetings;
        let rule = greetings.on_status_change.clone();
        let back = update.changed.contains(&events::UserChange::Afk) && !update.user_data.is_afk;
        if !back
            || !self.config.triggers.enabled
            || !greetings.enabled
            || !rule.enabled
            || self.ignored(ctx, platform, channel, &update.user)
            || self.rng.f64() >= rule.probability
        {
            return Ok(());
        }
        let prompt = format!(
            "{} is back after being away. Welcome them back briefly.",
            update.user
        );
        self.ask_or_log(
            ctx,
            platform,
            channel,
            &update.user,
            &prompt,
            Trigger::Greeting,
        );
        Ok(())
    }

    /// [`LlmChat::ask`], logging a failure to send (only commands apologize for it).
    fn ask_or_log(
        &mut self,
        ctx: &Context,
        platform: &str,
        channel: &str,
        user: &str,
        prompt: &str,
        trigger: Trigger,
    ) {
        if let Err(e) = self.ask(ctx, platform, channel, user, prompt, trigger) {
            ctx.warn(format!("request to rosey-llm not sent: {e}"));
        }
    }

    /// Sends a deferred `rosey.llm.chat` with the system prompt, the history and `prompt`.
    fn ask(
        &mut self,
        ctx: &Context,
        platform: &str,
        channel: &str,
        user: &str,
        prompt: &str,
        trigger: Trigger,
    ) -> Result<()> {
        let key = history::key(platform, channel, user);
        let request = ChatRequest {
            messages: self.state.histories.request_messages(
                &key,
                self.config.system_prompt.as_deref(),
                prompt,
            ),
            model: None,
            temperature: Some(self.config.temperature),
            max_tokens: Some(self.config.max_tokens),
        };
        let token = self.state.next_token;
        self.state.next_token += 1;
        let timeout = Duration::from_secs_f64(self.config.request_timeout_seconds.max(1.0));
        ctx.request_json_later(&token.to_string(), subjects::llm::CHAT, &request, timeout)?;
        self.state.pending.insert(
            token,
            Pending {
                platform: platform.to_owned(),
                channel: channel.to_owned(),
                user: user.to_owned(),
                prompt: prompt.to_owned(),
                trigger,
            },
        );
        Ok(())
    }

    /// An answer from rosey-llm: said (or logged), recorded in the history; a failure is
    /// logged and apologized for when the user addressed the bot.
    fn on_answer(&mut self, ctx: &Context, token: &str, answer: Result<ChatReply>) {
        let Some(pending) = token
            .parse::<u64>()
            .ok()
            .and_then(|t| self.state.pending.remove(&t))
        else {
            ctx.warn(format!("answer for unknown request {token:?} dropped"));
            return;
        };
        let result = match answer {
            Ok(reply) if !reply.text.trim().is_empty() => {
                let key = history::key(&pending.platform, &pending.channel, &pending.user);
                self.state.histories.record(
                    &key,
                    &pending.prompt,
                    reply.text.trim(),
                    self.config.max_context_messages as usize,
                );
                let text = triggers::cap(&reply.text, self.config.max_reply_chars.max(2));
                self.say(
                    ctx,
                    &pending.platform,
                    &pending.channel,
                    &pending.user,
                    pending.trigger,
                    &text,
                )
            }
            Ok(_) => {
                ctx.warn(format!(
                    "rosey-llm gave an empty answer to {}",
                    pending.user
                ));
                self.apologize(ctx, &pending)
            }
            Err(e) => {
                ctx.warn(format!("rosey-llm failed to answer {}: {e}", pending.user));
                self.apologize(ctx, &pending)
            }
        };
        if let Err(e) = result {
            ctx.warn(format!("answer to {} not sent: {e}", pending.user));
        }
    }

    fn apologize(&self, ctx: &Context, pending: &Pending) -> Result<()> {
        if !pending.trigger.apologizes() {
            return Ok(());
        }
        self.say(
            ctx,
            &pending.platform,
            &pending.channel,
            &pending.user,
            pending.trigger,
            APOLOGY,
        )
    }

    /// Says `text` to `user`: by PM for PM triggers, else in chat as `user: text`; with
    /// `log_only`, only logs it.
    fn say(
        &self,
        ctx: &Context,
        platform: &str,
        channel: &str,
        user: &str,
        trigger: Trigger,
        text: &str,
    ) -> Result<()> {
        if self.config.log_only {
            ctx.info(format!(
                "log_only: would say to {user} in {channel}: {text}"
            ));
            return Ok(());
        }
        if trigger.by_pm() {
            let subject = subjects::platform::send(platform, subjects::platform::action::PM)?;
            ctx.publish_json(
                &subject,
                &SendPm {
                    channel: channel.to_owned(),
                    to: user.to_owned(),
                    content: text.to_owned(),
                },
            )
        } else {
            let subject = subjects::platform::send(platform, subjects::platform::action::CHAT)?;
            ctx.publish_json(
                &subject,
                &SendChat {
                    channel: channel.to_owned(),
                    content: format!("{user}: {text}"),
                },
            )
        }
    }
}
