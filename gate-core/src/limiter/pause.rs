//! A pause shared by everyone behind one limiter: "the server said come back at T".

use std::time::Duration;

use tokio::time::Instant;

use crate::rate::instant_after;
use crate::sync::{AtomicU64, Ordering};

/// The time until which new admissions wait, in nanoseconds since `origin`; 0 for none.
///
/// All arithmetic saturates: a pause for any `Duration`, `Duration::MAX` included, ends at
/// most at the end of the `u64` range (584 years), and a longer pause never ends sooner.
/// The [`Limiter`](super::Limiter) caps pauses far below that before they get here.
///
/// `until`, which every admission reads, comes first, so that a [`Limiter`](super::Limiter)
/// starting with its pause has it in its first line.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Pause {
    until: AtomicU64,
    origin: Instant,
}

impl Pause {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            until: AtomicU64::new(0),
        }
    }

    /// Pauses for `duration` from `now`, unless already paused until later. A zero
    /// duration pauses nothing.
    pub(super) fn extend_for(&self, now: Instant, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        let duration = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        // At least 1, since `duration` is: 0 stays "no pause".
        self.extend_to(self.nanos(now).saturating_add(duration));
    }

    /// Pauses until `nanos` after the origin (at least 1), unless already paused until
    /// later: a pause only ever grows until it is over.
    pub(crate) fn extend_to(&self, nanos: u64) {
        self.until.fetch_max(nanos, Ordering::AcqRel);
    }

    /// The end of the current pause, if one is in force at `now`.
    pub(super) fn until(&self, now: Instant) -> Option<Instant> {
        match self.until.load(Ordering::Acquire) {
            0 => None,
            until if until <= self.nanos(now) => None,
            until => Some(self.instant(until)),
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
        // An end beyond what `Instant` can count sleeps for decades, then looks again.
        while let Some(until) = self.settle(|| self.nanos(Instant::now())) {
            tokio::time::sleep_until(self.instant(until)).await;
        }
    }

    /// The end of the pause in force at `now()` (in nanoseconds after the origin), or `None`
    /// if none is. A pause found over is cleared, so later admissions skip the clock read;
    /// a pause set meanwhile makes the clear fail and is read again, with the time, so an
    /// extension is never lost to a clear.
    pub(crate) fn settle(&self, now: impl Fn() -> u64) -> Option<u64> {
        loop {
            let until = self.until.load(Ordering::Acquire);
            if until == 0 {
                return None;
            }
            if until > now() {
                return Some(until);
            }
            if self
                .until
                .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return None;
            }
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX / 2)
    }

    fn instant(&self, nanos: u64) -> Instant {
        instant_after(self.origin, Duration::from_nanos(nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The word every admission reads comes first (see `Limiter`'s layout).
    #[test]
    fn the_word_admissions_read_comes_first() {
        assert_eq!(std::mem::offset_of!(Pause, until), 0);
    }
}
