//! The quotes plugin: a per-channel quote book behind `!quote`.
//!
//! Quotes live in the database service's key-value storage ([`store`]) and are mirrored in
//! memory per channel, loaded on the channel's first `!quote` (after a restart or a reload
//! too: only the lines heard are handed to the next generation). The plugin also remembers each
//! recent speaker's last line ([`recent`]) so `!quote grab <user>` can quote it, asking the
//! database's recent chat for anyone it has not heard.
//!
//! # Layout
//! - [`commands`]: parsing `!quote ...`; [`settings`]: the configuration.
//! - [`store`]: quotes and their storage; [`recent`]: last lines heard.
//! - [`Quotes`]: the plugin, whose [`Quotes::answer`] turns a command into its reply.
#![deny(missing_docs)]

pub mod commands;
pub mod recent;
pub mod settings;
pub mod store;

use commands::{shorten, QuoteCommand, HELP};
use recent::RecentLines;
use rosey_plugin_api::db::{ChatLine, RecentChatGet};
use rosey_plugin_api::events::{self, Event};
use rosey_plugin_api::sdk::prelude::*;
use rosey_plugin_api::sdk::DEFAULT_REQUEST_TIMEOUT;
use rosey_plugin_api::subjects;
use rosey_plugin_api::user::MODERATOR_RANK;
use serde::{Deserialize, Serialize};
use settings::Config;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use store::QuoteBook;

/// The command this plugin serves.
const COMMAND: &str = "quote";
/// The format version of the state handed to the next generation.
const STATE_VERSION: u32 = 1;
/// Lines of a user's recent chat asked from the database for `!quote grab`.
const GRAB_LOOKBACK: u32 = 50;
/// Characters of a user-supplied name or search echoed back in a reply.
const ECHO_CHARS: usize = 40;
/// Longest author name.
const MAX_AUTHOR_CHARS: usize = 64;
/// Served channels whose quote book a tick loads ahead of their first `!quote`.
const PRELOAD_PER_TICK: usize = 20;
/// How long a tick's book load waits for the storage (a command's own load waits longer).
const PRELOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// Ticks skipped after a book could not be loaded ahead (the storage may be down).
const PRELOAD_BACKOFF_TICKS: u32 = 30;

/// The plugin: configuration, the quote books loaded so far, and recent lines heard.
#[derive(Default)]
pub struct Quotes {
    config: Config,
    /// What starts a chat command, so `!quote grab` never quotes one.
    command_prefix: String,
    /// The channels served, with the bot's name in each; the database keeps each one's recent
    /// chat (the first's where a single-channel deployment always had it).
    channels: Vec<ChannelInfo>,
    books: BTreeMap<String, QuoteBook>,
    recent: RecentLines,
    rng: fastrand::Rng,
    /// Ticks to skip before loading books ahead again, after a failure.
    preload_pause: u32,
}

/// What a generation hands to the next: the lines heard, which exist nowhere else. The
/// quote books are not included; the next generation reads them back from the storage.
#[derive(Serialize, Deserialize)]
struct State {
    recent: RecentLines,
}

impl Plugin for Quotes {
    fn init(&mut self, ctx: &Context, setup: Setup) -> Result<()> {
        let config: Config = setup.config()?;
        config
            .validate()
            .map_err(|e| Error::new(ErrorKind::Invalid, format!("quotes configuration: {e}")))?;
        self.recent = RecentLines::new(config.remembered_speakers);
        self.config = config;
        self.command_prefix.clone_from(&setup.command_prefix);
        self.channels.clone_from(&setup.channels);
        if let Some(saved) = &setup.saved_state {
            match saved.decode_json::<State>(STATE_VERSION) {
                Ok(Some(state)) => {
                    self.recent = state.recent.with_capacity(self.config.remembered_speakers);
                }
                Ok(None) => ctx.warn(format!("ignoring saved state of version {}", saved.version)),
                Err(e) => ctx.warn(format!("ignoring damaged saved state: {e}")),
            }
        }
        ctx.subscribe(subjects::events::MESSAGE)?;
        Ok(())
    }

    fn commands(&self) -> Vec<CommandSpec> {
        vec![CommandSpec::new(
            COMMAND,
            "the channel's quote book: !quote [id], !quote add <text>; !quote help for more",
        )]
    }

