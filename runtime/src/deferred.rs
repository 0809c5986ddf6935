//! Deferred requests: a plugin sends a request and goes on with its next message; the answer
//! (or the timeout, or the NATS failure) comes back later through the plugin's answer queue
//! and is delivered by its worker with `on_answer`, tagged with the token the plugin chose.
//!
//! The request runs as a task on the async runtime, so a slow service stalls neither the
//! plugin's worker nor anything else. Answers have their own queue, apart from the message
//! queue, so a burst of events can never crowd out an answer: a plugin gets exactly one answer
//! for every request accepted. The queue holds at most `plugins.queue_capacity` answers because
//! no more requests than that may be pending at once.

use crate::bus;
use crate::error::HostError;
use crate::host::{Host, Slot};
use abi_stable::std_types::{RErr, ROk, RString};
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use rosey_plugin_api::ffi::{FfiAnswer, FfiError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The outcome of one deferred request, waiting for the plugin's worker.
pub struct Answer {
    /// The plugin's token.
    pub token: String,
    /// Where the request went.
    pub subject: String,
    /// The reply, or why there is none.
    pub result: Result<Message, FfiError>,
}

impl Answer {
    /// The answer as it crosses to the plugin.
    pub fn into_ffi(self) -> FfiAnswer {
        FfiAnswer {
            token: RString::from(self.token),
            subject: RString::from(self.subject),
            result: match self.result {
                Ok(msg) => ROk(bus::from_nats(msg)),
                Err(e) => RErr(e),
            },
        }
    }
}

/// One plugin's answer queue and the count of its requests still pending.
pub struct Answers {
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
    /// Requests sent whose answer the worker has not taken yet.
    pending: Arc<AtomicUsize>,
    cap: usize,
}

impl Answers {
    /// An empty queue for at most `cap` pending requests.
    pub fn new(cap: usize) -> Answers {
        // Unbounded in the channel's terms, bounded by `cap` through `pending`: a bounded
        // channel would allocate all `cap` slots up front, for every plugin, used or not.
        let (tx, rx) = crossbeam_channel::unbounded();
        Answers {
            tx,
            rx,
            pending: Arc::new(AtomicUsize::new(0)),
            cap,
        }
    }

    /// The worker's end of the queue.
    pub fn receiver(&self) -> &Receiver<Answer> {
        &self.rx
    }

    /// Takes an answer off the queue, if one is waiting.
    pub fn try_take(&self) -> Option<Answer> {
        let answer = self.rx.try_recv().ok()?;
        self.taken();
        Some(answer)
    }

    /// Counts an answer the worker received (through [`Answers::receiver`]).
    pub fn taken(&self) {
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }

    /// Reserves room for one more pending request, or says why there is none.
    fn reserve(&self, plugin: &str) -> Result<(), HostError> {
        let reserved = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.cap).then_some(n + 1)
            });
        reserved.map(|_| ()).map_err(|_| HostError::TooManyPending {
            plugin: plugin.to_owned(),
            cap: self.cap,
        })
    }
}

/// Sends a request for `slot` on the async runtime and returns at once; its outcome goes to
/// the slot's answer queue. The caller has checked the permission.
pub fn send(
    host: &Host,
    slot: &Arc<Slot>,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    timeout: Duration,
    token: String,
) -> Result<(), HostError> {
    slot.answers.reserve(&slot.name)?;
    let client = host.client.clone();
    let tx = slot.answers.tx.clone();
    let plugin = slot.name.clone();
    host.rt.spawn(async move {
        let request = async_nats::Request::new()
            .payload(payload)
            .headers(headers)
            .timeout(Some(timeout));
        let result = client
            .send_request(subject.clone(), request)
            .await
            .map_err(|e| FfiError::from(HostError::request(&subject, &e)));
        // Fails only once the plugin was stopped, and then nobody waits for the answer.
        if tx
            .try_send(Answer {
                token,
                subject,
                result,
            })
            .is_err()
        {
            tracing::debug!(plugin = %plugin, "an answer came for a stopped plugin");
        }
    });
    Ok(())
}
