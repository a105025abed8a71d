//! An adaptive limiter's acquire + release against a plain gate's, in the same run.
//!
//! Uncontended, on a current-thread runtime: this is the fixed cost an adaptive limit adds
//! to every attempt. AIMD learns nothing from a success while the gate has room, so the
//! limiter only counts those (one atomic add); `limiter_aimd_full` pins the limit at 1, so
//! every attempt fills the gate and its sample goes through the algorithm's lock. The
//! latency-based limit also reads the clock twice per attempt: tokio's by default, the
//! time-stamp counter in `limiter_gradient_quanta`.

#![allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn`.

use criterion::{Criterion, criterion_group, criterion_main};
use gate_core::adaptive::{Aimd, Gradient};
use gate_core::rate::QuantaClock;
use gate_core::{Admission, Gate, Limiter, Outcome};

fn acquire_release(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("acquire_release");

    let gate = Gate::new(64);
    group.bench_function("gate", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(gate.acquire().await.unwrap()) })
    });

    let fixed = Limiter::new(64);
    group.bench_function("limiter_fixed", |b| {
        b.to_async(&rt).iter(|| async {
            let permit = fixed.acquire().await.unwrap();
            fixed.release(permit, Outcome::Success);
        })
    });

    let aimd = Limiter::builder()
        .adaptive(Aimd::builder().initial(64).build().unwrap())
        .build()
        .unwrap();
    group.bench_function("limiter_aimd", |b| {
        b.to_async(&rt).iter(|| async {
            let permit = aimd.acquire().await.unwrap();
            aimd.release(permit, Outcome::Success);
        })
    });

    let full = Limiter::builder()
        .adaptive(Aimd::builder().initial(1).max(1).build().unwrap())
        .build()
        .unwrap();
    group.bench_function("limiter_aimd_full", |b| {
        b.to_async(&rt).iter(|| async {
            let permit = full.acquire().await.unwrap();
            full.release(permit, Outcome::Success);
        })
    });

    let gradient = Limiter::builder()
        .adaptive(Gradient::builder().initial(64).build().unwrap())
        .build()
        .unwrap();
    group.bench_function("limiter_gradient", |b| {
        b.to_async(&rt).iter(|| async {
            let permit = gradient.acquire().await.unwrap();
            gradient.release(permit, Outcome::Success);
        })
    });

    // The same, reading the time-stamp counter instead of tokio's clock.
    let gradient_tsc = Limiter::builder()
        .adaptive(Gradient::builder().initial(64).build().unwrap())
        .clock(QuantaClock::new())
        .build()
        .unwrap();
    group.bench_function("limiter_gradient_quanta", |b| {
        b.to_async(&rt).iter(|| async {
            let permit = gradient_tsc.acquire().await.unwrap();
            gradient_tsc.release(permit, Outcome::Success);
        })
    });

    group.finish();
}

criterion_group!(benches, acquire_release);
criterion_main!(benches);
