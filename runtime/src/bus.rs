//! The host handle a plugin generation receives: NATS through permission checks, and logging.
//! [`Bus`] implements the typed host boundary ([`HostCalls`]) and, over it, the FFI handle.
//!
//! Nothing here may panic: a panic unwinding through abi_stable's `extern "C"` shims would end
//! the process. Every method is wrapped in `catch_unwind` as a last line of defence, and turns
//! every failure into an `FfiError`.

use crate::boundary::HostCalls;
use crate::deferred;
use crate::error::HostError;
use crate::host::{Host, Slot, SubKind};
use crate::permissions::{check_subject, Access};
use abi_stable::std_types::{RErr, ROk, ROption, RResult, RString, RVec, Tuple2};
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use rosey_plugin_api::ffi::{FfiError, FfiMessage, HostHandle, LogLevel};
use rosey_plugin_api::sdk::MAX_ANSWER_TOKEN_LEN;
use rosey_plugin_api::{actions, subjects};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How far one generation may still use the host.
///
/// A generation inside `shutdown` is closing: it may still publish and request (to save its
/// data to storage, say) but not subscribe, since host-owned subscriptions outlive it. Once
/// `shutdown` returns, or when it is replaced without one (stuck, panicked), it is retired and
/// every host call is refused.
#[derive(Debug, Default)]
pub struct Gate(AtomicU8);

const LIVE: u8 = 0;
const CLOSING: u8 = 1;
const RETIRED: u8 = 2;

impl Gate {
    /// Enters `shutdown`: publishing and requesting only.
    pub fn close(&self) {
        let _ = self
            .0
            .compare_exchange(LIVE, CLOSING, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Refuses every further host call.
    pub fn retire(&self) {
        self.0.store(RETIRED, Ordering::SeqCst);
    }

    /// Whether `access` is still allowed.
    fn allows(&self, access: Access) -> bool {
        match self.0.load(Ordering::SeqCst) {
            LIVE => true,
            CLOSING => access != Access::Subscribe,
            _ => false,
        }
    }
}

/// One generation's handle on the host.
pub struct Bus {
    host: Arc<Host>,
    slot: Arc<Slot>,
    gate: Arc<Gate>,
}

impl Bus {
    /// A handle for the generation whose access `gate` controls.
    pub fn new(host: Arc<Host>, slot: Arc<Slot>, gate: Arc<Gate>) -> Bus {
        Bus { host, slot, gate }
    }

    fn check(&self, access: Access, subject: &str) -> Result<(), HostError> {
        if !self.gate.allows(access) {
            return Err(HostError::Retired);
        }
        check_subject(subject, access == Access::Subscribe).map_err(HostError::Invalid)?;
        let allowed = self.slot.allows(access, subject)
            || (access == Access::Subscribe
                && subjects::commands::name_of(subject)
                    .is_some_and(|c| self.host.may_subscribe_command(&self.slot.name, c)));
        if allowed {
            Ok(())
        } else {
            let error = HostError::Denied {
                plugin: self.slot.name.clone(),
                access,
                subject: subject.to_owned(),
            };
            tracing::warn!(plugin = %self.slot.name, "{error}");
            Err(error)
        }
    }

    /// A request's timeout: what the plugin asked for, at least 1 ms and at most
    /// `plugins.max_request_timeout`.
    fn request_timeout(&self, timeout_ms: u64) -> Duration {
        Duration::from_millis(timeout_ms.max(1)).min(self.host.settings.max_request_timeout)
    }

    /// The plugin's headers with [`actions::HEADER_SOURCE`] set to its name, so the bot can
    /// queue each plugin's chat fairly (a plugin cannot pass as another).
    fn stamped(&self, headers: Option<HeaderMap>) -> HeaderMap {
        let mut headers = headers.unwrap_or_default();
        headers.insert(actions::HEADER_SOURCE, self.slot.name.as_str());
        headers
    }
}

impl HostCalls for Bus {
    fn publish(&self, message: FfiMessage) -> Result<(), HostError> {
        let subject = message.subject.to_string();
        self.check(Access::Publish, &subject)?;
        let headers = self.stamped(to_headers(&message.headers));
        let reply = message.reply.into_option().map(|r| r.to_string());
        let payload = Bytes::from(message.payload.into_vec());
        let client = &self.host.client;
        // Publishing only queues the message for the connection task; it needs no runtime
        // context, so a plain thread-parking executor is enough (and cheaper than entering
        // tokio's).
        let what = format!("publish to {subject}");
        self.host
            .block_on_light(async move {
                match reply {
                    Some(reply) => {
                        client
                            .publish_with_reply_and_headers(subject, reply, headers, payload)
                            .await
                    }
                    None => client.publish_with_headers(subject, headers, payload).await,
                }
            })?
            .map_err(|e| HostError::nats(what, e))
    }

    fn request(&self, message: FfiMessage, timeout_ms: u64) -> Result<FfiMessage, HostError> {
        let subject = message.subject.to_string();
        self.check(Access::Request, &subject)?;
        let timeout = self.request_timeout(timeout_ms);
        let mut request = async_nats::Request::new()
            .payload(Bytes::from(message.payload.into_vec()))
            .timeout(Some(timeout));
        request = request.headers(self.stamped(to_headers(&message.headers)));
        // Waiting on the host is not being stuck: the watchdog stops counting meanwhile (a
        // request may legitimately outlast `watchdog_timeout`). Only for the worker's own call:
        // a request from one of the plugin's threads says nothing about the worker.
        let paused = if self.slot.on_worker_thread() {
            self.slot.pause_call()
        } else {
            None
        };
        let waiting = std::time::Instant::now();
        let _resume = Resume {
            slot: &self.slot,
            gate: &self.gate,
            paused,
            waiting,
        };
        let client = self.host.client.clone();
        let subject_for_call = subject.clone();
        let answer = self
            .host
            .block_on(async move { client.send_request(subject_for_call, request).await })?;
        answer
            .map(from_nats)
            .map_err(|e| HostError::request(&subject, &e))
    }

    fn request_later(
        &self,
        message: FfiMessage,
        timeout_ms: u64,
        token: String,
    ) -> Result<(), HostError> {
        let subject = message.subject.to_string();
        self.check(Access::Request, &subject)?;
        if token.len() > MAX_ANSWER_TOKEN_LEN {
            return Err(HostError::Invalid(format!(
                "an answer token is at most {MAX_ANSWER_TOKEN_LEN} bytes"
            )));
        }
        let headers = self.stamped(to_headers(&message.headers));
        let payload = Bytes::from(message.payload.into_vec());
        let timeout = self.request_timeout(timeout_ms);
        deferred::send(
            &self.host, &self.slot, subject, headers, payload, timeout, token,
        )
    }

    fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<u64, HostError> {
        self.check(Access::Subscribe, subject)?;
        if let Some(q) = queue {
            if q.is_empty() || q.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(HostError::Invalid(format!(
                    "{q:?} is not a queue group name"
                )));
            }
        }
        self.host
            .subscribe_for(&self.slot, subject, queue, SubKind::Plugin)
    }

    fn unsubscribe(&self, id: u64) -> Result<(), HostError> {
        if !self.gate.allows(Access::Subscribe) {
            return Err(HostError::Retired);
        }
        self.host.unsubscribe(&self.slot, id)
    }

    fn log(&self, level: LogLevel, text: &str) {
        let plugin = self.slot.name.as_str();
        match level {
            LogLevel::Error => tracing::error!(plugin, "{text}"),
            LogLevel::Warn => tracing::warn!(plugin, "{text}"),
            LogLevel::Info => tracing::info!(plugin, "{text}"),
            LogLevel::Debug => tracing::debug!(plugin, "{text}"),
            LogLevel::Trace => tracing::trace!(plugin, "{text}"),
        }
    }
}

/// Gives the watchdog back the call a request paused, shifted by the time spent waiting,
/// unless this generation was replaced meanwhile (its successor's clock is not ours).
struct Resume<'a> {
    slot: &'a Slot,
    gate: &'a Gate,
    paused: Option<(std::time::Instant, &'static str)>,
    waiting: std::time::Instant,
}

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        if let Some((since, what)) = self.paused {
            if self.gate.allows(Access::Publish) {
                self.slot.resume_call(since + self.waiting.elapsed(), what);
            }
        }
    }
}

