//! Retry with backoff, jitter, per-attempt timeouts and server hints.

pub(crate) mod backoff;
mod call;
pub(crate) mod error;
pub(crate) mod policy;
mod schedule;

// `Retry`, `RetryBuilder`, `RetryError`, `Backoff` and `Elapsed` are at the crate's root,
// and only there; what only a reader of a `RetryError` or a builder's error needs is here.
pub(crate) use backoff::{Backoff, Jitter};
pub use error::{Failure, RetryConfigError};
pub(crate) use error::{Elapsed, RetryError};
pub(crate) use policy::Retry;
pub(crate) use schedule::{Failed, Schedule, Stop};
