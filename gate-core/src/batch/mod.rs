//! [`Batch`]: run many items through a gate, get every result back in input order.
//!
//! This is the Rust answer to Python's `tqdm_asyncio.gather(*coros, return_exceptions=True)`:
//!
//! - **Every result, in input order, each its own `Result`.** One failed item never loses the
//!   others; the report's `results[i]` belongs to the `i`-th item.
//! - **Lazy.** Items are pulled from an iterator or a [`Stream`](futures_util::Stream) only when
//!   there is room, so a batch of a million items keeps at most the gate's limit plus a small
//!   [`window`](Batch::window) of them alive, not a million futures.
//! - **Retried per item.** With a [`Retry`](crate::Retry) policy each item gets its own attempts, one permit
//!   per attempt, released while backing off ([`Retry::call`](crate::Retry::call)); the batch counts retries and
//!   failures as they happen.
//! - **Watched.** With the default `progress` feature, [`Batch::progress`] draws a bar on stderr
//!   (done / total, rate, ETA, live failures and retries) that hides itself when stderr is not a
//!   terminal, so logs and CI stay clean.
//! - **Summarised.** [`BatchReport::summary`] holds what happened: succeeded, failed, retries,
//!   elapsed, and the gate's wait-time percentiles; it implements `Display`.
//!
//! # Examples
//!
//! A hundred API calls, at most ten at once, each retried twice:
//!
//! ```
//! use std::time::Duration;
//! use gate_core::{Batch, Gate, Retry};
//!
//! # #[derive(Debug)] struct ApiError;
//! async fn fetch(id: u32) -> Result<String, ApiError> {
//!     Ok(format!("item {id}"))
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let gate = Gate::new(10);
//! let report = Batch::new(&gate)
//!     .retry(Retry::fixed(2, Duration::from_millis(500)))
//!     .run(0..100, |id| fetch(id))
//!     .await;
//!
//! assert_eq!(report.results.len(), 100);
//! assert_eq!(report.results[42].as_deref().ok(), Some("item 42"));
//! assert_eq!(report.summary.succeeded, 100);
//! println!("{}", report.summary);
//! # }
//! ```

#[cfg(feature = "progress")]
mod progress;
pub(crate) mod report;
mod run;
pub(crate) mod setup;
#[cfg(test)]
mod tests;

pub(crate) use report::BatchReport;
pub use report::Summary;
pub(crate) use setup::Batch;
pub use setup::DEFAULT_WINDOW;
