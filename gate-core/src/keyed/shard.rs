//! How a keyed table is split into shards, each with its own lock, so that callers of keys
//! on different shards neither wait for each other nor write to the same cache line.
//!
//! A key's shard is chosen by bits of its hash just below the top seven (which hashbrown
//! keeps as each slot's tag, as dashmap does), so that within a shard the tags and the low
//! bits that index hashbrown's buckets stay as varied as in one table.

use std::num::NonZeroUsize;
use std::ops::Deref;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sync;

/// The most shards a table is split into.
const MAX_SHARDS: usize = 64;

/// Shards per thread the machine can run at once: enough that two threads seldom meet on a
/// shard, few enough that each shard's share of the caps stays large.
const SHARDS_PER_THREAD: usize = 4;

/// The smallest share of `max_keys` and of `max_idle` a shard is given: a table whose caps
/// would give less keeps fewer shards (a small one keeps one), so that splitting the caps
/// stays a rounding error against them.
pub(super) const MIN_SHARE: usize = 64;

/// A value on cache lines of its own (128 bytes: two lines on CPUs that fetch them in
/// pairs), so that two shards' locks never share one.
#[derive(Debug)]
#[repr(align(128))]
pub(super) struct CachePadded<T>(pub(super) T);

impl<T> Deref for CachePadded<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Which shard a hash falls in, for a table of a power of two shards.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShardOf {
    /// `64 - log2(shards)`; 64 for one shard, whose every hash falls in shard 0.
    shift: u32,
}

impl ShardOf {
    /// For a table of `shards` shards, a power of two.
    pub(super) fn new(shards: usize) -> Self {
        debug_assert!(shards.is_power_of_two());
        Self {
            shift: 64 - shards.trailing_zeros(),
        }
    }

    /// The shard of a key whose hash is `hash`.
    #[inline]
    pub(super) fn of(self, hash: u64) -> usize {
        // The seven bits below the top seven: as many shards as `MAX_SHARDS` needs.
        (hash << 7).checked_shr(self.shift).unwrap_or(0) as usize
    }
}

/// How many shards a table with these caps is split into: a power of two, `SHARDS_PER_THREAD`
/// times the threads the machine can run at once (at most `MAX_SHARDS`), fewer if a shard's
/// share of either cap would fall under `MIN_SHARE`, and at least one.
pub(super) fn shard_count(max_keys: usize, max_idle: usize) -> usize {
    let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let wanted = threads
        .saturating_mul(SHARDS_PER_THREAD)
        .min(MAX_SHARDS)
        .min(max_keys / MIN_SHARE)
        .min(max_idle / MIN_SHARE)
        .max(1);
    1 << wanted.ilog2()
}

/// The part of a cap (`max_idle`) no shard holds, shared by all: a shard that needs more
/// than it holds takes from it, one place at a time, and gives back what it stops using.
/// What the shards hold and the pool together are the cap, exactly, at every moment: so
/// the shards together never exceed the cap, yet keys need not spread evenly over them.
///
/// It is touched only when a shard's count moves past what it holds, or `SLACK` below it:
/// not by keys that come and go within what their shard holds.
#[derive(Debug)]
pub(super) struct Pool(CachePadded<AtomicUsize>);

/// How far below what it holds a shard's count may fall before the shard gives the rest
/// back to the pool: a hysteresis, so that a count moving by one or two does not move
/// places to and fro.
const SLACK: usize = 8;

impl Pool {
    pub(super) fn new(free: usize) -> Self {
        Self(CachePadded(AtomicUsize::new(free)))
    }

