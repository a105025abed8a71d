//! Retry with backoff, jitter, per-attempt timeouts and server hints.

mod backoff;
mod call;
mod error;
mod policy;
mod schedule;

pub use backoff::Backoff;
pub(crate) use backoff::Jitter;
pub use error::{Elapsed, Failure, RetryConfigError, RetryError};
pub use policy::{Retry, RetryBuilder};
pub(crate) use schedule::{Failed, Schedule, Stop};
