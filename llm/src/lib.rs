//! The LLM gateway: the one process that holds the provider's URL and key. Plugins ask it for
//! answers on `rosey.llm.chat`; it applies the limits (prompt size, per-plugin budget,
//! concurrency), calls the provider with timeouts and retries, and answers with the text or one
//! of the contract's error codes. `rosey-llm` is [`run`] behind the shared start-up.

pub mod gateway;
pub mod log_file;
pub mod provider;
pub mod service;

pub use service::run;
