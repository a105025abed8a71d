//! The success path of a `#[gated]` function allocates nothing, counted by
//! `allocation-counter`'s global allocator (this test binary only: a global allocator is per
//! binary). It counts the current thread's allocations, so parallel tests do not interfere.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use gate_core::{Elapsed, gated};

/// Polls `fut` once on this thread without a runtime; the futures under test never wait on
/// their success path, so one poll finishes them.
fn run<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the success path should not wait"),
    }
}

#[derive(Debug, PartialEq)]
struct Failed;

impl From<Elapsed> for Failed {
    fn from(_: Elapsed) -> Self {
        Failed
    }
}

#[gated(limit = 10)]
async fn limited(x: u64) -> u64 {
    x + 1
}

#[gated(
    limit = 10,
    retry = 3,
    backoff = "exponential",
    wait = "1s",
    jitter = true
)]
async fn retried(x: u64) -> Result<u64, Failed> {
    Ok(x + 1)
}

#[gated(limit = 10, retry = 3, retry_if = always)]
async fn retried_if(x: u64) -> Result<u64, Failed> {
    Ok(x + 1)
}

fn always(_: &Failed) -> bool {
    true
}

/// Allocations made by 100 calls of `f`, after one warm-up call (thread-locals, lazy statics).
fn allocations_of(mut f: impl FnMut()) -> u64 {
    f();
    allocation_counter::measure(|| {
        for _ in 0..100 {
            f();
        }
    })
    .count_total
}

#[test]
fn a_gated_call_allocates_nothing() {
    assert_eq!(allocations_of(|| assert_eq!(run(limited(1)), 2)), 0);
}

#[test]
fn a_retried_call_that_succeeds_allocates_nothing() {
    assert_eq!(allocations_of(|| assert_eq!(run(retried(1)), Ok(2))), 0);
    assert_eq!(allocations_of(|| assert_eq!(run(retried_if(1)), Ok(2))), 0);
}

#[gated(limit = 10, timeout = "1s")]
async fn timed(x: u64) -> Result<u64, Failed> {
    Ok(x + 1)
}

#[test]
fn a_timed_call_that_succeeds_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    assert_eq!(allocations_of(|| assert_eq!(run(timed(1)), Ok(2))), 0);
}

#[gated(rate = "1000000/s", burst = 1000, limit = 10)]
async fn rate_limited(x: u64) -> u64 {
    x + 1
}

#[test]
fn a_rate_limited_call_allocates_nothing_once_its_limiter_is_built() {
    // The limiter is built on the first (warm-up) call; the burst covers the calls measured,
    // so none waits.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    assert_eq!(allocations_of(|| assert_eq!(run(rate_limited(1)), 2)), 0);
}

#[test]
fn the_counter_counts() {
    let boxed = allocations_of(|| drop(std::hint::black_box(Box::new(1u64))));
    assert_eq!(boxed, 100);
}
