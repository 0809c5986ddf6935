//! The runtime's shared state: the NATS client, the plugins (one [`Slot`] each), the command
//! table and the host-owned subscriptions.
//!
//! Subscriptions belong to the host and are keyed by plugin name, so they survive reloads: a
//! subscription task forwards each message into the plugin's bounded queue, after the channel
//! filter and the command rules (rank, cooldown). A full queue drops the message and counts it,
//! so a slow plugin never delays the others.

use crate::commands::{ClaimError, CommandRule, CommandTable, Cooldowns};
use crate::error::{FailureKind, HostError, PluginError};
use crate::lease::Leases;
use crate::loader::{self, CopyDir, LoadedModule};
use crate::permissions::{Access, Permissions};
use async_nats::{Client, Message};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use futures::StreamExt;
use rosey_config::{
    CommandOverride, Isolation, PluginLimits, PluginSettings, PluginsConfig, ServedChannel,
};
use rosey_plugin_api::admin::{PluginInfo, PluginLifecycle, PluginState};
use rosey_plugin_api::commands::Command;
use rosey_plugin_api::ffi::FfiCommandSpec;
use rosey_plugin_api::subjects;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::watch;

/// Locks a mutex, recovering the data if a thread panicked while holding it (the state is
/// plain bookkeeping, always valid between statements).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The runtime's timing and identity, from the configuration.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// How often plugins get `on_tick` (and their state is snapshot).
    pub tick_interval: Duration,
    /// The least time between two state checkpoints after ticks (`plugins.checkpoint_interval`).
    pub checkpoint_interval: Duration,
    /// How long one call may run before the plugin is deemed stuck.
    pub watchdog_timeout: Duration,
    /// Messages queued per plugin before new ones are dropped.
    pub queue_capacity: usize,
    /// Quiet time after a library changes before it is loaded.
    pub reload_debounce: Duration,
    /// Largest pause before restarting a failed plugin.
    pub restart_backoff_max: Duration,
    /// Failures in a row after which a plugin is disabled until its next build.
    pub max_failures: u32,
    /// Loaded copies after which reloading logs a suggestion to restart.
    pub reload_copies_warn: u32,
    /// How long an admin reload or enable waits for the plugin's worker.
    pub admin_timeout: Duration,
    /// Cap on the timeout a plugin may give its own requests.
    pub max_request_timeout: Duration,
    /// Whether library changes are watched.
    pub hot_reload: bool,
    /// Every channel the deployment serves, with the bot's name in each.
    pub channels: Vec<ServedChannel>,
    /// The chat command prefix, for `!help` and for plugins.
    pub command_prefix: String,
}

/// A request to a plugin's worker thread, handled between two messages.
pub enum Control {
    /// Load a library as the next generation (`None`: find the newest); `force` loads even
    /// an unchanged file.
    Load {
        /// The library, when known.
        path: Option<PathBuf>,
        /// Load even when the content is unchanged.
        force: bool,
        /// Told the outcome.
        ack: Option<Ack>,
    },
    /// Rebuild the instance from the same library with the current settings.
    Restart {
        /// Told the outcome.
        ack: Option<Ack>,
    },
    /// Save state, call `shutdown`, drop the subscriptions and end the worker.
    Stop {
        /// Told when done.
        ack: Option<Ack>,
    },
}

/// Where a worker reports the outcome of a control request.
pub type Ack = tokio::sync::oneshot::Sender<Result<(), PluginError>>;

/// What kind of subscription an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// Made by the plugin through its host handle.
    Plugin,
    /// Made by the runtime for a command the plugin declared.
    Command,
}

/// A host-owned subscription.
pub struct SubEntry {
    /// Its id, as the plugin knows it.
    pub id: u64,
    /// The subject.
    pub subject: String,
    /// The queue group.
    pub queue: Option<String>,
    /// Who made it.
    pub kind: SubKind,
    task: tokio::task::JoinHandle<()>,
}

