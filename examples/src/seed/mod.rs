//! What the seed's five examples (`examples/examples/{basic_gate,api_calls,llm_client,
//! with_vs_without,adaptive}.rs`) share that is not their lesson: a gauge of how many callers
//! are inside a section, the time stamp of their log lines, and Example 4's refusing server.
//!
//! "The seed" is the set of asyncio semaphore notes these examples port to Rust: six workers
//! at a gate of three, twenty API calls through a gate of five, an LLM client with retries,
//! the same calls with and without a gate, and an adaptive limit.

mod refusing;

pub use refusing::{RateLimitExceeded, RefusingServer};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tokio::time::Instant;

/// Counts callers inside a section and remembers the most at once.
#[derive(Debug, Default)]
pub struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    /// Counts the caller in until the returned guard drops; returns how many are in now.
    pub fn enter(self: &Arc<Self>) -> (Inside, usize) {
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        (Inside(Arc::clone(self)), now)
    }

    /// The most callers that were ever inside at once.
    pub fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }
}

/// One caller counted by a [`Gauge`], until it drops.
#[derive(Debug)]
pub struct Inside(Arc<Gauge>);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, SeqCst);
    }
}

/// Seconds since `start`, for log lines: `[t=2.0s]`.
pub fn stamp(start: Instant) -> String {
    format!("[t={:.1}s]", start.elapsed().as_secs_f64())
}
