//! Per-key limits: a concurrency limit for each tenant, API key or client, under an optional
//! global one, served fairly under overload, in bounded memory.
//!
//! ```
//! use gate_core::keyed::KeyedGate;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // At most 5 requests per tenant, 100 in all.
//! let gate: KeyedGate<String> = KeyedGate::builder(5).global(100).build().unwrap();
//!
//! let permit = gate.acquire(&"tenant-a".to_string()).await.unwrap();
//! assert_eq!(gate.in_flight(), 1);
//! assert_eq!(gate.len(), 1);
//! drop(permit);
//! assert_eq!(gate.in_flight(), 0);
//! # }
//! ```
//!
//! # How it behaves
//!
//! - **Created on first use.** A key gets its state the first time it is seen, with
//!   `per_key_limit` permits free.
//! - **Two levels, atomically.** Building with [`global`](KeyedGateBuilder::global), a caller
//!   is admitted only when both its key and the whole gate have room, under one lock: neither
//!   limit is ever exceeded, and dropping an acquire future or a permit at any point gives
//!   back what it holds at both levels.
//! - **Fair between keys.** Each key's own callers are served first in, first out. When the
//!   global limit binds, the keys with callers waiting are served in turn (weighted round
//!   robin), not in one global queue: a key gets up to its weight of permits (1 unless
//!   [`weight`](KeyedGateBuilder::weight) says otherwise) and the next key's turn comes. So
//!   a tenant with 10,000 callers queued delays a tenant with one by at most one turn of the
//!   ring, and with weights 1 and 3 two busy tenants get a quarter and three quarters of the
//!   permits. A new caller never barges past callers queued for the global limit.
//! - **Priority classes.** With [`priority`](KeyedGateBuilder::priority), keys are
//!   [`Interactive`](Priority::Interactive) (the default) or [`Batch`](Priority::Batch):
//!   when the global limit binds, interactive keys are served first, but while both classes
//!   wait every [`batch_every`](KeyedGateBuilder::batch_every)-th permit (default
//!   [`DEFAULT_BATCH_EVERY`]) goes to a batch key, so the batch class is slowed, never
//!   starved.
//! - **Bounded memory, without help.** A key with no permits out and nobody queued is
//!   *idle*: its state is the same as a new key's, so forgetting it loses nothing. Idle keys
//!   are kept so that a key that comes back soon is found, not made again, but at most
//!   [`max_idle`](KeyedGateBuilder::max_idle) of them (default [`DEFAULT_MAX_IDLE`]): a
//!   key counted idle beyond that evicts the least recently used one (amortised O(1): see
//!   [below](#least-recently-used-as-clock-has-it)). Without a global limit a key is
//!   counted idle when its shard next looks, not at the release that left it so (see
//!   [below](#idle-keys-counted-when-the-gate-looks)). No background task, none of the
//!   caller's code.
//! - **A hard cap.** At most [`max_keys`](KeyedGateBuilder::max_keys) keys are in memory
//!   (default [`DEFAULT_MAX_KEYS`]). A new key at the cap evicts the least recently used
//!   idle key; if every key in memory is busy, the new key is refused at once with
//!   [`KeyedAcquireError::TooManyKeys`] rather than grown into.
//!
//! # Least recently used, as CLOCK has it
//!
//! Idle keys are kept in the order they went idle. A key taken again and given back keeps
//! its place, marked as used: an eviction that finds a used key first moves it to the back
//! (its second chance) and evicts the first key not used since it went idle. This is
//! CLOCK's approximation of least recently used: of two keys used again since they went
//! idle, the one that went idle first may be evicted first even if it was used last (and
//! keys counted idle at one look go on the list in the order they last went busy). It
//! is what keeps an admission from writing anything but its own key and its shard's lock:
//! moving a key to the back on every use wrote its neighbours' links too, on cache lines
//! that keys of other threads share, so that two threads on keys of their own took 1.8
//! times governor's time. Each step of an eviction drops a busy key from the list or clears
//! one admission's mark, so evicting is amortised O(1) per admission.
//!
//! # Idle keys, counted when the gate looks
//!
//! With a global limit every release takes the gate's lock, and counts at once the key it
//! leaves idle (evicting beyond `max_idle`). Without one, a release is one atomic decrement
//! of its key's word (its permits out, and a flag set while callers are queued), and takes
//! its shard's lock only when that flag says callers wait for the key: two threads on keys
//! of their own then write no cache line in common but the shard's lock, taken once per
//! admission, and the line of their keys' words (eight to a line), as with a `DashMap` of
//! semaphores.
//! So a shard counts the keys whose last permit came back when it next looks at its busy
//! keys:
//!
//! - **every count looks first**: [`len`](KeyedGate::len), [`idle_len`](KeyedGate::idle_len),
//!   [`in_flight`](KeyedGate::in_flight), [`contains_key`](KeyedGate::contains_key) and the
//!   metrics report what counting each idle key at its release would have left (at most
//!   `max_idle` idle keys), at a cost of O(keys busy since the shard last looked);
//! - **a new key looks** at its shard's share of `max_keys` (so it is refused with
//!   [`TooManyKeys`](KeyedAcquireError::TooManyKeys) only if every key of the shard is
//!   busy), and whenever the keys gone busy since the last look reach twice those still busy
//!   then (and at least 64): amortised O(1) per new key.
//!
//! Between looks a shard may hold idle keys not yet counted, at most about twice the keys
//! busy at its last look, plus 64: memory stays bounded by `max_keys` always and, however
//! many keys stream through, by `max_idle` plus about three times the keys busy at once
//! (`gate-core/tests/keyed_memory.rs`). A key with a permit out or a caller queued is never
//! evicted, so the word a permit names stays its key's until it comes back.
//!
//! # Shards
//!
//! A gate with no global limit splits its keys by their hash between shards, each with its
//! own lock, so that callers of keys on different shards neither wait for each other nor
//! write to the same cache line: 4 shards per thread the machine runs at once (a power of
//! two, at most 64), fewer if a shard's even share of `max_keys` or `max_idle` would be
//! under 64 keys (a gate with either under 128 has one shard, and the rules above hold
//! exactly). With more:
//!
//! - `max_idle` is still one count for all shards: each shard holds a part of it, takes
//!   more from the rest when it needs more and gives back what it stops using, so at most
//!   `max_idle` idle keys are kept in all, however the keys fall. The key evicted to make
//!   room is the least recently used idle key of the shard that needs the room.
//! - `max_keys` is split evenly between the shards (never exceeded in all): a new key is
//!   refused when every key of *its shard* is busy and the shard is at its share, which can
//!   come a little before `max_keys` keys are in memory in all (keys spread by a good hash
//!   fill the shards within a few percent of each other). Give `max_keys` that much room
//!   over the busy keys you expect at once.
//! - [`len`](KeyedGate::len), [`idle_len`](KeyedGate::idle_len),
//!   [`in_flight`](KeyedGate::in_flight) and [`waiting`](KeyedGate::waiting) add up the
//!   shards one after another: snapshots, not atomic counts.
//!
//! A gate with a global limit keeps every key under one lock: the global count, its rings
//! and the order they serve keys in are every key's, and an admission must see them all.
//!
//! # What it costs
//!
//! One lock for its shard (or for the whole gate, with a global limit), taken once to admit
//! (and, with a global limit or callers queued for the key, once to release: otherwise a
//! release is one atomic decrement, see [above](#idle-keys-counted-when-the-gate-looks)); a
//! key is hashed once, before the lock is taken (a permit remembers its key's shard and
//! slot, so a release hashes nothing), and the ring, the queues and the idle list are
//! intrusive lists of `u32` slots, so every step under the lock is O(1) (amortised, for an
//! eviction or a look). An admission writes its key's word (8 bytes, in chunks of a
//! shard's words that never move) and, with a global limit, its shard's count; a release
//! its key's word. A key in memory costs about 80 bytes with a `u64` key, its word and
//! the tables' growth included (a larger `K` adds its size: it is stored once); governor's
//! keyed limiter spends about 22 on a rate cell, but keeps every key it has seen (both
//! measured in `gate-core/tests/keyed_memory.rs`). The tables keep the size of the most
//! keys ever held at once, at most `max_keys`. Each queued caller costs 32 bytes while it
//! waits, given back when the queue drains.
//!
//! An admission and its release take about 380 instructions with the default hasher (300
//! with foldhash), against 330 for governor's `check_key`, which has nothing to release;
//! a [`KeyedLimiter`] check of a rate limit about 350
//! (`benches/examples/keyed_instructions.rs`). Times against governor's, from one thread
//! and from two on keys of their own, are in `benches/README.md`
//! (`benches/benches/keyed.rs`).
//!
//! Keys are hashed with `S`, by default std's [`RandomState`]: SipHash-1-3 with a random
//! key per gate, because keys often come from the network (API keys, addresses) and a
//! cheaper hash without that resistance would let a client that chooses its keys make
//! every lookup collide. Pass another [`BuildHasher`] to [`KeyedGateBuilder::hasher`] for
//! trusted keys. `K`'s `Hash` and `Eq` run under the gate's lock (as in any locked map) and
//! must not use the gate; its `Clone`, its drop and the weight function never run under it.
//!
//! # A limiter per key
//!
//! [`KeyedLimiter`] holds a [`Limiter`](crate::Limiter) per key (a rate, a concurrency or
//! adaptive limit, a pause), each made from a template on first use, with the same rules
//! for memory: a key is idle once no permit is out, nobody waits, its bucket is full again
//! and it is not paused; beyond `max_idle` keys, idle ones are evicted by a sweep that each
//! new key moves on; a hard cap refuses new keys rather than grow; the keys are split
//! between shards in the same way. It has no global limit and no ring: each key's limiter
//! serves its own callers as a [`Limiter`](crate::Limiter) does.
//!
//! # Bound to one key
//!
//! [`KeyedGate::handle`] returns a [`KeyHandle`]: one key's view of a shared keyed gate,
//! which is an [`Admission`](crate::Admission) and an [`OwnedAdmission`](crate::OwnedAdmission),
//! so [`Retry::call`](crate::Retry::call), [`Batch`](crate::Batch) and a tower layer use it
//! as they use a [`Gate`](crate::Gate). A layer keyed by the request holds an
//! `Arc<KeyedGate<K>>` and a `Fn(&Request) -> K`, and calls
//! [`acquire_owned`](KeyedGate::acquire_owned) with each request's key.