/// One plugin: its queue, its worker's control channel, its status and its subscriptions.
///
/// Its shared state is private and grouped by who needs it. Published snapshots (written by
/// one side, read by the others without locking the writer out): the status row and the
/// settings in force. Shared under a lock, only what must outlive or overrule a worker: what
/// the watchdog reads and acts on ([`Slot::retire_if_stuck`]), what a worker taking over needs
/// (the library and the last saved state: a stuck worker cannot hand them over) and the
/// host-owned subscriptions. Everything else a generation has (its instance, failure count,
/// restart time) belongs to its worker alone.
pub struct Slot {
    /// The configured name.
    pub name: String,
    /// Messages for the worker.
    pub queue_tx: Sender<Message>,
    /// The worker's end of the queue (shared, so a replacement worker takes over).
    pub queue_rx: Receiver<Message>,
    /// Control requests for the worker.
    pub control_tx: Sender<Control>,
    /// The worker's end of the control channel.
    pub control_rx: Receiver<Control>,
    /// Answers to the plugin's deferred requests, for the worker.
    pub answers: crate::deferred::Answers,
    /// Bumped to retire a worker (stuck or stopped); a worker with an older epoch exits.
    pub epoch: AtomicU64,
    /// The status row, published: the worker writes it as it serves (and the three writers
    /// that act when the worker cannot, see [`Slot::update_status`]); admin requests and
    /// lifecycle events read the latest snapshot without waiting on the worker.
    status: watch::Sender<PluginInfo>,
    /// What the watchdog reads and acts on.
    watch: Mutex<Watch>,
    /// What a worker taking over (after a stuck call, or an enable after a disable) needs.
    handover: Mutex<Handover>,
    /// The plugin's settings and the permissions derived from them, published: a
    /// configuration change replaces them whole, the worker, the subscription tasks and the
    /// host handle read the snapshot in force.
    config: watch::Sender<Arc<PluginConfig>>,
    /// The host-owned subscriptions.
    subs: Mutex<Vec<SubEntry>>,
    /// Whether messages are accepted into the queue.
    pub accepting: AtomicBool,
    /// Messages dropped because the queue was full.
    pub overflow: AtomicU64,
    /// Set once the worker has stopped for good (disabled or removed).
    pub stopped: AtomicBool,
    /// Set while a disable is under way, so that an enable meanwhile is not taken for done.
    pub stopping: AtomicBool,
    /// Set while a replaced worker's undelivered messages wait in the handover.
    orphaned: AtomicBool,
}

/// The watchdog's view of a plugin: the call it is in and the serving generation's gate.
#[derive(Default)]
struct Watch {
    /// When the current call into the plugin started, and which call.
    busy_since: Option<(Instant, &'static str)>,
    /// The thread of the current worker (the one whose calls the watchdog times).
    worker_thread: Option<std::thread::ThreadId>,
    /// The serving generation's gate, so a replaced instance loses its host access.
    live_gate: Option<Arc<crate::bus::Gate>>,
    /// The serving host process, for the CPU guard (`isolation: process` only).
    host: Option<crate::remote::HostWatch>,
    /// Why the CPU guard killed the serving host, for the failure report.
    cpu_verdict: Option<String>,
}

/// What outlives one worker: the serving library and the state saved last.
#[derive(Default)]
struct Handover {
    module: Option<LoadedModule>,
    last_state: Option<Vec<u8>>,
    /// Messages a replaced worker had taken from the queue and not delivered.
    orphans: Vec<rosey_plugin_api::ffi::FfiMessage>,
}

/// A plugin's settings and the permissions derived from them.
struct PluginConfig {
    settings: PluginSettings,
    permissions: Permissions,
}

impl PluginConfig {
    fn new(name: &str, settings: PluginSettings) -> Self {
        let permissions = Permissions::for_plugin(name, settings.permissions.as_ref());
        PluginConfig {
            settings,
            permissions,
        }
    }
}

impl Slot {
    fn new(name: &str, settings: PluginSettings, capacity: usize) -> Slot {
        let (queue_tx, queue_rx) = crossbeam_channel::bounded(capacity);
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        Slot {
            name: name.to_owned(),
            queue_tx,
            queue_rx,
            control_tx,
            control_rx,
            answers: crate::deferred::Answers::new(capacity),
            status: watch::Sender::new(PluginInfo {
                name: name.to_owned(),
                version: String::new(),
                generation: 0,
                state: PluginState::Loading,
                loaded_at: 0,
                reloads: 0,
                messages: 0,
                errors: 0,
                last_error: None,
                host: None,
            }),
            epoch: AtomicU64::new(0),
            watch: Mutex::new(Watch::default()),
            handover: Mutex::new(Handover::default()),
            config: watch::Sender::new(Arc::new(PluginConfig::new(name, settings))),
            subs: Mutex::new(Vec::new()),
            accepting: AtomicBool::new(true),
            overflow: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            orphaned: AtomicBool::new(false),
        }
    }

