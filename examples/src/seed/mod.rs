//! The five examples of the asyncio semaphore notes (`shared/seed/semaphores-asyncio-notes.md`),
//! one module each, run by `examples/examples/<name>.rs` and by the tests.
//!
//! Every `run` function takes its sizes and durations from a `Config` (whose `Default` is the
//! seed's) and prints through an [`Out`](crate::Out), so a test can run it with paused time
//! and read what it printed.

pub mod adaptive;
pub mod api_calls;
pub mod basic_gate;
pub mod llm_client;
pub mod with_vs_without;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tokio::time::Instant;

/// Counts callers inside a section and remembers the most at once.
#[derive(Debug, Default)]
pub(crate) struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    /// Counts the caller in until the returned guard drops; returns how many are in now.
    pub(crate) fn enter(self: &Arc<Self>) -> (Inside, usize) {
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        (Inside(Arc::clone(self)), now)
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }
}

/// One caller counted by a [`Gauge`].
#[derive(Debug)]
pub(crate) struct Inside(Arc<Gauge>);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, SeqCst);
    }
}

/// Seconds since `start`, for log lines: `[t=2.0s]`.
pub(crate) fn stamp(start: Instant) -> String {
    format!("[t={:.1}s]", start.elapsed().as_secs_f64())
}
