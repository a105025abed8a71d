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
    pub fn delay(&self, retry: u32) -> Duration {
        match *self {
            Backoff::Fixed(delay) => delay,
            Backoff::Exponential { base, factor, max } => {
                let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
                let secs = base.as_secs_f64() * factor.powi(exp);
                if secs >= max.as_secs_f64() {
                    max
                } else {
                    Duration::from_secs_f64(secs)
                }
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