    /// Takes `n` places, or none if fewer are free.
    fn take(&self, n: usize) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |free| {
                free.checked_sub(n)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// What one shard holds of a cap shared through a [`Pool`].
#[derive(Debug)]
pub(super) struct Share {
    held: usize,
}

impl Share {
    pub(super) fn new(held: usize) -> Self {
        Self { held }
    }

    /// Whether `count`, just grown, is within the share, once topped up from `pool` if it
    /// was not and the pool has the places it lacks.
    #[inline]
    pub(super) fn fits(&mut self, count: usize, pool: &Pool) -> bool {
        if count <= self.held {
            return true;
        }
        let lacking = count - self.held;
        if pool.take(lacking) {
            self.held = count;
            return true;
        }
        false
    }

    /// Gives back to `pool` what `count`, just shrunk, leaves unused beyond `SLACK`.
    #[inline]
    pub(super) fn shrunk(&mut self, count: usize, pool: &Pool) {
        if self.held > count + SLACK {
            let back = self.held - count - SLACK / 2;
            self.held -= back;
            pool.give(back);
        }
    }
}

/// How `max_idle` starts out between `shards` shards and the pool, as what each shard holds
/// and what the pool holds: a lone shard holds it
/// all; shards hold nothing and take from the pool as their idle keys grow, so that each
/// ends up holding what its own keys need. An even split would leave a shard that drew more
/// keys than its part evicting them in a loop (every key of a cycle through more keys than
/// it holds misses, as in any least-recently-used list), until shards that drew fewer gave
/// their unused places back, which they do only when their counts fall.
pub(super) fn idle_start(max_idle: usize, shards: usize) -> (usize, usize) {
    match shards {
        1 => (max_idle, 0),
        _ => (0, max_idle),
    }
}

/// Shard `shard`'s share of `total` split between `shards`: the remainder goes one each to
/// the first shards, so that the shares add up to `total` exactly.
pub(super) fn share(total: usize, shards: usize, shard: usize) -> usize {
    total / shards + usize::from(shard < total % shards)
}

/// The flag of a key's word that says callers are queued for the key: set under the shard's
/// lock by the caller that queues first, cleared under it when the queue empties. The rest of
/// the word is the key's permits out (at most `Gate::MAX_PERMITS`, under this bit).
const QUEUED: usize = 1 << (usize::BITS - 1);

/// The protocol of a key's word, the one part of a keyed gate without a global limit that
/// is not under its shard's lock: a release is one atomic decrement, and takes the lock
/// only if the word says callers are queued. Everything else happens under the lock.
///
/// So, under the lock, the word can only fall (releases), never rise, and a caller that
/// saw no room may still get it: [`set_queued`] is one atomic step after which every
/// release sees the flag and comes to the lock to grant, and the room made by releases
/// before it is in the count read after it (the queuing caller then grants what it finds,
/// as a release would). No wake-up is lost between the two: `tests/loom.rs` checks it.
pub(crate) mod word {
    use super::QUEUED;
    use crate::sync::{AtomicUsize, Ordering};

    /// Under the shard's lock: takes a permit if nobody is queued and the key has fewer
    /// than `limit` out.
    #[inline]
    pub(crate) fn try_take(word: &AtomicUsize, limit: usize) -> bool {
        // The flag is above any limit, so a set flag fails the test too. Only a release
        // changes the word under the lock, and a release only lowers it: what was read
        // stays an upper bound until the increment lands.
        if word.load(Ordering::Acquire) < limit {
            word.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Under the shard's lock: grants a permit to a queued caller, once
    /// [`permits`] has said there is room.
    #[inline]
    pub(crate) fn grant(word: &AtomicUsize) {
        word.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives back a permit, with or without the lock; whether callers are queued, in which
    /// case the caller must take the lock (if it does not hold it) and grant what the
    /// release made room for.
    #[inline]
    pub(crate) fn release(word: &AtomicUsize) -> bool {
        // `Release` so that an eviction that reads the key idle (`Acquire`) comes after
        // everything the permit's holder did; `Acquire` so that a release that goes on to
        // the lock sees the queue the flag announced.
        word.fetch_sub(1, Ordering::AcqRel) & QUEUED != 0
    }

    /// Permits out.
    #[inline]
    pub(crate) fn permits(word: &AtomicUsize) -> usize {
        word.load(Ordering::Acquire) & !QUEUED
    }

    /// Under the shard's lock, by the caller that queues first for the key: from here on
    /// every release comes to the lock. Read [`permits`] after it and grant what it shows.
    #[inline]
    pub(crate) fn set_queued(word: &AtomicUsize) {
        word.fetch_or(QUEUED, Ordering::AcqRel);
    }

    /// Under the shard's lock, once the key's queue is empty: releases stop coming to the
    /// lock.
    #[inline]
    pub(crate) fn clear_queued(word: &AtomicUsize) {
        word.fetch_and(!QUEUED, Ordering::AcqRel);
    }
}

/// Slots in a shard's first chunk of words; each next chunk holds twice as many.
const FIRST_CHUNK: usize = 64;

/// Chunks enough for every slot a shard may hold: `FIRST_CHUNK * (2^CHUNKS - 1)` slots.
const CHUNKS: usize = 27;

const _: () = assert!(FIRST_CHUNK * ((1 << CHUNKS) - 1) >= super::state::MAX_SLOTS);

/// Each key's word of a shard (see [`word`]), by slot, at an address that never moves: the
/// words are in chunks made under the shard's lock when a slot first needs one, and freed
/// only with the gate. So a permit reaches its key's word with its slot alone, without
/// the lock; the key is never evicted while a permit of it is out (the word is then not
/// zero), so the word it reaches is its own key's.
pub(super) struct Words {
    chunks: [OnceLock<Box<[sync::AtomicUsize]>>; CHUNKS],
}

impl Words {
    pub(super) fn new() -> Self {
        Self {
            chunks: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The chunk and the index in it of `slot`'s word.
    #[inline]
    fn locate(slot: u32) -> (usize, usize) {
        // Chunk `c` holds the slots from `FIRST_CHUNK * (2^c - 1)` on.
        let n = slot as usize / FIRST_CHUNK + 1;
        let chunk = n.ilog2() as usize;
        (chunk, slot as usize - FIRST_CHUNK * ((1 << chunk) - 1))
    }

    /// Makes sure `slot` has a word; under the shard's lock, before the slot is first used.
    pub(super) fn make(&self, slot: u32) {
        let (chunk, _) = Self::locate(slot);
        self.chunks[chunk].get_or_init(|| {
            (0..FIRST_CHUNK << chunk)
                .map(|_| sync::AtomicUsize::new(0))
                .collect()
        });
    }

    /// The word of `slot`, which [`make`](Self::make) has been called for.
    #[inline]
    pub(super) fn get(&self, slot: u32) -> &sync::AtomicUsize {
        let (chunk, index) = Self::locate(slot);
        let chunk = self.chunks[chunk].get();
        &chunk.expect("a slot's word is made with the slot")[index]
    }

    /// Bytes held by the chunks made so far.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.chunks
            .iter()
            .filter_map(OnceLock::get)
            .map(|chunk| chunk.len() * size_of::<sync::AtomicUsize>())
            .sum()
    }
}

impl std::fmt::Debug for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let made = self.chunks.iter().filter(|chunk| chunk.get().is_some());
        f.debug_struct("Words")
            .field("chunks", &made.count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_total() {
        for total in [0, 1, 63, 64, 1_000, 65_536, 65_537] {
            for shards in [1, 2, 8, 64] {
                let sum: usize = (0..shards).map(|shard| share(total, shards, shard)).sum();
                assert_eq!(sum, total, "{total} over {shards}");
            }
        }
    }

    #[test]
    fn small_tables_keep_one_shard_and_counts_are_powers_of_two() {
        assert_eq!(shard_count(1, 1), 1);
        assert_eq!(shard_count(65_536, 16), 1);
        assert_eq!(shard_count(127, 1_024), 1);
        for (keys, idle) in [(65_536, 1_024), (1 << 20, 1 << 20), (4_096, 300)] {
            let shards = shard_count(keys, idle);
            assert!(shards.is_power_of_two() && shards <= MAX_SHARDS);
            assert!(keys / shards >= MIN_SHARE && idle / shards >= MIN_SHARE);
        }
    }

    #[test]
    fn what_the_shards_hold_and_the_pool_stay_the_cap() {
        const CAP: usize = 100;
        let pool = Pool::new(CAP - 2 * 30);
        let mut shares = [Share::new(30), Share::new(30)];
        let mut counts = [0usize; 2];
        let total = |shares: &[Share; 2]| {
            shares.iter().map(|share| share.held).sum::<usize>() + pool.0.load(Ordering::Relaxed)
        };
        // One shard takes all the places it can: the cap, not its even share.
        while shares[0].fits(counts[0] + 1, &pool) {
            counts[0] += 1;
        }
        assert_eq!(counts[0], CAP - 30);
        assert!(!shares[1].fits(31, &pool));
        // It gives back all but a little of what it stops using; the other takes it.
        counts[0] = 10;
        shares[0].shrunk(counts[0], &pool);
        assert_eq!(shares[0].held, 10 + SLACK / 2);
        assert_eq!(total(&shares), CAP);
        while shares[1].fits(counts[1] + 1, &pool) {
            counts[1] += 1;
        }
        assert_eq!(counts[1], CAP - 10 - SLACK / 2);
        assert_eq!(total(&shares), CAP);
        // A count moving within the slack moves nothing.
        shares[1].shrunk(counts[1] - SLACK, &pool);
        assert_eq!(total(&shares) - pool.0.load(Ordering::Relaxed), CAP);
    }

    #[test]
    fn every_slot_has_a_word_of_its_own_that_stays_where_it_is() {
        let words = Words::new();
        let mut seen = std::collections::HashSet::new();
        let mut first = None;
        for slot in 0..10_000u32 {
            words.make(slot);
            let word = words.get(slot);
            assert!(
                seen.insert(std::ptr::from_ref(word) as usize),
                "slot {slot}"
            );
            first.get_or_insert(std::ptr::from_ref(words.get(0)) as usize);
        }
        // Growing made new chunks and moved none.
        assert_eq!(Some(std::ptr::from_ref(words.get(0)) as usize), first);
        // Chunks double: the words of 10,000 slots take under twice their size.
        assert!(words.bytes() < 2 * 10_000 * size_of::<usize>());
        assert_eq!(Words::locate(u32::MAX - 1).0, CHUNKS - 1);
    }

    #[test]
    fn a_word_takes_up_to_its_limit_and_a_release_reports_a_queue() {
        let word = sync::AtomicUsize::new(0);
        assert!(word::try_take(&word, 2) && word::try_take(&word, 2));
        assert!(!word::try_take(&word, 2));
        assert!(!word::release(&word));
        word::set_queued(&word);
        // Nobody barges past a queue, even with room.
        assert!(!word::try_take(&word, 2));
        assert_eq!(word::permits(&word), 1);
        assert!(word::release(&word));
        word::clear_queued(&word);
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn every_shard_is_reached_and_none_beyond() {
        for shards in [1, 2, 8, 64] {
            let of = ShardOf::new(shards);
            let mut seen = vec![false; shards];
            for i in 0..10_000u64 {
                // Spread the bits as a hash does.
                let hash = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                seen[of.of(hash)] = true;
            }
            assert!(seen.iter().all(|&seen| seen), "{shards} shards");
        }
    }
}
