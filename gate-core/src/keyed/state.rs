//! The mechanism under [`KeyedGate`](super::KeyedGate), one shard's worth: the key table,
//! the per-key queues, the rings of keys waiting for the global limit (one per priority
//! class), and the list of idle keys, all behind the shard's lock and addressed by `u32`
//! slots so that a permit or a waiter names its key without hashing it again. (A gate with
//! a global limit has one shard: all its keys.)

use std::mem;
use std::sync::Arc;
use std::task::Waker;

use hashbrown::HashTable;

use super::shard::{Pool, Share, Words, word};

/// No slot: the end of a list.
const NIL: u32 = u32::MAX;

/// The most slots either table may hold (one is kept back for [`NIL`]).
pub(super) const MAX_SLOTS: usize = (u32::MAX - 1) as usize;

/// The shortest list of keys to look at again that a new key refreshes (see
/// [`State::busy`]).
const MIN_BUSY_LIMIT: usize = 64;

/// What a key is doing, and so which list its `prev`/`next` links belong to. A key is on
/// at most one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The slot holds no key.
    Free,
    /// Permits out and nothing that could be granted now: on no list, or still on the idle
    /// list where it was when it last went idle (see [`State::idle`]). In a shard of a gate
    /// with no global limit, permits come back without the lock, so a key may be left here
    /// with none out and nobody queued: idle, though not yet counted as such, until
    /// [`State::refresh`] looks at it again.
    Busy,
    /// Callers queued and room under the key's own limit: waiting for the global limit, in
    /// its class's ring that serves keys in turn.
    Ring,
    /// No permits out and nobody queued: on the idle list.
    Idle,
}

/// One key's state: first what an admission reads (32 bytes with a `u64` key, so that it
/// shares a cache line), then what only a queue, a ring or an eviction touches. Its permits
/// out are not here but in its word (see [`Words`]), which a release reaches without the
/// lock.
#[derive(Debug)]
#[repr(C)]
struct Entry<K> {
    /// `None` while the slot is free.
    key: Option<K>,
    /// At most the waiters in memory, which fit in a `u32`.
    queued: u32,
    /// Grants per turn of the ring (here, where it fills what would be padding).
    weight: u32,
    place: Place,
    /// On the shard's list of keys to look at again (see [`State::busy`]). Kept when the
    /// slot is freed and reused, so that a slot is on the list at most once.
    on_busy_list: bool,
    /// On the idle list: `place` is `Idle`, or `Busy` since it last left it.
    on_idle_list: bool,
    /// Taken again since it was put on the idle list: the next eviction that finds it at
    /// the front moves it to the back instead (its second chance).
    used: bool,
    /// Its ring: 0 for interactive keys, 1 for batch keys.
    class: u8,
    /// The key's hash, so that growing the table or evicting the key hashes nothing.
    hash: u64,
    /// Its queued callers, first in first out, as a list of waiter slots.
    queue: Links,
    /// This key's links on the ring or the idle list (see `place`).
    prev: u32,
    next: u32,
}

/// The two ends of an intrusive list of slots.
#[derive(Debug, Clone, Copy)]
struct Links {
    head: u32,
    tail: u32,
}

impl Links {
    const EMPTY: Self = Self {
        head: NIL,
        tail: NIL,
    };
}

/// The keys of one priority class with callers queued and room of their own, served in
/// turn, and whose turn it is.
#[derive(Debug)]
struct Ring {
    links: Links,
    /// The key whose turn it is, and how many grants its turn has left.
    turn: u32,
    turn_left: u32,
}

impl Ring {
    const EMPTY: Self = Self {
        links: Links::EMPTY,
        turn: NIL,
        turn_left: 0,
    };
}

/// One queued caller.
#[derive(Debug)]
struct Waiter {
    /// The key slot it waits on, or the next free waiter slot while free.
    key: u32,
    prev: u32,
    next: u32,
    waker: Option<Waker>,
    /// Granted a permit of its key (and of the global limit), not yet collected.
    granted: bool,
}

