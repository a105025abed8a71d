//! [`KeyedLimiter`]: a [`Limiter`] per key, made from a template on first use, evicted
//! when idle.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::mem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use super::shard::{self, CachePadded, Pool, ShardOf, Share};
use super::{DEFAULT_MAX_IDLE, DEFAULT_MAX_KEYS, KeyedAcquireError, KeyedTryAcquireError};
use crate::rate::{LimiterClock, RateLimit};
use crate::{Limiter, OwnedLimiterPermit, WaitLimits};

/// How many keys each new key's sweep looks at: more than one, so that the keys in memory
/// shrink back after a burst of new keys, not only stop growing.
const SWEEP: usize = 3;

/// How many keys a new key at the cap looks at for an idle one before it is refused: a
/// bound on the work an attacker's new keys can cause when every key is busy.
const SWEEP_AT_CAP: usize = 16;

/// How a template makes each key's limiter.
type Template = dyn Fn() -> Limiter + Send + Sync;

/// A [`Limiter`] per key (a rate, a concurrency or adaptive limit, a pause: whatever the
/// template builds), made on first use and evicted once idle, in bounded memory.
///
/// - **Idle** means no permit of the key's limiter is out and nobody waits for one (nor
///   holds it from [`limiter`](Self::limiter)), its rate limit's bucket and its token
///   budget are full again, and it is not paused: forgetting it loses nothing a fresh
///   limiter from the template would not have. (An adaptive limit's learnt value is lost
///   with it.)
/// - **Evicted lazily.** Up to [`max_idle`](KeyedLimiterBuilder::max_idle) keys (default
///   [`DEFAULT_MAX_IDLE`]) are kept whatever their state, so that keys in steady use keep
///   their limiters (making one is the costly part of a first use). Beyond that, each new
///   key moves a clock sweep over the next 3 keys in memory (a key used since the sweep
///   last passed gets a second chance: an approximation of least recently used) and evicts
///   the idle ones, so the keys in memory shrink back towards `max_idle` after a burst of
///   new keys. No background task, none of the caller's code.
/// - **A hard cap.** At most [`max_keys`](KeyedLimiterBuilder::max_keys) keys (default
///   [`DEFAULT_MAX_KEYS`]). A new key at the cap sweeps up to 16 more keys for an idle one
///   to evict (a bound on the work a flood of new keys can cause); if none is, it is
///   refused with [`KeyedAcquireError::TooManyKeys`] rather than grown into.
///
/// # Shards
///
/// The keys are split by their hash between shards, each with its own lock and its own
/// clock sweep, so that callers of keys on different shards do not wait for each other.
/// There are 4 shards per thread the machine runs at once (a power of two, at most 64),
/// fewer if a shard's even share of `max_keys` or `max_idle` would be under 64 keys: a
/// keyed limiter with either under 128 has one shard, and the rules above hold exactly.
/// With more:
///
/// - `max_idle` is still one count for all shards: each shard holds a part of it, takes
///   more from the rest when it needs more (keys need not spread evenly) and gives back
///   what it stops using. A new key sweeps its own shard's keys.
/// - `max_keys` is split evenly between the shards (the shares add up to it, so it is
///   never exceeded): a new key is refused when *its shard* is at its share with no idle
///   key to evict, which can come a little before `max_keys` keys are in memory in all
///   (keys spread by a good hash fill the shards within a few percent of each other). Give
///   `max_keys` that much room over the keys you expect at once.
/// - [`len`](Self::len) adds up the shards one after another: a snapshot, not an atomic
///   count.
///
/// A key's limiter is checked under its shard's read lock (so that the sweep, under the
/// write lock, knows no permit is being made of a key it evicts): callers of keys on the
/// same shard check side by side, and only a new key, which sweeps, waits for them. A
/// check hashes the key once, takes no allocation and no `Arc` clone beyond the permit's,
/// and reads no clock but its limiter's. User code that runs under a shard's lock: `K`'s
/// `Hash` and `Eq`, and, for a limiter built with a [`Clock`](crate::rate::Clock) of your
/// own, that clock (the sweep reads it to see whether a bucket is full).
///
/// # Examples
///
/// Ten requests a second per API key, five at once:
///
/// ```
/// use gate_core::Limiter;
/// use gate_core::keyed::KeyedLimiter;
/// use gate_core::rate::Rate;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limits: KeyedLimiter<String> = KeyedLimiter::new(|| {
///     Limiter::builder().rate(Rate::per_second(10)).concurrency(5).build().unwrap()
/// });
/// let permit = limits.acquire(&"key-1".to_string()).await.unwrap();
/// assert_eq!(limits.len(), 1);
/// drop(permit);
/// # }
/// ```
pub struct KeyedLimiter<K, S = RandomState> {
    template: Box<Template>,
    hasher: S,
    max_keys: usize,
    max_idle: usize,
    shards: Box<[CachePadded<Shard<K>>]>,
    shard_of: ShardOf,
    /// The places under `max_idle` no shard holds.
    idle_pool: Pool,
    name: Option<&'static str>,
}

