//! A [`Gate`] admits as itself: one permit per caller, nothing to learn.

use std::future::Future;
use std::sync::Arc;

use super::{Admission, Outcome, OwnedAdmission, Report};
use crate::{AcquireError, Gate, OwnedPermit, Permit, Stats, WaitLimits};

impl Admission for Gate {
    type Permit<'a> = Permit<'a>;

    #[inline]
    fn admit_with(
        &self,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<Permit<'_>, AcquireError>> + Send {
        self.acquire_with(1, limits)
    }

    #[inline]
    fn try_admit(&self) -> Option<Permit<'_>> {
        self.try_acquire_uncontended()
    }

    fn wait_limits(&self) -> WaitLimits {
        Gate::wait_limits(self)
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.limit())
    }

    fn snapshot(&self) -> Option<Stats> {
        Some(Gate::stats(self))
    }
}

impl OwnedAdmission for Gate {
    type OwnedPermit = OwnedPermit;

    #[inline]
    fn admit_owned_with(
        self: Arc<Self>,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<OwnedPermit, AcquireError>> + Send + 'static {
        self.acquire_owned_with(1, limits)
    }

    #[inline]
    fn try_admit_owned(self: &Arc<Self>) -> Option<OwnedPermit> {
        self.try_acquire_owned_uncontended()
    }
}

/// A gate learns nothing from how an attempt ended: finishing is dropping.
impl Report for Permit<'_> {
    #[inline]
    fn finish(self, _: Outcome) {}
}

/// A gate learns nothing from how an attempt ended: finishing is dropping.
impl Report for OwnedPermit {
    #[inline]
    fn finish(self, _: Outcome) {}
}
