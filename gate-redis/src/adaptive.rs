//! [`Share`]: this process's adaptive share of a fleet's concurrency, for
//! [`RedisLimiterBuilder::adaptive`](crate::RedisLimiterBuilder::adaptive).
//!
//! # Why each process adapts its own share
//!
//! The alternative, adapting the one limit kept in Redis from every process's outcomes, is
//! wrong exactly when it matters, under a 429 storm: the server refuses every process at
//! about the same moment, so each of N processes decides to cut the shared limit, and it is
//! cut N times (0.9^N, or halved N times by a slow start) where one cut was due. Keeping it
//! right would take a decision in Redis (a guard allowing one cut per window, where the
//! window depends on the limit and on every process's pace), one more round trip per
//! refusal, and an adaptive policy living in Redis rather than in gate-core.
//!
//! Each process adapting its own share is right by construction, as TCP's flows sharing a
//! link are: under a storm each process cuts its own share once per window of its own
//! attempts (gate-core's algorithms count one overshoot once), so the fleet's total falls
//! by the backoff factor, once. Samples are local, so [`Gradient`]'s latencies are this
//! process's own, no round trip is added, and the share keeps working while Redis is out of
//! reach. The cost: the fleet probes upward N times faster than one process (each share
//! adds one per window of its own), which costs at most N refusals per probe; and shares
//! are equal only in the long run (AIMD's convergence), not at every moment.
//!
//! The limit kept in Redis ([`concurrency`](crate::RedisLimiterBuilder::concurrency),
//! [`set_limit`](crate::RedisLimiter::set_limit)) stays the fleet's ceiling: a share is
//! taken first, in this process, then the fleet's permit in Redis. A caller waiting for
//! the fleet's permit holds a seat of its share but is not counted as running: a share
//! learns that it is full only from attempts that reached the server, so it does not grow
//! while the fleet's ceiling, not the server, is what holds callers back.
//!
//! [`Gradient`]: gate_core::adaptive::Gradient

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gate_core::adaptive::{LimitAlgorithm, Sample};
use gate_core::{AcquireError, Gate, OwnedPermit, WaitLimits};
use tokio::time::Instant;

use crate::RedisLimiter;

/// This process's share: a local gate resized by the algorithm from the outcomes of the
/// attempts it admitted.
pub(crate) struct Share {
    gate: Arc<Gate>,
    algorithm: Mutex<Box<dyn LimitAlgorithm>>,
    wants_latency: bool,
    /// Attempts of this share admitted by the fleet's limit and not ended yet.
    running: AtomicUsize,
}

impl Share {
    pub(crate) fn new(algorithm: Box<dyn LimitAlgorithm>) -> Self {
        let limit = Self::permits(algorithm.initial_limit());
        Self {
            gate: Arc::new(Gate::new(limit)),
            wants_latency: algorithm.wants_latency(),
            algorithm: Mutex::new(algorithm),
            running: AtomicUsize::new(0),
        }
    }

    /// An algorithm's limit as permits: at least 1 (a share of 0 would admit nobody and so
    /// never learn again), at most [`Gate::MAX_PERMITS`].
    fn permits(limit: usize) -> usize {
        limit.clamp(1, Gate::MAX_PERMITS)
    }

    /// The share's current limit.
    pub(crate) fn limit(&self) -> usize {
        self.gate.limit()
    }

    /// Waits for a seat in the share, within `limits`' queue bound (the caller bounds the
    /// time around the whole admission; a zero `max_wait` refuses at once).
    pub(crate) async fn seat(self: &Arc<Self>, limits: WaitLimits) -> Result<Seat, AcquireError> {
        let limits = WaitLimits {
            max_wait: limits.max_wait.filter(Duration::is_zero),
            max_waiters: limits.max_waiters,
        };
        let permit = Arc::clone(&self.gate).acquire_owned_with(1, limits).await?;
        Ok(Seat {
            share: Arc::clone(self),
            permit,
        })
    }

