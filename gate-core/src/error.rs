//! Errors of acquiring permits and configuring gates.

use std::fmt;

/// Why [`Gate::acquire`](crate::Gate::acquire) (or any waiting acquire) gave no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AcquireError {
    /// The gate was closed before or while waiting.
    Closed,
    /// The caller's deadline (`acquire_timeout` or the gate's `max_wait`) passed first.
    TimedOut,
    /// The queue already held `max_waiters` callers, so this one was refused at once.
    QueueFull,
    /// The store that keeps a shared limit (gate-redis's Redis) could not be reached, and
    /// the source's failure policy is to refuse rather than admit without it. A later
    /// admission may succeed: the store is asked again.
    Unavailable,
    /// A reservation of zero tokens from a token budget
    /// ([`Limiter::acquire_tokens`](crate::Limiter::acquire_tokens)): an estimate of
    /// nothing is a bug in the estimate, not a free call.
    ZeroCost,
    /// A reservation larger than the token budget can ever hold: it would wait for ever,
    /// so it fails at once. Split the request, or give the budget a larger burst.
    TooLarge {
        /// The tokens asked for.
        requested: u64,
        /// The most the budget admits at once.
        capacity: u64,
    },
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("gate closed"),
            Self::TimedOut => f.write_str("timed out waiting for a permit"),
            Self::QueueFull => f.write_str("too many callers waiting for a permit"),
            Self::Unavailable => f.write_str("the shared limit's store could not be reached"),
            Self::ZeroCost => f.write_str("a reservation of zero tokens"),
            Self::TooLarge {
                requested,
                capacity,
            } => write!(
                f,
                "a reservation of {requested} tokens exceeds the budget's capacity of {capacity}"
            ),
        }
    }
}

impl std::error::Error for AcquireError {}

/// Why [`Gate::try_acquire`](crate::Gate::try_acquire) gave no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TryAcquireError {
    /// The gate is closed.
    Closed,
    /// Not enough permits are free, or other callers are queued ahead.
    NoPermits,
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "gate closed",
            Self::NoPermits => "no permits available",
        })
    }
}

impl std::error::Error for TryAcquireError {}

/// A limit above [`Gate::MAX_PERMITS`](crate::Gate::MAX_PERMITS) was asked for.
///
/// Returned by [`Gate::try_new`](crate::Gate::try_new), [`Gate::set_limit`](crate::Gate::set_limit)
/// and the builder; nothing about the gate changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitError {
    pub(crate) requested: usize,
}

impl LimitError {
    /// The limit that was refused.
    pub fn requested(&self) -> usize {
        self.requested
    }
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "limit {} exceeds the maximum of {} permits",
            self.requested,
            crate::Gate::MAX_PERMITS
        )
    }
}

impl std::error::Error for LimitError {}
