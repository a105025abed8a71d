//! `#[gated(tokens = "...", cost = ...)]` on paused time: a token budget that binds (calls
//! wait for tokens), settlement from the `Ok` value (refunds let later calls in sooner,
//! excess makes them wait), the rules for a success that says nothing and for a failure, a
//! cost evaluated once per call, an oversized cost refused at once, and cancellation.
//!
//! Every budget here is 6,000 tokens a minute: a bucket of 6,000, refilled one token every
//! 10 ms. Each test has functions (and so limiters) of its own: a limiter reads the clock of
//! the runtime that first used it.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gate_core::rate::Rate;
use gate_core::{Backpressure, Limiter, TokenUsage, gated};
use tokio::time::Instant;

/// A response that says how many tokens it used, or not.
#[derive(Debug, PartialEq)]
struct Reply {
    used: Option<u64>,
}

impl TokenUsage for Reply {
    fn tokens_used(&self) -> Option<u64> {
        self.used
    }
}

#[derive(Debug, PartialEq)]
struct ApiError;

/// A limiter of 6,000 tokens a minute at most 2 calls at once, for tests that read its
/// bucket.
fn budget() -> Limiter {
    Limiter::builder()
        .concurrency(2)
        .tokens(Rate::per_minute(6_000))
        .build()
        .unwrap()
}

/// Tokens left in a shared limiter's bucket now.
fn remaining(limiter: &Limiter) -> u64 {
    limiter.token_limit().expect("a token budget").remaining()
}

#[gated(limit = 8, tokens = "6000/min", cost = cost)]
async fn unsettled(cost: u64) -> Result<Reply, ApiError> {
    Ok(Reply { used: None })
}

#[tokio::test(start_paused = true)]
async fn a_token_budget_binds_calls_wait_for_the_tokens_they_reserve() {
    let start = Instant::now();
    // 2 × 2,500 fit in the bucket; the third needs 1,500 more, 15 s of refill.
    for _ in 0..2 {
        assert_eq!(unsettled(2_500).await, Ok(Reply { used: None }));
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
    unsettled(2_500).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    // A success that does not say what it used keeps its estimate charged: the bucket is
    // empty again, and 600 tokens take 6 s.
    unsettled(600).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(21));
}

#[gated(limit = 8, tokens = "6000/min", cost = 2_500)]
async fn settled(used: u64) -> Result<Reply, ApiError> {
    Ok(Reply { used: Some(used) })
}

#[tokio::test(start_paused = true)]
async fn settling_refunds_what_a_call_did_not_use_and_charges_what_it_did() {
    let start = Instant::now();
    // Each reserves 2,500 and is settled at 100: ten of them fit where two would unsettled.
    for _ in 0..10 {
        settled(100).await.unwrap();
    }
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "refunds let later calls in at once"
    );
    // 1,000 used, 5,000 left: one settled at 4,900 leaves 100, so the next 2,500 waits for
    // 2,400 tokens (24 s).
    settled(4_900).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    settled(100).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(24));
}

static FLAKY: LazyLock<Limiter> = LazyLock::new(budget);

/// Fails `failures` times, then succeeds having used 10 tokens; counts how often its cost
/// is computed.
#[gated(limiter = FLAKY, retry = 2, cost = estimate(estimates, 1_000))]
async fn flaky(
    estimates: &AtomicU32,
    attempts: &AtomicU32,
    failures: u32,
) -> Result<Reply, ApiError> {
    if attempts.fetch_add(1, Ordering::SeqCst) < failures {
        Err(ApiError)
    } else {
        Ok(Reply { used: Some(10) })
    }
}

fn estimate(estimates: &AtomicU32, tokens: u64) -> u64 {
    estimates.fetch_add(1, Ordering::SeqCst);
    tokens
}

#[tokio::test(start_paused = true)]
async fn the_cost_is_computed_once_per_call_and_reserved_by_every_attempt() {
    let (estimates, attempts) = (AtomicU32::new(0), AtomicU32::new(0));
    assert_eq!(remaining(&FLAKY), 6_000);
    flaky(&estimates, &attempts, 2).await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(estimates.load(Ordering::SeqCst), 1, "once per call");
    // The two failed attempts keep their estimates charged; the success is settled at 10.
    assert_eq!(remaining(&FLAKY), 6_000 - 2 * 1_000 - 10);
    // A call whose every attempt fails is charged every estimate.
    let attempts = AtomicU32::new(0);
    assert_eq!(flaky(&estimates, &attempts, 10).await, Err(ApiError));
    assert_eq!(remaining(&FLAKY), 6_000 - 2 * 1_000 - 10 - 3 * 1_000);
}

#[gated(tokens = "6000/min", cost = cost)]
async fn any_cost(cost: u64) -> Result<Reply, ApiError> {
    Ok(Reply { used: None })
}

