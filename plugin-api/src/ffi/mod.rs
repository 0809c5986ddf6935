//! The binary interface between `rosey-runtime` and a plugin library, built with `abi_stable`.
//!
//! Plugin authors never see this module: they write a [`crate::sdk::Plugin`] and one
//! [`crate::rosey_plugin!`] line. It exists so the runtime and the SDK agree on one checked
//! layout:
//!
//! - [`PluginMod`] is the root module a plugin library exports; its only function,
//!   [`PluginMod::new`], builds an instance from a [`PluginInit`].
//! - [`PluginInstance`] is what the runtime calls on a plugin's worker thread.
//! - [`HostHandle`] is the only capability a plugin gets: NATS publish, request (waiting, or
//!   deferred with the answer delivered later through [`PluginInstance::on_answer`]),
//!   subscribe and a log line, all checked against the plugin's permissions by the runtime.
//!
//! Data crosses as bytes and strings (payloads are JSON on the wire already), so the interface
//! stays small. Every prefix type and trait carries `#[sabi(last_prefix_field)]`: fields and
//! methods may be added only after it, until a major version moves it, so plugins built against
//! an older interface keep loading.
//!
//! A panic must never cross this boundary: abi_stable aborts the whole process when one
//! unwinds through its `extern "C"` shims. The SDK wraps every plugin entry point in
//! `catch_unwind`, and the runtime's [`HostHandle`] methods never panic.

// `#[sabi_trait]` expands to impls inside a generated constant, which this lint flags.
#![allow(non_local_definitions)]

use abi_stable::library::{CheckTypeLayout, LibHeader, RootModule, RootModuleResult};
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RString, RVec, Tuple2};
use abi_stable::{declare_root_module_statics, package_version_strings, sabi_trait, StableAbi};
use std::fmt;

/// The exported symbol every plugin library defines, as `#[export_root_module]` would name it
/// (a test checks it against abi_stable's own constant). The SDK's macro spells it out because
/// abi_stable's attribute would require every plugin crate to depend on abi_stable itself.
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Why a call across the boundary failed.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfiErrorKind {
    /// The runtime refused the subject: the plugin lacks the permission.
    Denied,
    /// A request got no answer in time.
    Timeout,
    /// NATS failed (not connected, bad subject, server error).
    Nats,
    /// The plugin's own code returned an error.
    Plugin,
    /// The plugin's code panicked; the SDK caught it.
    Panic,
    /// An argument was not acceptable (bad subject, unknown subscription, bad state bytes).
    Invalid,
}

/// An error value that crosses the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiError {
    /// What kind of failure it is.
    pub kind: FfiErrorKind,
    /// A readable explanation.
    pub message: RString,
}

impl FfiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: FfiErrorKind, message: impl Into<String>) -> Self {
        FfiError {
            kind,
            message: RString::from(message.into()),
        }
    }
}

impl fmt::Display for FfiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FfiErrorKind::Denied => "denied",
            FfiErrorKind::Timeout => "timed out",
            FfiErrorKind::Nats => "nats error",
            FfiErrorKind::Plugin => "plugin error",
            FfiErrorKind::Panic => "plugin panicked",
            FfiErrorKind::Invalid => "invalid",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for FfiError {}

/// One NATS message as it crosses the boundary: subject, optional reply subject, headers (one
/// pair per value) and the payload bytes.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct FfiMessage {
    /// The subject.
    pub subject: RString,
    /// Where an answer goes, for requests.
    pub reply: ROption<RString>,
    /// Header name and value pairs, in order; a name may repeat.
    pub headers: RVec<Tuple2<RString, RString>>,
    /// The payload.
    pub payload: RVec<u8>,
}

/// The outcome of a deferred request ([`HostHandle::request_deferred`]), delivered to the
/// plugin through [`PluginInstance::on_answer`] on its worker thread.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiAnswer {
    /// The token the plugin chose when it sent the request.
    pub token: RString,
    /// The subject the request went to.
    pub subject: RString,
    /// The reply (error replies included), or why there is none (timeout, NATS failure).
    pub result: RResult<FfiMessage, FfiError>,
}

