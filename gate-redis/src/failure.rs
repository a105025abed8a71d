//! [`FailurePolicy`]: what a limiter does while Redis cannot be reached.

use std::sync::Arc;

use gate_core::Limiter;

/// What a [`RedisLimiter`](crate::RedisLimiter) does when Redis does not answer within its
/// [timeout](crate::RedisLimiterBuilder::timeout), or answers with an error.
///
/// After a failed call the limiter stops asking Redis for
/// [`RedisLimiter::RECHECK_AFTER`](crate::RedisLimiter::RECHECK_AFTER), answering by this
/// policy at once rather than paying the timeout on every admission; then it asks again, and
/// as soon as Redis answers, admissions are shared again. Recovery needs nothing from the
/// caller. Permits handed out by the policy (open or local) are not counted in Redis.
///
/// The default is [`Closed`](Self::Closed): a shared quota is a promise made to someone else
/// (an API's rate, a database's connections) that no process can keep alone, so the limiter
/// says so at once, with an error callers see, instead of letting every replica run at the
/// full quota. Pick [`Local`](Self::local) to keep serving within a share of it, or
/// [`Open`](Self::Open) when the limit protects nothing that matters more than availability.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Refuse: admissions fail with
    /// [`AcquireError::Unavailable`](gate_core::AcquireError::Unavailable).
    #[default]
    Closed,
    /// Admit everyone, without limit, until Redis answers again.
    Open,
    /// Admit through this process's own limiter, typically the shared limit divided by the
    /// number of replicas expected to run.
    Local(Arc<Limiter>),
}

impl FailurePolicy {
    /// Falls back to `limiter`, which this process alone uses while Redis is away.
    ///
    /// ```
    /// use gate_core::Limiter;
    /// use gate_redis::FailurePolicy;
    ///
    /// // A fleet limit of 40 shared by 4 replicas: each keeps 10 while Redis is down.
    /// let policy = FailurePolicy::local(Limiter::new(40 / 4));
    /// # let _ = policy;
    /// ```
    pub fn local(limiter: Limiter) -> Self {
        Self::Local(Arc::new(limiter))
    }
}
