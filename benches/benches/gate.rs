//! `Gate` against its peers, in the same run: tokio's `Semaphore` and async-lock's.
//!
//! Run with: cargo bench -p gate-core --bench gate
//! Compare the lines of one group with each other; absolute times depend on the machine.

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gate_core::Gate;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

fn uncontended_try_acquire(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended try_acquire + drop");
    let gate = Gate::new(10);
    group.bench_function("gate", |b| b.iter(|| drop(gate.try_acquire().unwrap())));
    let tokio_sem = tokio::sync::Semaphore::new(10);
    group.bench_function("tokio", |b| {
        b.iter(|| drop(tokio_sem.try_acquire().unwrap()))
    });
    let lock_sem = async_lock::Semaphore::new(10);
    group.bench_function("async-lock", |b| {
        b.iter(|| drop(lock_sem.try_acquire().unwrap()))
    });
    group.finish();
}

fn uncontended_acquire(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended acquire().await + drop");
    let rt = current_thread();
    let gate = Gate::new(10);
    group.bench_function("gate", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(gate.acquire().await.unwrap()) })
    });
    let tokio_sem = tokio::sync::Semaphore::new(10);
    group.bench_function("tokio", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(tokio_sem.acquire().await.unwrap()) })
    });
    let lock_sem = async_lock::Semaphore::new(10);
    group.bench_function("async-lock", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(lock_sem.acquire().await) })
    });
    group.finish();
}

const TASKS: usize = 64;
/// Acquires per task in a short contended run.
const ROUNDS: usize = 50;
/// Acquires per task in a sustained contended run.
const SUSTAINED_ROUNDS: usize = 3_000;

/// Benchmarks `TASKS` tasks, each acquiring `$acquire` from a shared `$new`, yielding and
/// releasing, `$rounds` times.
macro_rules! contended_case {
    ($group:expr, $rt:expr, $name:literal, $permits:expr, |$n:ident| $new:expr, |$s:ident| $acquire:expr) => {
        contended_case!($group, $rt, $name, $permits, ROUNDS, |$n| $new, |$s| {
            $acquire
        })
    };
    ($group:expr, $rt:expr, $name:literal, $permits:expr, $rounds:expr, |$n:ident| $new:expr, |$s:ident| $acquire:expr) => {
        $group.bench_with_input(BenchmarkId::new($name, $permits), &$permits, |b, &$n| {
            b.to_async(&$rt).iter(|| async move {
                let shared = Arc::new($new);
                let tasks: Vec<_> = (0..TASKS)
                    .map(|_| {
                        let $s = shared.clone();
                        tokio::spawn(async move {
                            for _ in 0..$rounds {
                                let _permit = $acquire;
                                tokio::task::yield_now().await;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            })
        });
    };
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("64 tasks, 2 workers: acquire, yield, release");
    let rt = two_workers();
    for permits in [1usize, 4, 32] {
        contended_case!(group, rt, "gate", permits, |n| Gate::new(n), |s| s
            .acquire()
            .await
            .unwrap());
        contended_case!(
            group,
            rt,
            "tokio",
            permits,
            |n| tokio::sync::Semaphore::new(n),
            |s| s.acquire().await.unwrap()
        );
        contended_case!(
            group,
            rt,
            "async-lock",
            permits,
            |n| async_lock::Semaphore::new(n),
            |s| s.acquire().await
        );
    }
    group.finish();
}

/// The shape of a long-lived contended gate: 64 tasks x 3,000 acquires each. Short runs
/// mostly measure spawning and the first contact with the queue; this measures the queue.
/// For a same-process cross-check, `cargo run --release -p benches --example contended --
/// PERMITS --sustained [ROUNDS]` alternates the two semaphores in one runtime and reports the
/// ratio of CPU time beside that of wall time, which on a shared machine moves less.
fn sustained(c: &mut Criterion) {
    let mut group = c.benchmark_group("sustained: 64 tasks x 3000, 2 workers");
    group.sample_size(10);
    let rt = two_workers();
    for permits in [4usize, 32] {
        contended_case!(
            group,
            rt,
            "gate",
            permits,
            SUSTAINED_ROUNDS,
            |n| Gate::new(n),
            |s| s.acquire().await.unwrap()
        );
        contended_case!(
            group,
            rt,
            "tokio",
            permits,
            SUSTAINED_ROUNDS,
            |n| tokio::sync::Semaphore::new(n),
            |s| s.acquire().await.unwrap()
        );
    }
    group.finish();
}

criterion_group!(
    benches,
    uncontended_try_acquire,
    uncontended_acquire,
    contended,
    sustained
);
criterion_main!(benches);
