//! Per-request overhead of `GateLayer` against tower's `ConcurrencyLimitLayer` and no layer,
//! on a trivial `service_fn`, uncontended (the limit is never reached): a generic service in
//! `Reject` mode, and an `http` service in the default `Respond` mode. And the waiting path:
//! bursts of requests at a small limit, most of which wait.
//!
//! Run with: cargo bench -p benches --bench layer

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use gate_core::rate::Rate;
use gate_core::{Gate, Limiter};
use gate_tower::GateLayer;
use http::{Request, Response};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::layer::util::Identity;
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

const LIMIT: usize = 64;

/// Drives `iters` requests through `service` one after another and returns the time taken.
async fn drive<S, Req>(mut service: S, iters: u64, request: impl Fn(u64) -> Req) -> Duration
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for i in 0..iters {
        let ready = service.ready().await.unwrap();
        black_box(ready.call(black_box(request(i))).await.unwrap());
    }
    start.elapsed()
}

/// One line of a group: `service` wrapped in `layer`, driven one request after another.
fn line<L, S, Req>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    layer: L,
    service: &S,
    request: impl Fn(u64) -> Req + Copy,
) where
    L: Layer<S>,
    L::Service: Service<Req>,
    <L::Service as Service<Req>>::Error: std::fmt::Debug,
    S: Clone,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| rt.block_on(drive(layer.layer(service.clone()), iters, request)));
    });
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn generic(c: &mut Criterion) {
    static GATE: Gate = Gate::new(LIMIT);
    let rt = runtime();
    let echo = service_fn(|x: u64| async move { Ok::<_, Infallible>(x) });
    let request = |i| i;
    let mut group = c.benchmark_group("service_fn");
    let g = &mut group;
    line(g, &rt, "no_layer", Identity::new(), &echo, request);
    let concurrency_limit = ConcurrencyLimitLayer::new(LIMIT);
    line(
        g,
        &rt,
        "concurrency_limit",
        concurrency_limit,
        &echo,
        request,
    );
    let gate_layer = GateLayer::new(LIMIT).refuse_with_error();
    line(g, &rt, "gate_layer", gate_layer, &echo, request);
    let static_gate = GateLayer::with_static_gate(&GATE).refuse_with_error();
    line(
        g,
        &rt,
        "gate_layer_static_gate",
        static_gate,
        &echo,
        request,
    );
    let limiter = GateLayer::with_limiter(Arc::new(Limiter::new(LIMIT))).refuse_with_error();
    line(g, &rt, "gate_layer_limiter", limiter, &echo, request);
    group.finish();
}

/// A rate the benchmarks never reach, so that they measure the check, not the wait.
const FAST: Rate = Rate::per_second(1_000_000_000);

fn http(c: &mut Criterion) {
    let rt = runtime();
    let hello =
        service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new("hello")) });
    let request = |_| Request::new(String::new());
    let mut group = c.benchmark_group("http_service_fn");
    let g = &mut group;
    line(g, &rt, "no_layer", Identity::new(), &hello, request);
    let concurrency_limit = ConcurrencyLimitLayer::new(LIMIT);
    line(
        g,
        &rt,
        "concurrency_limit",
        concurrency_limit,
        &hello,
        request,
    );
    line(g, &rt, "gate_layer", GateLayer::new(LIMIT), &hello, request);
    let at_head = GateLayer::new(LIMIT).hold_until_body_end(false);
    line(
        g,
        &rt,
        "gate_layer_release_at_head",
        at_head,
        &hello,
        request,
    );
    // With a limiter, every response is read for an overload signal and reported.
    let limiter = GateLayer::with_limiter(Arc::new(Limiter::new(LIMIT)));
    line(g, &rt, "gate_layer_limiter", limiter, &hello, request);
    let limiter = Limiter::builder().concurrency(LIMIT).rate(FAST).build();
    let rate = GateLayer::with_limiter(Arc::new(limiter.unwrap()));
    line(g, &rt, "gate_layer_limiter_rate", rate, &hello, request);
    let adaptive = GateLayer::adaptive(gate_core::adaptive::Aimd::new());
    line(g, &rt, "gate_layer_adaptive", adaptive, &hello, request);
    group.finish();
}

