//! [`Clock`]: where a rate limit reads the time.

use std::time::Duration;

use tokio::time::Instant;

/// A source of time for a [`RateLimit`](super::RateLimit).
///
/// The default, [`TokioClock`], reads tokio's clock, so a rate limit honours paused time in
/// tests. Another clock (a cheaper counter, a manual clock for a simulation outside tokio)
/// can be plugged in with [`RateLimit::with_clock`](super::RateLimit::with_clock);
/// [`until_ready`](super::RateLimit::until_ready) still sleeps on tokio's timer, for the
/// wait the clock reports.
pub trait Clock {
    /// Nanoseconds since a fixed origin of the clock's choosing. A clock that runs backwards
    /// makes the limit stricter, never looser.
    fn now_nanos(&self) -> u64;
}

/// Tokio's clock ([`tokio::time::Instant`]), which follows paused and advanced time in tests.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds from the origin to `at` (zero before the origin).
    #[inline]
    pub fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX / 2)
    }

    /// The instant `nanos` after the origin.
    pub fn instant(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.nanos(Instant::now())
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
}