/// What a state change leaves to do once the lock is released: wakers to wake and keys to
/// drop (a key's drop, like a waker's, may run user code: never under the lock).
///
/// A guard carries one through every admission and release, most of which leave nothing
/// to do: so it holds one of each inline (one grant, one replaced waker, one evicted key
/// are the common cases) and boxes the rest, and making and dropping it empty costs a few
/// stores and compares.
#[derive(Debug)]
pub(super) struct Deferred<K> {
    wake: Option<Waker>,
    /// A waker to drop: replaced, or its caller's gone.
    drop_waker: Option<Waker>,
    evicted: Option<K>,
    /// What does not fit above.
    more: Option<Box<More<K>>>,
}

/// The rare part of a [`Deferred`].
#[derive(Debug)]
struct More<K> {
    wake: Vec<Waker>,
    drop_wakers: Vec<Waker>,
    evicted: Vec<K>,
}

impl<K> Default for Deferred<K> {
    #[inline]
    fn default() -> Self {
        Self {
            wake: None,
            drop_waker: None,
            evicted: None,
            more: None,
        }
    }
}

impl<K> Deferred<K> {
    fn more(&mut self) -> &mut More<K> {
        self.more.get_or_insert_with(|| {
            Box::new(More {
                wake: Vec::new(),
                drop_wakers: Vec::new(),
                evicted: Vec::new(),
            })
        })
    }

    fn evicted(&mut self, key: Option<K>) {
        let Some(key) = key else { return };
        if !mem::needs_drop::<K>() {
            // Dropping it runs no code at all: no need to wait for the lock's release.
            return;
        }
        match &mut self.evicted {
            slot @ None => *slot = Some(key),
            Some(_) => self.more().evicted.push(key),
        }
    }

    /// Drops `key` once the lock is released.
    pub(super) fn drop_key(&mut self, key: K) {
        self.evicted(Some(key));
    }

    /// Wakes `waker` once the lock is released.
    fn wake(&mut self, waker: Option<Waker>) {
        let Some(waker) = waker else { return };
        match &mut self.wake {
            slot @ None => *slot = Some(waker),
            Some(_) => self.more().wake.push(waker),
        }
    }

    /// Drops `waker` once the lock is released.
    pub(super) fn drop_waker(&mut self, waker: Option<Waker>) {
        let Some(waker) = waker else { return };
        match &mut self.drop_waker {
            slot @ None => *slot = Some(waker),
            Some(_) => self.more().drop_wakers.push(waker),
        }
    }

    /// Wakes the woken and drops the rest; call with no lock held. Nothing to do is the
    /// common case, and costs a few compares: on that path the compiler sees every part
    /// empty, so dropping the `Deferred` afterwards costs nothing either.
    #[inline]
    pub(super) fn run(&mut self) {
        if self.wake.is_some()
            || self.drop_waker.is_some()
            || self.evicted.is_some()
            || self.more.is_some()
        {
            self.run_pending();
        }
    }

    #[cold]
    #[inline(never)]
    fn run_pending(&mut self) {
        if let Some(waker) = self.wake.take() {
            waker.wake();
        }
        if let Some(more) = self.more.take() {
            let More {
                wake,
                drop_wakers,
                evicted,
            } = *more;
            wake.into_iter().for_each(Waker::wake);
            drop((drop_wakers, evicted));
        }
        drop(self.evicted.take());
        drop(self.drop_waker.take());
    }
}

/// The limits a state is run with, fixed at construction.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) per_key: usize,
    pub(super) global: usize,
    pub(super) max_keys: usize,
    pub(super) max_idle: usize,
    /// While both classes wait, every this many grants one goes to the batch class.
    pub(super) batch_every: u32,
}

impl Limits {
    /// Whether there is a global limit: then every release takes the lock.
    #[inline]
    pub(super) fn has_global(&self) -> bool {
        self.global != usize::MAX
    }
}

/// How the keyed gate's acquisitions ended, counted under its lock (an increment of a
/// field the lock already guards) for `KeyedGate::publish_metrics`. Without the `metrics`
/// feature nothing is counted: the increments compile to nothing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    /// Permits taken at once or granted to a queued caller.
    pub(crate) admitted: u64,
    /// Refused without waiting: `try_acquire` with no room, or the key's queue full.
    pub(crate) rejected: u64,
    /// Gave up at their deadline (or asked not to wait at all, with no room).
    pub(crate) timed_out: u64,
    /// Dropped while queued.
    pub(crate) cancelled: u64,
    /// Refused as a new key with every key in memory busy.
    pub(crate) too_many_keys: u64,
}

