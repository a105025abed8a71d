//! The mock's rate limit: a token bucket.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket: `burst` tokens, refilled at `rate` per second; each request takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate_per_sec.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            updated: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Fills the bucket again.
    pub fn refill(&mut self, now: Instant) {
        self.tokens = self.burst;
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
}
