//! [`Batch`]: run many items through a gate, get every result back in input order.
//!
//! This is the Rust answer to Python's `tqdm_asyncio.gather(*coros, return_exceptions=True)`:
//!
//! - **Every result, in input order, each its own `Result`.** One failed item never loses the
//!   others; the report's `results[i]` belongs to the `i`-th item.
//! - **Lazy.** Items are pulled from an iterator or a [`Stream`](futures_util::Stream) only when
//!   there is room, so a batch of a million items keeps at most the gate's limit plus a small
//!   [`window`](Batch::window) of them alive, not a million futures.
//! - **Retried per item.** With a [`Retry`] policy each item gets its own attempts, one permit
//!   per attempt, released while backing off ([`Retry::call`]); the batch counts retries and
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
//! use gate_core::{Gate, Retry};
//! use gate_core::batch::Batch;
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
mod report;
mod run;
#[cfg(test)]
mod tests;

pub use report::{BatchReport, Summary};

use std::borrow::Cow;
use std::fmt;

use crate::Retry;

/// How many items a batch keeps alive beyond its admission's capacity, unless set with
/// [`Batch::window`].
pub const DEFAULT_WINDOW: usize = 16;

/// A batch run: where permits come from, how items are retried, and how progress is shown.
///
/// Build one with [`Batch::new`], configure it, then [`run`](Self::run) it over an iterator
/// or [`run_stream`](Self::run_stream) over a stream. Running consumes the batch.
///
/// # How many items are alive at once
///
/// A batch starts an item only while fewer than *capacity + window* items are unfinished,
/// where *capacity* is the admission's current limit ([`Admission::capacity`](crate::Admission::capacity), read again
/// before each item, so a gate resized mid-batch is followed) and *window* is
/// [`DEFAULT_WINDOW`] unless set. The window keeps a few items queued at the gate so a
/// released permit is taken at once. An admission that does not know its capacity
/// ([`Unlimited`](crate::Unlimited)) runs *window* items at a time;
/// [`max_in_flight`](Self::max_in_flight) sets the bound outright.
///
/// # Cancellation
///
/// Dropping the future returned by `run` drops every unfinished item (releasing its permit)
/// and pulls no more items.
#[must_use = "a batch does nothing until `run` or `run_stream` is awaited"]
pub struct Batch<A, E> {
    admission: A,
    retry: Retry<E>,
    window: usize,
    max_in_flight: Option<usize>,
    #[cfg(feature = "progress")]
    progress: bool,
    label: Option<Cow<'static, str>>,
}

impl<A, E> Batch<A, E> {
    /// A batch whose items take their permits from `admission` (a `&Gate`, an `Arc<Gate>`,
    /// or any other [`Admission`](crate::Admission)).
    ///
    /// Items are tried once, with no progress bar, until configured otherwise.
    pub fn new(admission: A) -> Self {
        Self {
            admission,
            retry: Retry::new(0),
            window: DEFAULT_WINDOW,
            max_in_flight: None,
            #[cfg(feature = "progress")]
            progress: false,
            label: None,
        }
    }

    /// Retries each item under `policy`: each attempt holds its own permit, released while
    /// the item backs off. Each attempt gets a fresh clone of the item.
    pub fn retry(mut self, policy: Retry<E>) -> Self {
        self.retry = policy;
        self
    }

    /// Keeps up to `window` items waiting at the gate beyond its capacity (at least 1).
    pub fn window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// Keeps at most `n` items alive at once (at least 1), whatever the admission's
    /// capacity. `usize::MAX` starts every item at once, as `asyncio.gather` does.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }

    /// Draws a progress bar on stderr while the batch runs: done / total, rate, ETA, and
    /// live counts of failures and retries. The bar hides itself when stderr is not a
    /// terminal (or `TERM` is `dumb`), so piping the output stays clean.
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress(mut self, show: bool) -> Self {
        self.progress = show;
        self
    }

    /// Names the batch; the name prefixes the progress bar and the summary.
    pub fn label(mut self, label: impl Into<Cow<'static, str>>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// The retry policy each item runs under.
    pub fn retry_policy(&self) -> &Retry<E> {
        &self.retry
    }

    /// Where items take their permits from.
    pub fn admission(&self) -> &A {
        &self.admission
    }
}

impl<A: fmt::Debug, E> fmt::Debug for Batch<A, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Batch");
        d.field("admission", &self.admission)
            .field("retry", &self.retry)
            .field("window", &self.window)
            .field("max_in_flight", &self.max_in_flight);
        #[cfg(feature = "progress")]
        d.field("progress", &self.progress);
        d.field("label", &self.label).finish()
    }
}
