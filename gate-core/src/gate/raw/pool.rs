//! The lock-free fast path: free permits parked in one atomic word while nobody waits.
//!
//! The word holds a count of free permits and a `SLOW` bit. While the bit is clear (nobody
//! queued, the gate open, no shrink still draining), an uncontended acquire and an
//! uncontended release are each one compare-and-swap and never touch the lock. Any operation
//! that needs the exact count (a caller about to queue, a release that must hand its permits
//! to a waiter, a resize, a close) takes the lock and sets the bit, draining the pool; the
//! lock holder clears it again once nobody waits. Permits in the pool stay counted as taken
//! by the locked state, so the two never disagree about the total.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// Set while the lock holder owns every free permit: the fast paths must take the lock.
const SLOW: usize = 1;
/// One permit, in the word's units.
const ONE: usize = 2;

/// The word and its counter, aligned to 128 bytes so that nothing else shares their cache
/// lines (x86 fetches lines in pairs): under contention the word is only read, and stays in
/// every core's cache while the lock's lines move between them.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct FastPool {
    word: AtomicUsize,
    /// Acquisitions served from the pool, folded into the gate's statistics.
    admitted: AtomicU64,
}

impl FastPool {
    crate::sync::const_unless_loom! {
        /// A pool holding `permits` free permits, on the fast path.
        pub(crate) const fn new(permits: usize) -> Self {
            Self {
                word: AtomicUsize::new(permits * ONE),
                admitted: AtomicU64::new(0),
            }
        }
    }

    /// Takes `n` permits without the lock, if the fast path is open and holds that many, and
    /// returns how many it still holds. A request for none goes the slow way, which checks
    /// for a closed gate and the queue.
    #[inline]
    pub(crate) fn try_take(&self, n: usize) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if current & SLOW != 0 || current / ONE < n {
                return None;
            }
            match self.word.compare_exchange_weak(
                current,
                current - n * ONE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.admitted.fetch_add(1, Ordering::Relaxed);
                    return Some(current / ONE - n);
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Counts an acquisition of one permit that gives it back at once, if the fast path is
    /// open and holds a permit, and returns how many it holds: one load and one add, the
    /// word untouched (taking the permit and putting it back would change nothing else).
    #[inline]
    pub(crate) fn take_and_give_back(&self) -> Option<usize> {
        let current = self.word.load(Ordering::Acquire);
        if current & SLOW != 0 || current < ONE {
            return None;
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Some(current / ONE)
    }

    /// Returns `n` permits without the lock, if the fast path is open (nobody to hand them
    /// to, no shrink to pay for).
    #[inline]
    pub(crate) fn try_give(&self, n: usize) -> bool {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if current & SLOW != 0 {
                return false;
            }
            match self.word.compare_exchange_weak(
                current,
                current + n * ONE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Closes the fast path and empties the pool, returning how many permits it held.
    /// Called under the lock.
    pub(crate) fn enter_slow(&self) -> usize {
        // Only the lock holder opens the fast path, so a closed one stays closed: skip the
        // read-modify-write, which matters when the gate is contended and stays slow.
        if self.word.load(Ordering::Acquire) == SLOW {
            return 0;
        }
        self.word.swap(SLOW, Ordering::AcqRel) / ONE
    }

    /// Opens the fast path with `free` permits. Called under the lock, on a closed fast path,
    /// which nobody else writes.
    pub(crate) fn leave_slow(&self, free: usize) {
        self.word.store(free * ONE, Ordering::Release);
    }

    /// Permits in the pool right now (none while the fast path is closed).
    #[inline]
    pub(crate) fn permits(&self) -> usize {
        self.word.load(Ordering::Acquire) / ONE
    }

    /// Acquisitions served from the pool so far.
    pub(crate) fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }
}