mod acquire;
mod admission;
mod builder;
mod error;
mod handle;
mod limiter;
mod permit;
mod priority;
pub(crate) mod shard;
mod state;

pub use acquire::{KeyedAcquire, KeyedAcquireOwned};
pub use admission::{KeyedAdmission, KeyedAdmit, KeyedAdmitError, RateLeft, RateLimited};
pub use builder::KeyedGateBuilder;
pub use error::{KeyedAcquireError, KeyedTryAcquireError};
pub use handle::KeyHandle;
pub use limiter::{KeyedLimiter, KeyedLimiterBuilder};
pub use permit::{KeyedPermit, OwnedKeyedPermit};
pub use priority::Priority;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::mem;
use std::sync::{Arc, PoisonError};

use crate::WaitLimits;
use crate::sync::{Mutex, MutexGuard};
use shard::{CachePadded, Pool, ShardOf, Words};
use state::{Counts, Deferred, Limits, State};

/// The default [`max_keys`](KeyedGateBuilder::max_keys): 65,536 keys, about 4 MiB of state
/// with small keys.
pub const DEFAULT_MAX_KEYS: usize = 1 << 16;

/// The default [`max_idle`](KeyedGateBuilder::max_idle): 1,024 idle keys kept for reuse.
pub const DEFAULT_MAX_IDLE: usize = 1 << 10;

