//! [`Capacity`]: what a batch reads from its admission besides admitting.

use std::sync::Arc;

use crate::{Gate, Limiter, Stats, Unlimited};

/// How many callers an [`Admission`](crate::Admission) lets in at once, and what it recorded.
///
/// A [`Batch`](super::Batch) reads [`capacity`](Self::capacity) before starting each item to
/// keep no more than capacity plus its window alive, and [`stats`](Self::stats) at the end
/// for its summary. Implement it for a custom admission in two lines; return `None` where
/// the answer is unknown.
///
/// ```
/// use gate_core::{Gate, batch::Capacity};
///
/// let gate = Gate::new(8);
/// assert_eq!(gate.capacity(), Some(8));
/// assert_eq!(Capacity::stats(&gate).map(|s| s.limit), Some(8));
/// ```
pub trait Capacity {
    /// Callers admitted at once right now, if known.
    fn capacity(&self) -> Option<usize>;

    /// What the admission has recorded, if it keeps statistics.
    fn stats(&self) -> Option<Stats> {
        None
    }
}

impl Capacity for Gate {
    fn capacity(&self) -> Option<usize> {
        Some(self.limit())
    }

    fn stats(&self) -> Option<Stats> {
        Some(Gate::stats(self))
    }
}

impl Capacity for Limiter {
    /// The concurrency limit, as an adaptive algorithm has set it; `None` for a limiter with
    /// a rate limit only.
    fn capacity(&self) -> Option<usize> {
        self.limit()
    }

    fn stats(&self) -> Option<Stats> {
        Some(Limiter::stats(self))
    }
}

impl Capacity for Unlimited {
    fn capacity(&self) -> Option<usize> {
        None
    }
}

impl<C: Capacity + ?Sized> Capacity for &C {
    fn capacity(&self) -> Option<usize> {
        (**self).capacity()
    }

    fn stats(&self) -> Option<Stats> {
        (**self).stats()
    }
}

impl<C: Capacity + ?Sized> Capacity for Arc<C> {
    fn capacity(&self) -> Option<usize> {
        (**self).capacity()
    }

    fn stats(&self) -> Option<Stats> {
        (**self).stats()
    }
}
