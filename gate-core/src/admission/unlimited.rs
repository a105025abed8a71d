//! [`Unlimited`]: an admission that admits everyone at once.

use std::future::{Future, ready};
use std::sync::Arc;

use super::{Admission, Outcome, OwnedAdmission, Report};
use crate::{AcquireError, WaitLimits};

/// Admits everyone at once: retry, or a batch, without any limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl Admission for Unlimited {
    type Permit<'a> = ();

    fn admit_with(&self, _: WaitLimits) -> impl Future<Output = Result<(), AcquireError>> + Send {
        ready(Ok(()))
    }

    fn try_admit(&self) -> Option<()> {
        Some(())
    }
}

impl OwnedAdmission for Unlimited {
    type OwnedPermit = ();

    fn admit_owned_with(
        self: Arc<Self>,
        _: WaitLimits,
    ) -> impl Future<Output = Result<(), AcquireError>> + Send + 'static {
        ready(Ok(()))
    }

    fn try_admit_owned(self: &Arc<Self>) -> Option<()> {
        Some(())
    }
}

/// Nothing to release and nobody to tell.
impl Report for () {
    fn finish(self, _: Outcome) {}
}
