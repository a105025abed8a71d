//! [`InFlight`]: how many calls are inside a section, and the most there ever were. The one
//! copy: gate-tower's and the `tests` crate's integration tests include this file too.

// Each test binary that includes this module uses only some of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Counts calls in flight: how many run now, the most that ever ran at once, and how many
/// have finished. `new` is `const`, so a counter can be a `static` beside the function it
/// watches.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
    completed: AtomicUsize,
}

impl InFlight {
    /// Nothing in flight, nothing seen.
    pub(crate) const fn new() -> Self {
        Self {
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
        }
    }

    /// A call starts: returns how many are in flight, this one included.
    pub(crate) fn enter(&self) -> usize {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        now
    }

    /// A call ends.
    pub(crate) fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.completed.fetch_add(1, Ordering::SeqCst);
    }

    /// A call that stays in flight for `how_long`, on tokio's clock.
    pub(crate) async fn visit(&self, how_long: Duration) {
        self.enter();
        tokio::time::sleep(how_long).await;
        self.leave();
    }

    /// How many calls are in flight.
    pub(crate) fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// The most calls ever in flight at once.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// The most calls in flight at once since the last `take_peak`, starting afresh.
    pub(crate) fn take_peak(&self) -> usize {
        self.peak.swap(0, Ordering::SeqCst)
    }

    /// How many calls have ended.
    pub(crate) fn completed(&self) -> usize {
        self.completed.load(Ordering::SeqCst)
    }
}
