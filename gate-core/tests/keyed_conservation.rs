//! Two levels, atomically: under random cancellation on a multi-thread runtime, neither a
//! key's limit nor the global one is ever exceeded, and every permit comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gate_core::keyed::{KeyedGate, Priority};

const PER_KEY: usize = 5;
const GLOBAL: usize = 20;
const KEYS: usize = 10;
const TASKS: usize = 4_000;

/// In-flight counts as the callers see them: raised after admission, lowered before release
/// (by a guard, so an aborted task lowers them too), so they never exceed the real ones.
struct Counts {
    per_key: [AtomicUsize; KEYS],
    global: AtomicUsize,
    over: AtomicBool,
}

struct Held<'a> {
    counts: &'a Counts,
    key: usize,
}

impl<'a> Held<'a> {
    fn enter(counts: &'a Counts, key: usize) -> Self {
        let mine = counts.per_key[key].fetch_add(1, Ordering::SeqCst) + 1;
        let all = counts.global.fetch_add(1, Ordering::SeqCst) + 1;
        if mine > PER_KEY || all > GLOBAL {
            counts.over.store(true, Ordering::SeqCst);
        }
        Self { counts, key }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.counts.per_key[self.key].fetch_sub(1, Ordering::SeqCst);
        self.counts.global.fetch_sub(1, Ordering::SeqCst);
    }
}

