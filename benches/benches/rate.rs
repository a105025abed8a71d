//! The rate check against governor's `check()`, and the weighted check against its
//! `check_n()`, in the same run.
//!
//! Both limiters get the same quota and are checked from one thread in a tight loop. The
//! quota is so generous that every check succeeds, so this measures the admitting path:
//! a clock read and a compare-and-swap. The clock dominates, so each limiter is measured on
//! both clocks: `std::time::Instant` (gate-core's default tokio clock outside a paused
//! runtime; governor's `MonotonicClock`) and quanta's time-stamp counter (governor's
//! default; gate-core's `QuantaClock`, behind its `quanta` feature).

#![allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn`.

use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::{Criterion, criterion_group, criterion_main};
use gate_core::rate::{QuantaClock, Rate, RateLimit};
use governor::clock::MonotonicClock;
use governor::{Quota, RateLimiter};

const PER_SECOND: u32 = 1_000_000_000;

fn check(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_check");

    let ours = RateLimit::new(Rate::per_second(PER_SECOND).burst(1_000));
    group.bench_function("gate_core", |b| b.iter(|| black_box(ours.check()).is_ok()));

    let ours_quanta = RateLimit::with_clock(
        Rate::per_second(PER_SECOND).burst(1_000),
        QuantaClock::new(),
    );
    group.bench_function("gate_core_quanta", |b| {
        b.iter(|| black_box(ours_quanta.check()).is_ok())
    });

    let quota = Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap())
        .allow_burst(NonZeroU32::new(1_000).unwrap());
    let governor = RateLimiter::direct(quota);
    group.bench_function("governor_quanta", |b| {
        b.iter(|| black_box(governor.check()).is_ok())
    });

    let monotonic = RateLimiter::direct_with_clock(quota, MonotonicClock);
    group.bench_function("governor_monotonic", |b| {
        b.iter(|| black_box(monotonic.check()).is_ok())
    });

    // The refusing path: a limit that is always exhausted.
    let ours = RateLimit::new(Rate::per_hour(1));
    let _ = ours.check();
    group.bench_function("gate_core_refused", |b| {
        b.iter(|| black_box(ours.check()).is_err())
    });
    let ours = RateLimit::with_clock(Rate::per_hour(1), QuantaClock::new());
    let _ = ours.check();
    group.bench_function("gate_core_quanta_refused", |b| {
        b.iter(|| black_box(ours.check()).is_err())
    });
    let governor = RateLimiter::direct(Quota::per_hour(NonZeroU32::new(1).unwrap()));
    let _ = governor.check();
    group.bench_function("governor_quanta_refused", |b| {
        b.iter(|| black_box(governor.check()).is_err())
    });

    group.finish();
}

/// Weighted checks, as a token budget makes them: 10 cells at once (so that the quota, a
/// billion cells a second, is never spent and every check admits), against governor's
/// `check_n`, on both clocks.
fn check_n(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_check_n");
    let n = 10;
    let rate = Rate::per_second(PER_SECOND).burst(100_000);
    let ours = RateLimit::new(rate);
    group.bench_function("gate_core", |b| {
        b.iter(|| black_box(ours.check_n(black_box(n))).is_ok())
    });
    let ours_quanta = RateLimit::with_clock(rate, QuantaClock::new());
    group.bench_function("gate_core_quanta", |b| {
        b.iter(|| black_box(ours_quanta.check_n(black_box(n))).is_ok())
    });
    let quota = Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap())
        .allow_burst(NonZeroU32::new(100_000).unwrap());
    let cells = NonZeroU32::new(10).unwrap();
    let governor = RateLimiter::direct(quota);
    group.bench_function("governor_quanta", |b| {
        b.iter(|| black_box(governor.check_n(black_box(cells))).is_ok())
    });
    let monotonic = RateLimiter::direct_with_clock(quota, MonotonicClock);
    group.bench_function("governor_monotonic", |b| {
        b.iter(|| black_box(monotonic.check_n(black_box(cells))).is_ok())
    });
    group.finish();
}

criterion_group!(benches, check, check_n);
criterion_main!(benches);
