//! Replaces plugins stuck in one call past `plugins.watchdog_timeout`.
//!
//! A thread cannot be killed safely: in process, the stuck worker thread is left behind (it
//! leaks, with its instance) and exits by itself if the call ever returns; a plugin in a host
//! process has its host killed by the retired worker, which then exits. A fresh instance is built from the
//! serving library and the last saved state on a new worker, which takes over the same queue.

use crate::host::Host;
use rosey_config::Isolation;
use rosey_plugin_api::admin::PluginState;
use rosey_plugin_api::subjects::runtime as events;
use std::sync::Arc;
use std::time::Duration;

/// Checks every plugin a few times per watchdog period, forever.
pub async fn run(host: Arc<Host>) {
    let limit = host.settings.watchdog_timeout;
    let period = (limit / 4).max(Duration::from_millis(20));
    let mut interval = tokio::time::interval(period);
    loop {
        interval.tick().await;
        for slot in host.slots() {
            let Some(what) = slot.retire_if_stuck(limit) else {
                continue;
            };
            let leak = match host.isolation_of(&slot.name).0 {
                Isolation::Process => "its host process is killed",
                Isolation::InProcess => "the stuck thread cannot be stopped and leaks",
            };
            let error = format!(
                "stuck in {what} for more than {limit:?}; replaced by a fresh instance from its last saved state ({leak})"
            );
            tracing::error!(plugin = %slot.name, "{error}");
            slot.record_error(&error);
            slot.set_state(PluginState::Stuck);
            slot.count_host_restart();
            host.lifecycle_async(events::PLUGIN_FAILED, &slot, Some(error))
                .await;
            crate::worker::spawn(host.clone(), slot, true);
        }
    }
}
