//! How long to wait between attempts.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// The delay before each retry, before jitter and server hints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// The same delay every time (tenacity's `wait_fixed`). Zero retries at once.
    Fixed(Duration),
    /// `base * factor^(n - 1)` before retry `n`, never more than `max`
    /// (tenacity's `wait_exponential`).
    Exponential {
        /// Delay before the first retry.
        base: Duration,
        /// Growth per retry; at least 1.
        factor: f64,
        /// Cap on any delay.
        max: Duration,
    },
}

impl Backoff {
    /// The delay before retry `retry` (1 for the first retry), without jitter.
    ///
    /// Total: for every value of `Backoff`, validated by
    /// [`RetryBuilder::build`](crate::RetryBuilder::build) or not, and every `retry`, it
    /// returns a delay from `base` (or `max` if lower) to `max`, and never panics. The
    /// first retry waits exactly `base`; a zero base stays zero however far the factor
    /// grows; growth past what a `Duration` holds, or a factor that `build` rejects (NaN,
    /// infinite), gives `max`.
    pub fn delay(&self, retry: u32) -> Duration {
        match *self {
            Backoff::Fixed(delay) => delay,
            Backoff::Exponential { base, factor, max } => {
                let floor = base.min(max);
                if retry <= 1 || base.is_zero() {
                    return floor;
                }
                let exp = i32::try_from(retry - 1).unwrap_or(i32::MAX);
                // NaN, infinite, negative or too large for a `Duration` is capped at `max`;
                // rounding in `f64` never takes it below the base.
                let secs = base.as_secs_f64() * factor.powi(exp);
                Duration::try_from_secs_f64(secs).map_or(max, |delay| delay.clamp(floor, max))
            }
        }
    }
}

/// A small pseudo-random source for full jitter (splitmix64), seeded from the standard
/// library's per-process random keys. Seeded only once a call actually backs off, so the
/// success path pays nothing.
#[derive(Debug)]
pub(crate) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(crate) fn new() -> Self {
        Self {
            state: RandomState::new().hash_one(0x9E37_79B9_7F4A_7C15u64),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniformly random duration in `0..=upper` ("full jitter").
    pub(crate) fn full(&mut self, upper: Duration) -> Duration {
        let nanos = u64::try_from(upper.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_u64() % (nanos.saturating_add(1)).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_then_caps() {
        let b = Backoff::Exponential {
            base: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_millis(500),
        };
        let got: Vec<_> = (1..=5).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        assert_eq!(b.delay(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn a_zero_base_stays_zero_however_far_the_factor_grows() {
        // Regression: `0 × inf = NaN` made `Duration::from_secs_f64` panic, at retry 1025
        // for a zero fixed delay turned exponential by `factor(2.0)`, or at once for
        // `factor(1e300)`.
        let zero = Duration::ZERO;
        for factor in [2.0, 1e300, f64::MAX] {
            let b = Backoff::Exponential {
                base: zero,
                factor,
                max: zero,
            };
            for retry in [1, 2, 1025, u32::MAX] {
                assert_eq!(b.delay(retry), zero, "factor {factor}, retry {retry}");
            }
        }
        let huge = Backoff::Exponential {
            base: Duration::from_nanos(1),
            factor: 1e300,
            max: Duration::MAX,
        };
        assert_eq!(huge.delay(1), Duration::from_nanos(1));
        assert_eq!(huge.delay(3), Duration::MAX);
    }

    #[test]
    fn full_jitter_stays_in_bounds_and_spreads() {
        let mut j = Jitter::new();
        let upper = Duration::from_millis(10);
        let samples: Vec<_> = (0..1000).map(|_| j.full(upper)).collect();
        assert!(samples.iter().all(|d| *d <= upper));
        assert!(samples.iter().any(|d| *d < upper / 4));
        assert!(samples.iter().any(|d| *d > upper * 3 / 4));
        assert_eq!(j.full(Duration::ZERO), Duration::ZERO);
    }
}
