//! [`Aimd`]: additive increase, multiplicative decrease.

use super::bounds::{Bounds, bounds_setters};
use super::{AdaptiveError, LimitAlgorithm, Sample, check_factor};

/// Additive increase, multiplicative decrease: TCP's congestion control, for servers that
/// refuse when overloaded.
///
/// - **Increase** only on success while the gate is actually full (the attempt was admitted
///   with as many attempts running as the limit allows). A caller that never fills the gate
///   says nothing about how much more the server could take, so the limit does not grow while
///   the caller is the bottleneck.
/// - **Slow start.** Until the first overload, each such success adds one (doubling the limit
///   per round trip), so a large capacity is found in a few round trips. The first overload
///   sets the limit just below the number of attempts running when the refused one was
///   admitted (the server could not take that many), but no lower than half. From then on,
///   a round trip of successes adds one — an eighth of that within one of the limit at which
///   the server last refused (as TCP CUBIC plateaus near its last loss), so that probing
///   where the server is known to refuse costs few refusals.
/// - **Decrease** on an overload signal or a timeout, by the backoff factor (0.9 unless set),
///   at most once per window of `limit` samples: the refusals of one overshoot, which arrive
///   together, count once.
/// - Other errors (a 404, a parse error) are neither success nor overload and change nothing.
///
/// The limit stays within `min..=max` (1 and 1,000 unless set) and starts at `initial` (10).
///
/// ```
/// use gate_core::adaptive::Aimd;
///
/// let aimd = Aimd::builder().initial(4).min(2).max(64).backoff(0.8).build().unwrap();
/// # let _ = aimd;
/// ```
#[derive(Debug, Clone)]
pub struct Aimd {
    bounds: Bounds,
    backoff: f64,
    limit: f64,
    slow_start: bool,
    since_decrease: usize,
    /// Attempts running (at most the limit) when the last refused attempt was admitted:
    /// where the server last refused.
    ceiling: f64,
}

impl Aimd {
    /// AIMD with the default settings: start at 10, between 1 and 1,000, backoff 0.9.
    pub fn new() -> Self {
        Self::builder().build().expect("the defaults are valid")
    }

    /// Starts configuring an AIMD limit.
    pub const fn builder() -> AimdBuilder {
        AimdBuilder {
            bounds: Bounds::DEFAULT,
            backoff: 0.9,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.bounds.permits(self.limit)
    }
}

impl Default for Aimd {
    fn default() -> Self {
        Self::new()
    }
}

impl LimitAlgorithm for Aimd {
    fn initial_limit(&self) -> usize {
        self.bounds.initial
    }

    fn wants_latency(&self) -> bool {
        false
    }

    fn learns_from_successes_with_room(&self) -> bool {
        false
    }

    /// Successes only count towards the round trip's worth of samples (`limit + 1`) that
    /// must pass before the next decrease: once that many have been seen, more change
    /// nothing.
    fn successes_with_room_wanted(&self) -> usize {
        self.limit()
            .saturating_add(1)
            .saturating_sub(self.since_decrease)
    }

    fn update(&mut self, sample: &Sample) -> usize {
        self.since_decrease = self
            .since_decrease
            .saturating_add(1)
            .saturating_add(sample.skipped);
        if sample.is_drop() {
            if self.since_decrease > self.limit() {
                self.ceiling = self.limit.min(sample.in_flight as f64);
                self.limit = if self.slow_start {
                    // The attempt was refused with `in_flight` running, so the capacity is
                    // below that; slow start may have overshot up to twice the capacity.
                    (sample.in_flight.saturating_sub(1) as f64).max(self.limit / 2.0)
                } else {
                    self.limit * self.backoff
                };
                self.slow_start = false;
                self.since_decrease = 0;
            }
        } else if sample.outcome == crate::Outcome::Success && !sample.is_success_with_room() {
            self.limit += if self.slow_start {
                1.0
            } else if (self.limit - self.ceiling).abs() < 1.0 {
                // Near where the server last refused: probe eight times more slowly.
                0.125 / self.limit.max(1.0)
            } else {
                1.0 / self.limit.max(1.0)
            };
        }
        self.limit = self.bounds.clamp(self.limit);
        self.limit()
    }
}

/// Configures an [`Aimd`] limit; [`build`](Self::build) validates it.
#[derive(Debug, Clone, Copy)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct AimdBuilder {
    bounds: Bounds,
    backoff: f64,
}

impl AimdBuilder {
    bounds_setters!();

    /// The factor the limit is multiplied by on overload (0.9 unless set); above 0 and
    /// below 1.
    pub const fn backoff(mut self, backoff: f64) -> Self {
        self.backoff = backoff;
        self
    }

