//! Which runtime serves a plugin when several share one NATS: a lease per plugin in a JetStream
//! key-value bucket ([`LEASE_BUCKET`]), so each plugin's commands and events are handled by one
//! runtime in total and the others stand by.
//!
//! A runtime serves a plugin only while it holds the plugin's key. It takes a free key with an
//! atomic create, renews it (a compare-and-set on its revision) every third of
//! `plugins.lease_ttl`, and deletes it when it stops, so a standby takes over at once; a runtime
//! that dies stops renewing and the bucket's `max_age` frees its keys after one TTL. A renewal
//! that finds another runtime's value (this one was cut off for longer than the TTL) stops the
//! plugin here: two runtimes never answer together for longer than a renewal period.
//!
//! Why not queue groups: a plugin's state (markov's chains, quotes' recent lines) is built from
//! every event of a channel, and events are not partitioned by channel on the wire; splitting
//! them between runtimes would split that state. One runtime per plugin keeps it whole, and
//! plugins can still be spread over runtimes (each serving its own plugins).

use crate::error::{FailureKind, PluginError};
use crate::host::{Ack, Host};
use async_nats::jetstream::kv::{CreateError, CreateErrorKind, Store};
use async_nats::jetstream::stream;
use rosey_plugin_api::stream::LEASE_BUCKET;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What acquiring a plugin's lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// This runtime holds it (now, or already did).
    Held,
    /// Another runtime does; the value names it.
    HeldBy(String),
}

/// This runtime's leases.
pub struct Leases {
    /// `None` without JetStream: one runtime is assumed, and every lease is granted.
    store: Option<Store>,
    /// Who this runtime is, as written in the keys (host, process, a unique suffix).
    holder: String,
    /// The revision of each key this runtime holds.
    held: Mutex<HashMap<String, u64>>,
    ttl: Duration,
}