    /// Learns from an attempt's end and resizes the share.
    fn record(&self, running: &Running, outcome: gate_core::Outcome) {
        let latency = running
            .start
            .map_or(Duration::ZERO, |start| start.elapsed());
        let sample = Sample::new(outcome, latency, running.in_flight, running.limit);
        let mut algorithm = self
            .algorithm
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let limit = Self::permits(algorithm.update(&sample));
        // Under the algorithm's lock, so resizes land in the order they were decided.
        if limit != self.gate.limit() {
            let _ = self.gate.set_limit(limit);
        }
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share")
            .field("limit", &self.limit())
            .field("running", &self.running.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A seat in the share, held while the caller waits for the fleet's permit.
#[derive(Debug)]
pub(crate) struct Seat {
    share: Arc<Share>,
    permit: OwnedPermit,
}

impl Seat {
    /// The fleet's limit admitted the caller: from now on its attempt runs.
    pub(crate) fn run(self) -> Running {
        let share = self.share;
        let in_flight = share.running.fetch_add(1, Ordering::AcqRel) + 1;
        Running {
            limit: share.limit(),
            start: share.wants_latency.then(Instant::now),
            in_flight,
            share,
            _permit: self.permit,
        }
    }
}

/// A running attempt's seat: its end teaches the share, if it is reported.
#[derive(Debug)]
pub(crate) struct Running {
    share: Arc<Share>,
    /// Given back to the share's gate when this is dropped, after the report.
    _permit: OwnedPermit,
    /// Attempts of the share running when this one was admitted, this one included.
    in_flight: usize,
    /// The share's limit when this one was admitted.
    limit: usize,
    start: Option<Instant>,
}

impl Running {
    /// Reports how the attempt ended to the share's algorithm, then gives the seat back.
    pub(crate) fn finish(self, outcome: gate_core::Outcome) {
        self.share.record(&self, outcome);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.share.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RedisLimiter {
    /// This process's share of the concurrency limit, as its
    /// [adaptive algorithm](crate::RedisLimiterBuilder::adaptive) last set it, or `None` for
    /// a limiter built without one.
    pub fn share_limit(&self) -> Option<usize> {
        self.shared().share.as_ref().map(|share| share.limit())
    }
}

#[cfg(test)]
mod tests {
    use gate_core::Outcome;
    use gate_core::adaptive::Aimd;

    use super::*;

    fn share(initial: usize, max: usize) -> Arc<Share> {
        let aimd = Aimd::builder().initial(initial).max(max).build().unwrap();
        Arc::new(Share::new(Box::new(aimd)))
    }

    #[tokio::test(start_paused = true)]
    async fn only_running_attempts_count_as_in_flight() {
        let share = share(2, 10);
        let waiting = share.seat(WaitLimits::UNBOUNDED).await.unwrap();
        let running = share.seat(WaitLimits::UNBOUNDED).await.unwrap().run();
        // The share is full, but one of its two seats is still waiting for the fleet: the
        // running attempt was admitted with one running, so its success says nothing.
        assert_eq!(share.gate.available_permits(), 0);
        assert_eq!((running.in_flight, running.limit), (1, 2));
        running.finish(Outcome::Success);
        assert_eq!(share.limit(), 2);
        // Two running at once, the share full: a success grows it (slow start).
        let first = waiting.run();
        let second = share.seat(WaitLimits::UNBOUNDED).await.unwrap().run();
        assert_eq!(second.in_flight, 2);
        second.finish(Outcome::Success);
        assert_eq!(share.limit(), 3);
        drop(first);
        assert_eq!(share.running.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_overload_cuts_the_share_and_a_dropped_attempt_teaches_nothing() {
        let share = share(8, 10);
        let mut running: Vec<_> = Vec::new();
        for _ in 0..8 {
            running.push(share.seat(WaitLimits::UNBOUNDED).await.unwrap().run());
        }
        assert_eq!(
            share.seat(WaitLimits::NO_WAIT).await.unwrap_err(),
            AcquireError::TimedOut
        );
        // Dropped, not finished: a cancellation.
        drop(running.pop());
        assert_eq!(share.limit(), 8);
        let refused = running.pop().unwrap();
        refused.finish(Outcome::Overload { retry_after: None });
        // Slow start ends just below the attempts running when the refused one (the
        // seventh) was admitted.
        assert_eq!(share.limit(), 6);
    }

    #[test]
    fn a_share_never_drops_to_zero() {
        #[derive(Debug)]
        struct Zero;
        impl LimitAlgorithm for Zero {
            fn initial_limit(&self) -> usize {
                0
            }
            fn update(&mut self, _: &Sample) -> usize {
                0
            }
        }
        assert_eq!(Share::new(Box::new(Zero)).limit(), 1);
    }
}