/// Everything behind a shard's lock.
#[derive(Debug)]
pub(super) struct State<K> {
    /// The slots of the keys in memory, found by the hash of the key held in the slot's
    /// entry (each key is stored once; the gate hashes it before taking the lock).
    table: HashTable<u32>,
    entries: Vec<Entry<K>>,
    /// Free entry slots, linked through `next`.
    free_entry: u32,
    /// In a shard of a gate with no global limit, every key whose `place` is `Busy` or
    /// `Ring` (and some keys idle or freed since they were put on it), so that keys whose
    /// last permit came back without the lock can be found and counted idle: by
    /// [`refresh`](Self::refresh), which each of the gate's counts runs first, and which a
    /// new key runs once the list has doubled since the last, so that the list, and the
    /// idle keys not yet counted, stay bounded at amortised O(1) per new key. Empty with a
    /// global limit: every release there takes the lock and settles its key at once.
    busy: Vec<u32>,
    /// The length of `busy` at which a new key runs [`refresh`](Self::refresh).
    busy_limit: usize,
    waiters: Vec<Waiter>,
    /// Free waiter slots, linked through `key`.
    free_waiter: u32,
    /// Waiter slots in use (queued, or granted and not collected).
    live_waiters: usize,
    /// Keys with callers queued and room under their own limit, served in turn: the
    /// interactive class's ring, then the batch class's.
    rings: [Ring; 2],
    /// Grants in a row to the interactive class while the batch class waited.
    interactive_run: u32,
    /// Every idle key, in the order they were put on it, and busy keys taken off it lazily.
    /// A key taken from it stays where it is, marked `used`, and going idle again leaves
    /// it there, so that an admission and its release write nothing but their own key and
    /// the shard's counts (no neighbour's links, which another thread's keys share). An
    /// eviction takes the front key off: a busy one is dropped from the list, a `used` one
    /// goes to the back unmarked, and the first idle one not used since it was put on is
    /// evicted: first in, first out with a second chance for a key used again, as CLOCK
    /// is, which approximates least recently used.
    idle: Links,
    /// Keys whose `place` is `Idle`.
    idle_len: usize,
    /// This shard's part of `max_idle`, topped up from and given back to `idle_pool`.
    idle_share: Share,
    idle_pool: Arc<Pool>,
    in_flight: usize,
    queued: usize,
    /// How acquisitions ended; read by `publish_metrics`.
    pub(crate) counts: Counts,
}

impl Counts {
    /// Adds `other`'s counts to these: a shard's to the gate's.
    #[cfg(feature = "metrics")]
    pub(crate) fn merge(&mut self, other: &Self) {
        self.admitted = self.admitted.wrapping_add(other.admitted);
        self.rejected = self.rejected.wrapping_add(other.rejected);
        self.timed_out = self.timed_out.wrapping_add(other.timed_out);
        self.cancelled = self.cancelled.wrapping_add(other.cancelled);
        self.too_many_keys = self.too_many_keys.wrapping_add(other.too_many_keys);
    }

    /// Counts one more, if anything reads the counts.
    #[inline]
    pub(super) fn add(count: &mut u64) {
        if cfg!(feature = "metrics") {
            *count = count.wrapping_add(1);
        }
    }
}

impl<K: Eq> State<K> {
    /// The state of a shard that holds `idle_share` idle keys' places of `max_idle`, and
    /// takes more from `idle_pool`.
    pub(super) fn new(idle_share: usize, idle_pool: Arc<Pool>) -> Self {
        Self {
            table: HashTable::new(),
            entries: Vec::new(),
            free_entry: NIL,
            busy: Vec::new(),
            busy_limit: MIN_BUSY_LIMIT,
            waiters: Vec::new(),
            free_waiter: NIL,
            live_waiters: 0,
            rings: [Ring::EMPTY, Ring::EMPTY],
            interactive_run: 0,
            idle: Links::EMPTY,
            idle_len: 0,
            idle_share: Share::new(idle_share),
            idle_pool,
            in_flight: 0,
            queued: 0,
            counts: Counts::default(),
        }
    }