fn to_headers(pairs: &RVec<Tuple2<RString, RString>>) -> Option<HeaderMap> {
    if pairs.is_empty() {
        return None;
    }
    let mut map = HeaderMap::new();
    for Tuple2(k, v) in pairs.iter() {
        map.append(k.as_str(), v.as_str());
    }
    Some(map)
}

/// A NATS message as it crosses to a plugin.
pub fn from_nats(msg: Message) -> FfiMessage {
    let headers = msg
        .headers
        .as_ref()
        .map(|h| {
            h.iter()
                .flat_map(|(name, values)| {
                    values.iter().map(move |v| {
                        Tuple2(RString::from(name.to_string()), RString::from(v.as_str()))
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    FfiMessage {
        subject: RString::from(msg.subject.as_str()),
        reply: msg.reply.map(|r| RString::from(r.as_str())).into(),
        headers,
        payload: RVec::from(msg.payload.to_vec()),
    }
}

/// Runs one host call for the FFI shim: its typed error becomes an [`FfiError`], and a panic
/// (which must not unwind through abi_stable's `extern "C"` shims) becomes an internal error.
fn guard<T>(what: &'static str, f: impl FnOnce() -> Result<T, HostError>) -> RResult<T, FfiError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(e.into()),
        Err(_) => RErr(HostError::Internal(what).into()),
    }
}

impl HostHandle for Bus {
    fn publish(&self, message: FfiMessage) -> RResult<(), FfiError> {
        guard("publish", || HostCalls::publish(self, message))
    }

    fn request(&self, message: FfiMessage, timeout_ms: u64) -> RResult<FfiMessage, FfiError> {
        guard("request", || HostCalls::request(self, message, timeout_ms))
    }

    fn subscribe(&self, subject: RString, queue_group: ROption<RString>) -> RResult<u64, FfiError> {
        guard("subscribe", || {
            HostCalls::subscribe(
                self,
                subject.as_str(),
                queue_group.as_ref().map(RString::as_str).into_option(),
            )
        })
    }

    fn unsubscribe(&self, id: u64) -> RResult<(), FfiError> {
        guard("unsubscribe", || HostCalls::unsubscribe(self, id))
    }

    fn request_deferred(
        &self,
        message: FfiMessage,
        timeout_ms: u64,
        token: RString,
    ) -> RResult<(), FfiError> {
        guard("request_deferred", || {
            HostCalls::request_later(self, message, timeout_ms, token.into_string())
        })
    }

    fn log(&self, level: LogLevel, message: RString) {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            HostCalls::log(self, level, message.as_str());
        }));
    }
}
