//! Errors that must not be retried: a spent quota, a request too large for any window. A
//! policy that honours server hints stops at once on them, says so, and reports them as
//! failures, not overloads (no pause, no shrinking of an adaptive limit).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gate_core::adaptive::Aimd;
use gate_core::{Backpressure, Limiter, Outcome, Retry, gated};
use tokio::time::Instant;

/// A 429 as OpenAI sends it: a rate limit (come back in a second) or a spent quota.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Api {
    RateLimited,
    InsufficientQuota,
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Api::RateLimited => "429 rate_limit_exceeded",
            Api::InsufficientQuota => "429 insufficient_quota",
        })
    }
}

impl Backpressure for Api {
    fn is_overload(&self) -> bool {
        // Both came as a 429: the status alone cannot tell them apart.
        true
    }
    fn retry_after(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
    fn is_permanent(&self) -> bool {
        matches!(self, Api::InsufficientQuota)
    }
}

fn adaptive() -> Limiter {
    let aimd = Aimd::builder().initial(10).max(20).build().unwrap();
    Limiter::builder().adaptive(aimd).build().unwrap()
}

fn policy() -> Retry<Api> {
    Retry::builder(5)
        .fixed(Duration::from_millis(100))
        .honor_retry_after()
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_stops_at_once_and_teaches_the_limiter_nothing() {
    let limiter = adaptive();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let err = policy()
        .call(&limiter, || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>(Api::InsufficientQuota) }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(err.attempts(), 1);
    assert!(err.is_permanent());
    assert_eq!(err.hint_too_long(), None);
    assert_eq!(
        err.to_string(),
        "failed after 1 attempt: 429 insufficient_quota (not retried: retrying cannot help)"
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no backoff, no hint waited out"
    );
    assert_eq!(limiter.paused_until(), None, "a spent quota pauses nobody");
    assert_eq!(limiter.limit(), Some(10), "nor shrinks the adaptive limit");
    assert_eq!(policy().outcome(&Api::InsufficientQuota), Outcome::Failed);
}

#[tokio::test(start_paused = true)]
async fn the_same_429_as_a_rate_limit_is_retried_and_pushes_back() {
    // The control: what `is_permanent` changes.
    let limiter = adaptive();
    let calls = AtomicU32::new(0);
    let answer = policy()
        .call(&limiter, || {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move { if n < 2 { Err(Api::RateLimited) } else { Ok(n) } }
        })
        .await;
    assert_eq!(answer, Ok(2));
    assert!(limiter.limit().unwrap() < 10, "overloads shrink the limit");
    assert_eq!(
        policy().outcome(&Api::RateLimited),
        Outcome::Overload {
            retry_after: Some(Duration::from_secs(1))
        }
    );
    let err = policy()
        .run(|| async { Err::<(), _>(Api::RateLimited) })
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 6);
    assert!(!err.is_permanent());
}

#[tokio::test(start_paused = true)]
async fn permanence_is_asked_before_retry_if() {
    let retry_everything = Retry::builder(5)
        .retry_if(|_: &Api| true)
        .honor_retry_after()
        .build()
        .unwrap();
    assert!(retry_everything.is_permanent(&Api::InsufficientQuota));
    let err = retry_everything
        .run(|| async { Err::<(), _>(Api::InsufficientQuota) })
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 1);
    assert!(err.is_permanent());
}

#[tokio::test(start_paused = true)]
async fn a_policy_that_ignores_hints_ignores_permanence_too() {
    // Decided: `is_permanent` is part of what `honor_retry_after` reads from the error; a
    // policy without it knows nothing of `Backpressure` and leaves the choice to `retry_if`.
    let blind = Retry::<Api>::new(2);
    assert!(!blind.is_permanent(&Api::InsufficientQuota));
    let err = blind
        .run(|| async { Err::<(), _>(Api::InsufficientQuota) })
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 3);
    assert!(!err.is_permanent());
}

static GATED_CALLS: AtomicU32 = AtomicU32::new(0);

#[gated(limit = 4, adaptive = "aimd", backpressure = true, retry = 3)]
async fn spend() -> Result<(), Api> {
    GATED_CALLS.fetch_add(1, Ordering::Relaxed);
    Err(Api::InsufficientQuota)
}

#[tokio::test(start_paused = true)]
async fn gated_backpressure_stops_at_once_too() {
    let start = Instant::now();
    assert_eq!(spend().await, Err(Api::InsufficientQuota));
    assert_eq!(GATED_CALLS.load(Ordering::Relaxed), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// Stands in for another crate's error type, which cannot implement `Backpressure` here.
#[derive(Debug)]
struct Foreign {
    status: u16,
}

#[tokio::test(start_paused = true)]
async fn a_foreign_error_is_read_through_a_signal_function() {
    use gate_core::Signal;
    let policy = Retry::builder(3)
        .fixed(Duration::from_millis(10))
        .honor_retry_after_with(|e: &Foreign| match e.status {
            429 => Signal::overload(Some(Duration::from_secs(2))),
            402 => Signal::PERMANENT,
            _ => Signal::NONE,
        })
        .build()
        .unwrap();
    let limiter = adaptive();
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let answer = policy
        .call(&limiter, || {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if n == 0 {
                    Err(Foreign { status: 429 })
                } else {
                    Ok(n)
                }
            }
        })
        .await;
    assert_eq!(answer.unwrap(), 1);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "the hint is waited out"
    );
    assert!(limiter.limit().unwrap() < 10, "and the overload reported");

    let err = policy
        .call(&limiter, || async { Err::<(), _>(Foreign { status: 402 }) })
        .await
        .unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(err.attempts(), 1);
    let err = policy
        .run(|| async { Err::<(), _>(Foreign { status: 500 }) })
        .await
        .unwrap_err();
    assert_eq!((err.attempts(), err.is_permanent()), (4, false));
    assert_eq!(policy.outcome(&Foreign { status: 500 }), Outcome::Failed);
}
