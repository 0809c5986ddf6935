//! Rosey's wire contract: every NATS subject, every payload and the error envelope that the
//! bot, the database service, the plugin runtime and plugins exchange.
//!
//! The contract is defined here once and documented in `docs/SUBJECTS.md`; a test keeps the two
//! in step through [`registry::all`]. Nobody else spells a subject as a string literal.
//!
//! # Layout
//! - [`subjects`]: subject constants and typed builders.
//! - [`time`], [`user`]: shared vocabulary (timestamps, the normalized user object).
//! - [`events`], [`commands`], [`actions`]: what the bot publishes and what it acts on.
//! - [`db`], [`kv`]: durable database writes and database requests.
//! - [`admin`]: the plugin runtime's administration subjects.
//! - [`llm`]: LLM chat requests served by `rosey-llm`.
//! - [`bot`]: the bot's snapshot and its own chat lines; [`discovery`]: `$SRV` answers.
//! - [`error`], [`payload`]: the error reply every request subject uses, and decoding.
//! - [`registry`]: the table of every subject with its payload types.
//! - [`access`]: the roles of the table's flows and each role's nats-server permissions.
//! - `stream` and `reply` (feature `nats`): the one JetStream stream definition and helpers to
//!   send and read replies with async-nats.
//!
//! # Crate features
//! - `ffi` (default): the abi_stable plugin interface ([`ffi`]) and the plugin author's SDK
//!   ([`sdk`]).
//! - `nats`: helpers that need an async-nats client.
#![deny(missing_docs)]

pub mod access;
pub mod actions;
pub mod admin;
pub mod bot;
pub mod commands;
pub mod db;
pub mod discovery;
pub mod error;
pub mod events;
pub mod kv;
pub mod llm;
pub mod payload;
pub mod registry;
pub mod subjects;
pub mod time;
pub mod user;

#[cfg(feature = "ffi")]
pub mod ffi;
#[cfg(feature = "ffi")]
pub mod sdk;

#[cfg(feature = "nats")]
pub mod reply;
#[cfg(feature = "nats")]
pub mod stream;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use time::Timestamp;
pub use user::UserData;