/// xorshift64*: reproducible choices without a dependency.
fn rng(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move |n| {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

async fn yields(n: u64) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

/// Spawns `TASKS` tasks, the `i`th running `task(i)`, aborts one in eight (chosen by
/// `abort_seed`) wherever it is: queued, holding a permit, or done; and waits for them all.
async fn run_aborting_some<F>(abort_seed: u64, mut task: impl FnMut(u64) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let tasks: Vec<_> = (0..TASKS as u64).map(|i| tokio::spawn(task(i))).collect();
    let mut pick = rng(abort_seed);
    for task in &tasks {
        if pick(8) == 0 {
            task.abort();
        }
    }
    for task in tasks {
        let _ = task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn neither_limit_is_exceeded_and_every_permit_comes_back_under_random_cancellation() {
    let gate = Arc::new(
        KeyedGate::builder(PER_KEY)
            .global(GLOBAL)
            .max_idle(4)
            // Both rings and uneven turns, so that cancellation meets every path of the
            // dispatch.
            .weight(|key: &usize| *key as u32 % 3 + 1)
            .priority(|key: &usize| match key % 2 {
                0 => Priority::Batch,
                _ => Priority::Interactive,
            })
            .batch_every(3)
            .build()
            .unwrap(),
    );
    let counts = Arc::new(Counts {
        per_key: Default::default(),
        global: AtomicUsize::new(0),
        over: AtomicBool::new(false),
    });
    let admitted = Arc::new(AtomicUsize::new(0));
    run_aborting_some(u64::MAX, |task| {
        let (gate, counts, admitted) = (
            Arc::clone(&gate),
            Arc::clone(&counts),
            Arc::clone(&admitted),
        );
        async move {
            let mut next = rng(task);
            let key = next(KEYS as u64) as usize;
            let patience = next(400);
            // Cancelled while queued, or just after being granted, as `select!` drops the loser.
            let permit = if next(2) == 0 {
                tokio::select! {
                    permit = gate.acquire(&key) => Some(permit.unwrap()),
                    () = yields(patience) => None,
                }
                .map(|permit| (Some(permit), None))
            } else {
                tokio::select! {
                    permit = Arc::clone(&gate).acquire_owned(key) => Some(permit.unwrap()),
                    () = yields(patience) => None,
                }
                .map(|permit| (None, Some(permit)))
            };
            if let Some(_permits) = permit {
                let _held = Held::enter(&counts, key);
                admitted.fetch_add(1, Ordering::Relaxed);
                yields(next(10)).await;
            }
        }
    })
    .await;

    assert!(!counts.over.load(Ordering::SeqCst), "a limit was exceeded");
    let admitted = admitted.load(Ordering::Relaxed);
    println!("{admitted} of {TASKS} admitted");
    assert!(admitted > TASKS / 10, "{admitted} admitted");
    assert_eq!((gate.in_flight(), gate.waiting()), (0, 0));
    assert!(gate.len() <= 4);
    // No permit lost at either level: each key gives its whole limit, and the keys together
    // the global one.
    let mut held = Vec::new();
    for key in 0..KEYS {
        if held.len() + PER_KEY > GLOBAL {
            held.clear();
        }
        for _ in 0..PER_KEY {
            held.push(gate.try_acquire(&key).unwrap());
        }
        assert!(gate.try_acquire(&key).is_err());
    }
    held.clear();
    let all: Vec<_> = (0..GLOBAL)
        .map(|i| gate.try_acquire(&(i % KEYS)).unwrap())
        .collect();
    assert!(gate.try_acquire(&0).is_err());
    assert_eq!(all.len(), GLOBAL);
}

/// Per-key in-flight counts as the callers see them, for a gate of many keys.
struct KeyCounts {
    per_key: Vec<AtomicUsize>,
    over: AtomicBool,
}

impl KeyCounts {
    fn new(keys: usize) -> Self {
        Self {
            per_key: (0..keys).map(|_| AtomicUsize::new(0)).collect(),
            over: AtomicBool::new(false),
        }
    }
}

/// A caller's hold on a key of a [`KeyCounts`], lowered on drop (an aborted task too).
struct KeyHeld<'a>(&'a KeyCounts, usize);

impl<'a> KeyHeld<'a> {
    fn enter(counts: &'a KeyCounts, key: usize, limit: usize) -> Self {
        if counts.per_key[key].fetch_add(1, Ordering::SeqCst) + 1 > limit {
            counts.over.store(true, Ordering::SeqCst);
        }
        Self(counts, key)
    }
}

impl Drop for KeyHeld<'_> {
    fn drop(&mut self) {
        self.0.per_key[self.1].fetch_sub(1, Ordering::SeqCst);
    }
}

// Without a global limit the keys are split between shards, and a key taken from the idle
// list stays on it until an eviction meets it: many more keys than idle places, so that
// evictions run all the time among keys going busy, queued and idle on several threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_key_limit_holds_and_every_permit_comes_back_across_shards_under_churn() {
    const PER_KEY: usize = 2;
    const KEYS: usize = 600;
    const MAX_IDLE: usize = 256;
    let gate = Arc::new(
        KeyedGate::builder(PER_KEY)
            .max_keys(1_024)
            .max_idle(MAX_IDLE)
            .build()
            .unwrap(),
    );
    let debug = format!("{gate:?}");
    assert!(!debug.contains("shards: 1,"), "{debug}");
    let counts = Arc::new(KeyCounts::new(KEYS));
    let admitted = Arc::new(AtomicUsize::new(0));
    run_aborting_some(u64::MAX, |task| {
        let (gate, counts, admitted) = (
            Arc::clone(&gate),
            Arc::clone(&counts),
            Arc::clone(&admitted),
        );
        async move {
            let mut next = rng(task + 1);
            // A few hot keys that queue, and a long tail that comes and goes.
            let key = match next(4) {
                0 => next(8),
                _ => next(KEYS as u64),
            } as usize;
            let patience = next(200);
            let (mut borrowed, mut owned) = (None, None);
            match next(3) {
                0 => {
                    borrowed = tokio::select! {
                        permit = gate.acquire(&key) => Some(permit.unwrap()),
                        () = yields(patience) => None,
                    }
                }
                1 => {
                    owned = tokio::select! {
                        permit = Arc::clone(&gate).acquire_owned(key) => Some(permit.unwrap()),
                        () = yields(patience) => None,
                    }
                }
                _ => borrowed = gate.try_acquire(&key).ok(),
            }
            if borrowed.is_some() || owned.is_some() {
                let _held = KeyHeld::enter(&counts, key, PER_KEY);
                admitted.fetch_add(1, Ordering::Relaxed);
                yields(next(10)).await;
            }
        }
    })
    .await;

    assert!(
        !counts.over.load(Ordering::SeqCst),
        "a key's limit was exceeded"
    );
    let admitted = admitted.load(Ordering::Relaxed);
    assert!(admitted > TASKS / 10, "{admitted} admitted");
    assert_eq!((gate.in_flight(), gate.waiting()), (0, 0));
    assert_eq!(gate.idle_len(), gate.len());
    assert!(gate.len() <= MAX_IDLE, "{} keys kept", gate.len());
    // No permit lost: every key gives its whole limit, and no more.
    for key in 0..KEYS {
        let held: Vec<_> = (0..PER_KEY)
            .map(|_| gate.try_acquire(&key).unwrap())
            .collect();
        assert!(gate.try_acquire(&key).is_err(), "key {key}");
        drop(held);
    }
    assert_eq!(gate.in_flight(), 0);
    assert!(gate.idle_len() <= MAX_IDLE);
}

// Without a global limit a permit comes back with one atomic decrement of its key's word,
// off the shard's lock, and takes the lock only for callers queued on the key; idle keys are
// counted, and evicted, only when the shard next looks. One permit per key, a cap below the
// keys used (so new keys evict at the cap and are refused with every key busy) and no idle
// place (so every new key's look evicts): releases race queues, cancellations and evictions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn releases_off_the_lock_racing_queues_cancellations_and_evictions_keep_every_permit() {
    const KEYS: usize = 200;
    const MAX_KEYS: usize = 64;
    let gate = Arc::new(
        KeyedGate::builder(1)
            .max_keys(MAX_KEYS)
            .max_idle(0)
            .build()
            .unwrap(),
    );
    let counts = Arc::new(KeyCounts::new(KEYS));
    let admitted = Arc::new(AtomicUsize::new(0));
    run_aborting_some(u64::MAX - 1, |task| {
        let (gate, counts, admitted) = (
            Arc::clone(&gate),
            Arc::clone(&counts),
            Arc::clone(&admitted),
        );
        async move {
            let mut next = rng(task + 7);
            // Four hot keys that queue, and a tail that comes, goes and is evicted.
            let key = match next(2) {
                0 => next(4),
                _ => next(KEYS as u64),
            } as usize;
            let patience = next(100);
            let permit = match next(3) {
                0 => tokio::select! {
                    permit = Arc::clone(&gate).acquire_owned(key) => permit.ok(),
                    () = yields(patience) => None,
                },
                _ => gate.try_acquire_owned(&key).ok(),
            };
            if let Some(permit) = permit {
                let held = KeyHeld::enter(&counts, key, 1);
                admitted.fetch_add(1, Ordering::Relaxed);
                yields(next(5)).await;
                // Lowered before the permit goes back, so the count never runs ahead.
                drop(held);
                drop(permit);
            }
        }
    })
    .await;

    assert!(
        !counts.over.load(Ordering::SeqCst),
        "a key's limit was exceeded"
    );
    let admitted = admitted.load(Ordering::Relaxed);
    assert!(admitted > TASKS / 10, "{admitted} admitted");
    assert_eq!((gate.in_flight(), gate.waiting()), (0, 0));
    // Nothing idle is kept, so counting evicts every key.
    assert_eq!(gate.len(), 0);
    // No permit lost: every key gives its one permit, and no more.
    for key in 0..KEYS {
        let permit = gate.try_acquire(&key).unwrap();
        assert!(gate.try_acquire(&key).is_err(), "key {key}");
        drop(permit);
    }
    assert_eq!((gate.in_flight(), gate.len()), (0, 0));
}
