//! Retry on paused time: attempt counts, backoff bounds, server hints, and the permit being
//! released while a call backs off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gate_core::retry::Failure;
use gate_core::{AcquireError, Backpressure, Gate, Retry};
use tokio::time::Instant;

#[derive(Debug, PartialEq)]
struct Busy(u32);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "busy #{}", self.0)
    }
}

impl std::error::Error for Busy {}

/// An operation that fails its first `failures` calls, counting every call.
fn flaky(
    failures: u32,
    calls: &AtomicU32,
) -> impl FnMut() -> std::future::Ready<Result<u32, Busy>> {
    move || {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        std::future::ready(if n <= failures { Err(Busy(n)) } else { Ok(n) })
    }
}

#[tokio::test(start_paused = true)]
async fn retry_3_means_four_calls_at_most() {
    let gate = Gate::new(1);
    let policy = Retry::fixed(3, Duration::from_secs(2));
    let calls = AtomicU32::new(0);
    let start = Instant::now();

    let err = gate.call(&policy, flaky(100, &calls)).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(err.attempts(), 4);
    assert_eq!(err.failure(), &Failure::Error(Busy(4)));
    assert_eq!(err.to_string(), "failed after 4 attempts: busy #4");
    // The last underlying error is the source.
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), "busy #4");
    // Three waits of two seconds, none after the last attempt.
    assert_eq!(start.elapsed(), Duration::from_secs(6));
    assert_eq!(gate.available_permits(), 1);
}

