//! [`Queue`]: what a layer knows about the requests it keeps waiting, so that it bounds the
//! queue by time rather than by a count, derives `Retry-After` from it, and summarises its
//! refusals in the logs instead of warning about each.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gate_core::{AcquireError, WaitLimits};
use tokio::time::Instant;

/// How often, at most, a layer that keeps refusing logs a summary at `WARN`.
pub(crate) const SUMMARY_PERIOD: Duration = Duration::from_secs(10);

/// The share of `max_wait` within which a request must be predicted to get in to be let into
/// the queue: three quarters. The margin covers the estimate's error (permits come back in
/// bursts, and arrivals keep a busy server from running the handlers that would release
/// them) and the time a request spends in the server before it reaches the gate: a request
/// that queues and then times out has waited for nothing, so the queue aims short of the
/// deadline rather than at it.
pub(crate) const ADMISSION_TARGET: f64 = 0.75;

/// How far back the drain estimate looks: admissions are weighted by `exp(-age / HORIZON)`.
/// About a second, the default `max_wait`: the rate over the time a queue is meant to drain
/// in, not over the last few admissions, which under bursty arrivals on a busy server come
/// from the quiet spells between bursts and so promise a faster drain than the next second
/// brings.
const HORIZON: Duration = Duration::from_secs(1);

/// The requests of one layer (and its services' clones) waiting for admission, shared by all
/// of them.
///
/// - **Bound by time.** A request that would have to wait is refused at once if, at the rate
///   waiters have recently been admitted, it would not be admitted within
///   [`ADMISSION_TARGET`] (three quarters) of `max_wait`, or if nothing has been admitted
///   for `max_wait` while some waited. Until enough waiters have been admitted (as many as
///   the gate's limit, at least four) there is no rate to go by, and only the count bound
///   (`max_waiters`, the memory cap) and the timer apply: a gate's permits come back in
///   bursts (sixteen handlers started together finish together), and the first few
///   admissions say little about the rate.
/// - **Drain time.** The same estimate says how long the queue takes to drain: the hint a
///   refusal sends.
/// - **Refusals** are counted (for `stats`) and summarised in the logs.
#[derive(Debug)]
pub(crate) struct Queue {
    /// Requests waiting now.
    waiting: AtomicUsize,
    drain: Mutex<Drain>,
    /// Refusals by the time bound or `max_waiters`, which a gate does not see.
    rejected: AtomicU64,
    summary: Summary,
}

/// How fast waiters get through.
#[derive(Debug)]
struct Drain {
    /// Time spent draining, in nanoseconds, and admissions in it, both decayed by age over
    /// [`HORIZON`]: their ratio is the mean time between two admissions of waiters while
    /// some wait. Permits coming back in bursts (sixteen at once every 20 ms) still read as
    /// a steady rate (one per 1.25 ms).
    time: f64,
    admissions: f64,
    /// Admissions seen, up to `trusted_after`.
    samples: usize,
    /// How many admissions it takes before the estimate is used: one turnover of the limit.
    trusted_after: usize,
    /// The last admission of a waiter, or when the queue last started from empty: the
    /// interval runs from here to the next admission.
    last_progress: Instant,
}

impl Queue {
    /// A queue for a gate whose limit is `limit` (for a limiter with no concurrency limit,
    /// 1: a rate admits one at a time).
    pub(crate) fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, 1 << 20);
        Self {
            waiting: AtomicUsize::new(0),
            drain: Mutex::new(Drain {
                time: 0.0,
                admissions: 0.0,
                samples: 0,
                trusted_after: limit.max(4),
                last_progress: Instant::now(),
            }),
            rejected: AtomicU64::new(0),
            summary: Summary::new(),
        }
    }

    /// A request that could not be admitted at once asks to wait: it is counted as waiting
    /// until the returned [`Entered`] is dropped, or refused with
    /// [`AcquireError::QueueFull`] if `max_waiters` already wait or the queue would not get
    /// it through within `max_wait`.
    pub(crate) fn enter(self: &Arc<Self>, limits: WaitLimits) -> Result<Entered, AcquireError> {
        let now = Instant::now();
        let mut drain = self.drain.lock().unwrap_or_else(PoisonError::into_inner);
        let ahead = self.waiting.load(Ordering::Acquire);
        let too_slow = limits.max_wait.is_some_and(|max_wait| {
            let stalled =
                ahead > 0 && now.saturating_duration_since(drain.last_progress) > max_wait;
            let target = max_wait.mul_f64(ADMISSION_TARGET);
            stalled || drain.through(ahead + 1).is_some_and(|wait| wait > target)
        });
        if ahead >= limits.max_waiters || too_slow {
            drop(drain);
            self.reject();
            return Err(AcquireError::QueueFull);
        }
        if ahead == 0 {
            drain.last_progress = now;
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Ok(Entered(Arc::clone(self)))
    }

    /// How long, at the rate waiters get through, the queue takes to drain and admit one
    /// more; `None` before enough waiters have been admitted to tell.
    pub(crate) fn drain_time(&self) -> Option<Duration> {
        let drain = self.drain.lock().unwrap_or_else(PoisonError::into_inner);
        drain.through(self.waiting.load(Ordering::Acquire) + 1)
    }

    /// Counts a refusal made without waiting by the layer itself, which its gate does not
    /// see: this queue's bounds, or a zero `max_wait`.
    pub(crate) fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals made by this queue's own bounds.
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The log summary of refusals, by any bound.
    pub(crate) fn summary(&self) -> &Summary {
        &self.summary
    }
}

