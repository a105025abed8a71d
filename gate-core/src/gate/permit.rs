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

    /// Keeps the permits taken without this guard; the caller must give them back with
    /// [`Gate::release`].
    pub(crate) fn detach(self) -> usize {
        let permits = self.permits;
        std::mem::forget(self);
        permits
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.gate.release(self.permits);
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
}

impl Drop for OwnedPermit {
    #[inline]
    fn drop(&mut self) {
        self.gate.release(self.permits);
    }
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}
