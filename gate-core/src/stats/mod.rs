//! What a gate has done: counters and the wait-time distribution.
//!
//! Every gate keeps these numbers under the lock it already takes to admit and release, so
//! they cost an add or two per admission and no clock read unless a caller actually waited.

mod histogram;

pub(crate) use histogram::Histogram;

use std::time::Duration;

/// A snapshot of a gate's state and history, from [`Gate::stats`](crate::Gate::stats).
#[derive(Debug, Clone, PartialEq)]
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
    /// How long admitted callers waited.
    pub wait: WaitStats,
}

/// The distribution of time admitted callers spent waiting for their permits.
///
/// Quantiles are estimates from a log-linear histogram, within 25% of the true value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WaitStats {
    /// Number of admissions measured.
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
    pub(crate) fn from_histogram(h: &Histogram) -> Self {
        Self {
            count: h.count(),
            mean: h.mean(),
            p50: h.quantile(0.50),
            p90: h.quantile(0.90),
            p99: h.quantile(0.99),
            max: h.max(),
        }
    }
}

/// Counters kept under the gate's lock.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) admitted: u64,
    pub(crate) rejected: u64,
    pub(crate) timed_out: u64,
    pub(crate) wait: Histogram,
}

impl Recorder {
    pub(crate) const fn new() -> Self {
        Self {
            admitted: 0,
            rejected: 0,
            timed_out: 0,
            wait: Histogram::new(),
        }
    }

    #[inline]
    pub(crate) fn admitted_at_once(&mut self) {
        self.admitted += 1;
        self.wait.record_zero();
    }

    pub(crate) fn admitted_after(&mut self, wait: Duration) {
        self.admitted += 1;
        self.wait.record(wait);
    }
}
