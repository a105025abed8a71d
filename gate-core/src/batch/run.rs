//! The batch driver: pulls items while there is room, runs each under the retry policy,
//! and files every result under its item's index.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;

use futures_util::stream::{self, FuturesUnordered, Stream, StreamExt};

#[cfg(feature = "progress")]
use super::progress::Bar;
use super::{Batch, BatchReport, Summary};
use crate::{Admission, RetryError};

/// Live counts shared by the driver, the items and the progress bar.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) failed: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) attempts: AtomicU64,
}

/// Results are preallocated up to this many items; beyond it the vector grows as items come.
const PREALLOCATE_MAX: usize = 1 << 16;

impl<A, E> Batch<A, E>
where
    A: Admission,
{
    /// Runs `op` on every item of `items` and returns all results in input order.
    ///
    /// Items are pulled from the iterator only when there is room (see
    /// [`Batch`](Batch#how-many-items-are-alive-at-once)), so it may be endless-looking or
    /// expensive to produce. `op` is called once per attempt with a clone of the item; it is
    /// `Fn`, not `FnMut`, because many items run at once.
    ///
    /// The progress bar's total is the iterator's length when its size hint is exact.
    ///
    /// ```
    /// use gate_core::{Batch, Gate};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let gate = Gate::new(3);
    /// let report = Batch::new(&gate)
    ///     .run(["a", "bb", "ccc"], |s| async move {
    ///         if s.len() == 2 { Err("even") } else { Ok(s.len()) }
    ///     })
    ///     .await;
    /// assert_eq!(report.results[0], Ok(1));
    /// assert!(report.results[1].is_err());
    /// assert_eq!(report.results[2], Ok(3));
    /// assert_eq!((report.summary.succeeded, report.summary.failed), (2, 1));
    /// # }
    /// ```
    pub async fn run<I, F, Fut, T>(self, items: I, op: F) -> BatchReport<T, E>
    where
        I: IntoIterator,
        I::Item: Clone,
        F: Fn(I::Item) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let items = items.into_iter();
        let total = exact_len(items.size_hint());
        self.drive(stream::iter(items), total, op).await
    }

    /// Like [`run`](Self::run), but items come from a [`Stream`], polled only when there is
    /// room: a slow producer and the running items make progress together.
    ///
    /// ```
    /// use futures_util::stream;
    /// use gate_core::{Batch, Gate};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let gate = Gate::new(2);
    /// let report = Batch::new(&gate)
    ///     .run_stream(stream::iter(1..=4), |n| async move { Ok::<_, ()>(n * 10) })
    ///     .await;
    /// let values: Vec<_> = report.successes().copied().collect();
    /// assert_eq!(values, [10, 20, 30, 40]);
    /// # }
    /// ```
    pub async fn run_stream<S, F, Fut, T>(self, items: S, op: F) -> BatchReport<T, E>
    where
        S: Stream,
        S::Item: Clone,
        F: Fn(S::Item) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let total = exact_len(items.size_hint());
        self.drive(items, total, op).await
    }

    /// How many unfinished items may exist right now.
    fn bound(&self) -> usize {
        self.max_in_flight.unwrap_or_else(|| {
            self.admission
                .capacity()
                .map_or(self.window, |c| c.saturating_add(self.window))
        })
    }

    async fn drive<S, F, Fut, T>(self, items: S, total: Option<u64>, op: F) -> BatchReport<T, E>
    where
        S: Stream,
        S::Item: Clone,
        F: Fn(S::Item) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let counters = Arc::new(Counters::default());
        #[cfg(feature = "progress")]
        let bar = self
            .progress
            .then(|| Bar::stderr(total, self.label.as_deref(), &counters));
        let start = tokio::time::Instant::now();

        let (admission, policy, op, shared) = (&self.admission, &self.retry, &op, &*counters);
        let start_item = move |index: usize, item: S::Item| async move {
            let mut attempts = 0u64;
            let result = policy
                .call(admission, || {
                    attempts += 1;
                    shared.attempts.fetch_add(1, Relaxed);
                    if attempts > 1 {
                        shared.retries.fetch_add(1, Relaxed);
                    }
                    op(item.clone())
                })
                .await;
            (index, result)
        };

        let preallocate = total.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let mut results: Vec<Option<Result<T, RetryError<E>>>> =
            Vec::with_capacity(preallocate.min(PREALLOCATE_MAX));
        let mut succeeded = 0;
        let mut source = pin!(items);
        let mut exhausted = false;
        let mut live = FuturesUnordered::new();

        poll_fn(|cx| {
            loop {
                while !exhausted && live.len() < self.bound() {
                    match source.as_mut().poll_next(cx) {
                        Poll::Ready(Some(item)) => {
                            live.push(start_item(results.len(), item));
                            results.push(None);
                        }
                        Poll::Ready(None) => exhausted = true,
                        Poll::Pending => break,
                    }
                }
                match live.poll_next_unpin(cx) {
                    Poll::Ready(Some((index, result))) => {
                        match &result {
                            Ok(_) => succeeded += 1,
                            Err(_) => {
                                shared.failed.fetch_add(1, Relaxed);
                            }
                        }
                        results[index] = Some(result);
                        #[cfg(feature = "progress")]
                        if let Some(bar) = &bar {
                            bar.inc();
                        }
                    }
                    Poll::Ready(None) if exhausted => return Poll::Ready(()),
                    // Nothing is running and the source has registered for a wake-up.
                    Poll::Ready(None) | Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        drop(live);

        let elapsed = start.elapsed();
        #[cfg(feature = "progress")]
        if let Some(bar) = &bar {
            bar.finish();
        }
        let results: Vec<_> = results
            .into_iter()
            .map(|r| r.expect("every started item is finished before the batch ends"))
            .collect();
        let summary = Summary {
            label: self.label.clone(),
            total: results.len(),
            succeeded,
            failed: results.len() - succeeded,
            attempts: counters.attempts.load(Relaxed),
            retries: counters.retries.load(Relaxed),
            elapsed,
            gate: self.admission.snapshot(),
        };
        BatchReport { results, summary }
    }
}

/// The length a size hint promises, if it promises one.
fn exact_len((lower, upper): (usize, Option<usize>)) -> Option<u64> {
    match upper {
        Some(upper) if upper == lower => u64::try_from(lower).ok(),
        _ => None,
    }
}