#[tokio::test(start_paused = true)]
async fn a_cost_larger_than_the_bucket_is_refused_at_once_not_waited_for() {
    let start = Instant::now();
    let refused = tokio::spawn(any_cost(6_001)).await.unwrap_err();
    assert!(refused.is_panic());
    let message = refused.into_panic();
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.starts_with("`#[gated]` function `any_cost` could not get a permit: "),
        "{message}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    // The whole bucket is fine.
    any_cost(6_000).await.unwrap();
}

static CANCELLED: LazyLock<Limiter> = LazyLock::new(budget);

#[gated(limiter = CANCELLED, cost = cost)]
async fn hangs(cost: u64) -> Result<Reply, ApiError> {
    std::future::pending().await
}

#[gated(limiter = CANCELLED, cost = cost)]
async fn answers(cost: u64) -> Result<Reply, ApiError> {
    Ok(Reply { used: Some(cost) })
}

#[tokio::test(start_paused = true)]
async fn cancellation_leaks_nothing() {
    let start = Instant::now();
    // Cancelled while its attempt runs: the permit goes back, the estimate stays charged
    // (the request may have reached the server).
    assert!(
        tokio::time::timeout(Duration::from_secs(1), hangs(4_000))
            .await
            .is_err()
    );
    assert_eq!(CANCELLED.gate().available_permits(), 2, "no permit pinned");
    let left = remaining(&CANCELLED);
    assert_eq!(left, 2_000 + 100, "4,000 charged, 1 s of refill since");
    // Cancelled while waiting for tokens: it reserved nothing, so the next caller gets in
    // as soon as its own tokens are there.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), answers(5_000))
            .await
            .is_err()
    );
    let waited = Instant::now();
    answers(3_000).await.unwrap();
    // 2,100 + 500 refilled by now; 400 more is 4 s.
    assert_eq!(waited.elapsed(), Duration::from_secs(4));
    assert_eq!(remaining(&CANCELLED), 0);
    assert_eq!(CANCELLED.gate().available_permits(), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

/// Stands for another crate's response type: `TokenUsage` cannot be implemented for it
/// there, so `usage` reads it.
#[derive(Debug)]
struct Foreign {
    total_tokens: u32,
}

static READ: LazyLock<Limiter> = LazyLock::new(budget);

#[gated(limiter = READ, cost = 1_000, usage = |r: &Foreign| Some(u64::from(r.total_tokens)))]
async fn foreign(total_tokens: u32) -> Result<Foreign, ApiError> {
    Ok(Foreign { total_tokens })
}

#[gated(limiter = READ, cost = 1_000, usage = |_| None, timeout = "1s", timeout_error = |_| ApiError)]
async fn unread() -> Result<Foreign, ApiError> {
    Ok(Foreign { total_tokens: 1 })
}

#[tokio::test(start_paused = true)]
async fn usage_reads_what_a_foreign_type_reports() {
    foreign(42).await.unwrap();
    assert_eq!(remaining(&READ), 6_000 - 42);
    unread().await.unwrap();
    assert_eq!(
        remaining(&READ),
        6_000 - 42 - 1_000,
        "`|_| None` keeps the estimate"
    );
}

/// A 429: the server refused the request, and did not charge for it.
#[derive(Debug, PartialEq)]
struct TooManyRequests;

impl Backpressure for TooManyRequests {
    fn is_overload(&self) -> bool {
        true
    }

    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

static REFUSED: LazyLock<Limiter> = LazyLock::new(budget);

#[gated(limiter = REFUSED, retry = 1, backpressure = true, cost = 1_000)]
async fn refused_once(attempts: &AtomicU32) -> Result<Reply, TooManyRequests> {
    if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
        Err(TooManyRequests)
    } else {
        Ok(Reply { used: Some(10) })
    }
}

static FAILED: LazyLock<Limiter> = LazyLock::new(budget);

#[gated(limiter = FAILED, retry = 1, cost = 1_000)]
async fn failed_once(attempts: &AtomicU32) -> Result<Reply, TooManyRequests> {
    if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
        Err(TooManyRequests)
    } else {
        Ok(Reply { used: Some(10) })
    }
}

#[tokio::test(start_paused = true)]
async fn with_backpressure_a_refusal_gives_its_reservation_back() {
    let attempts = AtomicU32::new(0);
    refused_once(&attempts).await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(remaining(&REFUSED), 6_000 - 10, "the 429 was settled at 0");
    // Without `backpressure`, nothing says the error was a refusal: it stays charged.
    let attempts = AtomicU32::new(0);
    failed_once(&attempts).await.unwrap();
    assert_eq!(remaining(&FAILED), 6_000 - 1_000 - 10);
}
