//! What a [`RedisLimiter`](crate::RedisLimiter) has seen of its limit in Redis, and what it
//! has done itself, for [`Admission::snapshot`](gate_core::Admission::snapshot).
//!
//! The script answers every decision with the limit's state as it found it (permits held,
//! callers queued, the limit, the buckets' free cells), and a release with the counts it
//! left: those are cached here, so a snapshot costs no round trip. Local counts are atomics
//! bumped once per admission.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gate_core::Stats;
use gate_core::stats::WaitStats;

/// Not seen yet.
const UNSEEN: u64 = u64::MAX;

/// The cache and the counters.
#[derive(Debug)]
pub(crate) struct Record {
    held: AtomicU64,
    waiting: AtomicU64,
    rate_free: AtomicU64,
    tokens_free: AtomicU64,
    admitted: AtomicU64,
    rejected: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    waits: Waits,
}

/// What a reply said of the limit's state; `None` for what it did not read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seen {
    pub(crate) held: Option<u64>,
    pub(crate) waiting: Option<u64>,
    pub(crate) rate_free: Option<u64>,
    pub(crate) tokens_free: Option<u64>,
}

/// How an admission ended, for the local counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Admitted (by Redis or by the failure policy) after waiting this long.
    Admitted(Duration),
    /// Refused without waiting: a full queue, `max_wait` zero, more cells than the burst,
    /// or Redis out of reach under a closed policy.
    Rejected,
    /// Gave up at its deadline.
    TimedOut,
    /// Dropped while it waited.
    Cancelled,
}

impl Record {
    pub(crate) fn new() -> Self {
        let unseen = || AtomicU64::new(UNSEEN);
        Self {
            held: unseen(),
            waiting: unseen(),
            rate_free: unseen(),
            tokens_free: unseen(),
            admitted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            waits: Waits::new(),
        }
    }

    /// Caches what a reply from Redis said.
    pub(crate) fn saw(&self, seen: Seen) {
        let store = |cell: &AtomicU64, value: Option<u64>| {
            if let Some(value) = value {
                cell.store(value.min(UNSEEN - 1), Ordering::Relaxed);
            }
        };
        store(&self.held, seen.held);
        store(&self.waiting, seen.waiting);
        store(&self.rate_free, seen.rate_free);
        store(&self.tokens_free, seen.tokens_free);
    }

    pub(crate) fn ended(&self, ended: Ended) {
        let count = match ended {
            Ended::Admitted(wait) => {
                self.waits.record(wait);
                &self.admitted
            }
            Ended::Rejected => &self.rejected,
            Ended::TimedOut => &self.timed_out,
            Ended::Cancelled => &self.cancelled,
        };
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// The rate's free cells as last seen, if a decision read them.
    pub(crate) fn rate_free(&self) -> Option<u64> {
        seen(&self.rate_free)
    }

    /// The token budget's free cells as last seen, if a decision read them.
    pub(crate) fn tokens_free(&self) -> Option<u64> {
        seen(&self.tokens_free)
    }

    /// The snapshot, with `limit` the concurrency limit as last seen (0 for a rate only).
    pub(crate) fn stats(&self, limit: usize) -> Stats {
        let count = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        let gauge = |cell: &AtomicU64| {
            seen(cell).map_or(0, |value| usize::try_from(value).unwrap_or(usize::MAX))
        };
        let mut stats = Stats::default();
        stats.limit = limit;
        stats.in_flight = gauge(&self.held);
        stats.waiting = gauge(&self.waiting);
        stats.admitted = count(&self.admitted);
        stats.rejected = count(&self.rejected);
        stats.timed_out = count(&self.timed_out);
        stats.cancelled = count(&self.cancelled);
        stats.wait = self.waits.stats();
        stats
    }
}

fn seen(cell: &AtomicU64) -> Option<u64> {
    Some(cell.load(Ordering::Relaxed)).filter(|&value| value != UNSEEN)
}

/// Buckets of the wait histogram: four to each power of two of nanoseconds.
const BUCKETS: usize = 252;

/// The admitted callers' waits: a log-linear histogram (four buckets to each power of two,
/// so a quantile is within 12.5% of the truth), the exact count, sum and maximum.
#[derive(Debug)]
struct Waits {
    buckets: Box<[AtomicU64; BUCKETS]>,
    sum_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

impl Waits {
    fn new() -> Self {
        Self {
            buckets: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            sum_nanos: AtomicU64::new(0),
            max_nanos: AtomicU64::new(0),
        }
    }

