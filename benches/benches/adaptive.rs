//! An adaptive limiter's acquire + release against a plain gate's, in the same run.
//!
//! Uncontended, on a current-thread runtime: this is the fixed cost an adaptive limit adds
//! to every attempt. AIMD learns nothing from a success while the gate has room, so the
//! limiter only counts those (one atomic add); `limiter_aimd_full` pins the limit at 1, so
//! every attempt fills the gate and its sample goes through the algorithm's lock. The
//! latency-based limit also reads the clock twice per attempt: tokio's by default, the
//! time-stamp counter in `limiter_gradient_quanta`. `limiter_rate_tokens_settle` is a token
//! budget's reserve + settle beside `limiter_rate`, the same limiter without the budget.

#![allow(missing_docs)] // `criterion_group!` generates an undocumented `pub fn`.

use criterion::{Criterion, criterion_group, criterion_main};
use gate_core::adaptive::{Aimd, Gradient, LimitAlgorithm};
use gate_core::rate::{QuantaClock, Rate};
use gate_core::{Gate, Limiter, LimiterBuilder, Outcome};

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

    let aimd = |initial, max| Aimd::builder().initial(initial).max(max).build().unwrap();
    let gradient = || Gradient::builder().initial(64).build().unwrap();
    let limiters = [
        ("limiter_fixed", Limiter::new(64)),
        ("limiter_aimd", adaptive(aimd(64, 1_000)).build().unwrap()),
        ("limiter_aimd_full", adaptive(aimd(1, 1)).build().unwrap()),
        ("limiter_gradient", adaptive(gradient()).build().unwrap()),
        // The same, reading the time-stamp counter instead of tokio's clock.
        (
            "limiter_gradient_quanta",
            adaptive(gradient())
                .clock(QuantaClock::new())
                .build()
                .unwrap(),
        ),
    ];
    for (name, limiter) in &limiters {
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| async {
                let permit = limiter.acquire().await.unwrap();
                permit.finish(Outcome::Success);
            })
        });
    }

    // A token budget: reserve an estimate on admission, settle it from the usage. Generous
    // limits (a billion tokens a second, 6 spent per attempt), so that every reservation is
    // admitted at once.
    let plain = Limiter::builder()
        .concurrency(64)
        .rate(Rate::per_second(1_000_000_000).burst(1_000))
        .build()
        .unwrap();
    group.bench_function("limiter_rate", |b| {
        b.to_async(&rt).iter(|| async {
            let permit = plain.acquire().await.unwrap();
            permit.finish(Outcome::Success);
        })
    });
    let budget = Limiter::builder()
        .concurrency(64)
        .rate(Rate::per_second(1_000_000_000).burst(1_000))
        .tokens(Rate::per_second(1_000_000_000).burst(1_000_000_000))
        .build()
        .unwrap();
    group.bench_function("limiter_rate_tokens_settle", |b| {
        b.to_async(&rt).iter(|| async {
            let mut permit = budget.acquire_tokens(10).await.unwrap();
            permit.settle(4);
            permit.finish(Outcome::Success);
        })
    });

    group.finish();
}

/// A limiter builder with only an adaptive limit.
fn adaptive(algorithm: impl LimitAlgorithm + 'static) -> LimiterBuilder {
    Limiter::builder().adaptive(algorithm)
}

criterion_group!(benches, acquire_release);
criterion_main!(benches);
