//! The mock's limits: token buckets with continuous refill, as OpenAI's rate-limit headers
//! describe them.

use std::time::Duration;

use tokio::time::Instant;

/// A bucket of `capacity` cells refilled continuously at `rate` cells a second. The mock keeps
/// one for requests (a request takes one cell) and one for tokens (a request takes
/// `prompt + max_tokens` cells and gets the unused part back when it completes).
///
/// Amounts are `f64`: exact up to 2^53, far beyond any limit a test or a user sets.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    level: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` cells (at least 1) refilled at `rate_per_sec`.
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        Self::with_capacity(rate_per_sec, u64::from(burst))
    }

    /// A full bucket of `capacity` cells (at least 1) refilled at `rate_per_sec`.
    pub fn with_capacity(rate_per_sec: f64, capacity: u64) -> Self {
        let capacity = capacity.max(1) as f64;
        let rate = if rate_per_sec.is_finite() {
            rate_per_sec.max(f64::MIN_POSITIVE)
        } else {
            f64::MIN_POSITIVE
        };
        Self {
            rate,
            capacity,
            level: capacity,
            updated: Instant::now(),
        }
    }

    /// The most cells the bucket holds.
    pub fn capacity(&self) -> u64 {
        self.capacity as u64
    }

    /// Cells refilled a second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn refill_to(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + elapsed * self.rate).min(self.capacity);
        self.updated = now;
    }

    /// Takes a cell, or says how long until one is there.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.try_take_n(1, now)
    }

    /// Takes `n` cells at once, or says how long until `n` are there (`Duration::MAX` if `n`
    /// exceeds the capacity: they never will be).
    pub fn try_take_n(&mut self, n: u64, now: Instant) -> Result<(), Duration> {
        self.refill_to(now);
        let n = n as f64;
        if n > self.capacity {
            return Err(Duration::MAX);
        }
        if self.level >= n {
            self.level -= n;
            Ok(())
        } else {
            Err(self.time_for(n - self.level))
        }
    }

    /// Gives back `n` cells (never above the capacity).
    pub fn refund(&mut self, n: u64, now: Instant) {
        self.refill_to(now);
        self.level = (self.level + n as f64).min(self.capacity);
    }

    /// Whole cells there now.
    pub fn remaining(&mut self, now: Instant) -> u64 {
        self.refill_to(now);
        self.level.max(0.0).floor() as u64
    }

    /// How long until the bucket is full again (OpenAI's `x-ratelimit-reset-*`).
    pub fn until_full(&mut self, now: Instant) -> Duration {
        self.refill_to(now);
        self.time_for(self.capacity - self.level)
    }

    /// Time to refill `cells`, saturating.
    fn time_for(&self, cells: f64) -> Duration {
        Duration::try_from_secs_f64(cells.max(0.0) / self.rate).unwrap_or(Duration::MAX)
    }

    /// Fills the bucket again.
    pub fn refill(&mut self, now: Instant) {
        self.level = self.capacity;
        self.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(t0), Ok(()));
        }
        let wait = bucket.try_take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(bucket.try_take(t0 + Duration::from_millis(100)), Ok(()));
        assert!(bucket.try_take(t0 + Duration::from_millis(150)).is_err());
    }

    #[test]
    fn many_cells_at_once_wait_for_all_of_them_and_refunds_return() {
        let t0 = Instant::now();
        // 3,000 tokens a minute = 50 a second.
        let mut bucket = TokenBucket::with_capacity(50.0, 3_000);
        assert_eq!(bucket.try_take_n(2_900, t0), Ok(()));
        assert_eq!(bucket.remaining(t0), 100);
        assert_eq!(bucket.try_take_n(200, t0), Err(Duration::from_secs(2)));
        assert_eq!(bucket.until_full(t0), Duration::from_secs(58));
        bucket.refund(400, t0);
        assert_eq!(bucket.remaining(t0), 500);
        assert_eq!(bucket.try_take_n(200, t0), Ok(()));
        // More than the bucket ever holds: never.
        assert_eq!(bucket.try_take_n(3_001, t0), Err(Duration::MAX));
        // Refunds and refill stop at the capacity.
        bucket.refund(10_000, t0 + Duration::from_secs(1));
        assert_eq!(bucket.remaining(t0 + Duration::from_secs(100)), 3_000);
        assert_eq!(
            bucket.until_full(t0 + Duration::from_secs(100)),
            Duration::ZERO
        );
    }
}