    fn record(&self, wait: Duration) {
        let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket(nanos)].fetch_add(1, Ordering::Relaxed);
        // Saturates rather than wraps: 584 years of waits.
        let _ = self
            .sum_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sum| {
                Some(sum.saturating_add(nanos))
            });
        self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    fn stats(&self) -> WaitStats {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let max = self.max_nanos.load(Ordering::Relaxed);
        let quantile = |q: f64| {
            // The smallest bucket at or past the `q`-th wait, by its middle, within the max.
            let rank = ((count as f64 * q).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, &n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    let (low, width) = bounds(i);
                    return Duration::from_nanos((low + width / 2).min(max));
                }
            }
            Duration::from_nanos(max)
        };
        let mut wait = WaitStats::default();
        if count == 0 {
            return wait;
        }
        wait.count = count;
        wait.mean = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed) / count);
        wait.p50 = quantile(0.50);
        wait.p90 = quantile(0.90);
        wait.p99 = quantile(0.99);
        wait.max = Duration::from_nanos(max);
        wait
    }
}

/// The bucket of a wait of `nanos`: 0 to 3 exactly, then four to each power of two.
fn bucket(nanos: u64) -> usize {
    if nanos < 4 {
        return nanos as usize;
    }
    let msb = 63 - nanos.leading_zeros() as usize;
    let sub = ((nanos >> (msb - 2)) & 3) as usize;
    (msb - 1) * 4 + sub
}

/// The lowest wait in bucket `i`, and the bucket's width.
fn bounds(i: usize) -> (u64, u64) {
    if i < 4 {
        return (i as u64, 1);
    }
    let msb = i / 4 + 1;
    let sub = (i % 4) as u64;
    ((4 + sub) << (msb - 2), 1 << (msb - 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wait_falls_in_the_bucket_that_bounds_it() {
        for nanos in (0..5_000).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = bucket(nanos);
            assert!(i < BUCKETS, "{nanos}");
            let (low, width) = bounds(i);
            assert!(
                low <= nanos && nanos - low < width,
                "{nanos} in {i}: {low} + {width}"
            );
        }
    }

    #[test]
    fn quantiles_are_within_an_eighth_of_the_truth() {
        let waits = Waits::new();
        for ms in 1..=100 {
            waits.record(Duration::from_millis(ms));
        }
        let stats = waits.stats();
        assert_eq!(stats.count, 100);
        assert_eq!(stats.max, Duration::from_millis(100));
        assert_eq!(stats.mean, Duration::from_micros(50_500));
        for (got, want) in [(stats.p50, 50.0), (stats.p90, 90.0), (stats.p99, 99.0)] {
            let got = got.as_secs_f64() * 1e3;
            assert!((got - want).abs() <= want / 8.0, "{got} ms for {want} ms");
        }
    }

    #[test]
    fn what_was_never_seen_is_reported_as_nothing() {
        let record = Record::new();
        assert_eq!(record.rate_free(), None);
        record.saw(Seen {
            held: Some(3),
            rate_free: Some(7),
            ..Seen::default()
        });
        // A later reply that did not read the rate keeps the last seen value.
        record.saw(Seen {
            held: Some(2),
            ..Seen::default()
        });
        record.ended(Ended::Rejected);
        let stats = record.stats(10);
        assert_eq!((stats.limit, stats.in_flight, stats.waiting), (10, 2, 0));
        assert_eq!((stats.rejected, stats.admitted), (1, 0));
        assert_eq!(record.rate_free(), Some(7));
        assert_eq!(record.tokens_free(), None);
    }
}
