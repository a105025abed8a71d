//! [`LimiterPermit`] and [`OwnedLimiterPermit`]: one admitted attempt.

use std::fmt;
use std::sync::Arc;

use super::Limiter;
use crate::Outcome;

/// What a limiter noted when it admitted an attempt, for the report at its end.
///
/// Plain words, so that handing a permit out of a poll is a few aligned stores.
#[derive(Debug, Clone, Copy)]
pub(super) struct Admitted {
    /// Admission time on the adaptive limit's clock, read only if the algorithm wants
    /// latencies (zero otherwise).
    pub(super) start: u64,
    /// How full the gate was at admission, this attempt included (adaptive only); see
    /// [`Sample::in_flight`](crate::adaptive::Sample::in_flight).
    pub(super) in_flight: usize,
    /// The limit when this attempt was admitted (adaptive only).
    pub(super) limit: usize,
}

impl Admitted {
    /// What a limiter without an adaptive limit notes: nothing.
    pub(super) const UNOBSERVED: Self = Self {
        start: 0,
        in_flight: 0,
        limit: 0,
    };
}

/// One attempt admitted by a [`Limiter`]; dropping it lets the next caller in.
///
/// Report how the attempt ended with [`finish`](Self::finish) (the same as
/// [`Report::finish`](crate::Report::finish)) so that an adaptive limit learns from
/// it and an overload with `Retry-After` pauses the limiter. Dropping it without a report
/// counts as a cancellation: the permit goes back and nothing is learnt.
/// [`Retry::call`](crate::Retry::call) reports every attempt itself.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct LimiterPermit<'a> {
    /// Holds one permit of the limiter's gate, given back on drop.
    pub(super) limiter: &'a Limiter,
    pub(super) admitted: Admitted,
}

impl LimiterPermit<'_> {
    /// Reports how the attempt ended and releases the permit.
    #[inline]
    pub fn finish(self, outcome: Outcome) {
        self.limiter.report(&self.admitted, outcome);
    }

    /// The limiter this permit came from.
    pub fn limiter(&self) -> &Limiter {
        self.limiter
    }
}

impl Drop for LimiterPermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.limiter.release();
    }
}

impl fmt::Debug for LimiterPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterPermit").finish_non_exhaustive()
    }
}

/// Like [`LimiterPermit`], but holding an `Arc<Limiter>`, so it is `'static` and can be
/// stored in a tower response future or moved into a spawned task. From
/// [`Limiter::acquire_owned`].
#[must_use = "the permit is released as soon as it is dropped"]
pub struct OwnedLimiterPermit {
    /// Holds one permit of the limiter's gate, given back on drop.
    pub(super) limiter: Arc<Limiter>,
    pub(super) admitted: Admitted,
}

impl OwnedLimiterPermit {
    /// Reports how the attempt ended and releases the permit.
    #[inline]
    pub fn finish(self, outcome: Outcome) {
        self.limiter.report(&self.admitted, outcome);
    }

    /// The limiter this permit came from.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }
}

impl Drop for OwnedLimiterPermit {
    #[inline]
    fn drop(&mut self) {
        self.limiter.release();
    }
}

impl fmt::Debug for OwnedLimiterPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedLimiterPermit").finish_non_exhaustive()
    }
}
