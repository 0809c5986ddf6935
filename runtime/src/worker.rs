//! A plugin's worker thread: it owns the serving instance, takes messages from the plugin's
//! bounded queue one at a time, runs ticks, and performs every lifecycle change (load, swap,
//! restart, stop) between two messages, so a reload never loses or reorders a message.
//!
//! Plugin code is synchronous and runs only here (the plugin's copy of tokio sees no runtime;
//! the host's NATS calls block this thread, not the async runtime).

use crate::bus::{self, Bus, Gate};
use crate::deferred::Answer;
use crate::error::{FailureKind, PluginError};
use crate::frames;
use crate::host::{Control, Host, Slot};
use crate::instance::{Instance, Remote};
use crate::loader::{self, LoadError, LoadedModule};
use crate::remote::RemoteHost;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RString, RVec};
use crossbeam_channel::{never, select, Receiver};
use rosey_config::{Isolation, PluginLimits};
use rosey_plugin_api::admin::{HostProcess, PluginState};
use rosey_plugin_api::ffi::{
    FfiChannel, FfiErrorKind, FfiMessage, FfiMetadata, HostHandle_TO, PluginInit,
};
use rosey_plugin_api::subjects::runtime as events;
use rosey_plugin_api::Timestamp;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most messages sent to a host process at once.
const BATCH: usize = 64;

/// First pause before restarting a failed plugin; doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Starts a worker thread for `slot`; `restore` builds a fresh instance from the serving
/// library and the last saved state first (a replacement for a stuck worker).
pub fn spawn(host: Arc<Host>, slot: Arc<Slot>, restore: bool) {
    let epoch = slot.epoch.load(Ordering::SeqCst);
    let thread_slot = slot.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("plugin-{}", slot.name))
        .spawn(move || {
            thread_slot.set_worker_thread();
            let mut worker = Worker {
                host,
                slot: thread_slot,
                epoch,
                live: None,
                failures: 0,
                restart_at: None,
                disabled: false,
                next_tick: Instant::now(),
                next_checkpoint: Instant::now(),
                redeliver: VecDeque::new(),
                crash_note: None,
            };
            // The state a generation starts from is its first checkpoint.
            worker.next_checkpoint = Instant::now() + worker.host.settings.checkpoint_interval;
            worker.next_tick = Instant::now() + worker.host.settings.tick_interval;
            worker.run(restore);
        });
    if let Err(e) = spawned {
        let msg = format!("cannot start a worker thread: {e}");
        tracing::error!(plugin = %slot.name, "{msg}");
        slot.record_error(&msg);
        slot.set_state(PluginState::Failed);
    }
}

/// The serving generation.
struct Live {
    instance: Instance,
    retired: Arc<Gate>,
    metadata: FfiMetadata,
}

struct Worker {
    host: Arc<Host>,
    slot: Arc<Slot>,
    epoch: u64,
    live: Option<Live>,
    failures: u32,
    restart_at: Option<Instant>,
    disabled: bool,
    next_tick: Instant,
    /// When the next tick saves the state (`plugins.checkpoint_interval`).
    next_checkpoint: Instant,
    /// Messages sent to a host that died before handling them, for the next instance, each
    /// with whether a host already died handling it (see [`Worker::deliver_ffi`]).
    redeliver: VecDeque<(FfiMessage, bool)>,
    /// What became of the message a host died on, for the failure report.
    crash_note: Option<String>,
}

/// Something waiting for the plugin when it stops.
enum Queued {
    Message(async_nats::Message),
    Redeliver(FfiMessage, bool),
    Answer(Answer),
}

/// Whether the worker goes on after a control request.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

impl Worker {
    fn name(&self) -> &str {
        &self.slot.name
    }

    /// True once the watchdog or a stop has handed the plugin to another worker.
    fn stale(&self) -> bool {
        self.slot.epoch.load(Ordering::SeqCst) != self.epoch
    }

