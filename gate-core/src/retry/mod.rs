//! Retry with backoff, jitter, per-attempt timeouts and server hints.
//!
//! [`Retry::call`] runs an operation under a policy; [`Attempts`] is the same loop written
//! out, for a body that borrows `&mut self` afresh on each attempt.

mod attempts;
mod backoff;
mod call;
mod error;
mod policy;
mod schedule;

pub use attempts::{Attempt, Attempts, Step};
pub use backoff::Backoff;
pub(crate) use backoff::Jitter;
pub use error::{Elapsed, Failure, RetryConfigError, RetryError};
pub use policy::{Retry, RetryBuilder};
pub(crate) use schedule::{Failed, Schedule, Stop};
