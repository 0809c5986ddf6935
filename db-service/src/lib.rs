//! `rosey-db`: the only owner of Rosey's SQLite databases, reachable only over NATS.
//!
//! Each channel served has a file of its own in the original's schema (the first channel's is
//! `database.path`). Its durable writes arrive through its own JetStream stream and are applied
//! by its own consumer and writer thread in stream order, in batches, each batch in one
//! transaction with the stream position, so one channel never waits for another; requests are
//! served through the async-nats service API from separate connections, so queries never wait
//! for ingestion, and answer from the file of the channel they name.
//!
//! # Layout
//! - [`schema`]: the original v0.5.0 tables, verbatim, and Rosey's own bookkeeping tables.
//! - [`store`]: every SQL operation, with the original's semantics.
//! - [`events`]: decoding and applying durable write events.
//! - [`writer`]: the ingestion writer thread (batches, stream position, dead letters).
//! - [`ingest`]: the JetStream consumer (and the fallback without JetStream).
//! - [`requests`]: the request subjects as a NATS service.
//! - [`pool`]: SQLite connections for async code.
//! - [`maintenance`]: daily maintenance and periodic pruning.
//! - [`stats`]: counters shown in `$SRV.STATS`.
//! - [`service`]: the whole service, [`service::run`], which the `rosey-db` binary calls.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod events;
pub mod ingest;
pub mod maintenance;
pub mod pool;
pub mod requests;
pub mod schema;
pub mod service;
pub mod stats;
pub mod store;
pub mod writer;
