//! The futures returned by [`KeyedGate::acquire`] and [`KeyedGate::acquire_owned`].

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use super::state::Counts;
use super::{KeyArg, KeyedAcquireError, KeyedGate, KeyedPermit, OwnedKeyedPermit, SlotRef};
use crate::WaitLimits;

/// Where a caller is in its life.
#[derive(Debug)]
enum Phase {
    /// Not polled yet: holds nothing.
    Idle,
    /// Queued for its key, in the waiter slot named of the shard named.
    Queued { shard: usize, id: u32 },
    /// Finished: the permit (if any) was handed to the caller.
    Done,
}

/// The machinery shared by the borrowed and owned futures; it does not store the gate or
/// the key, so that each future holds them the way it needs to.
#[derive(Debug)]
struct Waiter {
    limits: WaitLimits,
    phase: Phase,
    /// Armed only once the caller queues with a deadline.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Waiter {
    fn new(limits: WaitLimits) -> Self {
        Self {
            limits,
            phase: Phase::Idle,
            deadline: None,
        }
    }

    /// Polls for a permit; on `Ready(Ok(at))` the caller owns a permit of the key slot `at`.
    fn poll_acquire<K, S>(
        &mut self,
        gate: &KeyedGate<K, S>,
        key: KeyArg<'_, K>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SlotRef, KeyedAcquireError>>
    where
        K: Hash + Eq + Clone + Send + Sync,
        S: BuildHasher,
    {
        match self.phase {
            Phase::Idle => self.poll_first(gate, key, cx),
            Phase::Queued { shard, id } => self.poll_queued(gate, shard, id, cx),
            Phase::Done => panic!("keyed acquire future polled after it completed"),
        }
    }

    /// The first poll: take a permit at once, refuse, or queue for the key.
    fn poll_first<K, S>(
        &mut self,
        gate: &KeyedGate<K, S>,
        key: KeyArg<'_, K>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SlotRef, KeyedAcquireError>>
    where
        K: Hash + Eq + Clone + Send + Sync,
        S: BuildHasher,
    {
        let hash = gate.hasher.hash_one(key.get());
        let shard = gate.shard(hash);
        let (limits, words) = (gate.limits(shard), gate.words(shard));
        let mut locked = gate.lock(shard);
        let Ok(slot) = gate.slot(&mut locked, shard, hash, key) else {
            Counts::add(&mut locked.counts.too_many_keys);
            self.phase = Phase::Done;
            return Poll::Ready(Err(KeyedAcquireError::TooManyKeys));
        };
        let (state, deferred) = locked.parts();
        if state.try_take(slot, limits, words) {
            self.phase = Phase::Done;
            return Poll::Ready(Ok(SlotRef::new(shard, slot)));
        }
        let refused = if self.limits.max_wait == Some(Duration::ZERO) {
            Some(KeyedAcquireError::TimedOut)
        } else if state.key_queued(slot) >= self.limits.max_waiters {
            Some(KeyedAcquireError::QueueFull)
        } else {
            None
        };
        if let Some(error) = refused {
            let count = match error {
                KeyedAcquireError::TimedOut => &mut state.counts.timed_out,
                _ => &mut state.counts.rejected,
            };
            Counts::add(count);
            // A key made for this call and refused is idle.
            state.settle(slot, limits, words, deferred);
            self.phase = Phase::Done;
            return Poll::Ready(Err(error));
        }
        let id = state.queue(slot, cx.waker().clone(), limits, words, deferred);
        if state.is_granted(id) {
            // A permit came back without the lock while this caller queued: its own.
            self.phase = Phase::Done;
            return Poll::Ready(Ok(SlotRef::new(shard, state.collect(id))));
        }
        drop(locked);
        self.phase = Phase::Queued { shard, id };
        let Some(max_wait) = self.limits.max_wait else {
            return Poll::Pending;
        };
        // `sleep` saturates a deadline too far to represent.
        let mut deadline = Box::pin(tokio::time::sleep(max_wait));
        let passed = deadline.as_mut().poll(cx).is_ready();
        self.deadline = Some(deadline);
        if passed {
            // Nothing would wake this caller to notice its deadline: look now.
            return self.poll_queued(gate, shard, id, cx);
        }
        Poll::Pending
    }

    /// A queued caller: collect the permit granted to it, time out, or wait on.
    fn poll_queued<K, S>(
        &mut self,
        gate: &KeyedGate<K, S>,
        shard: usize,
        id: u32,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SlotRef, KeyedAcquireError>>
    where
        K: Hash + Eq + Clone + Send + Sync,
        S: BuildHasher,
    {
        let expired = match &mut self.deadline {
            Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
            None => false,
        };
        let mut locked = gate.lock(shard);
        let (state, deferred) = locked.parts();
        // A grant only happens under the lock, so this answer is final.
        if state.is_granted(id) {
            self.phase = Phase::Done;
            return Poll::Ready(Ok(SlotRef::new(shard, state.collect(id))));
        }
        if expired {
            Counts::add(&mut state.counts.timed_out);
            state.cancel(id, gate.limits(shard), gate.words(shard), deferred);
            self.phase = Phase::Done;
            return Poll::Ready(Err(KeyedAcquireError::TimedOut));
        }
        // The waker it replaces is dropped once the lock is released.
        deferred.drop_waker(state.register(id, cx.waker()));
        Poll::Pending
    }

    /// Gives back what a dropped future holds: its place in the queue, or the permit
    /// granted to it and not collected.
    fn cancel<K, S>(&mut self, gate: &KeyedGate<K, S>)
    where
        K: Hash + Eq + Clone + Send + Sync,
        S: BuildHasher,
    {
        let Phase::Queued { shard, id } = self.phase else {
            return;
        };
        self.phase = Phase::Done;
        let (limits, words) = (gate.limits(shard), gate.words(shard));
        let mut locked = gate.lock(shard);
        let (state, deferred) = locked.parts();
        if state.is_granted(id) {
            let slot = state.collect(id);
            state.release(slot, limits, words, deferred);
        } else {
            Counts::add(&mut state.counts.cancelled);
            state.cancel(id, limits, words, deferred);
        }
    }
}

/// The future of [`KeyedGate::acquire`]: a permit of one key.
///
/// Cancel-safe: dropping it gives back its place in the queue, or the permit granted to it
/// and not yet collected.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct KeyedAcquire<'a, 'k, K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    gate: &'a KeyedGate<K, S>,
    key: &'k K,
    waiter: Waiter,
}

impl<'a, 'k, K, S> KeyedAcquire<'a, 'k, K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    pub(super) fn new(gate: &'a KeyedGate<K, S>, key: &'k K, limits: WaitLimits) -> Self {
        Self {
            gate,
            key,
            waiter: Waiter::new(limits),
        }
    }
}

impl<'a, K, S> Future for KeyedAcquire<'a, '_, K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    type Output = Result<KeyedPermit<'a, K, S>, KeyedAcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let gate = this.gate;
        this.waiter
            .poll_acquire(gate, KeyArg::Borrowed(this.key), cx)
            .map_ok(|slot| KeyedPermit::new(gate, slot))
    }
}