/// One channel a plugin serves: where it is, and who the bot is there.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiChannel {
    /// The platform, as events and commands name it (`cytube`, `console`).
    pub platform: RString,
    /// The channel's name on that platform.
    pub channel: RString,
    /// The bot's user name in that channel.
    pub bot_name: RString,
}

/// How important a log line from a plugin is.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something looks wrong.
    Warn,
    /// Normal operation worth noting.
    Info,
    /// Detail for debugging.
    Debug,
    /// Very fine detail.
    Trace,
}

/// One chat command a plugin serves, with the limits the runtime enforces for it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiCommandSpec {
    /// The command word (`^[a-z0-9_-]{1,32}$`).
    pub name: RString,
    /// One line for `!help`.
    pub description: RString,
    /// The lowest rank allowed to use it.
    pub min_rank: f64,
    /// Milliseconds a user waits between two uses (moderators are exempt).
    pub cooldown_ms: u64,
}

/// What a plugin says about itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiMetadata {
    /// The plugin's name; must equal its configured name.
    pub name: RString,
    /// The plugin crate's own version.
    pub version: RString,
    /// One line about what it does.
    pub description: RString,
    /// The commands it serves.
    pub commands: RVec<FfiCommandSpec>,
}

/// The capabilities the runtime lends a plugin: NATS through permission checks, and logging.
///
/// Every method may be called from any thread the plugin owns; `request` blocks the caller,
/// `request_deferred` does not.
#[sabi_trait]
pub trait HostHandle: Send + Sync {
    /// Publishes a message (its `reply` field, if any, becomes the reply subject).
    fn publish(&self, message: FfiMessage) -> RResult<(), FfiError>;

    /// Sends a request and waits up to `timeout_ms` for the answer.
    fn request(&self, message: FfiMessage, timeout_ms: u64) -> RResult<FfiMessage, FfiError>;

    /// Subscribes the plugin to `subject` (optionally in a queue group); messages arrive in
    /// `on_message`. Subscribing twice to the same subject and group returns the same id.
    fn subscribe(&self, subject: RString, queue_group: ROption<RString>) -> RResult<u64, FfiError>;

    /// Drops a subscription made with `subscribe`.
    fn unsubscribe(&self, id: u64) -> RResult<(), FfiError>;

    /// Writes a line to the runtime's log, tagged with the plugin's name.
    fn log(&self, level: LogLevel, message: RString);

    /// Sends a request and returns at once; the answer (or the timeout or failure after up to
    /// `timeout_ms`) reaches the serving generation later through
    /// [`PluginInstance::on_answer`], tagged with `token`.
    // Methods may be added only after this one, until a major version moves the attribute.
    #[sabi(last_prefix_field)]
    fn request_deferred(
        &self,
        message: FfiMessage,
        timeout_ms: u64,
        token: RString,
    ) -> RResult<(), FfiError>;
}

/// The host handle as the runtime hands it over.
pub type HostBox = HostHandle_TO<'static, RBox<()>>;

/// A plugin instance: one generation of one plugin, called only from its worker thread.
#[sabi_trait]
pub trait PluginInstance: Send {
    /// The plugin's name, version, description and commands.
    fn metadata(&self) -> FfiMetadata;

    /// Handles one message from a subscription (events, commands, anything subscribed).
    fn on_message(&mut self, message: FfiMessage) -> RResult<(), FfiError>;

    /// Called every `plugins.tick_interval`.
    fn on_tick(&mut self) -> RResult<(), FfiError>;

    /// The state to hand to the next generation (framed by the SDK with a version).
    fn save_state(&mut self) -> RResult<RVec<u8>, FfiError>;

    /// Called once before the instance is dropped for good or replaced.
    fn shutdown(&mut self) -> RResult<(), FfiError>;

