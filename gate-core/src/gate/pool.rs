//! The lock-free fast path: free permits parked in an atomic while nobody waits.
//!
//! Whenever the gate's lock is released with the queue empty and the gate open, every free
//! permit is moved into this pool, so an uncontended acquire is one compare-and-swap and
//! never touches the lock. Whenever the lock holder needs the exact count (a caller about to
//! queue, a resize, a close), it drains the pool first. Permits in the pool stay counted as
//! taken by the locked state, so the two never disagree about the total.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

#[derive(Debug)]
pub(crate) struct FastPool {
    permits: AtomicUsize,
    /// Acquisitions served from the pool, folded into the gate's statistics.
    admitted: AtomicU64,
}

impl FastPool {
    crate::sync::const_unless_loom! {
        pub(crate) const fn new() -> Self {
            Self {
                permits: AtomicUsize::new(0),
                admitted: AtomicU64::new(0),
            }
        }
    }

    /// Takes `n` permits from the pool if it holds that many. A request for none goes the
    /// slow way, which checks for a closed gate and the queue.
    #[inline]
    pub(crate) fn try_take(&self, n: usize) -> bool {
        if n == 0 {
            return false;
        }
        let mut current = self.permits.load(Ordering::Acquire);
        loop {
            if current < n {
                return false;
            }
            match self.permits.compare_exchange_weak(
                current,
                current - n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.admitted.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Empties the pool, returning how many permits it held. Called under the lock.
    pub(crate) fn drain(&self) -> usize {
        self.permits.swap(0, Ordering::AcqRel)
    }

    /// Adds `n` free permits. Called under the lock.
    pub(crate) fn fill(&self, n: usize) {
        self.permits.fetch_add(n, Ordering::AcqRel);
    }

    /// Permits in the pool right now.
    pub(crate) fn permits(&self) -> usize {
        self.permits.load(Ordering::Acquire)
    }

    /// Acquisitions served from the pool so far.
    pub(crate) fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }
}