/// One shard of the keys: its table, behind its own lock, and its share of `max_keys`.
struct Shard<K> {
    table: RwLock<Table<K>>,
    max_keys: usize,
}

/// The keys of one shard, behind the shard's lock.
struct Table<K> {
    index: HashTable<u32>,
    entries: Vec<Entry<K>>,
    /// Free slots.
    free: Vec<u32>,
    /// Where the clock sweep looks next.
    hand: usize,
    /// The keys this shard may hold before a new key sweeps: its part of `max_idle`, topped
    /// up from and given back to the keyed limiter's `idle_pool`.
    idle_share: Share,
    /// New keys refused at the cap, for `publish_metrics`.
    too_many_keys: u64,
}

/// One key and its limiter, or a free slot (`held` `None`).
///
/// Aligned to 32 bytes, so that a check reads one cache line of it, never two: for a key of
/// up to 8 bytes an entry is 32 bytes (the `Arc`'s niche marks a free slot), two to a line.
#[repr(align(32))]
struct Entry<K> {
    held: Option<(K, Arc<Limiter>)>,
    hash: u64,
    /// Used since the sweep last passed; set under the read lock, cleared under the write
    /// lock.
    referenced: AtomicBool,
}

impl<K> KeyedLimiter<K>
where
    K: Hash + Eq + Clone + Send + Sync,
{
    /// A limiter per key, each built by `template` (called once per new key, never under
    /// the keyed limiter's lock), with the default cap on keys.
    pub fn new(template: impl Fn() -> Limiter + Send + Sync + 'static) -> Self {
        Self::builder(template).build()
    }

    /// Starts a keyed limiter whose cap on keys or hasher can be set.
    pub fn builder(
        template: impl Fn() -> Limiter + Send + Sync + 'static,
    ) -> KeyedLimiterBuilder<K> {
        KeyedLimiterBuilder {
            template: Box::new(template),
            max_keys: DEFAULT_MAX_KEYS,
            max_idle: DEFAULT_MAX_IDLE,
            hasher: RandomState::new(),
            name: None,
            _key: std::marker::PhantomData,
        }
    }
}

