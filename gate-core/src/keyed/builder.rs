//! [`KeyedGateBuilder`]: a keyed gate with a global limit, caps on keys, bounds on waiting
//! and weights.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use super::shard::{self, CachePadded, Pool, ShardOf};
use super::state::{Limits, MAX_SLOTS};
use super::{
    DEFAULT_BATCH_EVERY, DEFAULT_MAX_IDLE, DEFAULT_MAX_KEYS, KeyedGate, Priority, PriorityFn,
    Shard, WeightFn,
};
use crate::{Gate, LimitError, WaitLimits};

/// Builds a [`KeyedGate`], from [`KeyedGate::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct KeyedGateBuilder<K, S = RandomState> {
    per_key: usize,
    global: Option<usize>,
    max_keys: usize,
    max_idle: usize,
    wait_limits: WaitLimits,
    weight: Option<Box<WeightFn<K>>>,
    priority: Option<Box<PriorityFn<K>>>,
    batch_every: u32,
    hasher: S,
    name: Option<&'static str>,
}

impl<K> KeyedGateBuilder<K> {
    pub(super) fn new(per_key: usize) -> Self {
        Self {
            per_key,
            global: None,
            max_keys: DEFAULT_MAX_KEYS,
            max_idle: DEFAULT_MAX_IDLE,
            wait_limits: WaitLimits::UNBOUNDED,
            weight: None,
            priority: None,
            batch_every: DEFAULT_BATCH_EVERY,
            hasher: RandomState::new(),
            name: None,
        }
    }
}

impl<K, S> KeyedGateBuilder<K, S> {
    /// At most `limit` permits out across all keys. When it binds, keys with callers queued
    /// are served in turn (see [`weight`](Self::weight)).
    pub fn global(mut self, limit: usize) -> Self {
        self.global = Some(limit);
        self
    }

