//! What gate-core's `metrics` and `tracing` features cost an uncontended acquire + release,
//! in the same run: an unnamed gate, a named gate whose metrics a Prometheus recorder
//! collects (published once every 1,000 acquires, as a scrape would), and tokio's
//! `Semaphore` as the peer.
//!
//! Run with: cargo bench -p benches --features observe --bench observe
//! Compare with `uncontended acquire().await + drop` in the `gate` bench, built without
//! the features.

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use gate_core::Gate;
use metrics_exporter_prometheus::PrometheusBuilder;

fn observed_acquire(c: &mut Criterion) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("no recorder installed yet");
    gate_core::metrics::describe();

    let mut group = c.benchmark_group("uncontended acquire().await + drop, metrics and tracing on");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let unnamed = Gate::new(10);
    group.bench_function("gate, unnamed", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(unnamed.acquire().await.unwrap()) })
    });
    let named = Gate::builder(10).name("bench").build().unwrap();
    let mut n = 0u32;
    group.bench_function("gate, named, published every 1,000", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            if n == 1_000 {
                n = 0;
                named.publish_metrics();
            }
            async { drop(named.acquire().await.unwrap()) }
        })
    });
    let tokio_sem = tokio::sync::Semaphore::new(10);
    group.bench_function("tokio", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(tokio_sem.acquire().await.unwrap()) })
    });
    group.finish();
    named.publish_metrics();
    assert!(
        handle.render().contains("gate_admissions"),
        "the recorder saw the gate"
    );
}

criterion_group!(benches, observed_acquire);
criterion_main!(benches);