impl Leases {
    /// Opens (or creates) the bucket; without JetStream every lease is granted and a warning
    /// says that several runtimes would then answer twice.
    pub async fn open(client: &async_nats::Client, ttl: Duration, replicas: usize) -> Leases {
        let js = async_nats::jetstream::new(client.clone());
        // The bucket's stream is defined here rather than through `create_key_value`, which
        // first reads the account's limits in a form nats-server 2.9 does not answer. These
        // are the settings of a key-value bucket (`KV_<bucket>` on `$KV.<bucket>.>`).
        let config = stream::Config {
            name: format!("KV_{LEASE_BUCKET}"),
            description: Some("which rosey-runtime serves each plugin".to_owned()),
            subjects: vec![format!("$KV.{LEASE_BUCKET}.>")],
            max_messages_per_subject: 1,
            max_age: ttl,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: replicas.max(1),
            ..Default::default()
        };
        let store = match js.get_or_create_stream(config).await {
            Ok(_) => js
                .get_key_value(LEASE_BUCKET)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let store = match store {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "no plugin leases (JetStream unavailable): this runtime serves its plugins \
                     unconditionally, so a second runtime on this NATS would answer every \
                     command twice"
                );
                None
            }
        };
        Leases {
            store,
            holder: holder_name(),
            held: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// The name this runtime writes in its keys.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How often leases are renewed: a third of their lifetime.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Whether this runtime may serve `plugin` now.
    pub fn holds(&self, plugin: &str) -> bool {
        self.store.is_none() || self.lock().contains_key(plugin)
    }

    /// Takes `plugin`'s lease if it is free; says who holds it otherwise.
    pub async fn acquire(&self, plugin: &str) -> Result<Acquired, CreateError> {
        let Some(store) = &self.store else {
            return Ok(Acquired::Held);
        };
        if self.lock().contains_key(plugin) {
            return Ok(Acquired::Held);
        }
        match store.create(plugin, self.holder.clone().into()).await {
            Ok(revision) => {
                self.lock().insert(plugin.to_owned(), revision);
                Ok(Acquired::Held)
            }
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                let holder = match store.entry(plugin).await {
                    Ok(Some(entry)) => String::from_utf8_lossy(&entry.value).into_owned(),
                    _ => "another runtime".to_owned(),
                };
                let entry = store.entry(plugin).await.ok().flatten();
                if holder == self.holder {
                    // Ours from before (a renewal's answer was lost): take it back.
                    if let Some(entry) = entry {
                        self.lock().insert(plugin.to_owned(), entry.revision);
                        return Ok(Acquired::Held);
                    }
                }
                if let Some(entry) = entry.filter(|_| self.is_dead_neighbour(&holder)) {
                    // A runtime on this machine that no longer runs (killed, then restarted by
                    // `rosey up`): its lease would only delay this one by a TTL.
                    tracing::info!(
                        plugin,
                        previous = holder,
                        "taking the lease of a runtime that is gone"
                    );
                    if store
                        .delete_expect_revision(plugin, Some(entry.revision))
                        .await
                        .is_ok()
                    {
                        return Box::pin(self.acquire(plugin)).await;
                    }
                }
                Ok(Acquired::HeldBy(holder))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `holder` names a runtime on this machine whose process is gone.
    fn is_dead_neighbour(&self, holder: &str) -> bool {
        let host = |name: &str| name.split('/').next().map(str::to_owned);
        let pid = holder.split('/').nth(1).and_then(|p| p.parse::<u32>().ok());
        match pid {
            Some(pid) if host(holder) == host(&self.holder) && pid != std::process::id() => {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        }
    }

    /// Renews every lease held; returns the plugins whose lease another runtime now holds
    /// (they must stop here). A renewal that fails for want of NATS keeps the lease for now.
    pub async fn renew(&self) -> Vec<(String, String)> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        let held: Vec<(String, u64)> = self.lock().iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut lost = Vec::new();
        for (plugin, revision) in held {
            match store
                .update(&plugin, self.holder.clone().into(), revision)
                .await
            {
                Ok(next) => {
                    self.lock().insert(plugin, next);
                }
                Err(e) => match store.entry(&plugin).await {
                    Ok(Some(entry)) if entry.value.as_ref() != self.holder.as_bytes() => {
                        let by = String::from_utf8_lossy(&entry.value).into_owned();
                        self.lock().remove(&plugin);
                        lost.push((plugin, by));
                    }
                    Ok(Some(entry)) => {
                        // Still ours (an earlier renewal landed without its answer).
                        self.lock().insert(plugin, entry.revision);
                    }
                    Ok(None) => {
                        // Expired: this runtime was cut off for a whole TTL. Take it again if
                        // nobody else has; else it is lost.
                        self.lock().remove(&plugin);
                        if let Ok(Acquired::HeldBy(by)) = self.acquire(&plugin).await {
                            lost.push((plugin, by));
                        }
                    }
                    Err(_) => {
                        tracing::warn!(plugin, error = %e, "cannot renew the plugin's lease; will retry");
                    }
                },
            }
        }
        lost
    }

    /// Gives `plugin`'s lease back (the plugin stopped here), so a standby takes over at once.
    pub async fn release(&self, plugin: &str) {
        let revision = self.lock().remove(plugin);
        if let (Some(store), Some(revision)) = (&self.store, revision) {
            if let Err(e) = store.delete_expect_revision(plugin, Some(revision)).await {
                tracing::debug!(plugin, error = %e, "lease not released; it expires by itself");
            }
        }
    }

    /// Gives every lease back (the runtime stops).
    pub async fn release_all(&self) {
        let held: Vec<String> = self.lock().keys().cloned().collect();
        for plugin in held {
            self.release(&plugin).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Enables `name` once this runtime holds its lease (taking it if it is free), as an
/// operator's enable or a configuration change asks; refused, with who serves it, when another
/// runtime holds it.
pub async fn enable(host: &Arc<Host>, name: &str, ack: Option<Ack>) {
    if !rosey_plugin_api::subjects::is_plugin_name(name) || host.leases.holds(name) {
        // An invalid name is refused by `enable` itself, with its own words.
        host.enable(name, ack);
        return;
    }
    let refusal = match host.leases.acquire(name).await {
        Ok(Acquired::Held) => {
            host.enable(name, ack);
            return;
        }
        Ok(Acquired::HeldBy(by)) => {
            format!("plugin {name:?} is served by runtime {by} on this NATS; this one stands by")
        }
        Err(e) => format!("cannot take plugin {name:?}'s lease: {e}"),
    };
    let error = PluginError::new(name, FailureKind::Stopped, refusal);
    tracing::warn!(plugin = name, "{error}");
    if let Some(ack) = ack {
        let _ = ack.send(Err(error));
    }
}

/// Serves the configured plugins this runtime can hold a lease for, renews the leases, and
/// stops a plugin whose lease another runtime took; a plugin another runtime holds is logged
/// once (loudly: that runtime serves it) and taken over when its lease is freed.
pub async fn keep(host: Arc<Host>) {
    let mut standing_by: HashMap<String, String> = HashMap::new();
    loop {
        for (plugin, by) in host.leases.renew().await {
            tracing::error!(
                plugin,
                served_by = by,
                "another runtime took this plugin's lease (this one was cut off from NATS for \
                 longer than plugins.lease_ttl); stopping it here"
            );
            let _ = host.disable(&plugin, false).await;
            standing_by.insert(plugin, by);
        }
        let wanted = host.enabled_plugins();
        for plugin in wanted {
            if host.leases.holds(&plugin) {
                if host.slot(&plugin).is_none() {
                    host.enable(&plugin, None);
                }
                continue;
            }
            match host.leases.acquire(&plugin).await {
                Ok(Acquired::Held) => {
                    if let Some(before) = standing_by.remove(&plugin) {
                        tracing::warn!(plugin, previously = before, "taking over the plugin");
                    }
                    host.enable(&plugin, None);
                }
                Ok(Acquired::HeldBy(by)) => {
                    if standing_by.get(&plugin) != Some(&by) {
                        tracing::error!(
                            plugin,
                            served_by = by,
                            runtime = host.leases.holder(),
                            "this plugin is already served by another runtime on this NATS; \
                             this runtime will not serve it (no command is answered twice) and \
                             takes over if that runtime stops"
                        );
                        standing_by.insert(plugin, by);
                    }
                }
                Err(e) => {
                    tracing::warn!(plugin, error = %e, "cannot take the plugin's lease; will retry")
                }
            }
        }
        tokio::time::sleep(host.leases.renew_every()).await;
    }
}

/// `host/pid/unique`: enough for an operator to find the runtime holding a plugin.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}/{}/{nanos:08x}", std::process::id())
}
