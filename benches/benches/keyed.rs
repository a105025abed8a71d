//! The keyed check against governor's keyed `check_key` and a `DashMap` of tokio
//! semaphores, in the same run.
//!
//! Each admits one caller of a key and lets it go: `KeyedGate::try_acquire` and the permit's
//! drop (two turns of the gate's lock), governor's `check_key` (a rate check, nothing to
//! release), and a `DashMap<u64, Arc<Semaphore>>` looked up (or filled) and, under the
//! map's read lock, its semaphore's `try_acquire` and drop (which never evicts anything).
//! Keys are `u64`s cycled over 1,000 hot keys, every check admits (governor's quota is so
//! generous that it never refuses), from one thread and from two.
//! gate-core is measured with its default hasher (std's SipHash-1-3, randomly keyed, as
//! governor's `DashMap` is) and with foldhash, to show what the HashDoS-resistant default
//! costs; `gate_core_limiter_quanta` is a `KeyedLimiter` of rate-only limiters on quanta's
//! clock (governor's default), admitting with a permit (`try_acquire`, an `Arc` clone and
//! drop) and `gate_core_limiter_quanta_check` the like-for-like of `check_key`,
//! `KeyedLimiter::check`, which hands nothing out.

#![allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dashmap::DashMap;
use gate_core::Limiter;
use gate_core::keyed::{KeyedGate, KeyedLimiter};
use gate_core::rate::{QuantaClock, Rate};
use governor::{Quota, RateLimiter};
use tokio::sync::Semaphore;

const HOT_KEYS: u64 = 1_000;

/// One admission and release of `key`, the same for each contender.
trait Check: Sync {
    fn check(&self, key: u64) -> bool;
}

impl<S: std::hash::BuildHasher + Sync + Send> Check for KeyedGate<u64, S> {
    #[inline]
    fn check(&self, key: u64) -> bool {
        self.try_acquire(&key).is_ok()
    }
}

impl<S: std::hash::BuildHasher + Sync + Send> Check for KeyedLimiter<u64, S> {
    #[inline]
    fn check(&self, key: u64) -> bool {
        self.try_acquire(&key).is_ok()
    }
}

/// `KeyedLimiter::check`: the rate check with nothing to hold, as governor's `check_key`.
struct Checked(KeyedLimiter<u64>);

impl Check for Checked {
    #[inline]
    fn check(&self, key: u64) -> bool {
        self.0.check(&key).is_ok()
    }
}

struct Governor(governor::DefaultKeyedRateLimiter<u64>);

impl Check for Governor {
    #[inline]
    fn check(&self, key: u64) -> bool {
        self.0.check_key(&key).is_ok()
    }
}

struct Semaphores(DashMap<u64, Arc<Semaphore>>);

impl Check for Semaphores {
    #[inline]
    fn check(&self, key: u64) -> bool {
        if let Some(semaphore) = self.0.get(&key) {
            return semaphore.try_acquire().is_ok();
        }
        let semaphore = self
            .0
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(4)));
        semaphore.try_acquire().is_ok()
    }
}

fn contenders() -> Vec<(&'static str, Box<dyn Check>)> {
    let quota = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
        .allow_burst(NonZeroU32::new(1_000).unwrap());
    vec![
        ("gate_core", Box::new(KeyedGate::<u64>::new(4))),
        (
            "gate_core_foldhash",
            Box::new(
                KeyedGate::builder(4)
                    .hasher(foldhash::fast::RandomState::default())
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "gate_core_global",
            Box::new(KeyedGate::<u64>::builder(4).global(1_000).build().unwrap()),
        ),
        (
            "gate_core_limiter_quanta",
            Box::new(KeyedLimiter::<u64>::new(|| {
                Limiter::builder()
                    .rate(Rate::per_second(1_000_000_000).burst(1_000))
                    .clock(QuantaClock::new())
                    .build()
                    .unwrap()
            })),
        ),
        (
            "gate_core_limiter_quanta_check",
            Box::new(Checked(KeyedLimiter::new(|| {
                Limiter::builder()
                    .rate(Rate::per_second(1_000_000_000).burst(1_000))
                    .clock(QuantaClock::new())
                    .build()
                    .unwrap()
            }))),
        ),
        ("governor", Box::new(Governor(RateLimiter::keyed(quota)))),
        ("dashmap_semaphores", Box::new(Semaphores(DashMap::new()))),
    ]
}

fn one_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_check");
    for (name, limit) in contenders() {
        let mut key = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                key = (key + 1) % HOT_KEYS;
                black_box(limit.check(black_box(key)))
            })
        });
    }
    group.finish();
}

/// Two threads, each checking its own half of the hot keys; the time is the slower
/// thread's, per check of one thread.
fn two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_check_2_threads");
    for (name, limit) in contenders() {
        let limit = &*limit;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                std::thread::scope(|scope| {
                    let threads: Vec<_> = (0..2u64)
                        .map(|thread| {
                            scope.spawn(move || {
                                let started = Instant::now();
                                for i in 0..iters {
                                    let key = (i % (HOT_KEYS / 2)) * 2 + thread;
                                    black_box(limit.check(key));
                                }
                                started.elapsed()
                            })
                        })
                        .collect();
                    threads
                        .into_iter()
                        .map(|thread| thread.join().unwrap())
                        .max()
                        .unwrap_or(Duration::ZERO)
                })
            })
        });
    }
    group.finish();
}

/// A new key on every check: gate-core makes the key and evicts the least recently used
/// idle one (its memory stays bounded); governor and the `DashMap` grow without bound, so
/// they are not run here.
fn churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_churn");
    let gate = KeyedGate::<u64>::new(4);
    let mut key = 0u64;
    group.bench_function("gate_core", |b| {
        b.iter(|| {
            key += 1;
            black_box(gate.check(key))
        })
    });
    group.finish();
}

criterion_group!(benches, one_thread, two_threads, churn);
criterion_main!(benches);