impl<K, S> KeyedLimiter<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    /// Waits for admission by `key`'s limiter, within that limiter's own wait limits.
    ///
    /// Fails with [`KeyedAcquireError::TooManyKeys`] at the cap with no idle key to evict,
    /// and otherwise as the key's limiter fails. Cancel-safe, as [`Limiter::acquire`] is.
    pub async fn acquire(&self, key: &K) -> Result<OwnedLimiterPermit, KeyedAcquireError> {
        let limiter = self.find_or_make(key)?;
        Ok(limiter.acquire_owned().await?)
    }

    /// Like [`acquire`](Self::acquire), within `limits` instead of the key's limiter's own
    /// (as [`Limiter::acquire_with`]): for a caller, such as a tower layer, that bounds its
    /// waits itself.
    pub async fn acquire_with(
        &self,
        key: &K,
        limits: WaitLimits,
    ) -> Result<OwnedLimiterPermit, KeyedAcquireError> {
        let limiter = self.find_or_make(key)?;
        Ok(limiter.acquire_owned_with(limits).await?)
    }

    /// Admits by `key`'s limiter at once if nothing stands in the way there (see
    /// [`Limiter::try_acquire_owned_uncontended`]); otherwise takes nothing.
    pub fn try_acquire(&self, key: &K) -> Result<OwnedLimiterPermit, KeyedTryAcquireError> {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        {
            let table = shard.read();
            if let Some(limiter) = table.touch(hash, key) {
                // Under the read lock: the sweep cannot evict the key meanwhile.
                return limiter
                    .try_acquire_owned_uncontended()
                    .ok_or(KeyedTryAcquireError::NoPermits);
            }
        }
        let limiter = self
            .make(shard, hash, key)
            .map_err(|_| KeyedTryAcquireError::TooManyKeys)?;
        limiter
            .try_acquire_owned_uncontended()
            .ok_or(KeyedTryAcquireError::NoPermits)
    }

    /// Admits one attempt by `key`'s limiter and ends it at once (see [`Limiter::check`]):
    /// a rate check with nothing to hold, as governor's `check_key`, for a caller that only
    /// asks whether a request of `key` may start now.
    ///
    /// Fails as [`try_acquire`](Self::try_acquire) does. The check runs under the shard's
    /// read lock and hands nothing out, so it clones no `Arc` of the key's limiter.
    ///
    /// ```
    /// use gate_core::Limiter;
    /// use gate_core::keyed::{KeyedLimiter, KeyedTryAcquireError};
    /// use gate_core::rate::Rate;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let limits: KeyedLimiter<u64> =
    ///     KeyedLimiter::new(|| Limiter::with_rate(Rate::per_second(10).burst(2)));
    /// assert_eq!(limits.check(&7), Ok(()));
    /// assert_eq!(limits.check(&7), Ok(()));
    /// assert_eq!(limits.check(&7), Err(KeyedTryAcquireError::NoPermits));
    /// assert_eq!(limits.check(&8), Ok(()), "each key has a bucket of its own");
    /// # }
    /// ```
    pub fn check(&self, key: &K) -> Result<(), KeyedTryAcquireError> {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        let admitted = {
            let table = shard.read();
            table.touch(hash, key).map(|limiter| limiter.check())
        };
        let admitted = match admitted {
            Some(admitted) => admitted,
            None => self
                .make(shard, hash, key)
                .map_err(|_| KeyedTryAcquireError::TooManyKeys)?
                .check(),
        };
        admitted
            .then_some(())
            .ok_or(KeyedTryAcquireError::NoPermits)
    }

    /// `key`'s limiter, made if it is new: to pause one key when its server pushes back,
    /// or to read its statistics. Holding it keeps the key from being evicted.
    pub fn limiter(&self, key: &K) -> Result<Arc<Limiter>, KeyedAcquireError> {
        self.find_or_make(key)
    }

    /// Keys held in memory right now: the shards' counts added up one after another, so a
    /// snapshot while keys come and go (never above [`max_keys`](Self::max_keys)).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.read().index.len())
            .sum()
    }

    /// Whether no key is held in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is held in memory.
    pub fn contains_key(&self, key: &K) -> bool {
        let hash = self.hasher.hash_one(key);
        self.shard(hash).read().lookup(hash, key).is_some()
    }

    /// The most keys held in memory at once.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The keyed limiter's name, given by [`KeyedLimiterBuilder::name`]; `None` for an
    /// unnamed one.
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// What the keyed limiter's metrics publish: the keys in memory, the new keys refused
    /// at the cap, and the permits out and callers waiting summed over every key's limiter
    /// (each read in its own lock, after the shard's is released).
    #[cfg(feature = "metrics")]
    pub(crate) fn metrics_snapshot(&self) -> (usize, u64, usize, usize) {
        let (mut keys, mut refused) = (0usize, 0u64);
        let (mut in_flight, mut waiting) = (0usize, 0usize);
        for shard in self.shards.iter() {
            let limiters: Vec<Arc<Limiter>> = {
                let table = shard.read();
                keys += table.index.len();
                refused = refused.wrapping_add(table.too_many_keys);
                table
                    .entries
                    .iter()
                    .filter_map(|e| e.held.as_ref().map(|(_, limiter)| Arc::clone(limiter)))
                    .collect()
            };
            for limiter in &limiters {
                let stats = limiter.stats();
                in_flight = in_flight.saturating_add(stats.in_flight);
                waiting = waiting.saturating_add(stats.waiting);
            }
            // The clones drop here, with no lock held.
            drop(limiters);
        }
        (keys, refused, in_flight, waiting)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K> {
        &self.shards[self.shard_of.of(hash)]
    }

    /// The limiter of `key`, made if it is new.
    fn find_or_make(&self, key: &K) -> Result<Arc<Limiter>, KeyedAcquireError> {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        if let Some(limiter) = shard.read().touch(hash, key) {
            return Ok(Arc::clone(limiter));
        }
        self.make(shard, hash, key)
    }

    /// The limiter of `key`, not found in `shard` a moment ago: made from the template
    /// (with the lock released: the template is user code), then, unless another caller
    /// made it meanwhile, stored after a sweep of the shard that evicts idle keys.
    #[cold]
    fn make(
        &self,
        shard: &Shard<K>,
        hash: u64,
        key: &K,
    ) -> Result<Arc<Limiter>, KeyedAcquireError> {
        let limiter = Arc::new((self.template)());
        let key = key.clone();
        let mut evicted = Vec::new();
        let made = {
            let mut table = shard.write();
            if let Some(found) = table.touch(hash, &key) {
                Ok(Arc::clone(found))
            } else {
                let len = table.index.len();
                if !table.idle_share.fits(len + 1, &self.idle_pool) {
                    table.sweep(SWEEP, &mut evicted);
                }
                if table.index.len() >= shard.max_keys {
                    table.sweep(SWEEP_AT_CAP, &mut evicted);
                }
                let made = if table.index.len() >= shard.max_keys {
                    super::state::Counts::add(&mut table.too_many_keys);
                    Err(KeyedAcquireError::TooManyKeys)
                } else {
                    table.insert(hash, key, Arc::clone(&limiter));
                    Ok(limiter)
                };
                let len = table.index.len();
                table.idle_share.shrunk(len, &self.idle_pool);
                made
            }
        };
        // Evicted keys and limiters (and the unused new one) drop here, unlocked.
        drop(evicted);
        made
    }
}