/// The default [`batch_every`](KeyedGateBuilder::batch_every): while both classes wait,
/// one permit in 8 goes to the batch class.
pub const DEFAULT_BATCH_EVERY: u32 = 8;

/// How many permits a key's turn of the ring grants, from its key.
type WeightFn<K> = dyn Fn(&K) -> u32 + Send + Sync;

/// A key's priority class, from its key.
type PriorityFn<K> = dyn Fn(&K) -> Priority + Send + Sync;

/// A concurrency limit per key, made on first use, under an optional global limit, fair
/// between keys and bounded in memory. See the [module docs](self) for the rules.
///
/// # Examples
///
/// Two tenants, one flooding: the other still gets its turn.
///
/// ```
/// use gate_core::keyed::KeyedGate;
///
/// let gate: KeyedGate<&str> = KeyedGate::builder(2).global(2).build().unwrap();
/// let a1 = gate.try_acquire(&"a").unwrap();
/// let a2 = gate.try_acquire(&"a").unwrap();
/// // The global limit binds: nobody gets in now.
/// assert!(gate.try_acquire(&"b").is_err());
/// drop((a1, a2));
/// assert!(gate.try_acquire(&"b").is_ok());
/// ```
pub struct KeyedGate<K, S = RandomState> {
    shards: Box<[CachePadded<Shard<K>>]>,
    shard_of: ShardOf,
    hasher: S,
    limits: Limits,
    wait_limits: WaitLimits,
    weight: Option<Box<WeightFn<K>>>,
    priority: Option<Box<PriorityFn<K>>>,
    name: Option<&'static str>,
}

