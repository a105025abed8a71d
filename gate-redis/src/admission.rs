//! A [`RedisLimiter`] is an [`Admission`]: retry, batches, `#[gated]` and gate-tower's layer
//! take it as they take a local limiter.

use std::future::Future;
use std::sync::Arc;

use gate_core::{AcquireError, Admission, OwnedAdmission, Stats, WaitLimits};

use crate::{RedisLimiter, RedisPermit};

impl Admission for RedisLimiter {
    type Permit<'a> = RedisPermit;

    fn admit_with(
        &self,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<RedisPermit, AcquireError>> + Send {
        Arc::clone(self.shared()).admit(limits, None)
    }

    fn admit_tokens_with(
        &self,
        tokens: u64,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<RedisPermit, AcquireError>> + Send {
        Arc::clone(self.shared()).admit(limits, Some(tokens))
    }

    /// Always `None`: every admission takes a round trip to Redis, which `admit_with` makes.
    fn try_admit(&self) -> Option<RedisPermit> {
        None
    }

    fn wait_limits(&self) -> WaitLimits {
        RedisLimiter::wait_limits(self)
    }

    /// The shared concurrency limit, as Redis last answered it, or this process's
    /// [adaptive share](crate::RedisLimiterBuilder::adaptive) if that is lower; `None` for a
    /// rate only.
    fn capacity(&self) -> Option<usize> {
        match (self.limit(), self.share_limit()) {
            (Some(fleet), Some(share)) => Some(fleet.min(share)),
            (fleet, share) => fleet.or(share),
        }
    }

    /// [`RedisLimiter::stats`]: the shared state as Redis last answered this process, and
    /// this process's own counts.
    fn snapshot(&self) -> Option<Stats> {
        Some(self.stats())
    }
}

impl OwnedAdmission for RedisLimiter {
    type OwnedPermit = RedisPermit;

    fn admit_owned_with(
        self: Arc<Self>,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<RedisPermit, AcquireError>> + Send + 'static {
        Arc::clone(self.shared()).admit(limits, None)
    }

    fn admit_owned_tokens_with(
        self: Arc<Self>,
        tokens: u64,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<RedisPermit, AcquireError>> + Send + 'static {
        Arc::clone(self.shared()).admit(limits, Some(tokens))
    }

    /// Always `None`, as [`Admission::try_admit`].
    fn try_admit_owned(self: &Arc<Self>) -> Option<RedisPermit> {
        None
    }
}