    /// The most keys held in memory at once (at least 1; default [`DEFAULT_MAX_KEYS`];
    /// above 2^32 - 2 it saturates there). A new key at the cap evicts the least recently
    /// used idle key (as CLOCK approximates it: see [the module docs](super)), or, if none
    /// is idle, is refused with
    /// [`TooManyKeys`](super::KeyedAcquireError::TooManyKeys). A gate with shards (see
    /// [the module docs](super#shards)) splits it evenly between them, and the cap is
    /// the new key's shard's share.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.clamp(1, MAX_SLOTS);
        self
    }

    /// The most idle keys (no permits out, nobody queued) kept in memory for reuse (default
    /// [`DEFAULT_MAX_IDLE`], at most `max_keys`); beyond it the least recently used is
    /// evicted (as CLOCK approximates it; with shards, of the shard that needs the room).
    /// Zero evicts a key as soon as it is counted idle: with no global limit, when its
    /// shard next looks (see [the module docs](super#idle-keys-counted-when-the-gate-looks)).
    pub fn max_idle(mut self, max_idle: usize) -> Self {
        self.max_idle = max_idle;
        self
    }

    /// The longest any acquire waits before failing with
    /// [`TimedOut`](super::KeyedAcquireError::TimedOut). Zero means never wait.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait_limits.max_wait = Some(max_wait);
        self
    }

    /// The most callers that may be queued for one key; the next caller of that key fails
    /// at once with [`QueueFull`](super::KeyedAcquireError::QueueFull). Zero means never
    /// wait.
    pub fn max_waiters(mut self, max_waiters: usize) -> Self {
        self.wait_limits.max_waiters = max_waiters;
        self
    }

    /// How many permits each key's turn of the ring grants when the global limit binds
    /// (default 1 for every key; zero counts as 1). Two keys with weights 1 and 3, both
    /// with callers queued, get a quarter and three quarters of the permits.
    ///
    /// Called once when a key is made (so it must not change its answer for a key while
    /// the key is in memory), never under the gate's lock.
    pub fn weight(mut self, weight: impl Fn(&K) -> u32 + Send + Sync + 'static) -> Self {
        self.weight = Some(Box::new(weight));
        self
    }

    /// Which class each key's callers wait in when the global limit binds (default
    /// [`Priority::Interactive`] for every key): interactive keys first, batch keys when no
    /// interactive caller waits and every [`batch_every`](Self::batch_every)-th permit
    /// while one does.
    ///
    /// Called once when a key is made, never under the gate's lock.
    pub fn priority(mut self, priority: impl Fn(&K) -> Priority + Send + Sync + 'static) -> Self {
        self.priority = Some(Box::new(priority));
        self
    }

    /// While callers of both classes wait for the global limit, one permit in `n` goes to
    /// the batch class (default [`DEFAULT_BATCH_EVERY`]; at least 2, so that interactive
    /// keys come first; `u32::MAX` all but starves the batch class).
    pub fn batch_every(mut self, n: u32) -> Self {
        self.batch_every = n.max(2);
        self
    }

    /// Names the gate: the `gate.name` of its metrics (`KeyedGate::publish_metrics`, with
    /// the `metrics` feature), as [`GateBuilder::name`](crate::GateBuilder::name) names a
    /// gate. Only the gate is named, never its keys: the `gate_core::metrics` docs say why
    /// no series is labelled by key.
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// Hashes keys with `hasher` instead of std's [`RandomState`] (SipHash-1-3, randomly
    /// keyed). Choose a faster one only for keys a client cannot choose.
    pub fn hasher<S2>(self, hasher: S2) -> KeyedGateBuilder<K, S2> {
        KeyedGateBuilder {
            per_key: self.per_key,
            global: self.global,
            max_keys: self.max_keys,
            max_idle: self.max_idle,
            wait_limits: self.wait_limits,
            weight: self.weight,
            priority: self.priority,
            batch_every: self.batch_every,
            hasher,
            name: self.name,
        }
    }

    /// Builds the gate, or fails if the per-key or global limit exceeds
    /// [`Gate::MAX_PERMITS`].
    pub fn build(self) -> Result<KeyedGate<K, S>, LimitError>
    where
        K: Hash + Eq + Clone + Send + Sync,
        S: BuildHasher,
    {
        for limit in [Some(self.per_key), self.global].into_iter().flatten() {
            if limit > Gate::MAX_PERMITS {
                return Err(LimitError { requested: limit });
            }
        }
        let limits = Limits {
            per_key: self.per_key,
            global: self.global.unwrap_or(usize::MAX),
            max_keys: self.max_keys,
            max_idle: self.max_idle.min(self.max_keys),
            batch_every: self.batch_every,
        };
        // The global level (its count, its rings) is every key's: a gate with one keeps
        // all its keys under one lock.
        let shards = match self.global {
            Some(_) => 1,
            None => shard::shard_count(limits.max_keys, limits.max_idle),
        };
        let (held, pooled) = shard::idle_start(limits.max_idle, shards);
        let idle_pool = Arc::new(Pool::new(pooled));
        Ok(KeyedGate {
            shards: (0..shards)
                .map(|i| {
                    let limits = Limits {
                        max_keys: shard::share(limits.max_keys, shards, i),
                        ..limits
                    };
                    CachePadded(Shard::new(limits, held, Arc::clone(&idle_pool)))
                })
                .collect(),
            shard_of: ShardOf::new(shards),
            hasher: self.hasher,
            limits,
            wait_limits: self.wait_limits,
            weight: self.weight,
            priority: self.priority,
            name: self.name,
        })
    }
}

impl<K, S> fmt::Debug for KeyedGateBuilder<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedGateBuilder")
            .field("per_key_limit", &self.per_key)
            .field("global_limit", &self.global)
            .field("max_keys", &self.max_keys)
            .field("max_idle", &self.max_idle)
            .field("wait_limits", &self.wait_limits)
            .field("weighted", &self.weight.is_some())
            .field("prioritised", &self.priority.is_some())
            .field("batch_every", &self.batch_every)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