/// One shard of a keyed gate's keys: the limits it runs with (its share of `max_keys`; its
/// part of `max_idle` is in its state) and its keys' words, which only change, not move,
/// and a release reaches without the lock; then, on cache lines of their own, the keys'
/// state behind the shard's own lock.
struct Shard<K> {
    limits: Limits,
    words: Words,
    state: CachePadded<Mutex<State<K>>>,
}

impl<K: Eq> Shard<K> {
    fn new(limits: Limits, idle_share: usize, idle_pool: Arc<Pool>) -> Self {
        Self {
            limits,
            words: Words::new(),
            state: CachePadded(Mutex::new(State::new(idle_share, idle_pool))),
        }
    }
}

/// A key's slot in its shard: what a permit names, so that its release hashes nothing.
#[derive(Debug, Clone, Copy)]
struct SlotRef {
    shard: u32,
    slot: u32,
}

impl<K> KeyedGate<K>
where
    K: Hash + Eq + Clone + Send + Sync,
{
    /// A gate admitting `per_key_limit` callers of each key at once, with no global limit,
    /// no bound on waiting, and the default caps on keys.
    ///
    /// # Panics
    ///
    /// If `per_key_limit` exceeds [`Gate::MAX_PERMITS`](crate::Gate::MAX_PERMITS); use
    /// [`KeyedGate::builder`] to get an error instead.
    #[track_caller]
    pub fn new(per_key_limit: usize) -> Self {
        match Self::builder(per_key_limit).build() {
            Ok(gate) => gate,
            Err(_) => panic!("KeyedGate::new: the limit exceeds Gate::MAX_PERMITS"),
        }
    }

    /// Starts a gate of `per_key_limit` permits per key, to which a global limit, caps on
    /// keys, bounds on waiting and weights can be added.
    pub fn builder(per_key_limit: usize) -> KeyedGateBuilder<K> {
        KeyedGateBuilder::new(per_key_limit)
    }
}

