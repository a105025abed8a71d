//! Why a keyed gate gave no permit.

use std::fmt;

use crate::AcquireError;

/// Why [`KeyedGate::acquire`](super::KeyedGate::acquire) gave no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyedAcquireError {
    /// The key is new and `max_keys` keys, none of them idle, are already held: refused at
    /// once rather than grow.
    TooManyKeys,
    /// The caller's `max_wait` passed first.
    TimedOut,
    /// `max_waiters` callers of the same key were already queued.
    QueueFull,
    /// The key's limiter was closed ([`KeyedLimiter`](super::KeyedLimiter) only).
    Closed,
    /// The key's limiter refused for a reason of its own: a token cost of zero or above its
    /// budget's capacity, or a shared store out of reach ([`KeyedLimiter`](super::KeyedLimiter)
    /// only).
    Cost(AcquireError),
}

impl fmt::Display for KeyedAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooManyKeys => "too many keys in use",
            Self::TimedOut => "timed out waiting for a permit",
            Self::QueueFull => "too many callers waiting for a permit",
            Self::Closed => "gate closed",
            Self::Cost(error) => return error.fmt(f),
        })
    }
}

impl std::error::Error for KeyedAcquireError {}

/// A key's limiter refused as a gate refuses.
impl From<AcquireError> for KeyedAcquireError {
    fn from(error: AcquireError) -> Self {
        match error {
            AcquireError::Closed => Self::Closed,
            AcquireError::TimedOut => Self::TimedOut,
            AcquireError::QueueFull => Self::QueueFull,
            other @ (AcquireError::Unavailable
            | AcquireError::ZeroCost
            | AcquireError::TooLarge { .. }) => Self::Cost(other),
        }
    }
}

/// Through the admission seam ([`KeyHandle`](super::KeyHandle)), a refusal for too many keys
/// reads as [`AcquireError::QueueFull`]: refused at once, for lack of room to wait in.
impl From<KeyedAcquireError> for AcquireError {
    fn from(error: KeyedAcquireError) -> Self {
        match error {
            KeyedAcquireError::TooManyKeys | KeyedAcquireError::QueueFull => Self::QueueFull,
            KeyedAcquireError::TimedOut => Self::TimedOut,
            KeyedAcquireError::Closed => Self::Closed,
            KeyedAcquireError::Cost(error) => error,
        }
    }
}

/// Why [`KeyedGate::try_acquire`](super::KeyedGate::try_acquire) gave no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyedTryAcquireError {
    /// The key is new and `max_keys` keys, none of them idle, are already held.
    TooManyKeys,
    /// The key or the global limit is full, or callers are queued ahead (for a
    /// [`KeyedLimiter`](super::KeyedLimiter): the key's limiter could not admit at once).
    NoPermits,
}

impl fmt::Display for KeyedTryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooManyKeys => "too many keys in use",
            Self::NoPermits => "no permits available",
        })
    }
}

impl std::error::Error for KeyedTryAcquireError {}
