//! `#[gated]` against the same function written by hand, and against no gate at all.
//!
//! Run with: cargo bench -p benches --bench gated

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::Duration;

use criterion::Criterion;
use gate_core::adaptive::Aimd;
use gate_core::{Gate, Limiter, Outcome, Retry, gated};

async fn plain(x: u64) -> u64 {
    black_box(x) + 1
}

#[gated(limit = 10)]
async fn with_macro(x: u64) -> u64 {
    black_box(x) + 1
}

static HAND: Gate = Gate::new(10);

async fn by_hand(x: u64) -> u64 {
    let _permit = HAND.acquire().await.expect("never closed");
    black_box(x) + 1
}

#[derive(Debug)]
struct Never;

#[gated(limit = 10, retry = 3)]
async fn with_macro_retry(x: u64) -> Result<u64, Never> {
    Ok(black_box(x) + 1)
}

static HAND_RETRY: Gate = Gate::new(10);
static POLICY: Retry<Never> = Retry::fixed(3, Duration::ZERO);

async fn by_hand_retry(x: u64) -> Result<u64, Never> {
    HAND_RETRY
        .call(&POLICY, || async { Ok(black_box(x) + 1) })
        .await
        .map_err(|e| e.into_inner().expect("never refused"))
}

static SHARED: LazyLock<Limiter> = LazyLock::new(|| Limiter::new(10));

#[gated(limiter = SHARED)]
async fn with_macro_limiter(x: u64) -> u64 {
    black_box(x) + 1
}

static HAND_LIMITER: LazyLock<Limiter> = LazyLock::new(|| Limiter::new(10));

async fn by_hand_limiter(x: u64) -> u64 {
    let _permit = HAND_LIMITER.acquire().await.expect("never closed");
    black_box(x) + 1
}

#[gated(adaptive = "aimd", limit = 10)]
async fn with_macro_adaptive(x: u64) -> Result<u64, Never> {
    Ok(black_box(x) + 1)
}

static HAND_ADAPTIVE: LazyLock<Limiter> = LazyLock::new(|| {
    let aimd = Aimd::builder().max(10).build().expect("valid");
    Limiter::builder().adaptive(aimd).build().expect("valid")
});

async fn by_hand_adaptive(x: u64) -> Result<u64, Never> {
    let permit = HAND_ADAPTIVE.acquire().await.expect("never closed");
    let result = Ok(black_box(x) + 1);
    permit.finish(Outcome::Success);
    result
}

fn success_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("success_path");
    group.bench_function("plain_async_fn", |b| {
        b.to_async(&rt).iter(|| plain(black_box(1)));
    });
    group.bench_function("gated_limit_10", |b| {
        b.to_async(&rt).iter(|| with_macro(black_box(1)));
    });
    group.bench_function("hand_written_acquire", |b| {
        b.to_async(&rt).iter(|| by_hand(black_box(1)));
    });
    group.bench_function("gated_limit_10_retry_3", |b| {
        b.to_async(&rt).iter(|| with_macro_retry(black_box(1)));
    });
    group.bench_function("hand_written_gate_call_retry_3", |b| {
        b.to_async(&rt).iter(|| by_hand_retry(black_box(1)));
    });
    group.bench_function("gated_shared_limiter_10", |b| {
        b.to_async(&rt).iter(|| with_macro_limiter(black_box(1)));
    });
    group.bench_function("hand_written_limiter_acquire", |b| {
        b.to_async(&rt).iter(|| by_hand_limiter(black_box(1)));
    });
    group.bench_function("gated_adaptive_aimd_10", |b| {
        b.to_async(&rt).iter(|| with_macro_adaptive(black_box(1)));
    });
    group.bench_function("hand_written_adaptive_acquire_finish", |b| {
        b.to_async(&rt).iter(|| by_hand_adaptive(black_box(1)));
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    success_path(&mut c);
    c.final_summary();
}