    fn on_message(&mut self, ctx: &Context, msg: Message) -> Result<()> {
        if let Some(cmd) = msg.command() {
            return if cmd.command == COMMAND {
                self.on_command(ctx, &cmd)
            } else {
                Ok(())
            };
        }
        if msg.subject == subjects::events::MESSAGE {
            let event: Event<events::Message> = msg.decode()?;
            self.hear(&event);
        }
        Ok(())
    }

    fn on_tick(&mut self, ctx: &Context) -> Result<()> {
        if self.preload_pause > 0 {
            self.preload_pause -= 1;
            return Ok(());
        }
        let storage = ctx.kv().with_timeout(PRELOAD_TIMEOUT);
        if self.preload_books(&storage, PRELOAD_PER_TICK).is_err() {
            // Not worth a warning: a command's own load retries, and reports if it fails.
            self.preload_pause = PRELOAD_BACKOFF_TICKS;
        }
        Ok(())
    }

    fn save_state(&mut self) -> Result<Option<SavedState>> {
        #[derive(Serialize)]
        struct StateRef<'a> {
            recent: &'a RecentLines,
        }
        let state = StateRef {
            recent: &self.recent,
        };
        SavedState::json(STATE_VERSION, &state).map(Some)
    }
}

rosey_plugin!(Quotes);

/// A user's last line from somewhere else than the plugin's memory: `(user, line)`.
pub type History<'a> = dyn Fn(&str) -> Result<Option<(String, String)>> + 'a;

impl Quotes {
    /// A plugin with this configuration, command prefix and channels (the bot's name in
    /// each), as `init` would set it up.
    pub fn new(config: Config, command_prefix: &str, channels: Vec<ChannelInfo>) -> Quotes {
        Quotes {
            recent: RecentLines::new(config.remembered_speakers),
            config,
            command_prefix: command_prefix.to_owned(),
            channels,
            ..Quotes::default()
        }
    }

    /// Answers a `!quote` command, apologizing when the storage fails.
    fn on_command(&mut self, ctx: &Context, cmd: &Command) -> Result<()> {
        let storage = ctx.kv();
        let prefix = self.command_prefix.clone();
        let served = self.channels.clone();
        let history = |user: &str| history_line(ctx, &served, &prefix, cmd, user);
        let reply = match self.answer(&storage, cmd, &history) {
            Ok(reply) => reply,
            Err(e) => {
                ctx.warn(format!("!quote failed: {e}"));
                "Sorry, the quote book is not reachable right now; try again later.".to_owned()
            }
        };
        ctx.reply(cmd, reply)
    }

    /// Loads up to `at_most` served channels' quote books not loaded yet; how many it loaded.
    /// A channel's first `!quote` would otherwise wait for its book to be read from storage,
    /// and with many channels those first commands come together and queue behind each other
    /// in the plugin (the simulation of 100 channels: p99 of first commands 149 ms against
    /// 22 ms for the others). Stops at the first failure.
    pub fn preload_books(&mut self, storage: &impl KeyValue, at_most: usize) -> Result<usize> {
        let mut loaded = 0;
        for served in &self.channels {
            if loaded == at_most {
                break;
            }
            if self.books.contains_key(&served.channel) {
                continue;
            }
            let book = QuoteBook::load(storage, &served.channel)?;
            self.books.insert(served.channel.clone(), book);
            loaded += 1;
        }
        Ok(loaded)
    }

    /// Whether `user` is the bot itself in the event's channel.
    fn is_bot(&self, event: &Event<events::Message>, user: &str) -> bool {
        self.channels.iter().any(|c| {
            c.platform == event.platform
                && c.channel == event.channel
                && c.bot_name.eq_ignore_ascii_case(user)
        })
    }

    /// Remembers a chat line for `!quote grab` (commands and the bot's own lines excluded).
    pub fn hear(&mut self, event: &Event<events::Message>) {
        let line = &event.body;
        if line.is_command || self.is_bot(event, &line.user) {
            return;
        }
        self.recent
            .remember(&event.channel, &line.user, &line.content);
    }

