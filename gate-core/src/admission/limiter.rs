//! A [`Limiter`] admits in its [order](Limiter#order-of-admission) and learns from every
//! attempt's end.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Admission, Outcome, OwnedAdmission, Report};
use crate::{AcquireError, Limiter, LimiterPermit, OwnedLimiterPermit, Stats, WaitLimits};

impl Admission for Limiter {
    type Permit<'a> = LimiterPermit<'a>;

    #[inline]
    fn admit_with(
        &self,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<LimiterPermit<'_>, AcquireError>> + Send {
        self.acquire_with(limits)
    }

    #[inline]
    fn admit_tokens_with(
        &self,
        tokens: u64,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<LimiterPermit<'_>, AcquireError>> + Send {
        self.acquire_tokens_with(tokens, limits)
    }

    #[inline]
    fn try_admit(&self) -> Option<LimiterPermit<'_>> {
        self.try_acquire_uncontended()
    }

    fn wait_limits(&self) -> WaitLimits {
        Limiter::wait_limits(self)
    }

    /// The concurrency limit, as an adaptive algorithm has set it; `None` for a limiter with
    /// a rate limit only.
    fn capacity(&self) -> Option<usize> {
        self.limit()
    }

    fn snapshot(&self) -> Option<Stats> {
        Some(Limiter::stats(self))
    }
}

impl OwnedAdmission for Limiter {
    type OwnedPermit = OwnedLimiterPermit;

    #[inline]
    fn admit_owned_with(
        self: Arc<Self>,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<OwnedLimiterPermit, AcquireError>> + Send + 'static {
        self.acquire_owned_with(limits)
    }

    #[inline]
    fn admit_owned_tokens_with(
        self: Arc<Self>,
        tokens: u64,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<OwnedLimiterPermit, AcquireError>> + Send + 'static {
        self.acquire_owned_tokens_with(tokens, limits)
    }

    #[inline]
    fn try_admit_owned(self: &Arc<Self>) -> Option<OwnedLimiterPermit> {
        self.try_acquire_owned_uncontended()
    }
}

impl Report for LimiterPermit<'_> {
    #[inline]
    fn finish(self, outcome: Outcome) {
        LimiterPermit::finish(self, outcome);
    }

    fn pushback(&self, retry_after: Duration) {
        self.limiter().pause_for(retry_after);
    }

    #[inline]
    fn settle(&mut self, used: u64) {
        LimiterPermit::settle(self, used);
    }
}

impl Report for OwnedLimiterPermit {
    #[inline]
    fn finish(self, outcome: Outcome) {
        OwnedLimiterPermit::finish(self, outcome);
    }

    fn pushback(&self, retry_after: Duration) {
        self.limiter().pause_for(retry_after);
    }
    #[inline]
    fn settle(&mut self, used: u64) {
        OwnedLimiterPermit::settle(self, used);
    }
}
