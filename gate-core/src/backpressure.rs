//! [`Backpressure`]: how an error says "the server is overloaded, come back later"; and
//! [`Signal`], the same said as a value.

use std::time::Duration;

use crate::Outcome;

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
/// # Errors that waiting cannot fix
///
/// Some answers look like overload but are not: OpenAI sends a 429 with the code
/// `insufficient_quota` when the account's credit is spent, and a 429 `Request too large
/// ... tokens per min` (or a 400 `context_length_exceeded`) when one request is larger than
/// the window could ever hold. Retrying them only burns attempts (and, in a batch, hours).
/// An error that says so returns `true` from [`is_permanent`](Self::is_permanent); a
/// [`Retry`](crate::Retry) built with
/// [`honor_retry_after`](crate::RetryBuilder::honor_retry_after) then ends the call at
/// once, before its `retry_if` is asked, and
/// [`RetryError::is_permanent`](crate::RetryError::is_permanent) says why. It is reported
/// as [`Outcome::Failed`](crate::Outcome::Failed), not as an overload, even if
/// [`is_overload`](Self::is_overload) is true too: a spent quota says nothing about load, so
/// it neither pauses a [`Limiter`](crate::Limiter) nor shrinks an adaptive limit.
/// `hint::ApiErrorKind` (feature `http`) sorts OpenAI's and Anthropic's error codes this way.
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

    /// Whether retrying cannot help: a spent quota or credit, a request larger than the
    /// server ever accepts (see
    /// [Errors that waiting cannot fix](Self#errors-that-waiting-cannot-fix)). `false`
    /// unless implemented.
    fn is_permanent(&self) -> bool {
        false
    }
}

/// What an error says about the server, as a value: what [`Backpressure`]'s three methods
/// return. A policy built with
/// [`honor_retry_after_with`](crate::RetryBuilder::honor_retry_after_with) reads errors
/// through a function returning it, for error types that cannot implement [`Backpressure`]
/// (another crate's, under the orphan rule).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Signal {
    /// The server is overloaded ([`Backpressure::is_overload`]).
    pub overload: bool,
    /// How long the server asked callers to stay away ([`Backpressure::retry_after`]); an
    /// untrusted hint, capped where it is honoured.
    pub retry_after: Option<Duration>,
    /// Retrying cannot help ([`Backpressure::is_permanent`]).
    pub permanent: bool,
}

impl Signal {
    /// Nothing about load: an ordinary failure.
    pub const NONE: Self = Self {
        overload: false,
        retry_after: None,
        permanent: false,
    };

    /// Retrying cannot help: a spent quota, a request too large for any window.
    pub const PERMANENT: Self = Self {
        overload: false,
        retry_after: None,
        permanent: true,
    };

    /// The server is overloaded, and maybe said for how long to stay away.
    pub const fn overload(retry_after: Option<Duration>) -> Self {
        Self {
            overload: true,
            retry_after,
            permanent: false,
        }
    }

    /// What `error` says through its [`Backpressure`] methods.
    pub fn of<E: Backpressure + ?Sized>(error: &E) -> Self {
        Self {
            overload: error.is_overload(),
            retry_after: error.retry_after(),
            permanent: error.is_permanent(),
        }
    }

    /// What an attempt that failed so tells its [`Admission`](crate::Admission): an
    /// overload, with its hint, unless the error is permanent, which is a plain failure
    /// whatever else it says (a spent quota must not pause a limiter or shrink an adaptive
    /// limit).
    pub const fn outcome(self) -> Outcome {
        if self.overload && !self.permanent {
            Outcome::Overload {
                retry_after: self.retry_after,
            }
        } else {
            Outcome::Failed
        }
    }
}