/// The HTTP lines again with a body a server can send (`String` implements `http_body::Body`;
/// `&str` does not). Its response is past the 128 bytes the compiler copies inline with or
/// without the permit in the body, so both layers pay the same `memcpy` calls for moving it.
fn http_string_body(c: &mut Criterion) {
    let rt = runtime();
    let hello = service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("hello")))
    });
    let request = |_| Request::new(String::new());
    let mut group = c.benchmark_group("http_string_body");
    let g = &mut group;
    line(g, &rt, "no_layer", Identity::new(), &hello, request);
    let concurrency_limit = ConcurrencyLimitLayer::new(LIMIT);
    line(
        g,
        &rt,
        "concurrency_limit",
        concurrency_limit,
        &hello,
        request,
    );
    line(g, &rt, "gate_layer", GateLayer::new(LIMIT), &hello, request);
    group.finish();
}

/// Requests a contended burst sends at once, and the limit they meet: 60 of the 64 wait.
const BURST: u64 = 64;
const SMALL_LIMIT: usize = 4;

/// Sends `iters` bursts of [`BURST`] requests at once through clones of `service`, each a
/// task of its own, and returns the time taken.
async fn bursts<S>(service: S, iters: u64) -> Duration
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug + Send,
{
    let start = Instant::now();
    for _ in 0..iters {
        let mut set = JoinSet::new();
        for i in 0..BURST {
            set.spawn(service.clone().oneshot(i));
        }
        while let Some(answer) = set.join_next().await {
            black_box(answer.unwrap().unwrap());
        }
    }
    start.elapsed()
}

/// The waiting path: bursts at a limit of [`SMALL_LIMIT`], the service yielding once so that
/// permits are held across polls. `GateLayer` queues, wakes and keeps its drain estimate;
/// `ConcurrencyLimit` waits in `poll_ready` on tokio's semaphore.
fn contended(c: &mut Criterion) {
    let rt = runtime();
    let yielding = service_fn(|x: u64| async move {
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(x)
    });
    let mut group = c.benchmark_group("contended");
    group.throughput(Throughput::Elements(BURST));
    group.bench_function("concurrency_limit", |b| {
        let service = ConcurrencyLimitLayer::new(SMALL_LIMIT).layer(yielding);
        b.iter_custom(|iters| rt.block_on(bursts(service.clone(), iters)));
    });
    group.bench_function("gate_layer", |b| {
        // Room for the whole burst: this measures the waiting path, not a refusal.
        let layer = GateLayer::new(SMALL_LIMIT)
            .max_waiters(BURST as usize)
            .refuse_with_error();
        let service = layer.layer(yielding);
        b.iter_custom(|iters| rt.block_on(bursts(service.clone(), iters)));
    });
    group.finish();
}

/// The permit round trips the layers are built on, for scale: what each layer costs beyond
/// its primitive.
fn primitives(c: &mut Criterion) {
    let rt = runtime();
    let gate = Arc::new(Gate::new(LIMIT));
    let semaphore = Arc::new(Semaphore::new(LIMIT));
    let limits = GateLayer::new(LIMIT).wait_limits();
    let mut group = c.benchmark_group("permit");
    group.bench_function("gate_acquire_owned_with", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let permit = Arc::clone(&gate).acquire_owned_with(1, limits).await;
                    drop(black_box(permit.unwrap()));
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("gate_try_acquire_owned", |b| {
        b.iter(|| black_box(Arc::clone(&gate).try_acquire_owned().unwrap()));
    });
    // What `ConcurrencyLimit` does per request when a permit is free.
    group.bench_function("tokio_semaphore_try_acquire_owned", |b| {
        b.iter(|| black_box(Arc::clone(&semaphore).try_acquire_owned().unwrap()));
    });
    group.finish();
}

criterion_group!(
    benches,
    generic,
    http,
    http_string_body,
    contended,
    primitives
);
criterion_main!(benches);
