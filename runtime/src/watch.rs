//! Watching for new plugin builds and for configuration changes.
//!
//! The debounce is our own rather than `notify-debouncer-full`'s, for what that crate cannot
//! do: it is per plugin, not per path (one `cargo build` touches the library, its `.d` file and
//! `deps/`, in several folders), a folder that does not exist yet is re-armed when it appears,
//! and a library still invalid once quiet is reported as a failure; the timing runs on tokio's
//! clock like the rest of the runtime.
//!
//! Cargo replaces `target/<profile>/lib<name>.so` by unlinking it and linking a new inode;
//! other tools copy or rename a file into place. The folder (not the file) is watched, so all
//! of these are seen; events are debounced per plugin, and the worker skips a file whose
//! content did not change. A file that is still not a valid library once it has been quiet for
//! the debounce period is reported on `rosey.runtime.plugin.failed`.

use crate::host::{Control, Host};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use rosey_config::Config;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::Instant;

/// Starts watching the existing folders among `dirs`; the returned watcher must be kept
/// alive. Folders that do not exist are returned for the caller to arm later.
fn watch_dirs(
    dirs: &[PathBuf],
) -> anyhow::Result<(RecommendedWatcher, UnboundedReceiver<PathBuf>, Vec<PathBuf>)> {
    let (tx, rx) = unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(event) => {
                // Reading a library (as the loader does) must not look like a new build.
                let is_read = matches!(
                    event.kind,
                    notify::EventKind::Access(a)
                        if a != notify::event::AccessKind::Close(notify::event::AccessMode::Write)
                );
                if is_read {
                    return;
                }
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
            Err(e) => tracing::warn!("file watcher error: {e}"),
        }
    })?;
    let mut missing = Vec::new();
    for dir in dirs {
        if dir.is_dir() {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            tracing::info!(dir = %dir.display(), "watching for plugin builds");
        } else {
            missing.push(dir.clone());
        }
    }
    Ok((watcher, rx, missing))
}

/// The plugin a library file belongs to: `lib<name>.so`.
pub fn plugin_of(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let name = file.strip_prefix("lib")?.strip_suffix(".so")?;
    rosey_plugin_api::subjects::is_plugin_name(name).then(|| name.to_owned())
}