impl Drain {
    /// How long `n` waiters take to get through; `None` with no estimate yet.
    fn through(&self, n: usize) -> Option<Duration> {
        if self.samples < self.trusted_after {
            return None;
        }
        let nanos = self.time / self.admissions * n as f64;
        // `from_secs_f64` panics on what does not fit; a wait that long is "never" anyway.
        Some(Duration::try_from_secs_f64(nanos / 1e9).unwrap_or(Duration::MAX))
    }

    /// A waiter was admitted at `now`.
    fn admitted(&mut self, now: Instant) {
        let interval = now.saturating_duration_since(self.last_progress);
        self.last_progress = now;
        self.samples = (self.samples + 1).min(self.trusted_after);
        let decay = (-interval.as_secs_f64() / HORIZON.as_secs_f64()).exp();
        self.time = self.time * decay + interval.as_nanos() as f64;
        self.admissions = self.admissions * decay + 1.0;
    }
}

/// One request counted as waiting in its [`Queue`] until dropped.
#[derive(Debug)]
pub(crate) struct Entered(Arc<Queue>);

impl Entered {
    /// The request was admitted: it counts towards the drain rate, and no longer waits.
    pub(crate) fn admitted(self) {
        let now = Instant::now();
        self.0
            .drain
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admitted(now);
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Refusals since the last `WARN` summary, and when the next may be logged.
#[derive(Debug)]
pub(crate) struct Summary {
    unreported: AtomicU64,
    /// Nanoseconds after `start` before which no summary is logged.
    next: AtomicU64,
    start: Instant,
}

impl Summary {
    fn new() -> Self {
        Self {
            unreported: AtomicU64::new(0),
            next: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// Counts one refusal; once every [`SUMMARY_PERIOD`] at most, returns how many there
    /// were since the last time it did (this one included), for the caller to log.
    pub(crate) fn refused(&self) -> Option<u64> {
        self.unreported.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let next = self.next.load(Ordering::Relaxed);
        let due = now >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(SUMMARY_PERIOD.as_nanos() as u64),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        due.then(|| self.unreported.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: WaitLimits = WaitLimits {
        max_wait: Some(Duration::from_secs(1)),
        max_waiters: 1000,
    };

    /// Admits `n` waiters, `every` apart, after entering them together.
    async fn drain(queue: &Arc<Queue>, n: usize, every: Duration) {
        let entered: Vec<_> = (0..n).map(|_| queue.enter(LIMITS).unwrap()).collect();
        for entered in entered {
            tokio::time::advance(every).await;
            entered.admitted();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_estimate_only_the_count_bounds_the_queue() {
        let queue = Arc::new(Queue::new(1));
        assert_eq!(queue.drain_time(), None);
        let limits = WaitLimits {
            max_waiters: 3,
            ..LIMITS
        };
        let entered: Vec<_> = (0..3).map(|_| queue.enter(limits).unwrap()).collect();
        assert_eq!(queue.enter(limits).unwrap_err(), AcquireError::QueueFull);
        drop(entered);
        assert!(queue.enter(limits).is_ok());
        assert_eq!(queue.rejected(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_that_would_outlast_max_wait_refuses() {
        let queue = Arc::new(Queue::new(1));
        // Not to be trusted before four admissions.
        drain(&queue, 3, Duration::from_millis(10)).await;
        assert_eq!(queue.drain_time(), None);
        // Waiters get through one per 10 ms: 75 of them within 3/4 of a second, not 76.
        drain(&queue, 5, Duration::from_millis(10)).await;
        assert_eq!(queue.drain_time(), Some(Duration::from_millis(10)));
        let entered: Vec<_> = (0..74).map(|_| queue.enter(LIMITS).unwrap()).collect();
        assert_eq!(queue.drain_time(), Some(Duration::from_millis(750)));
        let last = queue.enter(LIMITS).unwrap();
        assert_eq!(queue.enter(LIMITS).unwrap_err(), AcquireError::QueueFull);
        assert_eq!(queue.rejected(), 1);
        drop((entered, last));
        // With no bound on the wait, only the count applies.
        let unbounded = WaitLimits {
            max_wait: None,
            ..LIMITS
        };
        let entered: Vec<_> = (0..500).map(|_| queue.enter(unbounded).unwrap()).collect();
        assert_eq!(entered.len(), 500);
    }

    #[tokio::test(start_paused = true)]
    async fn bursty_releases_average_to_their_rate() {
        let queue = Arc::new(Queue::new(16));
        // Sixteen admissions at once every 20 ms: 1.25 ms apart on average.
        for _ in 0..20 {
            let entered: Vec<_> = (0..16).map(|_| queue.enter(LIMITS).unwrap()).collect();
            tokio::time::advance(Duration::from_millis(20)).await;
            entered.into_iter().for_each(Entered::admitted);
        }
        let per_waiter = queue.drain_time().unwrap();
        assert!(
            (1000..1600).contains(&per_waiter.as_micros()),
            "{per_waiter:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_queue_refuses() {
        let queue = Arc::new(Queue::new(1));
        drain(&queue, 4, Duration::from_millis(1)).await;
        let _stuck = queue.enter(LIMITS).unwrap();
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(queue.enter(LIMITS).unwrap_err(), AcquireError::QueueFull);
    }

    #[tokio::test(start_paused = true)]
    async fn the_summary_comes_at_most_once_a_period_with_its_count() {
        let summary = Summary::new();
        assert_eq!(summary.refused(), Some(1));
        for _ in 0..999 {
            assert_eq!(summary.refused(), None);
        }
        tokio::time::advance(SUMMARY_PERIOD).await;
        assert_eq!(summary.refused(), Some(1000));
        assert_eq!(summary.refused(), None);
    }
}
