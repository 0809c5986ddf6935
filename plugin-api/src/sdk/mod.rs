//! The plugin author's SDK: a plain struct, one trait impl, one macro line.
//!
//! ```
//! use rosey_plugin_api::sdk::prelude::*;
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn commands(&self) -> Vec<CommandSpec> {
//!         vec![CommandSpec::new("hello", "says hello")]
//!     }
//!
//!     fn on_message(&mut self, ctx: &Context, msg: Message) -> Result<()> {
//!         if let Some(cmd) = msg.command() {
//!             ctx.reply(&cmd, format!("hello, {}", cmd.user))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! rosey_plugin!(Hello);
//! ```
//!
//! The crate is built as a `cdylib` (`crate-type = ["cdylib", "rlib"]`) with the default
//! `panic = "unwind"`: the SDK turns a panic in plugin code into an error value, which the
//! runtime reports before restarting the plugin. An abort, a stack overflow or a segfault
//! still ends the runtime process (`rosey up` restarts it): native code in the process can do
//! anything, and the runtime's permission checks guard against mistakes, not malice.
//!
//! # Lifecycle
//! 1. The runtime loads the library and builds the plugin with `Default`, then calls
//!    [`Plugin::init`] with its configuration, the bot's identity and the state the previous
//!    generation saved.
//! 2. Commands from [`Plugin::commands`] and every subscription arrive in
//!    [`Plugin::on_message`], one at a time, on the plugin's own worker thread;
//!    [`Plugin::on_tick`] runs every `plugins.tick_interval` on the same thread.
//! 3. When a new build appears, [`Plugin::save_state`] is called and its bytes go to the new
//!    generation's `init`; then the old generation's [`Plugin::shutdown`] runs.
//!
//! # Waiting on a slow service
//! [`Context::request`] blocks the worker until the answer comes, and every message queued
//! behind it waits too. [`Context::request_later`] returns at once; the answer (or the timeout)
//! arrives later in [`Plugin::on_message`], recognised by the token the plugin chose:
//!
//! ```
//! # use rosey_plugin_api::sdk::prelude::*;
//! # use std::time::Duration;
//! # #[derive(Default)] struct Ask;
//! # impl Plugin for Ask {
//! fn on_message(&mut self, ctx: &Context, msg: Message) -> Result<()> {
//!     if let Some(token) = msg.answer_token() {
//!         // `token` is the one given below; the answer or the reason there is none.
//!         let _outcome = msg.answer_json::<serde_json::Value>();
//!         return Ok(());
//!     }
//!     if let Some(cmd) = msg.command() {
//!         let token = format!("{}/{}", cmd.channel, cmd.user);
//!         ctx.request_later(&token, "some.service", b"{}".to_vec(), Duration::from_secs(30))?;
//!     }
//!     Ok(())
//! }
//! # }
//! ```

mod context;
mod error;
mod key_value;
mod memory_kv;
mod message;
mod state;

#[doc(hidden)]
pub mod glue;

pub use context::{Context, Kv, SubscriptionId, DEFAULT_REQUEST_TIMEOUT, MAX_ANSWER_TOKEN_LEN};
pub use error::{Error, ErrorKind, Result};
pub use key_value::{key_segment, KeyValue};
pub use memory_kv::MemoryKv;
pub use message::{AnswerTo, Message};
pub use state::SavedState;

pub use crate::ffi::LogLevel;
use std::time::Duration;

/// Everything a plugin author needs, in one `use`.
pub mod prelude {
    pub use super::{
        ChannelInfo, CommandSpec, Context, Error, ErrorKind, KeyValue, LogLevel, Message, Plugin,
        Result, SavedState, Setup,
    };
    pub use crate::commands::Command;
    pub use crate::rosey_plugin;
}

/// A chat command a plugin serves, with the limits the runtime enforces before delivering it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    /// The command word (`^[a-z0-9_-]{1,32}$`).
    pub name: String,
    /// One line for `!help`.
    pub description: String,
    /// The lowest rank allowed to use it (0: everyone).
    pub min_rank: f64,
    /// How long a user waits between two uses (moderators are exempt).
    pub cooldown: Duration,
}

impl CommandSpec {
    /// A command anyone may use, without cooldown.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        CommandSpec {
            name: name.into(),
            description: description.into(),
            min_rank: 0.0,
            cooldown: Duration::ZERO,
        }
    }

    /// Sets the lowest rank allowed.
    pub fn min_rank(mut self, rank: f64) -> Self {
        self.min_rank = rank;
        self
    }

    /// Sets the per-user cooldown.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }
}

