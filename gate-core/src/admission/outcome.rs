//! [`Outcome`]: how an attempt ended, as a permit reports it.

use std::time::Duration;

/// How one attempt made under an [`Admission`](super::Admission) ended, as its permit reports
/// it to [`Finish::finish`](super::Report::finish).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The attempt succeeded.
    Success,
    /// The server said it is overloaded (an error whose
    /// [`Backpressure::is_overload`](crate::Backpressure::is_overload) is true), perhaps
    /// with a time to stay away.
    Overload {
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The attempt ran past its timeout and was cancelled: a sign of overload.
    TimedOut,
    /// The attempt failed in a way that says nothing about load (a 404, a parse error).
    Failed,
}
