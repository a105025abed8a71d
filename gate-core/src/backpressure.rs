//! [`Backpressure`]: how an error says "the server is overloaded, come back later".

use std::time::Duration;

/// Implemented by error types that can carry a server's overload signal.
///
/// An HTTP 429 or 503, or a gRPC `RESOURCE_EXHAUSTED` or `UNAVAILABLE`, is an overload signal;
/// a `Retry-After` header is a hint of how long to stay away. A [`Retry`](crate::Retry) built
/// with [`honor_retry_after`](crate::RetryBuilder::honor_retry_after) waits at least the hinted
/// time before the next attempt.
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

    /// How long the server asked callers to stay away, if it said.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}
