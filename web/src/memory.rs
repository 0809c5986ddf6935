//! Gives the memory a burst of connections used back to the system once the burst is over.
//!
//! glibc's allocator keeps freed memory for reuse and returns it only from the top of its heap.
//! After a hundred page or API connections close, what they used sits between long-lived
//! allocations made meanwhile (chat lines, the cached `/api/current` answer), so the process
//! stayed about 5 MiB larger than before the burst, for good. `malloc_trim(0)` returns every
//! free page, wherever it lies; it runs once per quiet spell after requests, never on a busy
//! process.

use std::time::Duration;

/// How long without a request counts as quiet.
pub const QUIET_AFTER: Duration = Duration::from_secs(5);

/// Decides when to trim from the running count of requests served.
#[derive(Debug, Default)]
pub struct QuietSpell {
    last: u64,
    busy: bool,
}

impl QuietSpell {
    /// Notes the count seen one [`QUIET_AFTER`] after the previous; true when requests came
    /// before and none since: the moment to trim (once per spell).
    pub fn observe(&mut self, served: u64) -> bool {
        if served != self.last {
            self.last = served;
            self.busy = true;
            return false;
        }
        std::mem::take(&mut self.busy)
    }
}

/// Trims after each burst of requests until the task is dropped; `served` reads the count.
pub async fn trim_when_quiet(served: impl Fn() -> u64) {
    let mut spell = QuietSpell::default();
    let mut tick = tokio::time::interval(QUIET_AFTER);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if spell.observe(served()) {
            release_free_memory();
        }
    }
}

/// Returns the allocator's free pages to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointer and touches no live allocation: under glibc's own
    // arena locks it returns whole free pages to the kernel (madvise) and shrinks the heap top.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "free memory returned after a burst"
    );
}

/// Other allocators return memory by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_each_burst_and_never_while_busy() {
        let mut spell = QuietSpell::default();
        assert!(!spell.observe(0), "nothing served yet");
        assert!(!spell.observe(40), "busy");
        assert!(!spell.observe(90), "still busy");
        assert!(spell.observe(90), "quiet after a burst");
        assert!(!spell.observe(90), "once per spell");
        assert!(!spell.observe(91));
        assert!(spell.observe(91));
        // Trimming itself is harmless at any time.
        release_free_memory();
    }
}
