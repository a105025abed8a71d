//! [`Batch`]: a batch run's setup, where permits come from, how items are retried, how
//! progress is shown; [`run`](Batch::run) lives in `run.rs`.

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
    pub(super) admission: A,
    pub(super) retry: Retry<E>,
    pub(super) window: usize,
    pub(super) max_in_flight: Option<usize>,
    #[cfg(feature = "progress")]
    pub(super) progress: bool,
    pub(super) label: Option<Cow<'static, str>>,
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