    /// Handles the outcome of a deferred request (made by this generation or an earlier one).
    // Methods may be added only after this one, until a major version moves the attribute.
    #[sabi(last_prefix_field)]
    fn on_answer(&mut self, answer: FfiAnswer) -> RResult<(), FfiError>;
}

/// A plugin instance as the runtime owns it.
pub type PluginBox = PluginInstance_TO<'static, RBox<()>>;

/// Everything a plugin gets when it is constructed.
#[repr(C)]
#[derive(StableAbi)]
pub struct PluginInit {
    /// The plugin's only way out: NATS through the runtime.
    pub host: HostBox,
    /// The plugin's configured name.
    pub name: RString,
    /// `plugins.config.<name>` without the runtime's keys, as JSON text (`{}` when absent).
    pub config_json: RString,
    /// What starts a chat command (`platform.command_prefix`, `!` by default).
    pub command_prefix: RString,
    /// Every channel the plugin serves (after its `channels` and `exclude_channels`), with the
    /// bot's name in each.
    pub channels: RVec<FfiChannel>,
    /// The previous generation's `save_state` bytes, if there was one.
    pub saved_state: ROption<RVec<u8>>,
    /// Which library generation this is (1 for the first load).
    pub generation: u64,
}

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Builds an instance; an error (or a caught panic) leaves the previous generation serving.
    // Fields may be added only after this one, until a major version moves the attribute.
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(PluginInit) -> RResult<PluginBox, FfiError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "rosey_plugin";
    const NAME: &'static str = "rosey_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The interface version plugins are checked against (this crate's version): abi_stable
/// refuses a library whose version differs in its first non-zero part (0.1 and 0.2 differ).
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a plugin library's header calls to build its root module. Sealed: the only
/// implementation is the SDK's `sdk::glue::Loader`, which is what makes [`lib_header`] sound.
///
/// ```compile_fail
/// // Another crate cannot hand `lib_header` a constructor of its own.
/// struct Forged;
/// impl rosey_plugin_api::ffi::RootModuleSource for Forged {
///     fn root_module() -> rosey_plugin_api::sdk::glue::RootModuleResult {
///         unimplemented!()
///     }
/// }
/// ```
pub trait RootModuleSource: sealed::Sealed {
    /// Builds the root module (through abi_stable's loader shim, which catches panics).
    fn root_module() -> RootModuleResult;
}

pub(crate) mod sealed {
    /// Keeps [`super::RootModuleSource`] from being implemented outside this crate.
    pub trait Sealed {}
}

/// Builds the header a plugin library exports, for the SDK's macro.
pub const fn lib_header<S: RootModuleSource>() -> LibHeader {
    extern "C" fn constructor<S: RootModuleSource>() -> RootModuleResult {
        S::root_module()
    }
    // SAFETY: `from_constructor` requires the constructor to return the root module of type
    // `PluginModRef`. `RootModuleSource` is sealed and its only implementation,
    // `sdk::glue::Loader<P>`, returns `sdk::glue::root_module_loader::<P>()`, which builds
    // exactly that type through `__call_root_module_loader`; no other crate can supply one.
    unsafe { LibHeader::from_constructor::<PluginModRef>(constructor::<S>, CheckTypeLayout::Yes) }
}

/// Re-exports the runtime needs to load libraries without naming abi_stable itself.
pub mod load {
    pub use abi_stable::library::{lib_header_from_path, LibHeader, LibraryError};
    pub use abi_stable::sabi_trait::TD_Opaque;
    pub use abi_stable::std_types::{RBox, ROption, RResult, RString, RVec, Tuple2};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(
            ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }

    #[test]
    fn errors_display_their_kind() {
        let e = FfiError::new(FfiErrorKind::Denied, "publish to x");
        assert_eq!(e.to_string(), "denied: publish to x");
        let e = FfiError::new(FfiErrorKind::Panic, "boom");
        assert_eq!(e.to_string(), "plugin panicked: boom");
    }
}