impl<K, S> KeyedGate<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    /// Waits for a permit of `key` (and of the global limit, if any), within the gate's own
    /// [`wait_limits`](Self::wait_limits).
    ///
    /// Fails with [`KeyedAcquireError::TooManyKeys`] if `key` is not in memory and every one
    /// of the `max_keys` keys that are is busy, and with
    /// [`TimedOut`](KeyedAcquireError::TimedOut) or [`QueueFull`](KeyedAcquireError::QueueFull)
    /// past the gate's `max_wait` or `max_waiters` (which counts the callers queued for the
    /// same key: a flooding key fills its own queue, not the others').
    ///
    /// Cancel-safe: dropping the future gives back its place in the queue, or the permit
    /// granted to it and not yet collected.
    pub fn acquire<'a, 'k>(&'a self, key: &'k K) -> KeyedAcquire<'a, 'k, K, S> {
        self.acquire_with(key, self.wait_limits)
    }

    /// Like [`acquire`](Self::acquire), within `limits` instead of the gate's own.
    pub fn acquire_with<'a, 'k>(
        &'a self,
        key: &'k K,
        limits: WaitLimits,
    ) -> KeyedAcquire<'a, 'k, K, S> {
        KeyedAcquire::new(self, key, limits)
    }

    /// Like [`acquire`](Self::acquire), through an `Arc`, for a permit that must be
    /// `'static`. Takes the key by value: it is moved into the gate if it is new.
    pub fn acquire_owned(self: Arc<Self>, key: K) -> KeyedAcquireOwned<K, S> {
        let limits = self.wait_limits;
        self.acquire_owned_with(key, limits)
    }

    /// Like [`acquire_owned`](Self::acquire_owned), within `limits`.
    pub fn acquire_owned_with(
        self: Arc<Self>,
        key: K,
        limits: WaitLimits,
    ) -> KeyedAcquireOwned<K, S> {
        KeyedAcquireOwned::new(self, key, limits)
    }

    /// Takes a permit of `key` at once if its key and the global limit have room and nobody
    /// is queued ahead (for the key, or for the global limit); otherwise takes nothing.
    pub fn try_acquire(&self, key: &K) -> Result<KeyedPermit<'_, K, S>, KeyedTryAcquireError> {
        let slot = self.try_take(key)?;
        Ok(KeyedPermit::new(self, slot))
    }

    /// Like [`try_acquire`](Self::try_acquire), through an `Arc` (cloned, like the key,
    /// only if needed).
    pub fn try_acquire_owned(
        self: &Arc<Self>,
        key: &K,
    ) -> Result<OwnedKeyedPermit<K, S>, KeyedTryAcquireError> {
        let slot = self.try_take(key)?;
        Ok(OwnedKeyedPermit::new(Arc::clone(self), slot))
    }

    /// One key's view of this gate, an [`Admission`](crate::Admission) for
    /// [`Retry::call`](crate::Retry::call), [`Batch`](crate::Batch) and tower layers.
    pub fn handle(self: &Arc<Self>, key: K) -> KeyHandle<K, S> {
        KeyHandle::new(Arc::clone(self), key)
    }

    /// Keys held in memory right now: those with permits out or callers queued, and the
    /// idle ones kept for reuse (at most [`max_idle`](KeyedGateBuilder::max_idle)).
    ///
    /// Counts the keys whose last permit came back since the shard last looked, evicting
    /// beyond `max_idle` first (see
    /// [the module docs](self#idle-keys-counted-when-the-gate-looks)), as do the other
    /// counts and [`contains_key`](Self::contains_key): O(the keys busy since).
    ///
    /// A gate with shards (see [the module docs](self#shards)) adds up their counts one
    /// after another: with keys coming and going, a snapshot. So are
    /// [`idle_len`](Self::idle_len), [`in_flight`](Self::in_flight) and
    /// [`waiting`](Self::waiting).
    pub fn len(&self) -> usize {
        self.sum(|state, _, _| state.len())
    }

    /// Whether `key` is held in memory (busy, or idle and kept for reuse).
    pub fn contains_key(&self, key: &K) -> bool {
        let hash = self.hasher.hash_one(key);
        self.refreshed(self.shard(hash)).lookup(hash, key).is_some()
    }

    /// Whether no key is held in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Idle keys held in memory (no permits out, nobody queued).
    pub fn idle_len(&self) -> usize {
        self.sum(|state, _, _| state.idle_len())
    }

    /// Permits out right now, across all keys.
    pub fn in_flight(&self) -> usize {
        self.sum(State::in_flight)
    }

    /// Permits out right now for `key`.
    pub fn key_in_flight(&self, key: &K) -> usize {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        self.lock(shard)
            .key_in_flight(hash, key, &self.shards[shard].words)
    }

    /// Callers queued right now, across all keys.
    pub fn waiting(&self) -> usize {
        self.sum(|state, _, _| state.queued())
    }

    /// Each key's limit.
    pub fn per_key_limit(&self) -> usize {
        self.limits.per_key
    }

    /// The limit across all keys, if one was set.
    pub fn global_limit(&self) -> Option<usize> {
        (self.limits.global != usize::MAX).then_some(self.limits.global)
    }

    /// The most keys held in memory at once.
    pub fn max_keys(&self) -> usize {
        self.limits.max_keys
    }

    /// The bounds on waiting that [`acquire`](Self::acquire) uses.
    pub fn wait_limits(&self) -> WaitLimits {
        self.wait_limits
    }

    /// The gate's name, given by [`KeyedGateBuilder::name`]; `None` for an unnamed gate.
    ///
    /// ```
    /// use gate_core::keyed::KeyedGate;
    ///
    /// let gate: KeyedGate<u64> = KeyedGate::builder(4).name("tenants").build().unwrap();
    /// assert_eq!(gate.name(), Some("tenants"));
    /// ```
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// What the gate's metrics publish, read in one lock per shard (one in all with a
    /// global limit): the global level's in flight and waiting, the keys in memory, and how
    /// acquisitions ended.
    #[cfg(feature = "metrics")]
    pub(crate) fn metrics_snapshot(&self) -> (usize, usize, usize, state::Counts) {
        let mut sums = (0, 0, 0, state::Counts::default());
        for shard in 0..self.shards.len() {
            let locked = self.refreshed(shard);
            sums.0 += locked.in_flight(self.limits(shard), &self.shards[shard].words);
            sums.1 += locked.queued();
            sums.2 += locked.len();
            sums.3.merge(&locked.counts);
        }
        sums
    }

    /// `count` of every shard's state, [refreshed](Self::refreshed), added up one shard
    /// after another.
    fn sum(&self, count: impl Fn(&State<K>, &Limits, &Words) -> usize) -> usize {
        (0..self.shards.len())
            .map(|shard| {
                let locked = self.refreshed(shard);
                count(&locked, self.limits(shard), &self.shards[shard].words)
            })
            .sum()
    }

    /// Takes the lock of shard `shard` and brings its counts up to date: keys whose last
    /// permit came back without the lock are counted idle, and evicted beyond `max_idle`
    /// (see [the module docs](self#idle-keys-counted-when-the-gate-looks)).
    fn refreshed(&self, shard: usize) -> LockedGuard<'_, K> {
        let mut locked = self.lock(shard);
        let (state, deferred) = locked.parts();
        state.refresh(self.limits(shard), &self.shards[shard].words, deferred);
        locked
    }

    /// The shard of a key whose hash is `hash`.
    #[inline]
    fn shard(&self, hash: u64) -> usize {
        self.shard_of.of(hash)
    }

    /// The limits shard `shard` runs with.
    #[inline]
    fn limits(&self, shard: usize) -> &Limits {
        &self.shards[shard].limits
    }

    /// The words of shard `shard`'s keys.
    #[inline]
    fn words(&self, shard: usize) -> &Words {
        &self.shards[shard].words
    }

    /// Finds or makes `key`'s slot and takes a permit of it at once, or takes nothing.
    fn try_take(&self, key: &K) -> Result<SlotRef, KeyedTryAcquireError> {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        let (limits, words) = (self.limits(shard), self.words(shard));
        let mut locked = self.lock(shard);
        let Ok(slot) = self.slot(&mut locked, shard, hash, KeyArg::Borrowed(key)) else {
            Counts::add(&mut locked.counts.too_many_keys);
            return Err(KeyedTryAcquireError::TooManyKeys);
        };
        if locked.try_take(slot, limits, words) {
            Ok(SlotRef::new(shard, slot))
        } else {
            // A key made for this call and refused is idle: it goes on the idle list.
            let (state, deferred) = locked.parts();
            Counts::add(&mut state.counts.rejected);
            state.settle(slot, limits, words, deferred);
            Err(KeyedTryAcquireError::NoPermits)
        }
    }

    /// The slot of `key` (whose hash is `hash`) in shard `shard`, whose lock `locked`
    /// holds, made if it is new (the key is cloned, and its weight and class computed,
    /// with the lock released, then looked up again). Fails only at the shard's share of
    /// `max_keys` with no idle key to evict. The slot stays `Busy` until the caller
    /// settles it.
    fn slot<'g>(
        &'g self,
        locked: &mut LockedGuard<'g, K>,
        shard: usize,
        hash: u64,
        key: KeyArg<'_, K>,
    ) -> Result<u32, ()> {
        let (limits, words) = (self.limits(shard), self.words(shard));
        if let Some(slot) = locked.find(hash, key.get(), limits, words) {
            return Ok(slot);
        }
        // User code (the key's clone, the weight function) never runs under the lock.
        drop(mem::replace(locked, LockedGuard::empty()));
        let key = key.into_owned();
        let weight = self.weight.as_ref().map_or(1, |weight| weight(&key));
        let priority = self
            .priority
            .as_ref()
            .map_or(Priority::Interactive, |priority| priority(&key));
        *locked = self.lock(shard);
        if let Some(slot) = locked.find(hash, &key, limits, words) {
            locked.deferred.drop_key(key);
            return Ok(slot);
        }
        let (state, deferred) = locked.parts();
        state
            .insert(
                hash,
                key,
                (weight, priority.class()),
                limits,
                words,
                deferred,
            )
            .map_err(|key| deferred.drop_key(key))
    }

    /// Gives back a permit of the key in `at`: with a global limit under the lock, as
    /// every step of the global level is; without, one atomic decrement of the key's word,
    /// and the lock only if callers are queued for the key (see [`shard::word`]).
    #[inline]
    fn release(&self, at: SlotRef) {
        let shard = at.shard as usize;
        let (limits, words) = (self.limits(shard), self.words(shard));
        if limits.has_global() {
            let mut locked = self.lock(shard);
            let (state, deferred) = locked.parts();
            state.release(at.slot, limits, words, deferred);
        } else if shard::word::release(words.get(at.slot)) {
            let mut locked = self.lock(shard);
            let (state, deferred) = locked.parts();
            state.released(at.slot, limits, words, deferred);
        }
    }

    /// Takes the lock of shard `shard`.
    #[inline]
    fn lock(&self, shard: usize) -> LockedGuard<'_, K> {
        // The lock is never held across user code other than `K`'s `Hash` and `Eq`, so a
        // poisoned lock still guards a consistent state.
        let state = &self.shards[shard].state;
        LockedGuard::new(state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<K, S> fmt::Debug for KeyedGate<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedGate")
            .field("per_key_limit", &self.limits.per_key)
            .field("global_limit", &self.limits.global)
            .field("max_keys", &self.limits.max_keys)
            .field("max_idle", &self.limits.max_idle)
            .field("wait_limits", &self.wait_limits)
            .field("shards", &self.shards.len())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SlotRef {
    #[inline]
    fn new(shard: usize, slot: u32) -> Self {
        // At most `MAX_SHARDS` shards.
        Self {
            shard: shard as u32,
            slot,
        }
    }
}

/// The key a caller asks for: borrowed (cloned if it must be stored), or owned by the
/// future (moved into the gate if it must be stored, so never cloned).
enum KeyArg<'a, K> {
    Borrowed(&'a K),
    /// `Some` until stored.
    Owned(&'a mut Option<K>),
}

impl<K: Clone> KeyArg<'_, K> {
    fn get(&self) -> &K {
        match self {
            Self::Borrowed(key) => key,
            Self::Owned(key) => key.as_ref().expect("a key not yet stored"),
        }
    }

    fn into_owned(self) -> K {
        match self {
            Self::Borrowed(key) => key.clone(),
            Self::Owned(key) => key.take().expect("a key not yet stored"),
        }
    }
}

/// Holds the gate's lock, if any, with what to do once it is released; on drop releases
/// it first, then wakes the woken and drops the evicted (which may run user code), so that
/// no path forgets either. Neither part moves on the way: a guard is made and dropped on
/// every admission and release.
struct LockedGuard<'a, K> {
    state: Option<MutexGuard<'a, State<K>>>,
    deferred: Deferred<K>,
}