    /// Records an error in the status.
    pub fn record_error(&self, error: &str) {
        self.update_status(|st| {
            st.errors += 1;
            st.last_error = Some(error.to_owned());
        });
    }

    /// Sets the state.
    pub fn set_state(&self, state: PluginState) {
        self.update_status(|st| st.state = state);
    }

    /// The `plugins.list` row: the latest published snapshot, with the host process's memory
    /// read now.
    pub fn info(&self) -> PluginInfo {
        let mut info = self.status.borrow().clone();
        if let Some(host) = &mut info.host {
            host.rss_kib = crate::remote::rss_kib(host.pid);
        }
        info
    }

    /// Counts a host process started again after its predecessor crashed or was stuck.
    pub fn count_host_restart(&self) {
        self.update_status(|st| {
            if let Some(host) = &mut st.host {
                host.restarts += 1;
            }
        });
    }

    /// Changes the status row and publishes it. The worker is its writer (counters, version,
    /// generation, state); the others write only what the worker cannot know or cannot say
    /// while a call blocks it: the watchdog marks a stuck plugin, a subscription task counts
    /// messages dropped on a full queue, and a disable marks the plugin disabled after its
    /// worker is gone.
    pub fn update_status(&self, change: impl FnOnce(&mut PluginInfo)) {
        self.status.send_modify(change);
    }

    /// The serving generation's number (0 before the first load).
    pub fn generation(&self) -> u64 {
        self.status.borrow().generation
    }

    /// Tells the watchdog a call into the plugin starts now.
    pub fn start_call(&self, what: &'static str) {
        lock(&self.watch).busy_since = Some((Instant::now(), what));
    }

    /// Tells the watchdog the call returned.
    pub fn end_call(&self) {
        lock(&self.watch).busy_since = None;
    }

    /// Stops the watchdog's clock (a host request is waiting on NATS, which is not being
    /// stuck), returning the call to resume with [`Slot::resume_call`].
    pub fn pause_call(&self) -> Option<(Instant, &'static str)> {
        lock(&self.watch).busy_since.take()
    }

    /// Restarts the watchdog's clock for a paused call, as if it had started at `since`.
    pub fn resume_call(&self, since: Instant, what: &'static str) {
        lock(&self.watch).busy_since = Some((since, what));
    }

    /// Records the calling thread as the plugin's worker.
    pub fn set_worker_thread(&self) {
        lock(&self.watch).worker_thread = Some(std::thread::current().id());
    }

    /// Whether the calling thread is the plugin's current worker.
    pub fn on_worker_thread(&self) -> bool {
        lock(&self.watch).worker_thread == Some(std::thread::current().id())
    }

    /// Records the serving generation's gate.
    pub fn set_live_gate(&self, gate: Arc<crate::bus::Gate>) {
        lock(&self.watch).live_gate = Some(gate);
    }

    /// Records the serving host process (none in process), for the CPU guard.
    pub fn set_host_watch(&self, host: Option<crate::remote::HostWatch>) {
        let mut watch = lock(&self.watch);
        watch.host = host;
        watch.cpu_verdict = None;
    }