    fn run(&mut self, restore: bool) {
        if restore {
            self.restart_from_snapshot("replacing a stuck instance");
        }
        let idle: Receiver<async_nats::Message> = never();
        let no_answers: Receiver<Answer> = never();
        let no_host = never();
        loop {
            if self.stale() {
                self.abandon();
                return;
            }
            // Control requests go first, so a swap waits for at most one message.
            while let Ok(control) = self.slot.control_rx.try_recv() {
                if self.control(control) == Flow::Exit || self.stale() {
                    self.abandon();
                    return;
                }
            }
            let now = Instant::now();
            if self.restart_at.is_some_and(|at| now >= at) {
                self.restart_at = None;
                self.restart_from_snapshot("restarting after a failure");
                continue;
            }
            if self.live.is_some() && self.restart_at.is_none() {
                // What a replaced worker took and never delivered, then what a dying host had
                // been sent but not handled, go first.
                let orphans = self.slot.take_orphans();
                if !orphans.is_empty() {
                    let mut first: VecDeque<_> = orphans.into_iter().map(|m| (m, false)).collect();
                    first.append(&mut self.redeliver);
                    self.redeliver = first;
                }
                if let Some((msg, crashed_once)) = self.redeliver.pop_front() {
                    self.deliver_ffi(msg, crashed_once);
                    continue;
                }
            }
            let wake = self
                .restart_at
                .map_or(self.next_tick, |at| at.min(self.next_tick));
            let timeout = wake.saturating_duration_since(now);
            let serving = self.live.is_some() && self.restart_at.is_none();
            let (queue, answers) = if serving {
                (&self.slot.queue_rx, self.slot.answers.receiver())
            } else {
                (&idle, &no_answers)
            };
            let host_frames = self
                .live
                .as_ref()
                .and_then(|live| live.instance.host_frames());
            let host_frames = host_frames.as_ref().unwrap_or(&no_host);
            select! {
                recv(self.slot.control_rx) -> control => {
                    if let Ok(control) = control {
                        if self.control(control) == Flow::Exit {
                            self.abandon();
                            return;
                        }
                    }
                }
                recv(queue) -> msg => {
                    if let Ok(msg) = msg {
                        self.deliver_queued(msg);
                    }
                }
                recv(answers) -> answer => {
                    if let Ok(answer) = answer {
                        self.slot.answers.taken();
                        self.answer(answer);
                    }
                }
                recv(host_frames) -> incoming => {
                    // A reader gone without a word: the host is gone too.
                    self.between_deliveries(incoming.unwrap_or(crate::remote::Incoming::Ended));
                }
                default(timeout) => {}
            }
            if Instant::now() >= self.next_tick {
                self.tick();
                self.next_tick = Instant::now() + self.host.settings.tick_interval;
            }
        }
    }

    /// Leaves without calling into the instance again (it may be stuck or broken).
    fn abandon(&mut self) {
        // Messages taken from the queue and not delivered go to the successor.
        self.slot
            .adopt_orphans(self.redeliver.drain(..).map(|(m, _)| m));
        if let Some(live) = self.live.take() {
            self.slot.set_host_watch(None);
            live.retired.retire();
            // Dropping runs plugin code (the instance's destructor) which might panic across
            // the boundary; a stuck or stopped worker's instance is leaked instead (a host
            // process is killed).
            live.instance.forget();
        }
    }

    /// Runs one call into the plugin with the watchdog informed.
    fn busy<T>(&self, what: &'static str, f: impl FnOnce() -> T) -> T {
        if self.stale() {
            // A replaced worker must not make the watchdog blame its successor.
            return f();
        }
        self.slot.start_call(what);
        let out = f();
        if !self.stale() {
            self.slot.end_call();
        }
        out
    }

