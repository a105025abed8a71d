//! [`Backpressure`]: how an error says "the server is overloaded, come back later".

use std::time::Duration;

/// Implemented by error types that can carry a server's overload signal.
///
/// An HTTP 429 or 503, or a gRPC `RESOURCE_EXHAUSTED` or `UNAVAILABLE`, is an overload signal;
/// a `Retry-After` header is a hint of how long to stay away. A [`Retry`](crate::Retry) built
/// with [`honor_retry_after`](crate::RetryBuilder::honor_retry_after) waits at least the hinted
/// time before the next attempt.
///
/// # Hints are untrusted
///
/// A `Retry-After` is whatever the server (or a proxy, or an attacker in between) sent, so
/// `retry_after` may return any `Duration`, `Duration::MAX` included; nothing overflows or
/// panics. Every hint is capped where it is honoured, and a longer hint never waits less
/// than a shorter one:
///
/// - a [`Limiter`](crate::Limiter) pauses for at most its
///   [`max_pause`](crate::LimiterBuilder::max_pause) (60 s unless set);
/// - a [`Retry`](crate::Retry) waits for a hint up to its
///   [`max_retry_after`](crate::RetryBuilder::max_retry_after) (60 s unless set) and, on a
///   longer one, ends the call at once with the error, so a caller is not blocked for the
///   hours a spent daily quota may announce;
/// - `#[gated(backpressure = true)]` goes through both, with those defaults.
///
/// ```
/// use std::time::Duration;
/// use gate_core::Backpressure;
///
/// #[derive(Debug)]
/// enum ApiError {
///     TooManyRequests { retry_after: Option<Duration> },
///     Other,
/// }
///
/// impl Backpressure for ApiError {
///     fn is_overload(&self) -> bool {
///         matches!(self, ApiError::TooManyRequests { .. })
///     }
///     fn retry_after(&self) -> Option<Duration> {
///         match self {
///             ApiError::TooManyRequests { retry_after } => *retry_after,
///             ApiError::Other => None,
///         }
///     }
/// }
/// ```
pub trait Backpressure {
    /// Whether this error means the server is overloaded.
    fn is_overload(&self) -> bool {
        false
    }

    /// How long the server asked callers to stay away, if it said. Any value is safe to
    /// return (see [Hints are untrusted](Self#hints-are-untrusted)).
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}
