//! Proof of progress, for the systemd watchdog (README and ARCHITECTURE.md).
//!
//! The daemon pings `WATCHDOG=1` only while the process shows it is working: idle
//! between ticks, or inside a cycle that made progress recently (a CM request answered
//! or timed out, a mail handed over, rows imported, a step begun). A cycle that makes
//! no progress for the watchdog interval stops the pings, so systemd restarts the
//! daemon; a long cycle that keeps progressing is never killed.
//!
//! Process-wide on purpose: progress happens deep in the steps, and threading a handle
//! through every one of them would put watchdog plumbing where it does not belong.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();
static LAST: AtomicU64 = AtomicU64::new(0);
static BUSY: AtomicBool = AtomicBool::new(false);

fn now_ms() -> u64 {
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Records that work moved forward.
pub fn beat() {
    LAST.store(now_ms(), Ordering::Relaxed);
}

/// Marks the start (`true`) or end (`false`) of a piece of work (a cycle, a callback
/// check); starting counts as progress.
pub fn set_busy(busy: bool) {
    beat();
    BUSY.store(busy, Ordering::Relaxed);
}

/// How long the running work has made no progress; `None` while idle.
pub fn stalled_for() -> Option<Duration> {
    if !BUSY.load(Ordering::Relaxed) {
        return None;
    }
    let since = now_ms().saturating_sub(LAST.load(Ordering::Relaxed));
    Some(Duration::from_millis(since))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_never_stalled_and_a_beat_resets_the_stall() {
        set_busy(false);
        assert_eq!(stalled_for(), None);
        set_busy(true);
        std::thread::sleep(Duration::from_millis(30));
        assert!(stalled_for().unwrap() >= Duration::from_millis(25));
        beat();
        assert!(stalled_for().unwrap() < Duration::from_millis(25));
        set_busy(false);
        assert_eq!(stalled_for(), None);
    }
}