    /// Delivers `first` and, to a plugin in a host process, what else is queued (up to
    /// [`BATCH`]), sent at once so the host never waits for the runtime between messages.
    /// Messages a dying host did not handle go to its successor first.
    fn deliver_queued(&mut self, first: async_nats::Message) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if !live.instance.batches() {
            return self.deliver(first);
        }
        let mut batch = vec![bus::from_nats(first)];
        while batch.len() < BATCH {
            match self.slot.queue_rx.try_recv() {
                Ok(m) => batch.push(bus::from_nats(m)),
                Err(_) => break,
            }
        }
        let (slot, epoch) = (&self.slot, self.epoch);
        let stale = move || slot.epoch.load(Ordering::SeqCst) != epoch;
        slot.start_call("on_message");
        let mut each = || {
            if slot.epoch.load(Ordering::SeqCst) == epoch {
                slot.start_call("on_message");
            }
        };
        let batch = live.instance.on_messages(batch, &stale, &mut each);
        if self.stale() {
            // Replaced while stuck in one of them (that one is dropped, as in process): the
            // rest go to the successor.
            self.slot.adopt_orphans(batch.undelivered);
            return;
        }
        if let Some(crashed_on) = batch.crashed_on {
            self.crash_note = Some(redelivering(&crashed_on));
            self.redeliver.push_back((crashed_on, true));
        }
        self.redeliver
            .extend(batch.undelivered.into_iter().map(|m| (m, false)));
        for result in batch.results {
            if self.stale() {
                return;
            }
            // Each outcome counts as one call returned (`handled` ends it).
            self.slot.start_call("on_message");
            self.handled("on_message", result);
        }
    }

    fn deliver(&mut self, msg: async_nats::Message) {
        self.deliver_ffi(bus::from_nats(msg), false);
    }

    /// Delivers one message. A message its host process dies handling goes once more, first
    /// in line, to the next host (the crash may have had another cause: the CPU guard, a
    /// neighbour's memory); when that host dies on it too it is dropped as poison and
    /// reported, so the messages behind it are handled.
    fn deliver_ffi(&mut self, ffi: FfiMessage, crashed_once: bool) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let retry = (live.instance.batches() && !crashed_once).then(|| ffi.clone());
        let subject = crashed_once.then(|| ffi.subject.to_string());
        let (slot, epoch) = (&self.slot, self.epoch);
        let stale = move || slot.epoch.load(Ordering::SeqCst) != epoch;
        slot.start_call("on_message");
        let (result, host_died) = live.instance.on_message(ffi, &stale);
        if host_died && !self.stale() {
            if let Some(m) = retry {
                self.crash_note = Some(redelivering(&m));
                self.redeliver.push_front((m, true));
            } else if let Some(subject) = subject {
                self.crash_note = Some(format!(
                    "the message on {subject} killed two hosts in a row: dropped as poison"
                ));
            }
        }
        self.handled("on_message", result);
    }

    /// Serves what a host process sent between deliveries (a call of one of the plugin's own
    /// threads); the host's death there is a failure like any other.
    fn between_deliveries(&mut self, incoming: crate::remote::Incoming) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if let Err(e) = live.instance.between_deliveries(incoming) {
            if !self.stale() {
                self.fail(e.message.to_string());
            }
        }
    }

    /// Delivers the outcome of a deferred request.
    fn answer(&mut self, answer: Answer) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let (slot, epoch) = (&self.slot, self.epoch);
        let stale = move || slot.epoch.load(Ordering::SeqCst) != epoch;
        slot.start_call("on_answer");
        let result = live.instance.on_answer(answer.into_ffi(), &stale);
        self.handled("on_answer", result);
    }

    /// Counts a delivered message and deals with what its handler returned.
    fn handled(&mut self, what: &str, result: Result<(), rosey_plugin_api::ffi::FfiError>) {
        if self.stale() {
            return;
        }
        self.slot.end_call();
        match result {
            Ok(()) => {
                self.failures = 0;
                self.slot.update_status(|st| st.messages += 1);
            }
            Err(e) if e.kind == FfiErrorKind::Panic => {
                self.slot.update_status(|st| st.messages += 1);
                self.fail(e.message.to_string());
            }
            Err(e) => {
                self.slot.update_status(|st| st.messages += 1);
                tracing::warn!(plugin = %self.slot.name, "{what} returned an error: {e}");
                self.slot.record_error(&e.to_string());
            }
        }
    }

    fn tick(&mut self) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let instance = &mut live.instance;
        let slot = &self.slot;
        let epoch = self.epoch;
        let stale = move || slot.epoch.load(Ordering::SeqCst) != epoch;
        slot.start_call("on_tick");
        let ticked = instance.on_tick(&stale);
        if stale() {
            return;
        }
        // An instance that just panicked may be inconsistent: never call into it again.
        if let Err(e) = &ticked {
            if e.kind == FfiErrorKind::Panic {
                self.slot.end_call();
                return self.fail(e.message.to_string());
            }
        }
        if Instant::now() < self.next_checkpoint {
            self.slot.end_call();
            if let Err(e) = ticked {
                self.slot.record_error(&format!("on_tick: {e}"));
            }
            return;
        }
        let saved = instance.save_state(&stale);
        if stale() {
            return;
        }
        self.next_checkpoint = Instant::now() + self.host.settings.checkpoint_interval;
        self.slot.end_call();
        if let Err(e) = ticked {
            self.slot.record_error(&format!("on_tick: {e}"));
        }
        match saved {
            Ok(bytes) => self.slot.keep_state(bytes),
            Err(e) if e.kind == FfiErrorKind::Panic => self.fail(e.message.to_string()),
            Err(e) => self.slot.record_error(&format!("save_state: {e}")),
        }
    }

    /// A panic: drop the instance, report, and restart with backoff (or disable after too
    /// many failures in a row).
    fn fail(&mut self, reason: String) {
        if self.stale() {
            if let Some(live) = self.live.take() {
                live.instance.forget();
            }
            return;
        }
        if let Some(live) = self.live.take() {
            live.retired.retire();
            // The instance panicked and may be inconsistent; never call into it again.
            live.instance.forget();
        }
        let reason = match self.slot.take_cpu_verdict() {
            Some(verdict) => format!("{verdict}; {reason}"),
            None => reason,
        };
        self.slot.set_host_watch(None);
        let reason = match self.crash_note.take() {
            Some(note) => format!("{reason}; {note}"),
            None => reason,
        };
        self.failures += 1;
        self.slot.count_host_restart();
        let max = self.host.settings.max_failures;
        let error = if self.failures >= max {
            self.disabled = true;
            self.restart_at = None;
            self.slot.accepting.store(false, Ordering::SeqCst);
            let mut dropped = 0_u64;
            while self.slot.queue_rx.try_recv().is_ok() {
                dropped += 1;
            }
            if dropped > 0 {
                self.slot.record_error(&format!(
                    "{dropped} queued message(s) dropped: plugin disabled"
                ));
            }
            self.slot.set_state(PluginState::Disabled);
            format!(
                "{reason}; disabled after {} failures in a row until its next build",
                self.failures
            )
        } else {
            let backoff = FIRST_BACKOFF
                .saturating_mul(1u32 << (self.failures - 1).min(16))
                .min(self.host.settings.restart_backoff_max);
            self.restart_at = Some(Instant::now() + backoff);
            self.slot.set_state(PluginState::Failed);
            format!("{reason}; restarting from its last saved state in {backoff:?}")
        };
        tracing::error!(plugin = %self.slot.name, "{error}");
        self.slot.record_error(&error);
        self.host
            .lifecycle(events::PLUGIN_FAILED, &self.slot, Some(error));
    }

    fn restart_from_snapshot(&mut self, why: &str) {
        let Some(module) = self.slot.module() else {
            self.slot.set_state(PluginState::Failed);
            return;
        };
        let saved = self.slot.last_state();
        let generation = self.slot.generation();
        tracing::info!(plugin = %self.slot.name, "{why}");
        match self.construct(&module, saved, generation) {
            Ok(live) => match self.install(live, module, false) {
                Ok(()) => self.host.lifecycle(events::PLUGIN_LOADED, &self.slot, None),
                Err(e) => self.fail(e.message),
            },
            Err(e) => self.fail(e.message),
        }
    }

    fn control(&mut self, control: Control) -> Flow {
        match control {
            Control::Load { path, force, ack } => {
                let outcome = self.load(path, force);
                if let Some(ack) = ack {
                    let _ = ack.send(outcome);
                }
                Flow::Continue
            }
            Control::Restart { ack } => {
                let current = self.slot.module();
                let outcome = match current {
                    Some(module) => self.swap_to(module, false),
                    None => self.load(None, true),
                };
                if let Some(ack) = ack {
                    let _ = ack.send(outcome);
                }
                Flow::Continue
            }
            Control::Stop { ack } => {
                self.stop();
                if let Some(ack) = ack {
                    let _ = ack.send(Ok(()));
                }
                Flow::Exit
            }
        }
    }

    /// A failure of `kind` about this plugin.
    fn error(&self, kind: FailureKind, message: impl Into<String>) -> PluginError {
        PluginError::new(self.name(), kind, message)
    }

    fn load(&mut self, path: Option<std::path::PathBuf>, force: bool) -> Result<(), PluginError> {
        let path = match path.map_or_else(|| self.host.library_for(self.name()), Ok) {
            Ok(p) => p,
            Err(e) => {
                let error = self.error(FailureKind::Load, e.to_string());
                return Err(self.load_failed(error));
            }
        };
        let current = self.slot.module().map(|m| m.hash);
        let started = Instant::now();
        let in_process = self.host.isolation_of(self.name()).0 == Isolation::InProcess;
        match loader::load(
            &path,
            &self.host.copies,
            self.name(),
            current,
            force,
            in_process,
        ) {
            Err(LoadError::Unchanged { .. }) => {
                tracing::debug!(plugin = %self.slot.name, "library unchanged; not reloading");
                Ok(())
            }
            Err(e) => {
                let error = self.error(FailureKind::Load, e.to_string());
                Err(self.load_failed(error))
            }
            Ok(module) => {
                let copies = self.host.copies.count();
                if copies > u64::from(self.host.settings.reload_copies_warn) {
                    tracing::warn!(
                        copies,
                        "{copies} plugin libraries are loaded and cannot be unloaded; restart the runtime to free their memory"
                    );
                }
                let outcome = self.swap_to(module, true);
                if outcome.is_ok() {
                    tracing::info!(plugin = %self.slot.name, path = %path.display(), elapsed = ?started.elapsed(), "generation serving");
                }
                outcome
            }
        }
    }

    fn load_failed(&mut self, error: PluginError) -> PluginError {
        if self.stale() {
            // Another worker owns the plugin now; its state is not ours to report.
            return error;
        }
        let error = if self.live.is_some() {
            error.with_note("; the previous generation keeps serving")
        } else {
            error
        };
        tracing::error!(plugin = %self.slot.name, kind = %error.kind, "{error}");
        self.slot.record_error(&error.message);
        if self.live.is_none() && !self.disabled {
            self.slot.set_state(PluginState::Failed);
        }
        self.host.lifecycle(
            events::PLUGIN_FAILED,
            &self.slot,
            Some(error.message.clone()),
        );
        error
    }

    /// Builds a new instance from `module` with the old generation's state, then swaps it in.
    /// On any failure the old generation keeps serving.
    fn swap_to(&mut self, module: LoadedModule, new_library: bool) -> Result<(), PluginError> {
        let saved = match self.live.as_mut() {
            Some(live) => {
                let (slot, epoch) = (&self.slot, self.epoch);
                let stale = move || slot.epoch.load(Ordering::SeqCst) != epoch;
                slot.start_call("save_state");
                let saved = live.instance.save_state(&stale);
                self.slot.end_call();
                match saved {
                    Ok(bytes) => Some(bytes),
                    Err(e) => {
                        tracing::warn!(plugin = %self.slot.name, "save_state failed, using the last snapshot: {e}");
                        self.slot.last_state()
                    }
                }
            }
            None => self.slot.last_state(),
        };
        let generation = self.slot.generation() + u64::from(new_library);
        let live = match self.construct(&module, saved.clone(), generation) {
            Ok(live) => live,
            Err(e) => return Err(self.load_failed(e)),
        };
        if let Some(bytes) = saved {
            self.slot.keep_state(bytes);
        }
        let had_old = self.live.is_some();
        if new_library {
            // A new build gets a fresh count of failures.
            self.failures = 0;
        }
        if let Err(e) = self.install(live, module, true) {
            return Err(self.load_failed(e));
        }
        self.slot.update_status(|st| {
            st.generation = generation;
            if had_old || generation > 1 {
                st.reloads += 1;
            }
        });
        let event = if had_old {
            events::PLUGIN_RELOADED
        } else {
            events::PLUGIN_LOADED
        };
        self.host.lifecycle(event, &self.slot, None);
        Ok(())
    }

    fn construct(
        &self,
        module: &LoadedModule,
        saved: Option<Vec<u8>>,
        generation: u64,
    ) -> Result<Live, PluginError> {
        let retired = Arc::new(Gate::default());
        let bus = Bus::new(self.host.clone(), self.slot.clone(), retired.clone());
        let (isolation, limits) = self.host.isolation_of(self.name());
        if isolation == Isolation::Process {
            return self.construct_in_host(module, saved, generation, bus, retired, limits);
        }
        // Served from a host process until the configuration changed its isolation.
        let module = match module.module {
            Some(m) => m,
            None => loader::open_copy(&module.copy, &module.copy, self.name()).map_err(|e| {
                retired.retire();
                self.error(FailureKind::Load, e.to_string())
            })?,
        };
        let (config_json, channels) = self.slot.with_settings(|settings| {
            let channels: RVec<FfiChannel> = self
                .host
                .settings
                .channels
                .iter()
                .filter(|c| settings.serves_channel(&c.channel))
                .map(|c| FfiChannel {
                    platform: RString::from(c.platform.as_str()),
                    channel: RString::from(c.channel.as_str()),
                    bot_name: RString::from(c.bot_name.as_str()),
                })
                .collect();
            (settings.plugin_json().to_string(), channels)
        });
        let init = PluginInit {
            host: HostHandle_TO::from_ptr(RBox::new(bus), TD_Opaque),
            name: RString::from(self.name()),
            config_json: RString::from(config_json),
            command_prefix: RString::from(self.host.settings.command_prefix.as_str()),
            channels,
            saved_state: saved.map(RVec::from).into(),
            generation,
        };
        let constructor = module.new();
        let built = self.busy("init", || constructor(init)).into_result();
        let instance = match built {
            Ok(instance) => instance,
            Err(e) => {
                retired.retire();
                return Err(self.error(
                    FailureKind::Init,
                    format!("the plugin's constructor failed: {e}"),
                ));
            }
        };
        if self.stale() {
            // The watchdog replaced this worker while the constructor ran; the successor
            // builds its own instance.
            retired.retire();
            std::mem::forget(instance);
            return Err(self.error(FailureKind::Stopped, "replaced while its constructor ran"));
        }
        let metadata = self.busy("metadata", || instance.metadata());
        self.checked(Live {
            instance: Instance::Local(instance),
            retired,
            metadata,
        })
    }

    /// Refuses an instance whose plugin name is not the configured one.
    fn checked(&self, mut live: Live) -> Result<Live, PluginError> {
        if live.metadata.name.as_str() == self.name() {
            return Ok(live);
        }
        live.retired.close();
        let (slot, epoch) = (&self.slot, self.epoch);
        let stale = move || slot.epoch.load(Ordering::SeqCst) != epoch;
        let _ = self.busy("shutdown", || live.instance.shutdown(&stale));
        live.retired.retire();
        Err(self.error(
            FailureKind::Init,
            format!(
                "the library is plugin {:?} but is configured as {:?}: a plugin's crate name must equal its configured name",
                live.metadata.name.as_str(),
                self.name()
            ),
        ))
    }

    /// Builds the instance in a host process of its own (`isolation: process`).
    fn construct_in_host(
        &self,
        module: &LoadedModule,
        saved: Option<Vec<u8>>,
        generation: u64,
        bus: Bus,
        retired: Arc<Gate>,
        limits: PluginLimits,
    ) -> Result<Live, PluginError> {
        let channels = self.slot.with_settings(|settings| {
            self.host
                .settings
                .channels
                .iter()
                .filter(|c| settings.serves_channel(&c.channel))
                .map(|c| (c.platform.clone(), c.channel.clone(), c.bot_name.clone()))
                .collect()
        });
        let init = frames::Init {
            library: module.copy.to_string_lossy().into_owned(),
            name: self.name().to_owned(),
            config_json: self.slot.with_settings(|s| s.plugin_json().to_string()),
            command_prefix: self.host.settings.command_prefix.clone(),
            channels,
            saved_state: saved,
            generation,
            memory_bytes: limits.memory_mib().saturating_mul(1 << 20),
            cpu_seconds: limits.cpu_seconds(),
            open_files: limits.open_files(),
            publish: self.slot.publish_patterns(),
        };
        let one_way = Bus::new(self.host.clone(), self.slot.clone(), retired.clone());
        let mut host = RemoteHost::spawn(self.name(), Box::new(one_way)).map_err(|e| {
            retired.retire();
            self.error(
                FailureKind::Load,
                format!(
                    "cannot start its host process {}: {e}",
                    crate::remote::host_binary().display()
                ),
            )
        })?;
        let (slot, epoch) = (&self.slot, self.epoch);
        let stale = move || slot.epoch.load(Ordering::SeqCst) != epoch;
        let built = self.busy("init", || host.init(init, &bus, &stale));
        let metadata = match built {
            Ok(Ok(metadata)) => metadata,
            // The host could not load the library (abi_stable's checks run there) or apply
            // its sandbox.
            Ok(Err(e)) if e.kind == FfiErrorKind::Invalid => {
                retired.retire();
                return Err(self.error(FailureKind::Load, e.message.to_string()));
            }
            Ok(Err(e)) => {
                retired.retire();
                return Err(self.error(
                    FailureKind::Init,
                    format!("the plugin's constructor failed in its host process: {e}"),
                ));
            }
            Err(gone) => {
                retired.retire();
                return Err(self.error(FailureKind::Init, gone.to_string()));
            }
        };
        if self.stale() {
            retired.retire();
            return Err(self.error(FailureKind::Stopped, "replaced while its constructor ran"));
        }
        tracing::info!(plugin = %self.slot.name, pid = host.pid(), "plugin host process serving");
        self.checked(Live {
            instance: Instance::Remote(Box::new(Remote { host, bus })),
            retired,
            metadata,
        })
    }

    /// Claims the new instance's commands and makes it the serving one; the old one (if any)
    /// loses its host access and gets `shutdown`.
    fn install(
        &mut self,
        mut live: Live,
        module: LoadedModule,
        shutdown_old: bool,
    ) -> Result<(), PluginError> {
        let overrides = self.slot.with_settings(|s| s.commands.clone());
        let claimed = self
            .host
            .claim_commands(self.name(), &live.metadata.commands, &overrides);
        let commands = match claimed {
            Ok(c) => c,
            Err(e) => {
                live.retired.close();
                let (slot, epoch) = (&self.slot, self.epoch);
                let stale = move || slot.epoch.load(Ordering::SeqCst) != epoch;
                let _ = self.busy("shutdown", || live.instance.shutdown(&stale));
                live.retired.retire();
                return Err(self.error(FailureKind::Init, e.to_string()));
            }
        };
        if let Some(mut old) = self.live.take() {
            if shutdown_old {
                old.retired.close();
                let (slot, epoch) = (&self.slot, self.epoch);
                let stale = move || slot.epoch.load(Ordering::SeqCst) != epoch;
                let done = self.busy("shutdown", || old.instance.shutdown(&stale));
                if let Err(e) = done {
                    tracing::warn!(plugin = %self.slot.name, "the old generation's shutdown failed: {e}");
                }
            }
            old.retired.retire();
            if self.stale() {
                old.instance.forget();
            }
        }
        if let Err(e) = self.host.sync_command_subscriptions(&self.slot, &commands) {
            tracing::error!(plugin = %self.slot.name, "cannot subscribe to its commands: {e}");
            self.slot.record_error(&e.to_string());
        }
        self.slot.set_module(module);
        self.slot.set_live_gate(live.retired.clone());
        self.slot.set_host_watch(live.instance.host_watch());
        let pid = live.instance.host_pid();
        self.slot.update_status(|st| {
            st.version = live.metadata.version.to_string();
            st.loaded_at = Timestamp::now().secs();
            st.state = PluginState::Running;
            st.host = pid.map(|pid| HostProcess {
                pid,
                restarts: st.host.map_or(0, |h| h.restarts),
                rss_kib: None,
            });
        });
        self.live = Some(live);
        self.disabled = false;
        self.restart_at = None;
        self.slot.accepting.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn stop(&mut self) {
        self.slot.accepting.store(false, Ordering::SeqCst);
        // What was already queued is delivered before the plugin saves and shuts down (no new
        // message is accepted), within one watchdog period; anything left is counted.
        let budget = Instant::now() + self.host.settings.watchdog_timeout;
        // Answers already in go the same way; those still on their way are lost with the
        // plugin's subscriptions.
        let slot = self.slot.clone();
        let redeliver = std::mem::take(&mut self.redeliver);
        let queued = redeliver
            .into_iter()
            .map(|(m, crashed_once)| Queued::Redeliver(m, crashed_once))
            .chain(std::iter::from_fn(|| {
                slot.queue_rx.try_recv().ok().map(Queued::Message)
            }))
            .chain(std::iter::from_fn(|| {
                slot.answers.try_take().map(Queued::Answer)
            }));
        let mut dropped = 0_u64;
        for item in queued {
            if self.live.is_some() && self.restart_at.is_none() && Instant::now() < budget {
                match item {
                    Queued::Message(msg) => self.deliver(msg),
                    Queued::Redeliver(msg, crashed_once) => self.deliver_ffi(msg, crashed_once),
                    Queued::Answer(answer) => self.answer(answer),
                }
                if self.stale() {
                    return;
                }
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            let msg = format!("{dropped} queued message(s) dropped at unload");
            tracing::warn!(plugin = %self.slot.name, "{msg}");
            self.slot.record_error(&msg);
        }
        if let Some(mut live) = self.live.take() {
            let (slot, epoch) = (&self.slot, self.epoch);
            let stale = move || slot.epoch.load(Ordering::SeqCst) != epoch;
            let saved = self.busy("save_state", || live.instance.save_state(&stale));
            if let Ok(bytes) = saved {
                self.slot.keep_state(bytes);
            }
            live.retired.close();
            let done = self.busy("shutdown", || live.instance.shutdown(&stale));
            live.retired.retire();
            if let Err(e) = done {
                tracing::warn!(plugin = %self.slot.name, "shutdown failed: {e}");
            }
        }
        if self.stale() {
            // The disable gave up waiting and cleaned up itself; the plugin may be enabled
            // again by now, and its commands are not ours to release.
            return;
        }
        self.slot.set_host_watch(None);
        self.host.drop_subscriptions(&self.slot);
        self.host.release_commands(self.name());
        while self.slot.queue_rx.try_recv().is_ok() {}
        self.slot.stopped.store(true, Ordering::SeqCst);
        self.slot.update_status(|st| {
            st.state = PluginState::Disabled;
            st.host = None;
        });
        self.host
            .lifecycle(events::PLUGIN_UNLOADED, &self.slot, None);
        // Retire this worker so the loop exits even if a control arrives meanwhile.
        self.slot.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// The failure report's note on the message a host died handling.
fn redelivering(m: &FfiMessage) -> String {
    format!(
        "the message on {} it died on goes once more to the next host",
        m.subject
    )
}
