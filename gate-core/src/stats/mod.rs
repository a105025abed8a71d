//! What a gate has done: counters and the wait-time distribution.
//!
//! Every gate keeps these numbers under the lock it already takes to admit and release, so
//! they cost an add or two per admission and no clock read unless a caller actually waited.

mod histogram;

pub(crate) use histogram::Histogram;
#[cfg(feature = "metrics")]
pub(crate) use histogram::Published;

use std::time::Duration;

/// A snapshot of a gate's state and history, from [`Gate::stats`](crate::Gate::stats).
///
/// The default is all zeros: what a source that keeps no statistics of its own starts from.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// The current limit.
    pub limit: usize,
    /// Permits currently held.
    pub in_flight: usize,
    /// Callers currently queued for permits.
    pub waiting: usize,
    /// Acquisitions that succeeded, at once or after waiting.
    pub admitted: u64,
    /// Acquisitions refused without waiting: `try_acquire` on a full gate, or a full queue.
    pub rejected: u64,
    /// Acquisitions that gave up because their deadline passed.
    pub timed_out: u64,
    /// Callers dropped while they waited in the queue (a request whose client went away,
    /// a `select!` that took another branch).
    pub cancelled: u64,
    /// How long admitted callers waited.
    pub wait: WaitStats,
}

/// The distribution of time admitted callers spent waiting for their permits.
///
/// `count` is exact. The rest are estimates: quantiles come from a log-linear histogram
/// (within 25% of the true value), and to keep the clock off the hot path, a caller who
/// queues behind [`SAMPLE_BELOW`] others or more is timed only one time in [`SAMPLE_EVERY`],
/// standing for the untimed callers queued just before it, who waited about as long in a
/// first-in-first-out queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WaitStats {
    /// Number of admissions.
    pub count: u64,
    /// Mean wait.
    pub mean: Duration,
    /// Median wait (estimate).
    pub p50: Duration,
    /// 90th percentile wait (estimate).
    pub p90: Duration,
    /// 99th percentile wait (estimate).
    pub p99: Duration,
    /// Longest wait seen.
    pub max: Duration,
}

impl WaitStats {
    pub(crate) fn from_histogram(h: &Histogram, count: u64) -> Self {
        Self {
            count,
            mean: h.mean(),
            p50: h.quantile(0.50),
            p90: h.quantile(0.90),
            p99: h.quantile(0.99),
            max: h.max(),
        }
    }
}

/// In a queue this long or longer, only one waiter in [`SAMPLE_EVERY`] is timed.
pub const SAMPLE_BELOW: usize = 8;

/// How many waiters in a long queue one timed waiter stands for.
pub const SAMPLE_EVERY: u64 = 8;

/// Counters kept under the gate's lock, in declaration order: those every contended
/// admission touches first, the histogram's buckets last.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Recorder {
    pub(crate) admitted: u64,
    /// Waiters queued untimed since the last timed one.
    untimed: u64,
    pub(crate) rejected: u64,
    pub(crate) timed_out: u64,
    pub(crate) cancelled: u64,
    pub(crate) wait: Histogram,
}

impl Recorder {
    pub(crate) const fn new() -> Self {
        Self {
            admitted: 0,
            untimed: 0,
            rejected: 0,
            timed_out: 0,
            cancelled: 0,
            wait: Histogram::new(),
        }
    }

    /// Whether a caller joining a queue of `queued` others should be timed, and if so, how
    /// many waiters its wait stands for. Reading the clock costs as much as the rest of an
    /// admission, so in a long queue only one waiter in [`SAMPLE_EVERY`] is timed; it stands
    /// for itself and the untimed ones queued just before it.
    pub(crate) fn sample(&mut self, queued: usize) -> Option<u64> {
        if queued < SAMPLE_BELOW {
            return Some(1 + std::mem::take(&mut self.untimed));
        }
        self.untimed += 1;
        if self.untimed == SAMPLE_EVERY {
            self.untimed = 0;
            Some(SAMPLE_EVERY)
        } else {
            None
        }
    }

    #[inline]
    pub(crate) fn admitted_at_once(&mut self) {
        self.admitted += 1;
        self.wait.record_zero();
    }

    pub(crate) fn admitted_after(&mut self, wait: Duration, weight: u64) {
        self.admitted += 1;
        self.wait.record_weighted(wait, weight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_waiters_stand_for_every_waiter() {
        let mut recorder = Recorder::new();
        // A short queue: everyone is timed, standing for themselves.
        for queued in 0..SAMPLE_BELOW {
            assert_eq!(recorder.sample(queued), Some(1));
        }
        // A long queue: one in SAMPLE_EVERY is timed, standing for SAMPLE_EVERY.
        let weights: Vec<_> = (0..3 * SAMPLE_EVERY)
            .map(|_| recorder.sample(100))
            .collect();
        assert_eq!(weights.iter().flatten().count(), 3);
        assert!(weights.iter().flatten().all(|w| *w == SAMPLE_EVERY));
        // Untimed waiters left over are carried by the next timed one.
        assert_eq!(recorder.sample(100), None);
        assert_eq!(recorder.sample(100), None);
        assert_eq!(recorder.sample(0), Some(3));
    }
}
