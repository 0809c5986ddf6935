//! A plugin's serving instance as its worker drives it: in the runtime's process (the
//! library's own object) or in a host process of its own (`isolation: process`), where every
//! call becomes a frame and the plugin's calls back are served meanwhile through its [`Bus`].
//!
//! The death of a host, whatever its cause, comes back as a [`FfiErrorKind::Panic`] error
//! naming the signal or the limit, so the worker treats it as it treats a panic: never call
//! that instance again, restart from the last saved state with backoff.

use crate::bus::Bus;
use crate::remote::{self, Gone, RemoteHost};
use abi_stable::std_types::RVec;
use rosey_plugin_api::ffi::{FfiAnswer, FfiError, FfiErrorKind, FfiMessage, PluginBox};

/// Asked while waiting on a host whether to give up on it (the worker was replaced).
pub type Abandon<'a> = &'a dyn Fn() -> bool;

/// A serving instance.
pub enum Instance {
    /// Loaded into this process.
    Local(PluginBox),
    /// In a host process.
    Remote(Box<Remote>),
}

/// A plugin in a host process, and the handle that serves its calls.
pub struct Remote {
    /// The process.
    pub host: RemoteHost,
    /// Checks and performs the plugin's calls, as it would in process.
    pub bus: Bus,
}

/// The outcomes of [`Instance::on_messages`].
pub struct Batch {
    /// One per message handled, in order; a host's death is the last.
    pub results: Vec<Result<(), FfiError>>,
    /// The message its host died handling.
    pub crashed_on: Option<FfiMessage>,
    /// The messages after the last outcome, never given to the instance.
    pub undelivered: Vec<FfiMessage>,
}

fn crashed(gone: Gone) -> FfiError {
    FfiError::new(FfiErrorKind::Panic, gone.to_string())
}

impl Instance {
    /// `on_message`, and whether the host process died handling it (the message may be
    /// worth one more try in a new host; a panic the SDK caught is an ordinary outcome).
    pub fn on_message(&mut self, m: FfiMessage, abandon: Abandon) -> (Result<(), FfiError>, bool) {
        match self {
            Instance::Local(i) => (i.on_message(m).into_result(), false),
            Instance::Remote(r) => match r.host.deliver(remote::message(m), &r.bus, abandon) {
                Ok(result) => (result, false),
                Err(gone) => (Err(crashed(gone)), true),
            },
        }
    }

    /// Whether messages may go to it several at a time ([`Instance::on_messages`]).
    pub fn batches(&self) -> bool {
        matches!(self, Instance::Remote(_))
    }

    /// `on_message` for each of `messages` in order. Stops at a host's death, whose error
    /// (a [`FfiErrorKind::Panic`]) is the last outcome; the messages after it are returned
    /// undelivered, to go to the next instance, and so is the one the host died on.
    pub fn on_messages(
        &mut self,
        messages: Vec<FfiMessage>,
        abandon: Abandon,
        each: &mut dyn FnMut(),
    ) -> Batch {
        match self {
            Instance::Local(i) => {
                let mut results = Vec::with_capacity(messages.len());
                for m in messages {
                    results.push(i.on_message(m).into_result());
                    each();
                }
                Batch {
                    results,
                    crashed_on: None,
                    undelivered: Vec::new(),
                }
            }
            Instance::Remote(r) => {
                let n = messages.len();
                let (mut results, gone) =
                    r.host
                        .deliver_batch(messages.clone(), &r.bus, abandon, each);
                // After a panic the host refuses the rest of the batch (the instance may be
                // inconsistent); they go to the next instance, as after a crash.
                if let Some(k) = results
                    .iter()
                    .position(|r| r.as_ref().is_err_and(|e| e.kind == FfiErrorKind::Panic))
                {
                    results.truncate(k + 1);
                    return Batch {
                        results,
                        crashed_on: None,
                        undelivered: messages.into_iter().skip(k + 1).collect(),
                    };
                }
                let (crashed_on, undelivered) = match gone {
                    Some(g) => {
                        let handled = results.len();
                        results.push(Err(crashed(g)));
                        let mut rest = messages.into_iter().skip(handled);
                        (rest.next(), rest.collect())
                    }
                    None => (None, Vec::new()),
                };
                debug_assert!(results.len() + undelivered.len() == n);
                Batch {
                    results,
                    crashed_on,
                    undelivered,
                }
            }
        }
    }

    /// `on_answer`.
    pub fn on_answer(&mut self, a: FfiAnswer, abandon: Abandon) -> Result<(), FfiError> {
        match self {
            Instance::Local(i) => i.on_answer(a).into_result(),
            Instance::Remote(r) => r
                .host
                .deliver(remote::answer(a), &r.bus, abandon)
                .unwrap_or_else(|g| Err(crashed(g))),
        }
    }

    /// `on_tick`.
    pub fn on_tick(&mut self, abandon: Abandon) -> Result<(), FfiError> {
        match self {
            Instance::Local(i) => i.on_tick().into_result(),
            Instance::Remote(r) => r
                .host
                .deliver(crate::frames::ToHost::Tick, &r.bus, abandon)
                .unwrap_or_else(|g| Err(crashed(g))),
        }
    }

    /// `save_state`.
    pub fn save_state(&mut self, abandon: Abandon) -> Result<Vec<u8>, FfiError> {
        match self {
            Instance::Local(i) => i.save_state().into_result().map(RVec::into_vec),
            Instance::Remote(r) => r
                .host
                .save(&r.bus, abandon)
                .unwrap_or_else(|g| Err(crashed(g))),
        }
    }

    /// `shutdown`; a host then exits.
    pub fn shutdown(&mut self, abandon: Abandon) -> Result<(), FfiError> {
        match self {
            Instance::Local(i) => i.shutdown().into_result(),
            Instance::Remote(r) => r
                .host
                .deliver(crate::frames::ToHost::Shutdown, &r.bus, abandon)
                .unwrap_or_else(|g| Err(crashed(g))),
        }
    }

    /// Lets go of the instance without calling into it again: a local one is leaked (its
    /// destructor is plugin code that may be broken), a host is killed.
    pub fn forget(self) {
        match self {
            Instance::Local(i) => std::mem::forget(i),
            Instance::Remote(mut r) => {
                r.host.kill("was let go");
            }
        }
    }

    /// What the CPU guard watches, for a plugin in a host process.
    pub fn host_watch(&self) -> Option<remote::HostWatch> {
        match self {
            Instance::Local(_) => None,
            Instance::Remote(r) => Some(r.host.watch()),
        }
    }

    /// What the thread serving a host's side lane hands the worker (the host's end), for a
    /// plugin in a host process: the worker waits on it between deliveries, so a host's death
    /// is seen at once.
    pub fn host_frames(&self) -> Option<crossbeam_channel::Receiver<remote::Incoming>> {
        match self {
            Instance::Local(_) => None,
            Instance::Remote(r) => Some(r.host.incoming()),
        }
    }

    /// Serves what the host sent between deliveries; an error (a [`FfiErrorKind::Panic`]) is
    /// the host's death.
    pub fn between_deliveries(&mut self, incoming: remote::Incoming) -> Result<(), FfiError> {
        match self {
            Instance::Local(_) => Ok(()),
            Instance::Remote(r) => r.host.between_deliveries(incoming, &r.bus).map_err(crashed),
        }
    }

    /// The host's process id, for a plugin in a host process.
    pub fn host_pid(&self) -> Option<u32> {
        match self {
            Instance::Local(_) => None,
            Instance::Remote(r) => Some(r.host.pid()),
        }
    }
}