/// Watches the library folders and sends each changed, enabled plugin a load request once its
/// file has been quiet for `plugins.reload_debounce`.
pub async fn watch_libraries(host: Arc<Host>) -> anyhow::Result<()> {
    let (mut watcher, mut rx, mut missing) = watch_dirs(&host.lib_dirs)?;
    let debounce = host.settings.reload_debounce;
    // A folder that does not exist cannot be watched, and watching its nearest existing
    // ancestor instead would need re-arming at every level created (`mkdir -p`). Checking
    // for it at the debounce interval is simpler and as prompt as the debounce already is;
    // it costs one `stat` per missing folder per period and stops once all exist.
    let recheck_every = debounce.max(Duration::from_millis(50));
    for dir in &missing {
        tracing::warn!(
            dir = %dir.display(),
            "plugin folder does not exist; its plugins load once it is created and a library is installed"
        );
    }
    let mut pending: HashMap<String, Instant> = HashMap::new();
    loop {
        let next = pending.values().min().copied();
        let recheck = (!missing.is_empty()).then(|| Instant::now() + recheck_every);
        tokio::select! {
            _ = sleep_until(recheck) => {
                let mut appeared = false;
                let mut still_missing = Vec::new();
                for dir in missing.drain(..) {
                    if !dir.is_dir() {
                        still_missing.push(dir);
                        continue;
                    }
                    match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                        Ok(()) => {
                            tracing::info!(dir = %dir.display(), "plugin folder created; watching for plugin builds");
                            appeared = true;
                        }
                        Err(e) => {
                            tracing::warn!(dir = %dir.display(), "cannot watch the plugin folder yet: {e}");
                            still_missing.push(dir);
                        }
                    }
                }
                missing = still_missing;
                if appeared {
                    // A library may have landed before the watch was armed: look for every
                    // plugin's library once (an unchanged file is skipped by the worker).
                    let at = Instant::now() + debounce;
                    for slot in host.slots() {
                        pending.insert(slot.name.clone(), at);
                    }
                }
            }
            path = rx.recv() => {
                let Some(path) = path else { return Ok(()) };
                if let Some(name) = plugin_of(&path) {
                    if host.slot(&name).is_some() {
                        pending.insert(name, Instant::now() + debounce);
                    }
                }
            }
            _ = sleep_until(next) => {
                let now = Instant::now();
                let due: Vec<String> = pending
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(n, _)| n.clone())
                    .collect();
                for name in due {
                    pending.remove(&name);
                    let Some(slot) = host.slot(&name) else { continue };
                    // A file that vanished (cargo's unlink before its link) is not an error:
                    // the link that follows is another event.
                    let Ok(path) = host.library_for(&name) else { continue };
                    tracing::info!(plugin = %name, path = %path.display(), "new build seen");
                    let _ = slot.control_tx.send(Control::Load { path: Some(path), force: false, ack: None });
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Watches the configuration file; on a change, loads it again (`reload`) and applies the
/// `plugins` section: newly enabled plugins load, removed ones unload, changed settings
/// restart the plugin. A broken file is logged and ignored (the old settings stay).
pub async fn watch_config(
    host: Arc<Host>,
    path: PathBuf,
    reload: impl Fn() -> anyhow::Result<Config> + Send + 'static,
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let file_name = path.file_name().map(|f| f.to_os_string());
    let (_watcher, mut rx, _missing) = watch_dirs(&[dir])?;
    let debounce = host.settings.reload_debounce.max(Duration::from_millis(50));
    let mut due: Option<Instant> = None;
    loop {
        tokio::select! {
            changed = rx.recv() => {
                let Some(changed) = changed else { return Ok(()) };
                if changed.file_name().map(|f| f.to_os_string()) == file_name {
                    due = Some(Instant::now() + debounce);
                }
            }
            _ = sleep_until(due) => {
                due = None;
                match reload() {
                    Ok(config) => apply(&host, config).await,
                    Err(e) => tracing::error!("configuration change ignored: {e:#}"),
                }
            }
        }
    }
}

/// Applies a new configuration's `plugins` section.
pub async fn apply(host: &Arc<Host>, config: Config) {
    let new = config.runtime_plugins();
    let old = host.replace_plugins_config(new.clone());
    let before: BTreeSet<&String> = old.enabled.iter().collect();
    let after: BTreeSet<&String> = new.enabled.iter().collect();
    for name in after.difference(&before) {
        tracing::info!(plugin = %name, "enabled in the configuration");
        crate::lease::enable(host, name, None).await;
    }
    for name in before.difference(&after) {
        tracing::info!(plugin = %name, "removed from the configuration");
        if let Err(e) = host.disable(name, true).await {
            tracing::warn!(plugin = %name, "{e}");
        }
        // Another runtime configured with it may serve it now.
        host.leases.release(name).await;
    }
    for name in after.intersection(&before) {
        let settings = new.settings(name).cloned().unwrap_or_default();
        if old.settings(name).cloned().unwrap_or_default() == settings {
            continue;
        }
        let Some(slot) = host.slot(name) else {
            continue;
        };
        tracing::info!(plugin = %name, "settings changed; restarting it");
        slot.reconfigure(settings);
        let _ = slot.control_tx.send(Control::Restart { ack: None });
    }
    if old.directory != new.directory
        || old.tick_interval != new.tick_interval
        || old.checkpoint_interval != new.checkpoint_interval
        || old.queue_capacity != new.queue_capacity
    {
        tracing::warn!(
            "plugins.directory, tick_interval, checkpoint_interval and queue_capacity take effect at the next restart"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_file_names() {
        assert_eq!(
            plugin_of(Path::new("/t/debug/libquotes.so")),
            Some("quotes".into())
        );
        assert_eq!(plugin_of(Path::new("/t/debug/libquotes.d")), None);
        assert_eq!(plugin_of(Path::new("/t/debug/quotes.so")), None);
    }
}
