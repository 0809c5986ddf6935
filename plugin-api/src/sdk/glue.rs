//! The glue the [`crate::rosey_plugin!`] macro expands to, written once: the root module, the
//! adapter from [`Plugin`] to the FFI instance trait, and the `catch_unwind` around every
//! entry point. Not for plugin authors.

use super::context::Context;
use super::error::{Error, ErrorKind};
use super::message::Message;
use super::state::SavedState;
use super::{ChannelInfo, Plugin, Setup};
use crate::ffi::{
    FfiAnswer, FfiCommandSpec, FfiError, FfiErrorKind, FfiMessage, FfiMetadata, PluginBox,
    PluginInit, PluginInstance, PluginInstance_TO, PluginMod, PluginModRef,
};
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RErr, ROk, RResult, RString, RVec, Tuple2};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use abi_stable::library::{LibHeader, RootModuleResult};

/// What the macro knows about the plugin crate: its name, version and description.
pub trait Package {
    /// The crate's name (`CARGO_CRATE_NAME`), which is also the library's file name.
    const NAME: &'static str;
    /// The crate's version (`CARGO_PKG_VERSION`).
    const VERSION: &'static str;
    /// The crate's description (`CARGO_PKG_DESCRIPTION`).
    const DESCRIPTION: &'static str;
}

/// The root-module source the macro's header uses for plugin `P`.
pub struct Loader<P>(std::marker::PhantomData<P>);

impl<P: Plugin + Package> crate::ffi::sealed::Sealed for Loader<P> {}

impl<P: Plugin + Package> crate::ffi::RootModuleSource for Loader<P> {
    fn root_module() -> RootModuleResult {
        root_module_loader::<P>()
    }
}

/// Called by the exported loader: builds the root module for plugin `P`.
pub fn root_module_loader<P: Plugin + Package>() -> RootModuleResult {
    fn build<P: Plugin + Package>() -> PluginModRef {
        PluginMod {
            new: new_instance::<P>,
        }
        .leak_into_prefix()
    }
    abi_stable::library::__call_root_module_loader(build::<P> as fn() -> PluginModRef)
}

/// Text from a caught panic's payload.
fn panic_text(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}

/// Runs plugin code, turning a panic into an error value.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) -> RResult<T, FfiError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => ROk(value),
        Ok(Err(e)) => RErr(e.into_ffi()),
        Err(payload) => RErr(FfiError::new(
            FfiErrorKind::Panic,
            format!("{what} panicked: {}", panic_text(payload)),
        )),
    }
}

/// The root module's constructor for plugin `P`.
pub(crate) extern "C" fn new_instance<P: Plugin + Package>(
    init: PluginInit,
) -> RResult<PluginBox, FfiError> {
    guarded("init", move || {
        let channels: Vec<ChannelInfo> = init
            .channels
            .into_iter()
            .map(|c| ChannelInfo {
                platform: c.platform.into_string(),
                channel: c.channel.into_string(),
                bot_name: c.bot_name.into_string(),
            })
            .collect();
        let ctx = Context::new(
            init.host,
            &init.name,
            &init.command_prefix,
            channels.clone(),
        );
        let config: serde_json::Value = if init.config_json.is_empty() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str(&init.config_json)
                .map_err(|e| Error::new(ErrorKind::Invalid, format!("plugin configuration: {e}")))?
        };
        let saved_state = match init.saved_state.into_option() {
            None => None,
            Some(bytes) => match SavedState::decode(&bytes) {
                Ok(state) => state,
                Err(e) => {
                    ctx.warn(format!("ignoring saved state: {e}"));
                    None
                }
            },
        };
        let setup = Setup {
            config,
            command_prefix: init.command_prefix.into_string(),
            channels,
            saved_state,
            generation: init.generation,
        };
        let mut plugin = P::default();
        plugin.init(&ctx, setup)?;
        let adapter = Adapter::<P> { plugin, ctx };
        Ok(PluginInstance_TO::from_ptr(RBox::new(adapter), TD_Opaque))
    })
}

/// A [`Plugin`] seen through the FFI instance trait.
struct Adapter<P> {
    plugin: P,
    ctx: Context,
}

impl<P: Plugin + Package> PluginInstance for Adapter<P> {
    fn metadata(&self) -> FfiMetadata {
        let commands = match catch_unwind(AssertUnwindSafe(|| self.plugin.commands())) {
            Ok(list) => list,
            Err(payload) => {
                self.ctx
                    .error(format!("commands() panicked: {}", panic_text(payload)));
                Vec::new()
            }
        };
        FfiMetadata {
            name: P::NAME.into(),
            version: P::VERSION.into(),
            description: P::DESCRIPTION.into(),
            commands: commands
                .into_iter()
                .map(|c| FfiCommandSpec {
                    name: c.name.into(),
                    description: c.description.into(),
                    min_rank: c.min_rank,
                    cooldown_ms: u64::try_from(c.cooldown.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
        }
    }

    fn on_message(&mut self, message: FfiMessage) -> RResult<(), FfiError> {
        let msg = from_ffi_message(message);
        guarded("on_message", || self.plugin.on_message(&self.ctx, msg))
    }

    fn on_tick(&mut self) -> RResult<(), FfiError> {
        guarded("on_tick", || self.plugin.on_tick(&self.ctx))
    }

    fn save_state(&mut self) -> RResult<RVec<u8>, FfiError> {
        guarded("save_state", || {
            Ok(self
                .plugin
                .save_state()?
                .map(|s| RVec::from(s.encode()))
                .unwrap_or_default())
        })
    }

    fn shutdown(&mut self) -> RResult<(), FfiError> {
        guarded("shutdown", || self.plugin.shutdown(&self.ctx))
    }

    fn on_answer(&mut self, answer: FfiAnswer) -> RResult<(), FfiError> {
        let reply = answer
            .result
            .into_result()
            .map(from_ffi_message)
            .map_err(Error::from);
        let msg = Message::answer(
            answer.token.into_string(),
            answer.subject.into_string(),
            reply,
        );
        guarded("on_message", || self.plugin.on_message(&self.ctx, msg))
    }
}

/// A message as it crosses the boundary.
pub(crate) fn to_ffi_message(m: Message) -> FfiMessage {
    FfiMessage {
        subject: RString::from(m.subject),
        reply: m.reply.map(RString::from).into(),
        headers: m
            .headers
            .into_iter()
            .map(|(k, v)| Tuple2(RString::from(k), RString::from(v)))
            .collect(),
        payload: RVec::from(m.payload),
    }
}

/// A message as the plugin sees it.
pub(crate) fn from_ffi_message(m: FfiMessage) -> Message {
    Message {
        subject: m.subject.into_string(),
        reply: m.reply.into_option().map(RString::into_string),
        headers: m
            .headers
            .into_iter()
            .map(|Tuple2(k, v)| (k.into_string(), v.into_string()))
            .collect(),
        payload: m.payload.into_vec(),
        answer_to: None,
    }
}
