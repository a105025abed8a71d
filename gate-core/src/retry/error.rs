//! Errors of retried calls and of retry policies.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::AcquireError;

/// An attempt ran longer than the policy's per-attempt timeout and was cancelled.
///
/// `#[gated(timeout = ...)]` functions report it in their own error type, through
/// `E: From<Elapsed>` or, for an error type of another crate (where the orphan rule forbids
/// that impl), through `timeout_error = fn(Elapsed) -> E`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Elapsed(());

impl Elapsed {
    pub(crate) const fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("attempt timed out")
    }
}

impl Error for Elapsed {}

/// What ended the last attempt of a retried call.
#[derive(Debug, PartialEq)]
pub enum Failure<E> {
    /// The operation returned this error.
    Error(E),
    /// The attempt ran past the per-attempt timeout.
    TimedOut(Elapsed),
    /// No permit could be had for the next attempt.
    Gate(AcquireError),
}

/// A retried call gave up: how many attempts it made, and what ended the last one.
///
/// The last underlying error is the [`source`](Error::source).
#[derive(Debug, PartialEq)]
pub struct RetryError<E> {
    attempts: u32,
    failure: Failure<E>,
    /// The server's hint that ended the call, and the policy's cap it exceeded.
    hint_too_long: Option<(Duration, Duration)>,
    /// The call stopped because the error said retrying cannot help.
    permanent: bool,
}

impl<E> RetryError<E> {
    pub(crate) fn new(attempts: u32, failure: Failure<E>) -> Self {
        Self {
            attempts,
            failure,
            hint_too_long: None,
            permanent: false,
        }
    }

    /// The call stopped, maybe with retries left, because the error said retrying cannot
    /// help.
    pub(crate) fn permanent(mut self) -> Self {
        self.permanent = true;
        self
    }

    /// Whether the call stopped at once because its last error said retrying cannot help
    /// ([`Backpressure::is_permanent`](crate::Backpressure::is_permanent): a spent quota, a
    /// request too large for any window), under a policy that
    /// [honours server hints](crate::RetryBuilder::honor_retry_after).
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The call stopped, with retries left, because the last error's server hint was
    /// longer than the policy waits for.
    pub(crate) fn with_hint_too_long(mut self, hint: Duration, max: Duration) -> Self {
        self.hint_too_long = Some((hint, max));
        self
    }

    /// The server's hint that ended the call with retries left, because it was longer than
    /// the policy's [`max_retry_after`](crate::RetryBuilder::max_retry_after); `None` if the
    /// call ended otherwise. A caller may schedule the work for then, or give up.
    pub fn hint_too_long(&self) -> Option<Duration> {
        self.hint_too_long.map(|(hint, _)| hint)
    }

    /// Attempts made, counting the first. Zero if the gate refused the first one.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// What ended the last attempt.
    pub fn failure(&self) -> &Failure<E> {
        &self.failure
    }

    /// What ended the last attempt, by value.
    pub fn into_failure(self) -> Failure<E> {
        self.failure
    }

    /// The operation's own last error, if the last attempt ended in one.
    pub fn into_inner(self) -> Option<E> {
        match self.failure {
            Failure::Error(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attempts = self.attempts;
        let plural = if attempts == 1 { "" } else { "s" };
        match &self.failure {
            Failure::Error(e) => write!(f, "failed after {attempts} attempt{plural}: {e}")?,
            Failure::TimedOut(e) => write!(f, "failed after {attempts} attempt{plural}: {e}")?,
            Failure::Gate(e) => write!(f, "gave up after {attempts} attempt{plural}: {e}")?,
        }
        if self.permanent {
            f.write_str(" (not retried: retrying cannot help)")?;
        }
        if let Some((hint, max)) = self.hint_too_long {
            write!(
                f,
                " (the server asked to wait {hint:?}, longer than the {max:?} the policy waits)"
            )?;
        }
        Ok(())
    }
}

impl<E: Error + 'static> Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.failure {
            Failure::Error(e) => Some(e),
            Failure::TimedOut(e) => Some(e),
            Failure::Gate(e) => Some(e),
        }
    }
}

/// A retry policy's settings were invalid; nothing was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryConfigError {
    /// A duration given in seconds was NaN, infinite or negative.
    InvalidDuration,
    /// The exponential growth factor was NaN, infinite or below 1.
    InvalidFactor,
    /// The first delay was longer than the cap on delays.
    BaseExceedsMax,
    /// The per-attempt timeout was zero, which no attempt could meet.
    ZeroTimeout,
}

impl fmt::Display for RetryConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidDuration => "a duration must be finite and not negative",
            Self::InvalidFactor => "the backoff factor must be finite and at least 1",
            Self::BaseExceedsMax => "the base delay must not exceed the maximum delay",
            Self::ZeroTimeout => "the per-attempt timeout must be greater than zero",
        })
    }
}

impl Error for RetryConfigError {}