#[tokio::test(start_paused = true)]
async fn success_after_failures_stops_retrying() {
    let policy = Retry::fixed(5, Duration::from_millis(100));
    let calls = AtomicU32::new(0);
    let value = policy.run(flaky(2, &calls)).await.unwrap();
    assert_eq!(value, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn zero_retries_calls_once() {
    let calls = AtomicU32::new(0);
    let err = Retry::new(0).run(flaky(1, &calls)).await.unwrap_err();
    assert_eq!((err.attempts(), calls.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_ends_the_call_at_once() {
    let policy = Retry::builder(5)
        .retry_if(|e: &Busy| e.0 < 2)
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let err = policy.run(flaky(100, &calls)).await.unwrap_err();
    assert_eq!(err.attempts(), 2);
    assert_eq!(err.into_inner(), Some(Busy(2)));
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_with_jitter_stays_within_its_bounds() {
    let policy = Retry::builder(6)
        .exponential(Duration::from_millis(100), Duration::from_millis(1000))
        .jitter(true)
        .build()
        .unwrap();
    let times = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = times.clone();
    let _ = policy
        .run(move || {
            t.lock().unwrap().push(Instant::now());
            std::future::ready(Err::<(), _>(Busy(0)))
        })
        .await;
    let times = times.lock().unwrap();
    assert_eq!(times.len(), 7);
    let caps = [100, 200, 400, 800, 1000, 1000];
    let mut total = Duration::ZERO;
    for (gap, cap) in times.windows(2).map(|w| w[1] - w[0]).zip(caps) {
        assert!(gap <= Duration::from_millis(cap), "{gap:?} > {cap} ms");
        total += gap;
    }
    // Full jitter draws below the cap: all six at the cap is (almost) impossible.
    assert!(total < Duration::from_millis(3500), "no jitter: {total:?}");
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_without_jitter_is_exact() {
    let policy = Retry::builder(4)
        .exponential(Duration::from_millis(100), Duration::from_millis(300))
        .build()
        .unwrap();
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let _ = policy.run(flaky(100, &calls)).await;
    // 100 + 200 + 300 + 300
    assert_eq!(start.elapsed(), Duration::from_millis(900));
}

#[derive(Debug)]
struct TooManyRequests {
    retry_after: Duration,
}

impl Backpressure for TooManyRequests {
    fn is_overload(&self) -> bool {
        true
    }
    fn retry_after(&self) -> Option<Duration> {
        Some(self.retry_after)
    }
}

/// When the second attempt starts under `policy`, after a first one told to come back in 3 s.
async fn second_attempt_after_a_3s_hint(policy: Retry<TooManyRequests>) -> Duration {
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let result = policy
        .run(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(match n {
                0 => Err(TooManyRequests {
                    retry_after: Duration::from_secs(3),
                }),
                _ => Ok(start.elapsed()),
            })
        })
        .await;
    result.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_server_hint_longer_than_the_backoff_is_honoured() {
    let policy = Retry::builder(1)
        .fixed(Duration::from_millis(100))
        .honor_retry_after()
        .build()
        .unwrap();
    assert_eq!(
        second_attempt_after_a_3s_hint(policy).await,
        Duration::from_secs(3)
    );
    // Without `honor_retry_after` the hint is ignored.
    let plain = Retry::fixed(1, Duration::from_millis(100));
    assert_eq!(
        second_attempt_after_a_3s_hint(plain).await,
        Duration::from_millis(100)
    );
}

#[tokio::test(start_paused = true)]
async fn the_permit_is_released_while_backing_off() {
    // Limit 1: while A backs off for a second, B gets the permit at once.
    let gate = Arc::new(Gate::new(1));
    let start = Instant::now();
    let a = {
        let gate = gate.clone();
        tokio::spawn(async move {
            let calls = AtomicU32::new(0);
            let policy = Retry::fixed(1, Duration::from_secs(1));
            gate.call(&policy, flaky(1, &calls)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    let b_started = gate.run(async { start.elapsed() }).await.unwrap();
    assert_eq!(b_started, Duration::from_millis(1));
    assert_eq!(a.await.unwrap(), Ok(2));
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_per_attempt_timeout_cancels_the_attempt_and_counts_it() {
    let policy = Retry::<Busy>::builder(2)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let gate = Gate::new(1);
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let result = gate
        .call(&policy, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok(n)
            }
        })
        .await;
    assert_eq!(result, Ok(2));
    assert_eq!(start.elapsed(), Duration::from_secs(60));

    let calls = AtomicU32::new(0);
    let err = gate
        .call(&policy, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }
        })
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 3);
    assert!(matches!(err.failure(), Failure::TimedOut(_)));
    assert_eq!(
        err.to_string(),
        "failed after 3 attempts: attempt timed out"
    );
    assert_eq!(gate.available_permits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_closed_gate_ends_the_call_with_the_attempts_made() {
    let gate = Arc::new(Gate::new(1));
    let g = gate.clone();
    let calls = AtomicU32::new(0);
    let policy = Retry::fixed(5, Duration::from_secs(1));
    let call = tokio::spawn(async move {
        let calls = &calls;
        g.call(&policy, flaky(100, calls)).await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gate.close();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.attempts(), 2);
    assert_eq!(err.failure(), &Failure::Gate(AcquireError::Closed));
}

#[tokio::test(start_paused = true)]
async fn the_retried_call_future_is_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let gate = Gate::new(1);
    let policy = Retry::fixed(1, Duration::from_millis(1));
    let calls = AtomicU32::new(0);
    let out = assert_send(gate.call(&policy, flaky(0, &calls))).await;
    assert_eq!(out, Ok(1));
}

/// A reply that says how many tokens it used.
#[derive(Debug)]
struct Used(u64);

impl gate_core::TokenUsage for Used {
    fn tokens_used(&self) -> Option<u64> {
        Some(self.0)
    }
}

fn token_budget(tokens_a_minute: u32) -> gate_core::Limiter {
    gate_core::Limiter::builder()
        .concurrency(2)
        .tokens(gate_core::rate::Rate::per_minute(tokens_a_minute))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn call_tokens_reserves_each_attempt_and_settles_the_success() {
    let limiter = token_budget(6_000);
    let bucket = limiter.token_limit().unwrap();
    let policy = Retry::new(2);
    let calls = AtomicU32::new(0);
    let answer = policy
        .call_tokens(&limiter, 1_000, || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { if n < 3 { Err(Busy(n)) } else { Ok(Used(25)) } }
        })
        .await;
    assert_eq!(answer.map(|used| used.0).ok(), Some(25));
    // The two failures keep their estimates; the success is settled at what it used.
    assert_eq!(bucket.remaining(), 6_000 - 2 * 1_000 - 25);
    assert_eq!(limiter.gate().available_permits(), 2);
    // `call` over the same limiter reserves no tokens.
    assert_eq!(
        policy.call(&limiter, || async { Ok::<_, Busy>(1) }).await,
        Ok(1)
    );
    assert_eq!(bucket.remaining(), 6_000 - 2 * 1_000 - 25);
}

#[tokio::test(start_paused = true)]
async fn call_tokens_refuses_a_cost_the_budget_can_never_hold_at_once() {
    let limiter = token_budget(6_000);
    let policy = Retry::fixed(3, Duration::from_secs(1));
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let error = policy
        .call_tokens(&limiter, 6_001, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Busy>(Used(1)) }
        })
        .await
        .unwrap_err();
    assert_eq!(
        error.failure(),
        &Failure::Gate(AcquireError::TooLarge {
            requested: 6_001,
            capacity: 6_000
        })
    );
    assert_eq!(error.attempts(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(start.elapsed(), Duration::ZERO);
    // Over a gate, which has no token budget, the cost is ignored.
    let gate = Gate::new(1);
    let answer = policy.call_tokens(&gate, 6_001, || async { Ok::<_, Busy>(Used(1)) });
    assert_eq!(answer.await.map(|used| used.0).ok(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn call_tokens_gives_a_refused_attempt_its_reservation_back() {
    let limiter = token_budget(6_000);
    let policy = Retry::builder(1).honor_retry_after().build().unwrap();
    let calls = AtomicU32::new(0);
    let answer = policy
        .call_tokens(&limiter, 1_000, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(TooManyRequests {
                        retry_after: Duration::from_secs(1),
                    })
                } else {
                    Ok(Used(10))
                }
            }
        })
        .await;
    assert!(answer.is_ok());
    // The 429 was settled at 0; one second of refill was capped by the full bucket.
    assert_eq!(limiter.token_limit().unwrap().remaining(), 6_000 - 10);
}