    /// The reply to a `!quote` command. Storage failures are errors (the caller apologizes);
    /// every misuse is a reply saying what was wrong.
    pub fn answer(
        &mut self,
        storage: &impl KeyValue,
        cmd: &Command,
        history: &History<'_>,
    ) -> Result<String> {
        let parsed = match commands::parse(&cmd.text) {
            Ok(parsed) => parsed,
            Err(usage) => return Ok(usage),
        };
        let channel = cmd.channel.as_str();
        let Quotes {
            config,
            books,
            recent,
            rng,
            ..
        } = self;
        let book = match books.entry(channel.to_owned()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(QuoteBook::load(storage, channel)?),
        };
        let reply = match parsed {
            QuoteCommand::Help => HELP.to_owned(),
            QuoteCommand::Count => match book.len() {
                0 => no_quotes(),
                1 => "1 quote.".to_owned(),
                n => format!("{n} quotes."),
            },
            QuoteCommand::Random => book.random(rng).map_or_else(no_quotes, |q| q.display()),
            QuoteCommand::Get(id) => book
                .get(id)
                .map_or_else(|| format!("No quote #{id}."), |q| q.display()),
            QuoteCommand::By(author) => by_author(book, rng, &author),
            QuoteCommand::Search(needle) => search(book, config, &needle),
            QuoteCommand::Add { text, author } => {
                if let Some(problem) = check_new(book, config, &text, author.as_deref()) {
                    return Ok(problem);
                }
                let when = cmd.timestamp.secs();
                let quote =
                    book.add(storage, channel, &text, author.as_deref(), &cmd.user, when)?;
                format!("Added quote #{}.", quote.id)
            }
            QuoteCommand::Grab(user) => {
                let heard = recent.last(channel, &user);
                grab(book, config, storage, cmd, &user, heard, history)?
            }
            QuoteCommand::Delete(id) => delete(book, storage, cmd, id)?,
        };
        Ok(reply)
    }
}

/// A random quote by `author`.
fn by_author(book: &QuoteBook, rng: &mut fastrand::Rng, author: &str) -> String {
    let theirs = book.by_author(author);
    match theirs.len() {
        0 => format!("No quotes by {}.", shorten(author, ECHO_CHARS)),
        1 => theirs[0].display(),
        n => format!("{} (one of {n})", theirs[rng.usize(0..n)].display()),
    }
}

/// Quotes `user`'s last line: the one the plugin `heard`, else the one `history` finds.
fn grab(
    book: &mut QuoteBook,
    config: &Config,
    storage: &impl KeyValue,
    cmd: &Command,
    user: &str,
    heard: Option<&recent::Line>,
    history: &History<'_>,
) -> Result<String> {
    if user.eq_ignore_ascii_case(&cmd.user) {
        return Ok("You can't quote yourself.".to_owned());
    }
    let found = match heard {
        Some(line) => Some((line.user.clone(), line.text.clone())),
        None => history(user)?,
    };
    let Some((speaker, text)) = found else {
        return Ok(format!(
            "I haven't heard {} say anything here.",
            shorten(user, ECHO_CHARS)
        ));
    };
    if let Some(problem) = check_new(book, config, &text, Some(&speaker)) {
        return Ok(problem);
    }
    let when = cmd.timestamp.secs();
    let quote = book.add(
        storage,
        &cmd.channel,
        &text,
        Some(&speaker),
        &cmd.user,
        when,
    )?;
    Ok(format!("Added quote {}", quote.display()))
}

/// Deletes a quote for whoever added it, or a moderator.
fn delete(book: &mut QuoteBook, storage: &impl KeyValue, cmd: &Command, id: u64) -> Result<String> {
    let Some(quote) = book.get(id) else {
        return Ok(format!("No quote #{id}."));
    };
    if !quote.added_by.eq_ignore_ascii_case(&cmd.user) && !is_moderator(cmd) {
        return Ok(format!(
            "Only {} (who added it) or a moderator can delete quote #{id}.",
            quote.added_by
        ));
    }
    book.delete(storage, &cmd.channel, id)?;
    Ok(format!("Deleted quote #{id}."))
}

/// A user's last non-command line in the command's channel, from that channel's recent chat
/// in the database; a channel the plugin is not told it serves has only the plugin's own memory.
fn history_line(
    ctx: &Context,
    served: &[ChannelInfo],
    command_prefix: &str,
    cmd: &Command,
    user: &str,
) -> Result<Option<(String, String)>> {
    let position = served
        .iter()
        .position(|c| c.platform == cmd.platform && c.channel == cmd.channel);
    let channel = match position {
        // A single-channel deployment asks without naming its channel, as it always did; with
        // several, rosey-db answers only a request that names one.
        Some(_) if served.len() == 1 => None,
        Some(_) => Some(cmd.channel.clone()),
        None if served.is_empty() => None,
        None => return Ok(None),
    };
    let request = RecentChatGet {
        channel,
        limit: GRAB_LOOKBACK,
        username: Some(user.to_owned()),
        since: None,
    };
    let lines: Vec<ChatLine> = ctx.request_json(
        subjects::db::RECENT_CHAT_GET,
        &request,
        DEFAULT_REQUEST_TIMEOUT,
    )?;
    Ok(lines
        .into_iter()
        .rev()
        .find(|l| command_prefix.is_empty() || !l.message.starts_with(command_prefix))
        .map(|l| (l.username, l.message)))
}

