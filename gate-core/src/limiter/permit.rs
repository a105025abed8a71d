//! [`LimiterPermit`] and [`OwnedLimiterPermit`]: one admitted attempt.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use super::Limiter;
use crate::{Outcome, OwnedPermit, Permit};

/// What a limiter noted when it admitted an attempt, for the report at its end.
#[derive(Debug, Clone, Copy)]
pub(super) struct Admitted {
    /// Admission time, read only if the adaptive algorithm wants latencies.
    pub(super) start: Option<Instant>,
    /// Attempts running when this one was admitted, itself included (adaptive only).
    pub(super) in_flight: usize,
    /// The limit when this attempt was admitted (adaptive only).
    pub(super) limit: usize,
}

/// One attempt admitted by a [`Limiter`]; dropping it lets the next caller in.
///
/// Report how the attempt ended with [`finish`](Self::finish) (or
/// [`Admission::release`](crate::Admission::release)) so that an adaptive limit learns from
/// it and an overload with `Retry-After` pauses the limiter. Dropping it without a report
/// counts as a cancellation: the permit goes back and nothing is learnt.
/// [`Retry::call`](crate::Retry::call) reports every attempt itself.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct LimiterPermit<'a> {
    pub(super) limiter: &'a Limiter,
    /// Kept so that it is dropped, releasing the concurrency permit, with this.
    pub(super) _gate: Permit<'a>,
    pub(super) admitted: Admitted,
}

impl LimiterPermit<'_> {
    /// Reports how the attempt ended and releases the permit.
    pub fn finish(self, outcome: Outcome) {
        self.limiter.report(&self.admitted, outcome);
    }

    /// The limiter this permit came from.
    pub fn limiter(&self) -> &Limiter {
        self.limiter
    }
}

impl Drop for LimiterPermit<'_> {
    fn drop(&mut self) {
        self.limiter.finished();
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
    pub(super) limiter: Arc<Limiter>,
    /// Kept so that it is dropped, releasing the concurrency permit, with this.
    pub(super) _gate: OwnedPermit,
    pub(super) admitted: Admitted,
}

impl OwnedLimiterPermit {
    /// Reports how the attempt ended and releases the permit.
    pub fn finish(self, outcome: Outcome) {
        self.limiter.report(&self.admitted, outcome);
    }

    /// The limiter this permit came from.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }
}

impl Drop for OwnedLimiterPermit {
    fn drop(&mut self) {
        self.limiter.finished();
    }
}

impl fmt::Debug for OwnedLimiterPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedLimiterPermit").finish_non_exhaustive()
    }
}
