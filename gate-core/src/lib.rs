//! Fair, resizable async gates for running lots of work against limited resources.
//!
//! A [`Gate`] is a semaphore done right: strictly first-in-first-out, cancel-safe,
//! resizable while permits are out, with bounded waiting and statistics. A [`Retry`] policy
//! runs an operation again on failure, holding a permit only while an attempt runs.
//!
//! ```
//! use std::time::Duration;
//! use gate_core::{Gate, Retry};
//!
//! static API: Gate = Gate::new(10);
//!
//! # #[derive(Debug)] struct ApiError;
//! async fn fetch(id: u32) -> Result<String, ApiError> {
//!     Ok(format!("item {id}"))
//! }
//!
//! #[tokio::main]
//! async fn main() {
//!     let policy = Retry::fixed(3, Duration::from_millis(200));
//!     let calls = (0..100).map(|id| API.call(&policy, move || fetch(id)));
//!     let results = futures_join_all(calls).await;
//!     assert!(results.iter().all(Result::is_ok));
//!     assert_eq!(API.stats().admitted, 100);
//! }
//! # async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
//! #     let mut out = Vec::new();
//! #     for f in fs { out.push(f.await); }
//! #     out
//! # }
//! ```
//!
//! # What is in here
//!
//! - [`Gate`], [`Permit`], [`OwnedPermit`]: the semaphore.
//! - [`Retry`], [`Backoff`], [`RetryError`]: retry policies, independent of where permits
//!   come from.
//! - [`Admission`]: where permits come from, the one seam that [`Retry::call`], [`Batch`],
//!   `#[gated]` and gate-tower's layer go through. [`Gate`], [`Limiter`] and [`Unlimited`]
//!   implement it; so can a source of your own (a limit shared through Redis, a per-key
//!   limit), which then works with all of them. [`OwnedAdmission`] is the same through an
//!   `Arc`, [`Report`] is how a permit tells its source how an attempt ended ([`Outcome`]),
//!   and [`BoxAdmission`] holds any source behind one type.
//! - [`Backpressure`]: how an error carries a server's `Retry-After`, or says that retrying
//!   cannot help; [`Signal`] is the same as a value, for another crate's error type. With
//!   the `http` feature, `hint` reads `Retry-After`, `retry-after-ms` and the rate-limit
//!   headers of OpenAI and Anthropic from responses, and sorts their error codes.
//! - [`Stats`]: what a gate has done.
//! - [`Limiter`]: a concurrency limit, a rate limit ([`rate`]), or both, with a pause shared
//!   by everyone when the server pushes back, and adaptive limits ([`adaptive`]).
//! - [`Batch`]: many items through a gate, results in input order, with retries, a progress
//!   bar and a summary ([`batch`]).
//!
//! # `#[gated]`
//!
//! With the default `macros` feature, [`gated`] limits an `async fn` without touching its
//! signature, and retries it if it returns a `Result`:
//!
//! ```
//! # #[cfg(feature = "macros")] {
//! use gate_core::gated;
//!
//! # #[derive(Debug)] struct ApiError;
//! #[gated(limit = 10, retry = 3, backoff = "exponential", wait = "500ms", max_delay = "10s")]
//! async fn fetch(id: u32) -> Result<String, ApiError> {
//!     Ok(format!("item {id}"))
//! }
//! # tokio_test::block_on(async { assert_eq!(fetch(7).await.unwrap(), "item 7") });
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(gate_loom)]
#[doc(hidden)]
pub mod __loom;
pub mod adaptive;
mod admission;
mod backpressure;
pub mod batch;
mod error;
mod gate;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod hint;
pub mod keyed;
mod limiter;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod observe;
pub mod rate;
pub mod retry;
pub mod stats;
mod sync;
mod token_usage;

pub use admission::{
    Admission, BoxAdmission, BoxPermit, Outcome, OwnedAdmission, Report, Unlimited,
};
pub use backpressure::{Backpressure, Signal};
pub use batch::report::BatchReport;
pub use batch::setup::Batch;
pub use error::{AcquireError, LimitError, TryAcquireError};
pub use gate::{Acquire, AcquireOwned, Gate, GateBuilder, OwnedPermit, Permit, WaitLimits};
pub use limiter::{
    Limiter, LimiterAcquire, LimiterAcquireOwned, LimiterBuilder, LimiterPermit, OwnedLimiterPermit,
};
pub use retry::backoff::Backoff;
pub use retry::error::{Elapsed, RetryError};
pub use retry::policy::{Retry, RetryBuilder};
pub use stats::Stats;
pub use token_usage::TokenUsage;

#[cfg(feature = "macros")]
#[doc(inline)]
pub use gate_macros::gated;

/// Not public API: what `#[gated]` expansions use.
#[doc(hidden)]
pub mod __private;