/// One channel a plugin serves, and who the bot is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The platform, as events and commands name it (`cytube`, `console`).
    pub platform: String,
    /// The channel's name on that platform.
    pub channel: String,
    /// The bot's user name in that channel.
    pub bot_name: String,
}

/// The bot's name in `channel` of `platform`, among `channels`.
fn bot_name_in<'a>(channels: &'a [ChannelInfo], platform: &str, channel: &str) -> Option<&'a str> {
    channels
        .iter()
        .find(|c| c.platform == platform && c.channel == channel)
        .map(|c| c.bot_name.as_str())
}

/// What a plugin is given when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// `plugins.config.<name>` without the keys the runtime reads (`channels`,
    /// `exclude_channels`, `permissions`, `commands`); `{}` when absent.
    pub config: serde_json::Value,
    /// What starts a chat command (`!` by default).
    pub command_prefix: String,
    /// Every channel the plugin serves (its `channels` and `exclude_channels` applied), with
    /// the bot's name in each; empty when the deployment names no channel.
    pub channels: Vec<ChannelInfo>,
    /// What the previous generation saved, if anything.
    pub saved_state: Option<SavedState>,
    /// Which library generation this is (1 for the first load).
    pub generation: u64,
}

impl Setup {
    /// Decodes the plugin's configuration into its own type.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_value(self.config.clone())?)
    }

    /// The bot's user name in a channel the plugin serves.
    pub fn bot_name_in(&self, platform: &str, channel: &str) -> Option<&str> {
        bot_name_in(&self.channels, platform, channel)
    }
}

/// A Rosey plugin. Only [`Plugin::on_message`] is required.
///
/// Every method runs on the plugin's worker thread, one call at a time; blocking calls
/// (`ctx.request`, `ctx.kv()`) are fine there for quick services, and `ctx.request_later`
/// serves the slow ones. A panic in any method is caught and reported;
/// the runtime then restarts the plugin from its last saved state.
pub trait Plugin: Default + Send + 'static {
    /// Handles one delivered message: a declared command, an event, anything subscribed, or
    /// the answer to a deferred request ([`Message::answer_token`]).
    fn on_message(&mut self, ctx: &Context, msg: Message) -> Result<()>;

    /// Called once after construction, with the configuration and the saved state; subscribe
    /// to events here. The default does nothing.
    fn init(&mut self, ctx: &Context, setup: Setup) -> Result<()> {
        let _ = (ctx, setup);
        Ok(())
    }

    /// The commands this plugin serves; the runtime delivers them and enforces their rank and
    /// cooldown. The default is none.
    fn commands(&self) -> Vec<CommandSpec> {
        Vec::new()
    }

    /// Called every `plugins.tick_interval`. The default does nothing.
    fn on_tick(&mut self, ctx: &Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// State for the next generation (and for a restart after a failure). The default saves
    /// nothing.
    fn save_state(&mut self) -> Result<Option<SavedState>> {
        Ok(None)
    }

    /// Called before the plugin is dropped: when it is unloaded, or replaced by a new build.
    /// The default does nothing.
    fn shutdown(&mut self, ctx: &Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }
}

/// Exports a [`Plugin`] from a `cdylib` crate: `rosey_plugin!(MyPlugin);`.
///
/// The macro expands in the plugin crate, so the name it reports is the crate's name and the
/// version is the crate's own `Cargo.toml` version.
#[macro_export]
macro_rules! rosey_plugin {
    ($plugin:ty) => {
        const _: () = {
            impl $crate::sdk::glue::Package for $plugin {
                const NAME: &'static str = env!("CARGO_CRATE_NAME");
                const VERSION: &'static str = env!("CARGO_PKG_VERSION");
                const DESCRIPTION: &'static str = env!("CARGO_PKG_DESCRIPTION");
            }

            // The symbol abi_stable's loader looks up (`ffi::ROOT_MODULE_SYMBOL`).
            #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
            pub static ROSEY_PLUGIN_HEADER: $crate::sdk::glue::LibHeader =
                $crate::ffi::lib_header::<$crate::sdk::glue::Loader<$plugin>>();
        };
    };
}

#[cfg(test)]
mod tests;
