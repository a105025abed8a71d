//! [`LimiterPermit`]: one admitted attempt.

use std::fmt;

use tokio::time::Instant;

use super::Limiter;
use crate::{Admission, Outcome, Permit};

/// One attempt admitted by a [`Limiter`]; dropping it lets the next caller in.
///
/// Report how the attempt ended with [`finish`](Self::finish) (or
/// [`Admission::release`]) so that an adaptive limit learns from it and an overload with
/// `Retry-After` pauses the limiter. Dropping it without a report counts as a cancellation:
/// the permit goes back and nothing is learnt. [`Retry::call`](crate::Retry::call) reports
/// every attempt itself.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct LimiterPermit<'a> {
    pub(super) limiter: &'a Limiter,
    pub(super) gate: Option<Permit<'a>>,
    /// Admission time, read only if the adaptive algorithm wants latencies.
    pub(super) start: Option<Instant>,
    /// Attempts running when this one was admitted, itself included (adaptive only).
    pub(super) in_flight: usize,
    /// The limit when this attempt was admitted (adaptive only).
    pub(super) limit: usize,
}

impl LimiterPermit<'_> {
    /// Reports how the attempt ended and releases the permit.
    pub fn finish(self, outcome: Outcome) {
        let limiter = self.limiter;
        limiter.release(self, outcome);
    }

    /// The limiter this permit came from.
    pub fn limiter(&self) -> &Limiter {
        self.limiter
    }
}

impl Drop for LimiterPermit<'_> {
    fn drop(&mut self) {
        if let Some(adaptive) = &self.limiter.adaptive {
            adaptive.finished();
        }
    }
}

impl fmt::Debug for LimiterPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterPermit")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}