impl<'a, K> LockedGuard<'a, K> {
    #[inline]
    fn new(state: MutexGuard<'a, State<K>>) -> Self {
        Self {
            state: Some(state),
            deferred: Deferred::default(),
        }
    }

    fn empty() -> Self {
        Self {
            state: None,
            deferred: Deferred::default(),
        }
    }

    /// The state and the work deferred until the lock is released, apart.
    #[inline]
    fn parts(&mut self) -> (&mut State<K>, &mut Deferred<K>) {
        let state = self.state.as_mut().expect("the gate's lock is held");
        (state, &mut self.deferred)
    }
}

impl<K> std::ops::Deref for LockedGuard<'_, K> {
    type Target = State<K>;

    #[inline]
    fn deref(&self) -> &State<K> {
        self.state.as_ref().expect("the gate's lock is held")
    }
}

impl<K> std::ops::DerefMut for LockedGuard<'_, K> {
    #[inline]
    fn deref_mut(&mut self) -> &mut State<K> {
        self.state.as_mut().expect("the gate's lock is held")
    }
}

impl<K> Drop for LockedGuard<'_, K> {
    #[inline]
    fn drop(&mut self) {
        drop(self.state.take());
        self.deferred.run();
    }
}

const _: () = assert!(DEFAULT_MAX_IDLE <= DEFAULT_MAX_KEYS);