impl<K> Shard<K> {
    // User code never runs under the lock except `K`'s `Hash` and `Eq` and the limiters'
    // clocks, so a poisoned lock still guards a consistent table.
    #[inline]
    fn read(&self) -> RwLockReadGuard<'_, Table<K>> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table<K>> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `limit`'s bucket is full: as if it had never been used.
fn is_full(limit: &RateLimit<LimiterClock>) -> bool {
    limit.remaining() >= limit.capacity()
}

impl<K: Eq> Table<K> {
    #[inline]
    fn lookup(&self, hash: u64, key: &K) -> Option<u32> {
        let entries = &self.entries;
        self.index
            .find(hash, |&slot| {
                entries[slot as usize]
                    .held
                    .as_ref()
                    .is_some_and(|(held, _)| held == key)
            })
            .copied()
    }

    /// The limiter of a key in memory, marked as used (a write only if it was not, so that
    /// a hot key's checks leave its line alone).
    #[inline]
    fn touch(&self, hash: u64, key: &K) -> Option<&Arc<Limiter>> {
        let slot = self.lookup(hash, key)?;
        let entry = &self.entries[slot as usize];
        if !entry.referenced.load(Ordering::Relaxed) {
            entry.referenced.store(true, Ordering::Relaxed);
        }
        entry.held.as_ref().map(|(_, limiter)| limiter)
    }

