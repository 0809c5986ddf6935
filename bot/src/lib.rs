//! `rosey-bot`: one channel's chat connection, normalized onto NATS.
//!
//! The bot holds no database and runs no plugins: it turns what the chat platform says into
//! the contract's events, commands and durable database writes, and carries out the actions
//! other processes ask of the platform.
//!
//! # Layout
//! - [`platform`]: the [`platform::Platform`] boundary (no NATS in it) and its connectors,
//!   [`platform::console`] and [`platform::cytube`].
//! - [`protocol`]: the Engine.IO / Socket.IO frame codec CyTube speaks.
//! - [`normalize`]: CyTube events to platform-neutral events (HTML decoding, users, intake
//!   rules).
//! - [`core`]: the event loop, publishing, the action server, the outbound poller.
//! - [`rules`]: the one rule book for actions (what the channel must allow), for NATS and the
//!   PM shell alike.
//! - [`state`], [`chat_queue`], [`flood`], [`shell`], [`db_writer`], [`logfiles`]: the core's
//!   parts.
#![deny(missing_docs)]

pub mod chat_queue;
pub mod core;
pub mod db_writer;
pub mod flood;
pub mod logfiles;
pub mod normalize;
pub mod platform;
pub mod protocol;
pub mod rules;
pub mod shell;
pub mod state;
