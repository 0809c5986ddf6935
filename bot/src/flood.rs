//! The command flood guard: a user who gives too many commands is ignored for a while, and told
//! so once.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// The window the per-minute limit counts over: a minute by the meaning of
/// `platform.flood.commands_per_minute` (Rosey's own per-user limit, not a CyTube rule), so
/// it is not a setting of its own.
const WINDOW: Duration = Duration::from_secs(60);

/// What the guard decided about one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodVerdict {
    /// Let it through.
    Allow,
    /// Ignore it, and tell the user (the first refusal of a block).
    BlockAndWarn,
    /// Ignore it silently (already told).
    Block,
}

#[derive(Debug, Default)]
struct UserWindow {
    recent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// Per-user command counting (moderators are exempt; the caller decides that).
#[derive(Debug)]
pub struct FloodGuard {
    per_minute: usize,
    block: Duration,
    users: HashMap<String, UserWindow>,
}

impl FloodGuard {
    /// A guard allowing `per_minute` commands, then ignoring the user for `block`.
    pub fn new(per_minute: u32, block: Duration) -> Self {
        FloodGuard {
            per_minute: per_minute.max(1) as usize,
            block,
            users: HashMap::new(),
        }
    }

    /// Counts one command from `user` at `now`.
    pub fn check(&mut self, user: &str, now: Instant) -> FloodVerdict {
        // Forget idle users so the map cannot grow without bound.
        if self.users.len() > 10_000 {
            self.users.retain(|_, w| {
                w.blocked_until.is_some_and(|u| u > now)
                    || w.recent
                        .back()
                        .is_some_and(|t| now.saturating_duration_since(*t) < WINDOW)
            });
        }
        let w = self.users.entry(user.to_lowercase()).or_default();
        if let Some(until) = w.blocked_until {
            if now < until {
                return FloodVerdict::Block;
            }
            w.blocked_until = None;
            w.recent.clear();
        }
        while w
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            w.recent.pop_front();
        }
        if w.recent.len() >= self.per_minute {
            w.blocked_until = Some(now + self.block);
            return FloodVerdict::BlockAndWarn;
        }
        w.recent.push_back(now);
        FloodVerdict::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn blocks_after_the_limit_warns_once_and_expires() {
        let mut g = FloodGuard::new(3, Duration::from_secs(300));
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(g.check("Bob", t), FloodVerdict::Allow);
        }
        assert_eq!(g.check("bob", t), FloodVerdict::BlockAndWarn);
        assert_eq!(
            g.check("bob", t + Duration::from_secs(100)),
            FloodVerdict::Block
        );
        assert_eq!(g.check("alice", t), FloodVerdict::Allow);
        assert_eq!(
            g.check("bob", t + Duration::from_secs(301)),
            FloodVerdict::Allow
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_commands_leave_the_window() {
        let mut g = FloodGuard::new(2, Duration::from_secs(300));
        let t = Instant::now();
        assert_eq!(g.check("a", t), FloodVerdict::Allow);
        assert_eq!(
            g.check("a", t + Duration::from_secs(30)),
            FloodVerdict::Allow
        );
        assert_eq!(
            g.check("a", t + Duration::from_secs(61)),
            FloodVerdict::Allow
        );
        assert_eq!(
            g.check("a", t + Duration::from_secs(62)),
            FloodVerdict::BlockAndWarn
        );
    }
}