/// Why a new quote cannot be added, if it cannot.
fn check_new(
    book: &QuoteBook,
    config: &Config,
    text: &str,
    author: Option<&str>,
) -> Option<String> {
    let length = text.chars().count();
    if length > config.max_length {
        return Some(format!(
            "That quote is {length} characters; the limit is {}.",
            config.max_length
        ));
    }
    if author.is_some_and(|a| a.chars().count() > MAX_AUTHOR_CHARS) {
        return Some(format!(
            "An author's name is at most {MAX_AUTHOR_CHARS} characters."
        ));
    }
    if config.reject_duplicates {
        if let Some(existing) = book.duplicate_of(text) {
            return Some(format!("That is already quote #{}.", existing.id));
        }
    }
    None
}

fn search(book: &QuoteBook, config: &Config, needle: &str) -> String {
    if needle.chars().count() < config.min_search_length {
        return format!(
            "Search for at least {} characters.",
            config.min_search_length
        );
    }
    let found = book.search(needle);
    if found.is_empty() {
        return format!("No quote contains \"{}\".", shorten(needle, ECHO_CHARS));
    }
    let shown: Vec<String> = found
        .iter()
        .take(config.search_results)
        .map(|q| q.preview(config.preview_length))
        .collect();
    if found.len() > shown.len() {
        format!(
            "{} found, first {}: {}",
            found.len(),
            shown.len(),
            shown.join(", ")
        )
    } else {
        format!("{} found: {}", found.len(), shown.join(", "))
    }
}

fn no_quotes() -> String {
    "No quotes yet; add one with !quote add <text>.".to_owned()
}