impl<K, S> Drop for KeyedAcquire<'_, '_, K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    fn drop(&mut self) {
        self.waiter.cancel(self.gate);
    }
}

/// The future of [`KeyedGate::acquire_owned`]: a `'static` permit of one key.
///
/// Cancel-safe, as [`KeyedAcquire`] is.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct KeyedAcquireOwned<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    gate: Arc<KeyedGate<K, S>>,
    /// Moved into the gate if the key is new there.
    key: Option<K>,
    waiter: Waiter,
}

impl<K, S> KeyedAcquireOwned<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    pub(super) fn new(gate: Arc<KeyedGate<K, S>>, key: K, limits: WaitLimits) -> Self {
        Self {
            gate,
            key: Some(key),
            waiter: Waiter::new(limits),
        }
    }
}

/// The key is never pinned: it is moved into the gate, not polled.
impl<K, S> Unpin for KeyedAcquireOwned<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
}

impl<K, S> Future for KeyedAcquireOwned<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    type Output = Result<OwnedKeyedPermit<K, S>, KeyedAcquireError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.waiter
            .poll_acquire(&this.gate, KeyArg::Owned(&mut this.key), cx)
            .map_ok(|slot| OwnedKeyedPermit::new(Arc::clone(&this.gate), slot))
    }
}

impl<K, S> Drop for KeyedAcquireOwned<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    fn drop(&mut self) {
        self.waiter.cancel(&self.gate);
    }
}