    /// Keys held in memory.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Permits out across all keys.
    pub(super) fn in_flight(&self, limits: &Limits, words: &Words) -> usize {
        if limits.has_global() {
            return self.in_flight;
        }
        // Every key with permits out is on the busy list.
        self.busy
            .iter()
            .map(|&slot| match self.entries[slot as usize].place {
                Place::Busy | Place::Ring => word::permits(words.get(slot)),
                Place::Idle | Place::Free => 0,
            })
            .sum()
    }

    /// Callers queued across all keys.
    pub(super) fn queued(&self) -> usize {
        self.queued
    }

    /// Idle keys held in memory.
    pub(super) fn idle_len(&self) -> usize {
        self.idle_len
    }

    /// Permits out for `key` (zero for a key not in memory).
    pub(super) fn key_in_flight(&self, hash: u64, key: &K, words: &Words) -> usize {
        self.lookup(hash, key)
            .map_or(0, |slot| word::permits(words.get(slot)))
    }

    /// The slot of `key` (whose hash is `hash`), if it is in memory.
    pub(super) fn lookup(&self, hash: u64, key: &K) -> Option<u32> {
        let entries = &self.entries;
        self.table
            .find(hash, |&slot| {
                entries[slot as usize].key.as_ref() == Some(key)
            })
            .copied()
    }

    /// The slot of a key already in memory (whose hash is `hash`), no longer idle if it
    /// was (it stays on the idle list, marked used: see [`State::idle`]).
    ///
    /// A key found idle but not yet counted so (no permits out, nobody queued: see
    /// [`Place::Busy`]) is marked used too, as it would have been had it been counted; the
    /// mark is written only if it was not set, so a key in steady use writes nothing here.
    #[inline]
    pub(super) fn find(
        &mut self,
        hash: u64,
        key: &K,
        limits: &Limits,
        words: &Words,
    ) -> Option<u32> {
        let slot = self.lookup(hash, key)?;
        let entry = &mut self.entries[slot as usize];
        if entry.place == Place::Idle {
            entry.place = Place::Busy;
            entry.used = true;
            self.left_idle();
            self.mark_busy(slot, limits);
        } else if !entry.used && entry.queued == 0 && word::permits(words.get(slot)) == 0 {
            entry.used = true;
        }
        Some(slot)
    }

    /// Puts the key in `slot`, `Busy` or `Ring`, on the busy list if it is not on it and
    /// the gate has no global limit.
    #[inline]
    fn mark_busy(&mut self, slot: u32, limits: &Limits) {
        let entry = &mut self.entries[slot as usize];
        if !entry.on_busy_list && !limits.has_global() {
            entry.on_busy_list = true;
            self.busy.push(slot);
        }
    }

    /// Counts idle, and settles as such (see [`settle`](Self::settle)), every key on the
    /// busy list that has no permits out and nobody queued, in the order they were put on
    /// it; takes them off it, with the keys idle or freed since. Afterwards every count is
    /// exact until a permit comes back. O(the list's length); runs only between callers'
    /// steps (no caller holds a slot it found and has not yet taken a permit of).
    pub(super) fn refresh(&mut self, limits: &Limits, words: &Words, deferred: &mut Deferred<K>) {
        let mut busy = mem::take(&mut self.busy);
        let mut kept = 0;
        for i in 0..busy.len() {
            let slot = busy[i];
            let entry = &self.entries[slot as usize];
            let still_busy = match entry.place {
                Place::Idle | Place::Free => false,
                Place::Busy | Place::Ring => entry.queued > 0 || word::permits(words.get(slot)) > 0,
            };
            if still_busy {
                busy[kept] = slot;
                kept += 1;
            } else {
                self.entries[slot as usize].on_busy_list = false;
                // Idle now: counted, put on the idle list, and evicting beyond `max_idle`.
                self.settle(slot, limits, words, deferred);
            }
        }
        // Settling keys idle puts nothing on the list.
        debug_assert!(self.busy.is_empty());
        busy.truncate(kept);
        if busy.capacity() > 4 * kept.max(MIN_BUSY_LIMIT) {
            busy.shrink_to(2 * kept);
        }
        self.busy = busy;
        self.busy_limit = (2 * kept).max(MIN_BUSY_LIMIT);
    }

