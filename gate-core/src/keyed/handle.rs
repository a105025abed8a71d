//! [`KeyHandle`]: one key's view of a shared [`KeyedGate`], as an [`Admission`].

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use super::{KeyedGate, KeyedPermit, OwnedKeyedPermit};
use crate::{AcquireError, Admission, OwnedAdmission, WaitLimits};

/// One key of a shared [`KeyedGate`], from [`KeyedGate::handle`]: an [`Admission`] and an
/// [`OwnedAdmission`], so [`Retry::call`](crate::Retry::call), [`Batch`](crate::Batch) and
/// a tower layer admit through it as through a [`Gate`](crate::Gate).
///
/// Its refusals read as [`AcquireError`]s: [`TooManyKeys`](super::KeyedAcquireError::TooManyKeys)
/// as [`AcquireError::QueueFull`]. Its [`capacity`](Admission::capacity) is the smaller of
/// the per-key and global limits.
///
/// ```
/// use std::sync::Arc;
/// use gate_core::{Retry, keyed::KeyedGate};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let gate = Arc::new(KeyedGate::<u64>::new(2));
/// let tenant = gate.handle(7);
/// let answer = Retry::new(0).call(&tenant, || async { Ok::<_, ()>(42) }).await;
/// assert_eq!(answer.ok(), Some(42));
/// # }
/// ```
pub struct KeyHandle<K, S> {
    gate: Arc<KeyedGate<K, S>>,
    key: K,
}

impl<K, S> KeyHandle<K, S> {
    pub(super) fn new(gate: Arc<KeyedGate<K, S>>, key: K) -> Self {
        Self { gate, key }
    }

    /// The key this handle admits for.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The gate it admits through.
    pub fn gate(&self) -> &Arc<KeyedGate<K, S>> {
        &self.gate
    }
}

impl<K: Clone, S> Clone for KeyHandle<K, S> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.gate), self.key.clone())
    }
}

impl<K: fmt::Debug, S> fmt::Debug for KeyHandle<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHandle")
            .field("key", &self.key)
            .field("gate", &self.gate)
            .finish()
    }
}

impl<K, S> Admission for KeyHandle<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher + Send + Sync,
{
    type Permit<'a>
        = KeyedPermit<'a, K, S>
    where
        Self: 'a;

    fn admit_with(
        &self,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<KeyedPermit<'_, K, S>, AcquireError>> + Send {
        let acquire = self.gate.acquire_with(&self.key, limits);
        async move { acquire.await.map_err(AcquireError::from) }
    }

    fn try_admit(&self) -> Option<KeyedPermit<'_, K, S>> {
        self.gate.try_acquire(&self.key).ok()
    }

    fn wait_limits(&self) -> WaitLimits {
        self.gate.wait_limits()
    }

    fn capacity(&self) -> Option<usize> {
        let global = self.gate.global_limit().unwrap_or(usize::MAX);
        Some(self.gate.per_key_limit().min(global))
    }
}

impl<K, S> OwnedAdmission for KeyHandle<K, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    type OwnedPermit = OwnedKeyedPermit<K, S>;

    fn admit_owned_with(
        self: Arc<Self>,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<OwnedKeyedPermit<K, S>, AcquireError>> + Send + 'static {
        let acquire = Arc::clone(&self.gate).acquire_owned_with(self.key.clone(), limits);
        async move { acquire.await.map_err(AcquireError::from) }
    }

    fn try_admit_owned(self: &Arc<Self>) -> Option<OwnedKeyedPermit<K, S>> {
        self.gate.try_acquire_owned(&self.key).ok()
    }
}
