//! A pause shared by everyone behind one limiter: "the server said come back at T".

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The time until which new admissions wait, in nanoseconds since `origin`; 0 for none.
#[derive(Debug)]
pub(super) struct Pause {
    origin: Instant,
    until: AtomicU64,
}

impl Pause {
    pub(super) fn new() -> Self {
        Self {
            origin: Instant::now(),
            until: AtomicU64::new(0),
        }
    }

    /// Pauses until `until`, unless already paused until later.
    pub(super) fn extend(&self, until: Instant) {
        let nanos = self.nanos(until).max(1);
        self.until.fetch_max(nanos, Ordering::AcqRel);
    }

    /// The end of the current pause, if one is in force at `now`.
    pub(super) fn until(&self, now: Instant) -> Option<Instant> {
        match self.until.load(Ordering::Acquire) {
            0 => None,
            until if until <= self.nanos(now) => None,
            until => Some(self.origin + Duration::from_nanos(until)),
        }
    }

    /// Whether a pause was set and not yet seen to be over: one atomic load, no clock read.
    #[inline]
    pub(super) fn is_set(&self) -> bool {
        self.until.load(Ordering::Acquire) != 0
    }

    /// Whether a pause is in force now. Costs an atomic load when none was ever set.
    #[inline]
    pub(super) fn is_active(&self) -> bool {
        self.is_set() && self.until(Instant::now()).is_some()
    }

    /// Waits until no pause is in force, however often it is extended meanwhile.
    pub(super) async fn wait(&self) {
        loop {
            let until = self.until.load(Ordering::Acquire);
            if until == 0 {
                return;
            }
            if until <= self.nanos(Instant::now()) {
                // Over: clear it so later admissions skip the clock read. A pause set
                // meanwhile makes this fail and is honoured on the next turn.
                if self
                    .until
                    .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            tokio::time::sleep_until(self.origin + Duration::from_nanos(until)).await;
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX / 2)
    }
}