    fn insert(&mut self, hash: u64, key: K, limiter: Arc<Limiter>) {
        let entry = Entry {
            held: Some((key, limiter)),
            hash,
            referenced: AtomicBool::new(true),
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = entry;
                slot
            }
            None => {
                // A shard's share of `max_keys` is at most `MAX_SLOTS`, so the index fits.
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        let entries = &self.entries;
        self.index
            .insert_unique(hash, slot, |&slot| entries[slot as usize].hash);
    }

    /// Moves the clock hand over up to `steps` keys in memory: a key used since the hand
    /// last passed loses its mark, an unmarked idle key is evicted into `evicted`.
    fn sweep(&mut self, steps: usize, evicted: &mut Vec<(K, Arc<Limiter>)>) {
        let len = self.entries.len();
        let mut looked = 0;
        for _ in 0..len {
            if looked == steps {
                break;
            }
            self.hand = (self.hand + 1) % len;
            let slot = self.hand;
            let entry = &mut self.entries[slot];
            let Some((_, limiter)) = &entry.held else {
                continue;
            };
            looked += 1;
            if mem::take(entry.referenced.get_mut()) {
                continue;
            }
            // No permit out, no waiter, nobody holding it: only the table holds the
            // limiter (permits and clones are made under the read lock, so the count
            // cannot rise while this holds the write lock).
            let idle = Arc::strong_count(limiter) == 1
                && limiter.rate_limit().is_none_or(is_full)
                && limiter.token_limit().is_none_or(is_full)
                && limiter.paused_until().is_none();
            if idle {
                let hash = entry.hash;
                evicted.extend(entry.held.take());
                if let Ok(found) = self.index.find_entry(hash, |&other| other as usize == slot) {
                    found.remove();
                }
                self.free.push(slot as u32);
            }
        }
    }
}

/// Builds a [`KeyedLimiter`], from [`KeyedLimiter::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct KeyedLimiterBuilder<K, S = RandomState> {
    template: Box<Template>,
    max_keys: usize,
    max_idle: usize,
    hasher: S,
    name: Option<&'static str>,
    _key: std::marker::PhantomData<fn(&K)>,
}

impl<K, S> KeyedLimiterBuilder<K, S> {
    /// The most keys held in memory at once (at least 1; default [`DEFAULT_MAX_KEYS`]),
    /// split between the shards (see [`KeyedLimiter`]'s "Shards").
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.clamp(1, super::state::MAX_SLOTS);
        self
    }

    /// How many keys are kept, idle or not, before new keys start sweeping idle ones out
    /// (default [`DEFAULT_MAX_IDLE`], at most `max_keys`), counted across all shards.
    pub fn max_idle(mut self, max_idle: usize) -> Self {
        self.max_idle = max_idle;
        self
    }

    /// Names the keyed limiter: the `gate.name` of its metrics
    /// (`KeyedLimiter::publish_metrics`, with the `metrics` feature). The keys' limiters,
    /// made by the template, are not named by it, and no series is labelled by key (the
    /// `gate_core::metrics` docs say why).
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// Hashes keys with `hasher` instead of std's [`RandomState`]; see
    /// [`KeyedGateBuilder::hasher`](super::KeyedGateBuilder::hasher).
    pub fn hasher<S2>(self, hasher: S2) -> KeyedLimiterBuilder<K, S2> {
        KeyedLimiterBuilder {
            template: self.template,
            max_keys: self.max_keys,
            max_idle: self.max_idle,
            hasher,
            name: self.name,
            _key: std::marker::PhantomData,
        }
    }

    /// Builds the keyed limiter. No limiter is made until a key is first used.
    pub fn build(self) -> KeyedLimiter<K, S> {
        let max_idle = self.max_idle.min(self.max_keys);
        let shards = shard::shard_count(self.max_keys, max_idle);
        let (held, pooled) = shard::idle_start(max_idle, shards);
        KeyedLimiter {
            template: self.template,
            hasher: self.hasher,
            max_keys: self.max_keys,
            max_idle,
            shards: (0..shards)
                .map(|i| {
                    CachePadded(Shard {
                        table: RwLock::new(Table {
                            index: HashTable::new(),
                            entries: Vec::new(),
                            free: Vec::new(),
                            hand: 0,
                            idle_share: Share::new(held),
                            too_many_keys: 0,
                        }),
                        max_keys: shard::share(self.max_keys, shards, i),
                    })
                })
                .collect(),
            shard_of: ShardOf::new(shards),
            idle_pool: Pool::new(pooled),
            name: self.name,
        }
    }
}

impl<K, S> fmt::Debug for KeyedLimiterBuilder<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiterBuilder")
            .field("max_keys", &self.max_keys)
            .field("max_idle", &self.max_idle)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K, S> fmt::Debug for KeyedLimiter<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("max_keys", &self.max_keys)
            .field("max_idle", &self.max_idle)
            .field("shards", &self.shards.len())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A check reads a key's entry in one cache line: entries are 32 bytes for small keys,
    // aligned so that none straddles two lines.
    #[test]
    fn an_entry_never_straddles_two_lines() {
        assert_eq!(std::mem::size_of::<Entry<u64>>(), 32);
        assert_eq!(std::mem::align_of::<Entry<String>>(), 32);
        assert_eq!(64 % std::mem::size_of::<Entry<String>>(), 0);
    }
}
