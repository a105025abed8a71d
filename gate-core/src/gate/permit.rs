//! Permits: proof of admission that gives itself back on drop.

use std::fmt;
use std::sync::Arc;

use super::Gate;

/// Permits borrowed from a [`Gate`]; they go back to the gate when this is dropped.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct Permit<'a> {
    gate: &'a Gate,
    permits: usize,
}

impl<'a> Permit<'a> {
    #[inline]
    pub(crate) fn new(gate: &'a Gate, permits: usize) -> Self {
        Self { gate, permits }
    }

    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.permits
    }

    /// The gate these permits came from.
    pub fn gate(&self) -> &'a Gate {
        self.gate
    }

    /// Takes these permits out of the gate for good instead of releasing them: the gate's
    /// limit drops by as many (to no less than zero), like tokio's `SemaphorePermit::forget`.
    pub fn forget(self) {
        let (gate, permits) = (self.gate, self.detach());
        gate.raw().forget(permits);
    }

    /// Splits `n` permits off into a permit of their own, or returns `None`, changing nothing,
    /// if this holds fewer than `n`. Each part is released on its own.
    pub fn split(&mut self, n: usize) -> Option<Self> {
        self.permits = self.permits.checked_sub(n)?;
        Some(Self::new(self.gate, n))
    }

    /// Takes `other`'s permits into this one, to be released together.
    ///
    /// # Panics
    ///
    /// If `other` comes from another gate: its permits could not be given back there.
    #[track_caller]
    pub fn merge(&mut self, other: Self) {
        assert!(
            std::ptr::eq(self.gate, other.gate),
            "Permit::merge: the permits come from different gates"
        );
        self.permits += other.detach();
    }

    /// Keeps the permits taken without this guard.
    fn detach(self) -> usize {
        let permits = self.permits;
        std::mem::forget(self);
        permits
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.gate.raw().release(self.permits);
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

/// Permits held through an `Arc<Gate>`, so they can outlive the borrow that acquired them
/// (moved into a spawned task, stored in a response future).
#[must_use = "the permit is released as soon as it is dropped"]
pub struct OwnedPermit {
    gate: Arc<Gate>,
    permits: usize,
}

impl OwnedPermit {
    #[inline]
    pub(crate) fn new(gate: Arc<Gate>, permits: usize) -> Self {
        Self { gate, permits }
    }

    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.permits
    }

    /// The gate these permits came from.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// Takes these permits out of the gate for good instead of releasing them: the gate's
    /// limit drops by as many (to no less than zero), like tokio's `OwnedSemaphorePermit::forget`.
    pub fn forget(mut self) {
        let permits = std::mem::take(&mut self.permits);
        self.gate.raw().forget(permits);
        // Dropping `self` now releases nothing.
    }

    /// Splits `n` permits off into a permit of their own, or returns `None`, changing nothing,
    /// if this holds fewer than `n`. Each part is released on its own.
    pub fn split(&mut self, n: usize) -> Option<Self> {
        self.permits = self.permits.checked_sub(n)?;
        Some(Self::new(Arc::clone(&self.gate), n))
    }

    /// Takes `other`'s permits into this one, to be released together.
    ///
    /// # Panics
    ///
    /// If `other` comes from another gate: its permits could not be given back there.
    #[track_caller]
    pub fn merge(&mut self, mut other: Self) {
        assert!(
            Arc::ptr_eq(&self.gate, &other.gate),
            "OwnedPermit::merge: the permits come from different gates"
        );
        self.permits += std::mem::take(&mut other.permits);
    }
}

impl Drop for OwnedPermit {
    #[inline]
    fn drop(&mut self) {
        self.gate.raw().release(self.permits);
    }
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}