fn is_moderator(cmd: &Command) -> bool {
    cmd.user_data.is_moderator || cmd.user_data.rank >= MODERATOR_RANK
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosey_plugin_api::sdk::MemoryKv;
    use rosey_plugin_api::{Timestamp, UserData};
    use serde_json::Value;

    /// The one channel the tests run in, where the bot is `rosey`.
    fn lobby() -> Vec<ChannelInfo> {
        vec![ChannelInfo {
            platform: "console".into(),
            channel: "lobby".into(),
            bot_name: "rosey".into(),
        }]
    }

    fn cmd(user: &str, rank: f64, text: &str) -> Command {
        Command {
            command: COMMAND.into(),
            args: text.split_whitespace().map(str::to_owned).collect(),
            text: text.trim().into(),
            raw: format!("!quote {text}"),
            user: user.into(),
            user_data: UserData::new(user, rank),
            is_pm: false,
            platform: "console".into(),
            channel: "lobby".into(),
            timestamp: Timestamp::from_secs(1_700_000_000).unwrap(),
        }
    }

    fn chat(user: &str, content: &str, is_command: bool) -> Event<events::Message> {
        Event {
            platform: "console".into(),
            channel: "lobby".into(),
            timestamp: Timestamp::now(),
            platform_data: Value::Null,
            body: events::Message {
                user: user.into(),
                user_data: None,
                content: content.into(),
                is_command,
            },
        }
    }

    fn no_history(_: &str) -> Result<Option<(String, String)>> {
        Ok(None)
    }

    struct Fixture {
        quotes: Quotes,
        storage: MemoryKv,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                quotes: Quotes::new(Config::default(), "!", lobby()),
                storage: MemoryKv::new(),
            }
        }

        fn say(&mut self, user: &str, rank: f64, text: &str) -> String {
            self.quotes
                .answer(&self.storage, &cmd(user, rank, text), &no_history)
                .unwrap()
        }
    }

    #[test]
    fn served_channels_books_are_loaded_ahead_a_few_at_a_time() {
        let info = |channel: &str| ChannelInfo {
            platform: "console".into(),
            channel: channel.into(),
            bot_name: "rosey".into(),
        };
        let mut writer = Fixture::new();
        assert_eq!(
            writer.say("ann", 0.0, "add kept in lobby"),
            "Added quote #1."
        );
        let stored = &writer.storage;
        let mut quotes = Quotes::new(
            Config::default(),
            "!",
            vec![info("a"), info("lobby"), info("c")],
        );
        let failing = MemoryKv::new();
        failing.set_failing(true);
        assert!(quotes.preload_books(&failing, 2).is_err());
        assert_eq!(quotes.preload_books(stored, 2).unwrap(), 2);
        assert_eq!(quotes.preload_books(stored, 2).unwrap(), 1);
        assert_eq!(quotes.preload_books(stored, 2).unwrap(), 0);
        // The lobby's first command needs no storage: its book was loaded ahead.
        let empty = MemoryKv::new();
        let reply = quotes
            .answer(&empty, &cmd("bob", 0.0, "count"), &no_history)
            .unwrap();
        assert_eq!(reply, "1 quote.");
    }

    #[test]
    fn add_get_random_count() {
        let mut f = Fixture::new();
        assert_eq!(f.say("ann", 0.0, "count"), no_quotes());
        assert_eq!(f.say("ann", 0.0, ""), no_quotes());
        assert_eq!(
            f.say("ann", 0.0, "add to be or not -- Hamlet"),
            "Added quote #1."
        );
        assert_eq!(f.say("ann", 0.0, "add just words"), "Added quote #2.");
        assert_eq!(f.say("ann", 0.0, "1"), "#1: to be or not — Hamlet");
        assert_eq!(f.say("ann", 0.0, "#2"), "#2: just words");
        assert_eq!(f.say("ann", 0.0, "9"), "No quote #9.");
        assert_eq!(f.say("ann", 0.0, "count"), "2 quotes.");
        let random = f.say("ann", 0.0, "");
        assert!(
            random.starts_with("#1") || random.starts_with("#2"),
            "{random}"
        );
        assert_eq!(f.say("ann", 0.0, "help"), HELP);
        // The stored quote records who added it and when.
        let stored = QuoteBook::load(&f.storage, "lobby").unwrap();
        let q = stored.get(1).unwrap();
        assert_eq!((q.added_by.as_str(), q.added_at), ("ann", 1_700_000_000));
    }

    #[test]
    fn limits_and_duplicates() {
        let mut f = Fixture::new();
        let long = "x".repeat(501);
        assert_eq!(
            f.say("ann", 0.0, &format!("add {long}")),
            "That quote is 501 characters; the limit is 500."
        );
        let exact = "é".repeat(500);
        assert_eq!(
            f.say("ann", 0.0, &format!("add {exact}")),
            "Added quote #1."
        );
        f.say("ann", 0.0, "add Hello World");
        assert_eq!(
            f.say("bob", 0.0, "add hello   world"),
            "That is already quote #2."
        );
        let author = "a".repeat(65);
        assert!(f
            .say("ann", 0.0, &format!("add hi -- {author}"))
            .contains("at most 64"));
        assert!(f.say("ann", 0.0, "add").contains("empty"));
    }

    #[test]
    fn limits_come_from_the_configuration() {
        let config = Config {
            max_length: 10,
            search_results: 2,
            preview_length: 10,
            reject_duplicates: false,
            ..Config::default()
        };
        let mut f = Fixture::new();
        f.quotes = Quotes::new(config, "!", lobby());
        assert_eq!(
            f.say("ann", 0.0, "add eleven chars"),
            "That quote is 12 characters; the limit is 10."
        );
        for _ in 0..3 {
            f.say("ann", 0.0, "add same cake");
        }
        assert_eq!(
            f.say("ann", 0.0, "search cake"),
            "3 found, first 2: #1 \"same cake\", #2 \"same cake\""
        );
    }

    #[test]
    fn by_and_search() {
        let mut f = Fixture::new();
        f.say("u", 0.0, "add The cake is a lie -- GLaDOS");
        f.say(
            "u",
            0.0,
            "add I love CAKE so much that I would write a very long sentence about it -- bob",
        );
        f.say("u", 0.0, "add nothing -- glados");
        let by = f.say("u", 0.0, "by glados");
        assert!(by.contains("(one of 2)"), "{by}");
        assert_eq!(
            f.say("u", 0.0, "by bob"),
            "#2: I love CAKE so much that I would write a very long sentence about it — bob"
        );
        assert_eq!(f.say("u", 0.0, "by nobody"), "No quotes by nobody.");
        assert_eq!(
            f.say("u", 0.0, "search cake"),
            "2 found: #1 \"The cake is a lie\", #2 \"I love CAKE so much that I would write a very long…\""
        );
        assert_eq!(
            f.say("u", 0.0, "search ca"),
            "Search for at least 3 characters."
        );
        assert_eq!(
            f.say("u", 0.0, "search zebra"),
            "No quote contains \"zebra\"."
        );
        for i in 0..8 {
            f.say("u", 0.0, &format!("add cake number {i}"));
        }
        let many = f.say("u", 0.0, "search CAKE");
        assert!(many.starts_with("10 found, first 5: "), "{many}");
        assert_eq!(many.matches('#').count(), 5);
    }

    #[test]
    fn grab_from_memory_history_and_never_yourself() {
        let mut f = Fixture::new();
        f.quotes
            .hear(&chat("Bob", "something <b>memorable</b>", false));
        f.quotes.hear(&chat("bob", "!quote grab ann", true));
        f.quotes.hear(&chat("rosey", "I am the bot", false));
        assert_eq!(
            f.say("ann", 0.0, "grab bob"),
            "Added quote #1: something <b>memorable</b> — Bob"
        );
        assert_eq!(f.say("bob", 0.0, "grab BOB"), "You can't quote yourself.");
        assert_eq!(
            f.say("ann", 0.0, "grab rosey"),
            "I haven't heard rosey say anything here."
        );
        // Someone the plugin never heard: the database's recent chat answers.
        let history = |user: &str| -> Result<Option<(String, String)>> {
            Ok((user == "cy").then(|| ("Cy".to_owned(), "from the database".to_owned())))
        };
        let reply = f
            .quotes
            .answer(&f.storage, &cmd("ann", 0.0, "grab cy"), &history)
            .unwrap();
        assert_eq!(reply, "Added quote #2: from the database — Cy");
        let failing = |_: &str| -> Result<Option<(String, String)>> { Err(Error::msg("db down")) };
        assert!(f
            .quotes
            .answer(&f.storage, &cmd("ann", 0.0, "grab dee"), &failing)
            .is_err());
    }

    #[test]
    fn deleting_needs_the_adder_or_a_moderator() {
        let mut f = Fixture::new();
        f.say("ann", 0.0, "add one");
        f.say("ann", 0.0, "add two");
        assert_eq!(
            f.say("bob", 1.0, "del 1"),
            "Only ann (who added it) or a moderator can delete quote #1."
        );
        assert_eq!(f.say("ANN", 0.0, "del 1"), "Deleted quote #1.");
        assert_eq!(f.say("mod", 2.0, "del 2"), "Deleted quote #2.");
        assert_eq!(f.say("mod", 2.0, "del 2"), "No quote #2.");
        assert_eq!(f.say("ann", 0.0, "add three"), "Added quote #3.");
    }

    #[test]
    fn storage_outage_is_an_error_and_loses_nothing() {
        let mut f = Fixture::new();
        f.say("ann", 0.0, "add kept");
        f.storage.set_failing(true);
        assert!(f
            .quotes
            .answer(&f.storage, &cmd("ann", 0.0, "add lost"), &no_history)
            .is_err());
        f.storage.set_failing(false);
        assert_eq!(f.say("ann", 0.0, "count"), "1 quote.");
        // A fresh plugin (a restart) reads the same book back.
        let mut restarted = Quotes::new(Config::default(), "!", lobby());
        let reply = restarted
            .answer(&f.storage, &cmd("x", 0.0, "1"), &no_history)
            .unwrap();
        assert_eq!(reply, "#1: kept");
    }

    #[test]
    fn hostile_text_is_stored_as_typed() {
        let mut f = Fixture::new();
        for text in [
            "'; DROP TABLE quotes; --",
            "<script>alert(1)</script>",
            "🎉 ünïcödé 中文",
            "%00 \\ \" {}",
        ] {
            let added = f.say("ann", 0.0, &format!("add {text}"));
            let id: u64 = added
                .trim_start_matches("Added quote #")
                .trim_end_matches('.')
                .parse()
                .unwrap();
            assert_eq!(f.say("ann", 0.0, &id.to_string()), format!("#{id}: {text}"));
        }
    }
}