    /// The serving host process.
    pub fn host_watch(&self) -> Option<crate::remote::HostWatch> {
        lock(&self.watch).host.clone()
    }

    /// Kills the host `pid` if it still serves, keeping `verdict` for the failure report the
    /// worker makes when it sees the host gone.
    pub fn stop_host_for_cpu(&self, pid: u32, verdict: String) -> bool {
        let mut watch = lock(&self.watch);
        let Some(host) = watch.host.take().filter(|h| h.pid == pid) else {
            return false;
        };
        watch.cpu_verdict = Some(verdict);
        host.kill();
        true
    }

    /// Why the CPU guard killed the host, once.
    pub fn take_cpu_verdict(&self) -> Option<String> {
        lock(&self.watch).cpu_verdict.take()
    }

    /// When the current call has run longer than `limit`: retires the worker and the serving
    /// generation (both checked and changed under one lock) and says which call was stuck.
    pub fn retire_if_stuck(&self, limit: Duration) -> Option<&'static str> {
        let mut watch = lock(&self.watch);
        let (since, what) = watch.busy_since?;
        if since.elapsed() <= limit {
            return None;
        }
        watch.busy_since = None;
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = watch.live_gate.take() {
            gate.retire();
        }
        Some(what)
    }

    /// Leaves `messages` (taken from the queue, never delivered) to the next worker.
    pub fn adopt_orphans(
        &self,
        messages: impl IntoIterator<Item = rosey_plugin_api::ffi::FfiMessage>,
    ) {
        let mut handover = lock(&self.handover);
        handover.orphans.extend(messages);
        if !handover.orphans.is_empty() {
            self.orphaned.store(true, Ordering::SeqCst);
        }
    }

    /// The messages a replaced worker left, for its successor.
    pub fn take_orphans(&self) -> Vec<rosey_plugin_api::ffi::FfiMessage> {
        if !self.orphaned.swap(false, Ordering::SeqCst) {
            return Vec::new();
        }
        std::mem::take(&mut lock(&self.handover).orphans)
    }

    /// The serving library, for a restart.
    pub fn module(&self) -> Option<LoadedModule> {
        lock(&self.handover).module.clone()
    }

    /// Records the serving library.
    pub fn set_module(&self, module: LoadedModule) {
        lock(&self.handover).module = Some(module);
    }

    /// The state saved last, for a restart or the next generation.
    pub fn last_state(&self) -> Option<Vec<u8>> {
        lock(&self.handover).last_state.clone()
    }

    /// Keeps `bytes` as the state saved last.
    pub fn keep_state(&self, bytes: Vec<u8>) {
        lock(&self.handover).last_state = Some(bytes);
    }

    /// The settings in force (and their permissions): a snapshot, unchanged by a later
    /// reconfiguration.
    fn config(&self) -> Arc<PluginConfig> {
        self.config.borrow().clone()
    }

    /// Reads the plugin's settings.
    pub fn with_settings<R>(&self, read: impl FnOnce(&PluginSettings) -> R) -> R {
        read(&self.config().settings)
    }

    /// The subjects the plugin may publish to.
    pub fn publish_patterns(&self) -> Vec<String> {
        self.config().permissions.publish_patterns().to_vec()
    }

    /// Whether the plugin's permissions allow `access` to `subject`.
    pub fn allows(&self, access: Access, subject: &str) -> bool {
        self.config().permissions.allows(access, subject)
    }

    /// Publishes new settings for the plugin (and the permissions derived from them).
    pub fn reconfigure(&self, settings: PluginSettings) {
        self.config
            .send_replace(Arc::new(PluginConfig::new(&self.name, settings)));
    }
}