    /// Puts a key not in memory, with its weight and class, into a slot (evicting the least
    /// recently used idle key if at `max_keys`), or, at `max_keys` with no idle key, gives
    /// the key back. The new key is `Busy` until [`settle`](Self::settle)d.
    ///
    /// At `max_keys`, or with the busy list doubled since the last, runs
    /// [`refresh`](Self::refresh) first, so that keys idle but not yet counted are found.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        key: K,
        (weight, class): (u32, u8),
        limits: &Limits,
        words: &Words,
        deferred: &mut Deferred<K>,
    ) -> Result<u32, K> {
        if self.table.len() >= limits.max_keys || self.busy.len() >= self.busy_limit {
            self.refresh(limits, words, deferred);
        }
        if self.table.len() >= limits.max_keys {
            if self.idle_len == 0 {
                return Err(key);
            }
            let key = self.evict_one();
            deferred.evicted(key);
        }
        let entry = Entry {
            key: Some(key),
            queued: 0,
            place: Place::Busy,
            on_busy_list: false,
            on_idle_list: false,
            used: false,
            class: class.min(1),
            hash,
            queue: Links::EMPTY,
            prev: NIL,
            next: NIL,
            weight: weight.max(1),
        };
        let slot = if self.free_entry != NIL {
            let slot = self.free_entry;
            let old = &mut self.entries[slot as usize];
            self.free_entry = old.next;
            let on_busy_list = old.on_busy_list;
            *old = Entry {
                on_busy_list,
                ..entry
            };
            slot
        } else {
            // `max_keys` is at most `MAX_SLOTS`, so the index fits.
            let slot = self.entries.len() as u32;
            self.entries.push(entry);
            words.make(slot);
            slot
        };
        // A key is evicted only with no permit out and nobody queued: a reused slot's word
        // is a new key's.
        debug_assert_eq!(words.get(slot).load(crate::sync::Ordering::Relaxed), 0);
        let entries = &self.entries;
        self.table
            .insert_unique(hash, slot, |&slot| entries[slot as usize].hash);
        self.mark_busy(slot, limits);
        Ok(slot)
    }

    /// Takes a permit of the key in `slot` if it has room, nobody of its own is queued ahead,
    /// and the global limit has room (which, by the ring's invariant, means no other key
    /// waits for it either).
    ///
    /// Without a global limit, the shard counts no permits of its own (they come back
    /// without the lock): the key's word is all there is.
    #[inline]
    pub(super) fn try_take(&mut self, slot: u32, limits: &Limits, words: &Words) -> bool {
        if self.in_flight >= limits.global || self.entries[slot as usize].queued > 0 {
            return false;
        }
        if !word::try_take(words.get(slot), limits.per_key) {
            return false;
        }
        if limits.has_global() {
            self.in_flight += 1;
        }
        Counts::add(&mut self.counts.admitted);
        true
    }

    /// Callers queued for the key in `slot`.
    pub(super) fn key_queued(&self, slot: u32) -> usize {
        self.entries[slot as usize].queued as usize
    }

    /// Queues a caller at the back of its key's queue, puts the key in its place and grants
    /// what there is room for (a permit may have come back without the lock since the
    /// caller found none: see [`word`]); returns its waiter slot, granted already if the
    /// room was its.
    pub(super) fn queue(
        &mut self,
        slot: u32,
        waker: Waker,
        limits: &Limits,
        words: &Words,
        deferred: &mut Deferred<K>,
    ) -> u32 {
        let id = self.enqueue(slot, waker, words);
        self.settle(slot, limits, words, deferred);
        self.dispatch(limits, words, deferred);
        id
    }

    /// Queues a caller at the back of its key's queue; returns its waiter slot.
    fn enqueue(&mut self, slot: u32, waker: Waker, words: &Words) -> u32 {
        let waiter = Waiter {
            key: slot,
            prev: NIL,
            next: NIL,
            waker: Some(waker),
            granted: false,
        };
        let id = if self.free_waiter != NIL {
            let id = self.free_waiter;
            self.free_waiter = self.waiters[id as usize].key;
            self.waiters[id as usize] = waiter;
            id
        } else {
            assert!(
                self.waiters.len() < MAX_SLOTS,
                "KeyedGate: more than 2^32 - 2 callers queued"
            );
            let id = self.waiters.len() as u32;
            self.waiters.push(waiter);
            id
        };
        self.live_waiters += 1;
        let entry = &mut self.entries[slot as usize];
        let tail = entry.queue.tail;
        self.waiters[id as usize].prev = tail;
        if tail == NIL {
            entry.queue.head = id;
        } else {
            self.waiters[tail as usize].next = id;
        }
        entry.queue.tail = id;
        entry.queued += 1;
        if entry.queued == 1 {
            word::set_queued(words.get(slot));
        }
        self.queued += 1;
        id
    }

    /// Whether the waiter in `id` has been granted its permit.
    pub(super) fn is_granted(&self, id: u32) -> bool {
        self.waiters[id as usize].granted
    }

    /// Stores the waker to wake when `id` is granted; returns the one it replaces.
    pub(super) fn register(&mut self, id: u32, waker: &Waker) -> Option<Waker> {
        let slot = &mut self.waiters[id as usize].waker;
        match slot {
            Some(old) if old.will_wake(waker) => None,
            _ => slot.replace(waker.clone()),
        }
    }

    /// Frees a granted waiter's slot once its caller has collected the permit; returns the
    /// key slot whose permit it now holds.
    pub(super) fn collect(&mut self, id: u32) -> u32 {
        debug_assert!(self.waiters[id as usize].granted);
        let slot = self.waiters[id as usize].key;
        self.free_waiter_slot(id);
        slot
    }

    /// Takes a waiter that was not granted off its key's queue (a cancelled or timed-out
    /// caller) and frees its slot.
    pub(super) fn cancel(
        &mut self,
        id: u32,
        limits: &Limits,
        words: &Words,
        deferred: &mut Deferred<K>,
    ) {
        let waiter = &mut self.waiters[id as usize];
        debug_assert!(!waiter.granted);
        let (slot, prev, next) = (waiter.key, waiter.prev, waiter.next);
        deferred.drop_waker(waiter.waker.take());
        let entry = &mut self.entries[slot as usize];
        if prev == NIL {
            entry.queue.head = next;
        } else {
            self.waiters[prev as usize].next = next;
        }
        if next == NIL {
            entry.queue.tail = prev;
        } else {
            self.waiters[next as usize].prev = prev;
        }
        entry.queued -= 1;
        if entry.queued == 0 {
            word::clear_queued(words.get(slot));
        }
        self.queued -= 1;
        self.free_waiter_slot(id);
        // Taking a caller off a queue frees no permit: nothing else can be granted.
        self.settle(slot, limits, words, deferred);
    }

    /// Gives back a permit of the key in `slot`, and grants what that makes room for.
    pub(super) fn release(
        &mut self,
        slot: u32,
        limits: &Limits,
        words: &Words,
        deferred: &mut Deferred<K>,
    ) {
        word::release(words.get(slot));
        self.released(slot, limits, words, deferred);
    }

    /// After a permit of the key in `slot` came back (through its word): grants what that
    /// makes room for.
    ///
    /// Without a global limit this is called, lock taken, by a release that found callers
    /// queued for the key; by then they may have left, and the key been evicted and its
    /// slot reused: granting what the slot's key has room for is right whatever key it is.
    pub(super) fn released(
        &mut self,
        slot: u32,
        limits: &Limits,
        words: &Words,
        deferred: &mut Deferred<K>,
    ) {
        if limits.has_global() {
            self.in_flight -= 1;
        }
        self.settle(slot, limits, words, deferred);
        self.dispatch(limits, words, deferred);
    }

    /// Puts the key in `slot` in the place its state calls for: the ring if it has callers
    /// queued and room of its own, idle if it has neither permits out nor callers
    /// (evicting one of the shard's idle keys beyond its part of `max_idle`, once the pool
    /// has no place left to give it), otherwise busy.
    ///
    /// A key that goes idle while still on the idle list stays where it is (marked used
    /// when it was taken), so the common round trip, idle to busy and back, moves no link.
    ///
    /// The one place where a key is counted idle or not: a release under the lock (with a
    /// global limit) settles its key at once, [`refresh`](Self::refresh) the keys whose
    /// permits came back without it.
    #[inline]
    pub(super) fn settle(
        &mut self,
        slot: u32,
        limits: &Limits,
        words: &Words,
        deferred: &mut Deferred<K>,
    ) {
        let entry = &self.entries[slot as usize];
        if entry.place == Place::Free {
            return;
        }
        let in_flight = word::permits(words.get(slot));
        let place = if entry.queued > 0 && in_flight < limits.per_key {
            Place::Ring
        } else if entry.queued == 0 && in_flight == 0 {
            Place::Idle
        } else {
            Place::Busy
        };
        let (was, on_idle_list) = (entry.place, entry.on_idle_list);
        if was == place {
            return;
        }
        if place != Place::Idle {
            self.mark_busy(slot, limits);
        }
        if was == Place::Idle {
            self.entries[slot as usize].used = true;
            self.left_idle();
        }
        if was == Place::Ring || (place == Place::Ring && on_idle_list) {
            self.unlink(slot);
        }
        let entry = &mut self.entries[slot as usize];
        entry.place = place;
        match place {
            Place::Ring => self.push_back(slot, Place::Ring),
            Place::Idle => {
                if !entry.on_idle_list {
                    self.push_back(slot, Place::Idle);
                }
                self.idle_len += 1;
                if !self.idle_share.fits(self.idle_len, &self.idle_pool) {
                    let key = self.evict_one();
                    deferred.evicted(key);
                }
            }
            Place::Busy | Place::Free => {}
        }
    }

    /// Counts a key that stopped being idle, and gives back to the pool the places the
    /// shard no longer uses.
    #[inline]
    fn left_idle(&mut self) {
        self.idle_len -= 1;
        self.idle_share.shrunk(self.idle_len, &self.idle_pool);
    }

    /// Evicts the idle key at the front of the idle list once busy keys are dropped from
    /// it and keys used since they were put on it are moved to its back (see
    /// [`State::idle`]); returns the key, to be dropped unlocked. Some key is idle.
    ///
    /// Each step either drops a key from the list or clears a mark set by one admission,
    /// so the steps are amortised O(1) per admission.
    fn evict_one(&mut self) -> Option<K> {
        debug_assert!(self.idle_len > 0);
        loop {
            let slot = self.idle.head;
            let entry = &mut self.entries[slot as usize];
            if entry.place != Place::Idle {
                self.unlink(slot);
            } else if entry.used {
                entry.used = false;
                self.unlink(slot);
                self.push_back(slot, Place::Idle);
            } else {
                return self.evict(slot);
            }
        }
    }

    /// Grants permits while the global limit has room and a key in a ring waits: the
    /// interactive ring first, except that while both wait every `batch_every`-th grant goes
    /// to the batch ring; within a ring, the key whose turn it is gets up to its weight of
    /// grants, then the next key's turn comes.
    ///
    /// Leaves both rings empty or the global limit full.
    fn dispatch(&mut self, limits: &Limits, words: &Words, deferred: &mut Deferred<K>) {
        while self.in_flight < limits.global {
            let waiting = self.rings.each_ref().map(|ring| ring.links.head != NIL);
            let class = match waiting {
                [false, false] => break,
                [true, true] if self.interactive_run + 1 < limits.batch_every => {
                    self.interactive_run += 1;
                    0
                }
                [true, true] => {
                    self.interactive_run = 0;
                    1
                }
                [interactive, _] => {
                    self.interactive_run = 0;
                    usize::from(!interactive)
                }
            };
            self.grant_from(class, limits, words, deferred);
        }
    }

    /// Grants the front caller of the key whose turn it is in ring `class`, not empty.
    fn grant_from(
        &mut self,
        class: usize,
        limits: &Limits,
        words: &Words,
        deferred: &mut Deferred<K>,
    ) {
        let ring = &mut self.rings[class];
        let slot = ring.links.head;
        if ring.turn != slot || ring.turn_left == 0 {
            ring.turn = slot;
            ring.turn_left = self.entries[slot as usize].weight;
        }
        ring.turn_left -= 1;
        let turn_over = ring.turn_left == 0;
        let entry = &mut self.entries[slot as usize];
        let id = entry.queue.head;
        let next = self.waiters[id as usize].next;
        entry.queue.head = next;
        if next == NIL {
            entry.queue.tail = NIL;
        } else {
            self.waiters[next as usize].prev = NIL;
        }
        let waiter = &mut self.waiters[id as usize];
        waiter.granted = true;
        deferred.wake(waiter.waker.take());
        entry.queued -= 1;
        let word = words.get(slot);
        word::grant(word);
        if entry.queued == 0 {
            word::clear_queued(word);
        }
        self.queued -= 1;
        if limits.has_global() {
            self.in_flight += 1;
        }
        Counts::add(&mut self.counts.admitted);
        let still_waiting = entry.queued > 0 && word::permits(word) < limits.per_key;
        if !still_waiting {
            // Out of the ring: when it comes back, its turn starts afresh.
            self.unlink(slot);
            self.entries[slot as usize].place = Place::Busy;
            self.rings[class].turn = NIL;
        } else if turn_over {
            // Its turn is over: to the back of the ring.
            self.unlink(slot);
            self.push_back(slot, Place::Ring);
            self.rings[class].turn = NIL;
        }
    }

    /// Removes the idle key in `slot` from memory; returns the key, to be dropped unlocked.
    fn evict(&mut self, slot: u32) -> Option<K> {
        debug_assert_eq!(self.entries[slot as usize].place, Place::Idle);
        debug_assert_eq!(self.entries[slot as usize].queued, 0);
        self.unlink(slot);
        self.left_idle();
        let entry = &mut self.entries[slot as usize];
        let key = entry.key.take();
        entry.place = Place::Free;
        entry.next = self.free_entry;
        self.free_entry = slot;
        let hash = entry.hash;
        if let Ok(found) = self.table.find_entry(hash, |&other| other == slot) {
            found.remove();
        }
        key
    }

    fn free_waiter_slot(&mut self, id: u32) {
        let waiter = &mut self.waiters[id as usize];
        waiter.granted = false;
        waiter.key = self.free_waiter;
        self.free_waiter = id;
        self.live_waiters -= 1;
        if self.live_waiters == 0 && self.waiters.len() > 64 {
            // Nobody holds a waiter slot: give back the memory of a drained queue.
            self.waiters = Vec::new();
            self.free_waiter = NIL;
        }
    }

    /// The list `Ring` or `Idle` of the key in `slot`.
    fn list(&mut self, slot: u32, list: Place) -> &mut Links {
        match list {
            Place::Ring => {
                let class = self.entries[slot as usize].class;
                &mut self.rings[usize::from(class)].links
            }
            Place::Idle | Place::Busy | Place::Free => &mut self.idle,
        }
    }

    /// Puts the key in `slot` at the back of list `list`, `Ring` or `Idle`.
    fn push_back(&mut self, slot: u32, list: Place) {
        debug_assert!(matches!(list, Place::Ring | Place::Idle));
        let list_links = self.list(slot, list);
        let tail = list_links.tail;
        list_links.tail = slot;
        if tail == NIL {
            list_links.head = slot;
        }
        if tail != NIL {
            self.entries[tail as usize].next = slot;
        }
        let entry = &mut self.entries[slot as usize];
        entry.prev = tail;
        entry.next = NIL;
        entry.on_idle_list = list == Place::Idle;
    }

    /// Takes the key in `slot` off the list it is on, if any: its ring, or the idle list.
    fn unlink(&mut self, slot: u32) {
        let entry = &self.entries[slot as usize];
        let (prev, next) = (entry.prev, entry.next);
        let list = match (entry.place, entry.on_idle_list) {
            (_, true) => Place::Idle,
            (Place::Ring, false) => Place::Ring,
            (_, false) => return,
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        let list_links = self.list(slot, list);
        if prev == NIL {
            list_links.head = next;
        }
        if next == NIL {
            list_links.tail = prev;
        }
        let entry = &mut self.entries[slot as usize];
        entry.prev = NIL;
        entry.next = NIL;
        entry.on_idle_list = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_state_is_56_bytes_with_a_u64_key() {
        // Its permits are in its word, and `weight` fills what would be padding after the
        // counts: a key in memory costs 8 bytes less than with both inline.
        assert_eq!(size_of::<Entry<u64>>(), 56);
    }
}