    /// Validates the settings: `1 <= min <= initial <= max`, `0 < backoff < 1`.
    pub fn build(self) -> Result<Aimd, AdaptiveError> {
        self.bounds.check()?;
        check_factor(self.backoff, f64::MIN_POSITIVE, 1.0 - f64::EPSILON)?;
        Ok(Aimd {
            bounds: self.bounds,
            backoff: self.backoff,
            limit: self.bounds.initial as f64,
            slow_start: true,
            since_decrease: usize::MAX / 2,
            ceiling: f64::INFINITY,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;
    use std::time::Duration;

    fn sample(outcome: Outcome, in_flight: usize, limit: usize) -> Sample {
        Sample::new(outcome, Duration::ZERO, in_flight, limit)
    }

    const OVERLOAD: Outcome = Outcome::Overload { retry_after: None };

    #[test]
    fn grows_only_while_the_gate_is_full() {
        let mut aimd = Aimd::builder().initial(4).build().unwrap();
        for _ in 0..100 {
            assert_eq!(aimd.update(&sample(Outcome::Success, 3, 4)), 4);
        }
        assert_eq!(aimd.update(&sample(Outcome::Success, 4, 4)), 5);
    }

    #[test]
    fn one_overshoot_counts_once_and_ends_slow_start() {
        let mut aimd = Aimd::builder().initial(40).build().unwrap();
        // Ten refusals arriving together cut the limit once: to just below the attempts
        // running when the first refused one started, but no lower than half.
        for in_flight in 10..20 {
            aimd.update(&sample(OVERLOAD, in_flight, 40));
        }
        assert_eq!(aimd.limit(), 20);
        // Congestion avoidance: a window of full successes (about `limit`) adds one.
        for _ in 0..21 {
            aimd.update(&sample(Outcome::Success, 20, 20));
        }
        assert_eq!(aimd.limit(), 21);
        // Within one of the last refusal (11 running), probing is eight times slower.
        let mut near = Aimd::builder().initial(10).build().unwrap();
        near.update(&sample(OVERLOAD, 11, 10));
        assert_eq!(near.limit(), 10);
        for _ in 0..21 {
            near.update(&sample(Outcome::Success, 10, 10));
        }
        assert_eq!(near.limit(), 10);
        for _ in 0..70 {
            near.update(&sample(Outcome::Success, 10, 10));
        }
        assert_eq!(near.limit(), 11);
        // The next overload, a window later, multiplies by the backoff.
        aimd.update(&sample(Outcome::TimedOut, 21, 21));
        assert_eq!(aimd.limit(), 18);
    }

    #[test]
    fn slow_start_ends_just_below_the_first_refusal() {
        let mut aimd = Aimd::builder().initial(10).build().unwrap();
        for limit in 10..30 {
            aimd.update(&sample(Outcome::Success, limit, limit));
        }
        assert_eq!(aimd.limit(), 30);
        aimd.update(&sample(OVERLOAD, 23, 30));
        assert_eq!(aimd.limit(), 22);
    }

    #[test]
    fn errors_that_say_nothing_about_load_change_nothing() {
        let mut aimd = Aimd::builder().initial(8).build().unwrap();
        for _ in 0..50 {
            assert_eq!(aimd.update(&sample(Outcome::Failed, 8, 8)), 8);
        }
    }

    #[test]
    fn stays_within_its_bounds() {
        let mut aimd = Aimd::builder().initial(3).min(2).max(5).build().unwrap();
        for _ in 0..100 {
            let limit = aimd.limit();
            aimd.update(&sample(Outcome::Success, limit, limit));
        }
        assert_eq!(aimd.limit(), 5);
        for _ in 0..100 {
            for _ in 0..10 {
                aimd.update(&sample(Outcome::Success, 0, 5));
            }
            aimd.update(&sample(OVERLOAD, 5, 5));
        }
        assert_eq!(aimd.limit(), 2);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let err = |b: AimdBuilder| b.build().unwrap_err();
        assert_eq!(err(Aimd::builder().min(0)), AdaptiveError::InvalidLimits);
        assert_eq!(
            err(Aimd::builder().initial(2000)),
            AdaptiveError::InvalidLimits
        );
        assert_eq!(err(Aimd::builder().min(20)), AdaptiveError::InvalidLimits);
        assert_eq!(
            err(Aimd::builder().backoff(1.0)),
            AdaptiveError::InvalidFactor
        );
        assert_eq!(
            err(Aimd::builder().backoff(f64::NAN)),
            AdaptiveError::InvalidFactor
        );
        assert_eq!(
            err(Aimd::builder().backoff(0.0)),
            AdaptiveError::InvalidFactor
        );
    }
}
