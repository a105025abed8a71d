//! [`Clock`]: where a rate limit reads the time.

use std::fmt;
use std::sync::Arc;
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

/// `at + after`, or, where the platform's `Instant` cannot count that far, the furthest of
/// `at` plus 30 years, plus one year, or `at` itself: never a panic. (Tokio's timer takes
/// any deadline past a couple of years as "far future" in the same way.)
pub(crate) fn instant_after(at: Instant, after: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    at.checked_add(after)
        .or_else(|| at.checked_add(YEAR * 30))
        .or_else(|| at.checked_add(YEAR))
        .unwrap_or(at)
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

    /// The instant `nanos` after the origin; where the platform's `Instant` cannot count
    /// that far, a time decades ahead instead (never a panic).
    pub fn instant(&self, nanos: u64) -> Instant {
        instant_after(self.origin, Duration::from_nanos(nanos))
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

/// The clock of a [`Limiter`](crate::Limiter), for its rate limit and the latencies of an
/// adaptive limit: tokio's, unless [`LimiterBuilder::clock`](crate::LimiterBuilder::clock)
/// chose another. Clones share one clock and its origin.
#[derive(Clone)]
pub struct LimiterClock(Source);

#[derive(Clone)]
enum Source {
    Tokio(TokioClock),
    /// Held in place rather than behind an `Arc`: it is plain data, copied with its origin,
    /// and a rate check then reads it from the limiter's own lines with no call through a
    /// pointer (a keyed limiter's limiters would otherwise each point at a clock of its own).
    #[cfg(feature = "quanta")]
    Quanta(QuantaClock),
    Other(Arc<dyn Clock + Send + Sync>),
}

impl LimiterClock {
    pub(crate) fn tokio() -> Self {
        Self(Source::Tokio(TokioClock::new()))
    }

    /// The clock a limiter built with `clock` reads: a [`QuantaClock`] in place, any other
    /// behind an `Arc`.
    pub(crate) fn from_clock(clock: impl Clock + Send + Sync + 'static) -> Self {
        #[cfg(feature = "quanta")]
        if let Some(quanta) = (&clock as &dyn std::any::Any).downcast_ref::<QuantaClock>() {
            return Self(Source::Quanta(quanta.clone()));
        }
        Self(Source::Other(Arc::new(clock)))
    }

    /// Whether this is tokio's clock, which follows paused time.
    pub fn is_tokio(&self) -> bool {
        matches!(self.0, Source::Tokio(_))
    }
}

impl Clock for LimiterClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        match &self.0 {
            Source::Tokio(clock) => clock.now_nanos(),
            #[cfg(feature = "quanta")]
            Source::Quanta(clock) => clock.now_nanos(),
            Source::Other(clock) => clock.now_nanos(),
        }
    }
}

impl fmt::Debug for LimiterClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Source::Tokio(_) => "LimiterClock::Tokio",
            #[cfg(feature = "quanta")]
            Source::Quanta(_) => "LimiterClock::Quanta",
            Source::Other(_) => "LimiterClock::Other",
        })
    }
}

/// The CPU's time-stamp counter, read through [quanta](https://docs.rs/quanta) as governor
/// reads it: about 9 ns a read where tokio's clock (`clock_gettime`) takes 25-30 ns.
///
/// It does not follow tokio's paused time, so a rate limit on it waits in real time even
/// in a `start_paused` test. Use it where the rate check is hot and tests do not pause time;
/// the default, [`TokioClock`], is the one that works everywhere.
///
/// ```
/// use gate_core::rate::{QuantaClock, Rate, RateLimit};
///
/// let limit = RateLimit::with_clock(Rate::per_second(10).burst(2), QuantaClock::new());
/// assert!(limit.check().is_ok());
/// assert!(limit.check().is_ok());
/// assert!(limit.check().is_err());
/// ```
#[cfg(feature = "quanta")]
#[cfg_attr(docsrs, doc(cfg(feature = "quanta")))]
#[derive(Debug, Clone)]
pub struct QuantaClock {
    clock: quanta::Clock,
    /// The raw counter at the origin.
    origin: u64,
}

#[cfg(feature = "quanta")]
impl QuantaClock {
    /// A clock whose origin is now. The first one built in a process calibrates the
    /// counter, which takes a few milliseconds.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        Self { clock, origin }
    }
}

#[cfg(feature = "quanta")]
impl Default for QuantaClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "quanta")]
impl Clock for QuantaClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        // Scales only the delta, to whole nanoseconds: no `Duration` on the way.
        self.clock.delta_as_nanos(self.origin, self.clock.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u64);

    impl Clock for Fixed {
        fn now_nanos(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn a_clock_of_the_users_is_read_through_its_arc() {
        let clock = LimiterClock::from_clock(Fixed(42));
        assert!(matches!(clock.0, Source::Other(_)));
        assert_eq!(clock.now_nanos(), 42);
    }

    // A keyed limiter's limiters each hold their clock: quanta's is kept in place, not in an
    // `Arc` of each limiter's own, and reads the same time as the clock it was made from.
    #[cfg(feature = "quanta")]
    #[test]
    fn a_quanta_clock_is_held_in_place() {
        let quanta = QuantaClock::new();
        let clock = LimiterClock::from_clock(quanta.clone());
        assert!(matches!(clock.0, Source::Quanta(_)));
        let (before, held, after) = (quanta.now_nanos(), clock.now_nanos(), quanta.now_nanos());
        assert!(before <= held && held <= after);
    }
}
