//! [`KeyedPermit`] and [`OwnedKeyedPermit`]: one permit of one key, and of the global limit.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use super::{KeyedGate, SlotRef};
use crate::{Outcome, Report};

/// One permit of a key of a [`KeyedGate`] (and of its global limit); both go back when this
/// is dropped. It names its key's shard and slot, so releasing it hashes nothing.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct KeyedPermit<'a, K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    gate: &'a KeyedGate<K, S>,
    slot: SlotRef,
}

impl<'a, K, S> KeyedPermit<'a, K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    pub(super) fn new(gate: &'a KeyedGate<K, S>, slot: SlotRef) -> Self {
        Self { gate, slot }
    }

    /// The gate this permit came from.
    pub fn gate(&self) -> &'a KeyedGate<K, S> {
        self.gate
    }
}

impl<K, S> Drop for KeyedPermit<'_, K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    fn drop(&mut self) {
        self.gate.release(self.slot);
    }
}

impl<K, S> fmt::Debug for KeyedPermit<'_, K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedPermit")
            .field("slot", &self.slot)
            .finish()
    }
}

/// A keyed gate learns nothing from how an attempt ended: finishing is dropping.
impl<K, S> Report for KeyedPermit<'_, K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    fn finish(self, _: Outcome) {}
}

/// Like [`KeyedPermit`], holding the gate through an `Arc`, so it is `'static`.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct OwnedKeyedPermit<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    gate: Arc<KeyedGate<K, S>>,
    slot: SlotRef,
}

impl<K, S> OwnedKeyedPermit<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    pub(super) fn new(gate: Arc<KeyedGate<K, S>>, slot: SlotRef) -> Self {
        Self { gate, slot }
    }

    /// The gate this permit came from.
    pub fn gate(&self) -> &Arc<KeyedGate<K, S>> {
        &self.gate
    }
}

impl<K, S> Drop for OwnedKeyedPermit<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    fn drop(&mut self) {
        self.gate.release(self.slot);
    }
}

impl<K, S> fmt::Debug for OwnedKeyedPermit<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedKeyedPermit")
            .field("slot", &self.slot)
            .finish()
    }
}

/// A keyed gate learns nothing from how an attempt ended: finishing is dropping.
impl<K, S> Report for OwnedKeyedPermit<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    fn finish(self, _: Outcome) {}
}
