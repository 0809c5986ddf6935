//! Stops a plugin whose own threads run away outside any call (`limits.cpu_share` over
//! `limits.cpu_window`, `isolation: process` only).
//!
//! The watchdog catches a call that never returns, and `RLIMIT_CPU` counts a host's whole
//! life; neither stops a thread the plugin started itself and left spinning. Twice a second
//! this task reads each host's CPU time from `/proc`: the process's total (which keeps the
//! time of threads that ended) minus that of the host's own threads (the one running the
//! plugin's handlers and the one reading the runtime's frames) is what the plugin's threads
//! used. When that stays above `cpu_share` percent of one CPU on average over `cpu_window`,
//! the host is killed; its worker reports the failure with this verdict and restarts the
//! plugin from its last saved state, with the usual backoff and `max_failures`.
//!
//! Handlers are not counted, so a plugin that is merely busy with many messages is never
//! stopped by this rule (only a stuck handler is, by the watchdog).

use crate::host::Host;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often each host's CPU time is read.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(500);

/// One host's recent CPU readings.
struct Samples {
    pid: u32,
    /// (when, CPU time of the plugin's own threads), oldest first.
    readings: VecDeque<(Instant, Duration)>,
}

/// Samples every host forever.
pub async fn run(host: Arc<Host>) {
    let Some(tick) = clock_tick() else {
        tracing::error!("cannot read the clock tick rate: limits.cpu_share is not enforced");
        return;
    };
    let mut seen: HashMap<String, Samples> = HashMap::new();
    let mut interval = tokio::time::interval(SAMPLE_PERIOD);
    loop {
        interval.tick().await;
        let slots = host.slots();
        seen.retain(|name, _| slots.iter().any(|s| &s.name == name));
        for slot in slots {
            let Some(watch) = slot.host_watch() else {
                seen.remove(&slot.name);
                continue;
            };
            let Some(used) = plugin_cpu(watch.pid, &watch.threads, tick) else {
                continue;
            };
            let samples = seen.entry(slot.name.clone()).or_insert_with(|| Samples {
                pid: watch.pid,
                readings: VecDeque::new(),
            });
            if samples.pid != watch.pid {
                samples.pid = watch.pid;
                samples.readings.clear();
            }
            let now = Instant::now();
            samples.readings.push_back((now, used));
            let limits = host.isolation_of(&slot.name).1;
            let (share, window) = (limits.cpu_share(), limits.cpu_window());
            // The oldest reading still needed is the newest one at least a window old.
            while samples.readings.len() > 2 && now.duration_since(samples.readings[1].0) >= window
            {
                samples.readings.pop_front();
            }
            let (since, before) = samples.readings[0];
            let span = now.duration_since(since);
            if span < window {
                continue;
            }
            let percent = used.saturating_sub(before).as_secs_f64() * 100.0 / span.as_secs_f64();
            if percent <= f64::from(share) {
                continue;
            }
            let verdict = format!(
                "its own threads used {percent:.0}% of a CPU for {:.1} s outside its calls, over limits.cpu_share ({share}% over limits.cpu_window, {window:?}): the runtime killed its host",
                span.as_secs_f64()
            );
            if slot.stop_host_for_cpu(watch.pid, verdict.clone()) {
                tracing::error!(plugin = %slot.name, pid = watch.pid, "{verdict}");
                seen.remove(&slot.name);
            }
        }
    }
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s CPU times.
fn clock_tick() -> Option<u64> {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    u64::try_from(hz).ok().filter(|&hz| hz > 0)
}

/// CPU time (user + system) in a `stat` file of `/proc`, in clock ticks.
fn stat_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after its closing
    // parenthesis start with field 3; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time the plugin's own threads have used in host `pid`: the process's minus its
/// `own` threads'.
fn plugin_cpu(pid: u32, own: &[u32], tick: u64) -> Option<Duration> {
    let total = stat_ticks(&format!("/proc/{pid}/stat"))?;
    let hosts: u64 = own
        .iter()
        .filter_map(|tid| stat_ticks(&format!("/proc/{pid}/task/{tid}/stat")))
        .sum();
    let ticks = total.saturating_sub(hosts);
    Some(Duration::from_millis(ticks.saturating_mul(1000) / tick))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_of_this_process_is_counted_unless_it_is_ours() {
        let tick = clock_tick().expect("CLK_TCK");
        let pid = std::process::id();
        let me = u32::try_from(nix::unistd::gettid().as_raw()).unwrap();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let spinner = std::thread::spawn(move || {
            tid_tx
                .send(u32::try_from(nix::unistd::gettid().as_raw()).unwrap())
                .unwrap();
            let started = std::time::Instant::now();
            let mut n = 0_u64;
            // Spins until it has used 300 ms of CPU (bounded by wall time for a slow box).
            while started.elapsed() < Duration::from_secs(60) {
                n = std::hint::black_box(n.wrapping_add(1));
                if n % 1_000_000 == 0 && thread_cpu(tick) >= Duration::from_millis(300) {
                    break;
                }
            }
        });
        let spinner_tid = tid_rx.recv().unwrap();
        spinner.join().unwrap();
        // Exited threads' time stays in the process's total.
        let counted = plugin_cpu(pid, &[me], tick).unwrap();
        assert!(counted >= Duration::from_millis(250), "{counted:?}");
        assert_ne!(spinner_tid, me);
    }

    fn thread_cpu(tick: u64) -> Duration {
        let ticks = stat_ticks("/proc/thread-self/stat").unwrap_or(0);
        Duration::from_millis(ticks * 1000 / tick)
    }
}