/// The runtime's shared state.
pub struct Host {
    /// The NATS connection; plugins reach it only through their host handle.
    pub client: Client,
    /// The tokio runtime, for blocking calls from plugin worker threads.
    pub rt: Handle,
    /// Timing and identity.
    pub settings: RuntimeSettings,
    /// Where libraries are looked for.
    pub lib_dirs: Vec<PathBuf>,
    /// The per-run library copies.
    pub copies: CopyDir,
    /// The `plugins` section currently in force.
    plugins_config: Mutex<PluginsConfig>,
    slots: Mutex<BTreeMap<String, Arc<Slot>>>,
    /// Which plugin serves which command.
    commands: Mutex<CommandTable>,
    /// Per-user, per-command cooldowns.
    cooldowns: Mutex<Cooldowns>,
    /// Which plugins this runtime may serve, when several share one NATS.
    pub leases: Arc<Leases>,
    next_sub_id: AtomicU64,
}

impl Host {
    /// The shared state for a runtime.
    pub fn new(
        client: Client,
        rt: Handle,
        settings: RuntimeSettings,
        lib_dirs: Vec<PathBuf>,
        copies: CopyDir,
        plugins_config: PluginsConfig,
        leases: Arc<Leases>,
    ) -> Arc<Host> {
        Arc::new(Host {
            client,
            rt,
            settings,
            lib_dirs,
            copies,
            plugins_config: Mutex::new(plugins_config),
            slots: Mutex::new(BTreeMap::new()),
            commands: Mutex::new(CommandTable::default()),
            cooldowns: Mutex::new(Cooldowns::default()),
            leases,
            next_sub_id: AtomicU64::new(1),
        })
    }

