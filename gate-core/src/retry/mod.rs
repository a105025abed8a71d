//! Retry with backoff, jitter, per-attempt timeouts and server hints.
//!
//! [`Retry::call`] runs an operation under a policy; [`Attempts`] is the same loop written
//! out, for a body that borrows `&mut self` afresh on each attempt.

mod attempts;
pub(crate) mod backoff;
mod call;
pub(crate) mod error;
pub(crate) mod policy;
mod schedule;

// `Retry`, `RetryBuilder`, `RetryError`, `Backoff` and `Elapsed` are at the crate's root,
// and only there; what only a reader of a `RetryError`, a builder's error or a hand-written
// retry loop needs is here.
pub use attempts::{Attempt, Attempts, Step};
pub(crate) use backoff::{Backoff, Jitter};
pub(crate) use error::{Elapsed, RetryError};
pub use error::{Failure, RetryConfigError};
pub(crate) use policy::Retry;
pub(crate) use schedule::{Failed, Schedule, Stop, finish};
