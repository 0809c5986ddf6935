//! The host boundary: every call a plugin's context makes into the runtime, as one typed
//! interface.
//!
//! In process the plugin's [`rosey_plugin_api::ffi::HostHandle`] is a thin shim over it
//! ([`crate::bus::Bus`] implements both); a plugin in a host process of its own sends the same
//! calls over its socket and the runtime answers them through this same trait, so permissions,
//! header stamping and subscriptions are enforced in one place whichever way a plugin runs.

use crate::error::HostError;
use rosey_plugin_api::ffi::{FfiMessage, LogLevel};

/// What a plugin may ask of the runtime. Errors are typed; they cross to the plugin as
/// [`rosey_plugin_api::ffi::FfiError`] (see [`HostError::ffi_kind`]).
pub trait HostCalls: Send + Sync {
    /// Publishes a message (its subject checked against the plugin's permissions).
    fn publish(&self, message: FfiMessage) -> Result<(), HostError>;

    /// Sends a request and waits for its reply, at most `timeout_ms` (capped by
    /// `plugins.max_request_timeout`).
    fn request(&self, message: FfiMessage, timeout_ms: u64) -> Result<FfiMessage, HostError>;

    /// Sends a request whose outcome comes back later through the plugin's answer queue,
    /// tagged with `token`.
    fn request_later(
        &self,
        message: FfiMessage,
        timeout_ms: u64,
        token: String,
    ) -> Result<(), HostError>;

    /// Subscribes on the plugin's behalf (the runtime owns the subscription, so it survives
    /// reloads) and returns its id.
    fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<u64, HostError>;

    /// Drops a subscription the plugin made.
    fn unsubscribe(&self, id: u64) -> Result<(), HostError>;

    /// Writes a line to the runtime's log, tagged with the plugin's name.
    fn log(&self, level: LogLevel, text: &str);
}