    /// The slot of a plugin.
    pub fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        lock(&self.slots).get(name).cloned()
    }

    /// Every slot.
    pub fn slots(&self) -> Vec<Arc<Slot>> {
        lock(&self.slots).values().cloned().collect()
    }

    /// Puts a new `plugins` section in force and returns the one it replaces.
    pub fn replace_plugins_config(&self, new: PluginsConfig) -> PluginsConfig {
        std::mem::replace(&mut *lock(&self.plugins_config), new)
    }

    /// Where `plugin` runs and, in a host process, with which limits, by the configuration in
    /// force.
    pub fn isolation_of(&self, plugin: &str) -> (Isolation, PluginLimits) {
        let config = lock(&self.plugins_config);
        (config.isolation_of(plugin), config.limits_of(plugin))
    }

    /// The plugins the configuration in force enables.
    pub fn enabled_plugins(&self) -> Vec<String> {
        lock(&self.plugins_config).enabled.clone()
    }

    /// Claims `specs` for `plugin` (replacing what it claimed before) and returns the command
    /// names; refuses the whole set when one is invalid or another plugin serves it.
    pub fn claim_commands(
        &self,
        plugin: &str,
        specs: &[FfiCommandSpec],
        overrides: &BTreeMap<String, CommandOverride>,
    ) -> Result<Vec<String>, ClaimError> {
        lock(&self.commands).claim(plugin, specs, overrides)
    }

    /// Forgets every command `plugin` serves.
    pub fn release_commands(&self, plugin: &str) {
        lock(&self.commands).release(plugin);
    }

    /// Every command served, with its rules.
    pub fn command_rules(&self) -> Vec<CommandRule> {
        lock(&self.commands).all()
    }

    /// Whether `plugin` may subscribe to `command` itself (it serves it, or nobody does).
    pub fn may_subscribe_command(&self, plugin: &str, command: &str) -> bool {
        lock(&self.commands).may_subscribe(plugin, command)
    }

    /// The configured settings of a plugin (defaults when the file has none).
    pub fn settings_for(&self, name: &str) -> PluginSettings {
        lock(&self.plugins_config)
            .settings(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Starts a plugin: a slot, a worker, and a first load. Already running: nothing to do.
    pub fn enable(self: &Arc<Self>, name: &str, ack: Option<Ack>) {
        if !subjects::is_plugin_name(name) {
            let error = PluginError::new(
                name,
                FailureKind::Invalid,
                format!("{name:?} is not a valid plugin name (1 to 32 of a-z, 0-9, _ or -)"),
            );
            tracing::error!(plugin = name, "{error}");
            if let Some(ack) = ack {
                let _ = ack.send(Err(error));
            }
            return;
        }
        if !self.leases.holds(name) {
            // The lease keeper ([`crate::lease::keep`]) enables it once this runtime holds it.
            let error = PluginError::new(
                name,
                FailureKind::Stopped,
                format!(
                    "this runtime does not hold plugin {name:?}'s lease: another runtime on this \
                     NATS serves it (this one takes over if that one stops)"
                ),
            );
            tracing::info!(plugin = name, "{error}");
            if let Some(ack) = ack {
                let _ = ack.send(Err(error));
            }
            return;
        }
        // Checked and replaced under one lock: two enables at once (an admin request and a
        // configuration change) must not start two workers for one plugin.
        let mut slots = lock(&self.slots);
        let existing = slots.get(name).cloned();
        if let Some(slot) = &existing {
            if slot.stopping.load(Ordering::SeqCst) && !slot.stopped.load(Ordering::SeqCst) {
                drop(slots);
                let error = PluginError::new(
                    name,
                    FailureKind::Stopped,
                    format!("plugin {name:?} is being disabled; enable it again once that is done"),
                );
                if let Some(ack) = ack {
                    let _ = ack.send(Err(error));
                }
                return;
            }
            if !slot.stopped.load(Ordering::SeqCst) {
                drop(slots);
                if slot.info().state == PluginState::Disabled {
                    // Disabled by repeated failures: its worker waits for a new build; try the
                    // current one again.
                    let _ = slot.control_tx.try_send(Control::Load {
                        path: None,
                        force: true,
                        ack,
                    });
                } else if let Some(ack) = ack {
                    let _ = ack.send(Ok(()));
                }
                return;
            }
        }
        let slot = Arc::new(Slot::new(
            name,
            self.settings_for(name),
            self.settings.queue_capacity,
        ));
        if let Some(old) = existing {
            // State survives a disable and enable, as it survives a reload.
            lock(&slot.handover).last_state = lock(&old.handover).last_state.take();
        }
        slots.insert(name.to_owned(), slot.clone());
        drop(slots);
        let _ = slot.control_tx.try_send(Control::Load {
            path: None,
            force: true,
            ack,
        });
        crate::worker::spawn(self.clone(), slot, false);
    }

    /// Stops a plugin: stops delivery, calls `shutdown`, drops its subscriptions. `forget`
    /// removes it from the list (it left the configuration); else it stays, `disabled`.
    pub async fn disable(self: &Arc<Self>, name: &str, forget: bool) -> Result<(), PluginError> {
        let Some(slot) = self.slot(name) else {
            return Err(PluginError::new(
                name,
                FailureKind::Stopped,
                format!("plugin {name:?} is not loaded"),
            ));
        };
        if slot.stopped.load(Ordering::SeqCst) {
            // Already off: nothing to wait for (its worker is gone and would never answer).
            if forget {
                lock(&self.slots).remove(name);
            }
            return Ok(());
        }
        if slot.stopping.swap(true, Ordering::SeqCst) {
            // Another disable is stopping it: wait for that one rather than stop it twice.
            let limit = self.settings.watchdog_timeout * 3
                + self.settings.max_request_timeout
                + Duration::from_secs(1);
            let started = Instant::now();
            while !slot.stopped.load(Ordering::SeqCst) && started.elapsed() < limit {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if forget {
                lock(&self.slots).remove(name);
            }
            return Ok(());
        }
        slot.accepting.store(false, Ordering::SeqCst);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = slot
            .control_tx
            .send(Control::Stop { ack: Some(tx) })
            .is_ok();
        if sent {
            // A stuck or dead worker cannot answer; clean up from here after a while. A healthy
            // one may take a watchdog period to deliver what was queued, then save and shut
            // down, each call possibly waiting on a host request (the watchdog pauses then).
            let patience = self.settings.watchdog_timeout * 3 + self.settings.max_request_timeout;
            let waited = tokio::time::timeout(patience, rx).await;
            if !matches!(waited, Ok(Ok(_))) {
                slot.epoch.fetch_add(1, Ordering::SeqCst);
                self.drop_subscriptions(&slot);
                self.release_commands(name);
            }
        }
        slot.stopped.store(true, Ordering::SeqCst);
        slot.set_state(PluginState::Disabled);
        if forget {
            lock(&self.slots).remove(name);
        }
        Ok(())
    }

    /// Subscribes on behalf of a plugin (deduplicated by subject and queue group) and returns
    /// the subscription id. Must not be called from an async context.
    pub fn subscribe_for(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        subject: &str,
        queue: Option<&str>,
        kind: SubKind,
    ) -> Result<u64, HostError> {
        if let Some(existing) = lock(&slot.subs)
            .iter()
            .find(|s| s.subject == subject && s.queue.as_deref() == queue)
        {
            return Ok(existing.id);
        }
        let client = self.client.clone();
        let subject_owned = subject.to_owned();
        let queue_owned = queue.map(str::to_owned);
        let what = format!("subscribe to {subject}");
        let subscriber = self.block_on(async move {
            let sub = match queue_owned {
                Some(q) => client.queue_subscribe(subject_owned, q).await,
                None => client.subscribe(subject_owned).await,
            }
            .map_err(|e| HostError::nats(what.clone(), e))?;
            // Make sure the server knows the subscription before the caller moves on.
            client.flush().await.map_err(|e| HostError::nats(what, e))?;
            Ok::<_, HostError>(sub)
        })??;
        let id = self.next_sub_id.fetch_add(1, Ordering::Relaxed);
        let host = self.clone();
        let target = slot.clone();
        let task = self.rt.spawn(async move {
            let mut subscriber = subscriber;
            while let Some(msg) = subscriber.next().await {
                host.dispatch(&target, msg);
            }
        });
        lock(&slot.subs).push(SubEntry {
            id,
            subject: subject.to_owned(),
            queue: queue.map(str::to_owned),
            kind,
            task,
        });
        Ok(id)
    }

    /// Drops one subscription a plugin made. A plugin that subscribed to one of its own
    /// declared commands was given the runtime's command subscription; that one stays (the
    /// plugin still serves the command), so this is then a no-op.
    pub fn unsubscribe(&self, slot: &Slot, id: u64) -> Result<(), HostError> {
        let mut subs = lock(&slot.subs);
        let Some(pos) = subs.iter().position(|s| s.id == id) else {
            return Err(HostError::NoSubscription(id));
        };
        if subs[pos].kind == SubKind::Plugin {
            subs.remove(pos).task.abort();
        }
        Ok(())
    }

    /// Drops every subscription of a plugin.
    pub fn drop_subscriptions(&self, slot: &Slot) {
        for sub in lock(&slot.subs).drain(..) {
            sub.task.abort();
        }
    }

    /// Makes the plugin's command subscriptions match `commands`.
    pub fn sync_command_subscriptions(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        commands: &[String],
    ) -> Result<(), HostError> {
        let wanted: Vec<String> = commands
            .iter()
            .filter_map(|c| subjects::commands::command(c).ok())
            .collect();
        {
            let mut subs = lock(&slot.subs);
            subs.retain(|s| {
                let keep = s.kind != SubKind::Command || wanted.contains(&s.subject);
                if !keep {
                    s.task.abort();
                }
                keep
            });
        }
        for subject in wanted {
            self.subscribe_for(slot, &subject, None, SubKind::Command)?;
        }
        Ok(())
    }

    /// Filters a message for a plugin (channel lists, command rank and cooldown) and queues
    /// it; a full queue drops it and counts the overflow.
    pub fn dispatch(&self, slot: &Slot, msg: Message) {
        if !slot.accepting.load(Ordering::Relaxed) {
            return;
        }
        if !self.passes_rules(slot, &msg) {
            return;
        }
        match slot.queue_tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = slot.overflow.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n % 1000 == 0 {
                    tracing::warn!(
                        plugin = %slot.name,
                        dropped = n,
                        "queue full: the plugin is not keeping up; messages are dropped"
                    );
                }
                slot.record_error(&format!("queue full: {n} message(s) dropped"));
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn passes_rules(&self, slot: &Slot, msg: &Message) -> bool {
        let filters_channels =
            slot.with_settings(|s| s.channels.is_some() || !s.exclude_channels.is_empty());
        if filters_channels {
            #[derive(serde::Deserialize)]
            struct ChannelOnly {
                channel: Option<String>,
            }
            if let Ok(ChannelOnly {
                channel: Some(channel),
            }) = serde_json::from_slice::<ChannelOnly>(&msg.payload)
            {
                if !slot.with_settings(|s| s.serves_channel(&channel)) {
                    return false;
                }
            }
        }
        let Some(name) = subjects::commands::name_of(msg.subject.as_str()) else {
            return true;
        };
        let rule = lock(&self.commands).rule(name);
        let Some(rule) = rule else {
            // Nobody declares it: whoever subscribed gets it as is.
            return true;
        };
        if rule.plugin != slot.name {
            // Another plugin serves it (claimed after this one subscribed): its rank and
            // cooldown rules would be bypassed here, and the command is not this one's.
            return false;
        }
        let Ok(command) = rosey_plugin_api::payload::decode::<Command>(&msg.payload) else {
            tracing::warn!(plugin = %slot.name, subject = %msg.subject, "dropping a malformed command payload");
            return false;
        };
        lock(&self.cooldowns).admit(&rule, &command, Instant::now())
    }

    /// Runs a future to completion from a plugin's worker thread. Refuses (instead of
    /// panicking) when called from inside the async runtime.
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> Result<F::Output, HostError> {
        if Handle::try_current().is_ok() {
            return Err(HostError::AsyncContext);
        }
        Ok(self.rt.block_on(fut))
    }

    /// Runs a future that needs no tokio context (no timers, no I/O of its own) from a
    /// plugin's worker thread. Refuses when called from inside the async runtime.
    pub fn block_on_light<F: std::future::Future>(&self, fut: F) -> Result<F::Output, HostError> {
        if Handle::try_current().is_ok() {
            return Err(HostError::AsyncContext);
        }
        Ok(futures::executor::block_on(fut))
    }

    /// Publishes bytes, from a worker thread or from async code.
    pub fn publish_bytes(&self, subject: &'static str, payload: Vec<u8>) {
        let client = self.client.clone();
        let fut = async move {
            if let Err(e) = client.publish(subject, Bytes::from(payload)).await {
                tracing::warn!(subject, "cannot publish: {e}");
            }
        };
        if Handle::try_current().is_ok() {
            self.rt.spawn(fut);
        } else {
            self.rt.block_on(fut);
        }
    }

    /// Publishes a lifecycle event from async code, in order with what the caller does next.
    pub async fn lifecycle_async(&self, subject: &'static str, slot: &Slot, error: Option<String>) {
        let Some(bytes) = lifecycle_bytes(slot, error) else {
            return;
        };
        if let Err(e) = self.client.publish(subject, Bytes::from(bytes)).await {
            tracing::warn!(subject, "cannot publish: {e}");
        }
    }

    /// Publishes a lifecycle event.
    pub fn lifecycle(&self, subject: &'static str, slot: &Slot, error: Option<String>) {
        if let Some(bytes) = lifecycle_bytes(slot, error) {
            self.publish_bytes(subject, bytes);
        }
    }

    /// The library to load for a plugin.
    pub fn library_for(&self, name: &str) -> Result<PathBuf, loader::LoadError> {
        loader::find_library(&self.lib_dirs, name)
    }
}

/// The payload of a lifecycle event about `slot`.
fn lifecycle_bytes(slot: &Slot, error: Option<String>) -> Option<Vec<u8>> {
    let (version, generation) = {
        let st = slot.status.borrow();
        (st.version.clone(), st.generation)
    };
    let event = PluginLifecycle {
        name: slot.name.clone(),
        version,
        generation,
        error,
    };
    serde_json::to_vec(&event)
        .map_err(|e| tracing::error!("cannot encode a lifecycle event: {e}"))
        .ok()
}
