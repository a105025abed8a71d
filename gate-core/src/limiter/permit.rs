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
    /// Tokens reserved from the limiter's budget.
    pub(super) tokens: u64,
}

impl LimiterPermit<'_> {
    /// Tokens this attempt holds reserved from the limiter's
    /// [token budget](crate::LimiterBuilder::tokens): the estimate it was admitted with, or
    /// what the last [`settle`](Self::settle) said. 0 without a budget.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Settles the reservation with the tokens the attempt `used`, as the response reports
    /// them (an LLM API's `usage.total_tokens`): what was reserved and not used goes back to
    /// the budget, what was used beyond it is charged, so that later callers wait for what
    /// was really spent. May be called again; each call corrects the last. Does nothing
    /// without a budget.
    ///
    /// # Settling by rule
    ///
    /// A permit finished or dropped without `settle` leaves its estimate charged: a request
    /// that reached the server is taken to have cost what it was estimated at. An attempt
    /// the server refused without charging for it (a 429, as OpenAI does not count refused
    /// requests) should `settle(0)`; one that failed on the way, as the caller's code
    /// knows, may settle what it knows.
    #[inline]
    pub fn settle(&mut self, used: u64) {
        self.limiter.settle(&mut self.tokens, used);
    }

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
    /// Tokens reserved from the limiter's budget.
    pub(super) tokens: u64,
}

impl OwnedLimiterPermit {
    /// Like [`LimiterPermit::tokens`].
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Like [`LimiterPermit::settle`].
    #[inline]
    pub fn settle(&mut self, used: u64) {
        self.limiter.settle(&mut self.tokens, used);
    }

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
