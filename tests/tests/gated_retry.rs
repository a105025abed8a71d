//! `#[gated(retry = N, ...)]` on paused time: attempt counts, delays, the permit being released
//! while backing off, per-attempt timeouts (and `timeout_error`), and `retry_if`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gate_core::{Elapsed, Gate, gated};
use tokio::time::Instant;

#[derive(Debug, PartialEq)]
enum ApiError {
    Busy(u32),
    BadRequest(u32),
    TimedOut,
}

impl From<Elapsed> for ApiError {
    fn from(_: Elapsed) -> Self {
        ApiError::TimedOut
    }
}

fn is_transient(e: &ApiError) -> bool {
    !matches!(e, ApiError::BadRequest(_))
}

/// Fails with `Busy(n)` on call `n` until `succeed_on`, then returns `Ok(n)`.
fn answer(calls: &AtomicU32, succeed_on: u32) -> Result<u32, ApiError> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    if n >= succeed_on {
        Ok(n)
    } else {
        Err(ApiError::Busy(n))
    }
}

#[gated(limit = 1, retry = 3)]
async fn retry_3(calls: &AtomicU32, succeed_on: u32) -> Result<u32, ApiError> {
    answer(calls, succeed_on)
}

#[tokio::test(start_paused = true)]
async fn retry_3_makes_four_attempts_then_returns_the_last_error_unchanged() {
    let calls = AtomicU32::new(0);
    assert_eq!(retry_3(&calls, 100).await, Err(ApiError::Busy(4)));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_success_stops_the_retries() {
    let calls = AtomicU32::new(0);
    assert_eq!(retry_3(&calls, 3).await, Ok(3));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let calls = AtomicU32::new(0);
    assert_eq!(retry_3(&calls, 1).await, Ok(1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[gated(limit = 1, retry = 2, wait = "2s")]
async fn fixed_wait(calls: &AtomicU32) -> std::io::Result<u32> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    Err(std::io::Error::other(format!("attempt {n}")))
}

#[tokio::test(start_paused = true)]
async fn a_result_alias_is_a_result_and_a_fixed_wait_separates_attempts() {
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let err = fixed_wait(&calls).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 3");
    // Two waits of two seconds; none after the last attempt.
    assert_eq!(start.elapsed(), Duration::from_secs(4));
}

#[gated(
    limit = 1,
    retry = 4,
    backoff = "exponential",
    wait = "100ms",
    max_delay = "300ms"
)]
async fn exponential(
    calls: &AtomicU32,
    at: &std::sync::Mutex<Vec<Duration>>,
    start: Instant,
) -> Result<(), ApiError> {
    at.lock().unwrap().push(start.elapsed());
    Err(ApiError::Busy(calls.fetch_add(1, Ordering::SeqCst)))
}

#[tokio::test(start_paused = true)]
async fn an_exponential_backoff_doubles_up_to_max_delay() {
    let calls = AtomicU32::new(0);
    let at = std::sync::Mutex::new(Vec::new());
    let start = Instant::now();
    assert_eq!(
        exponential(&calls, &at, start).await,
        Err(ApiError::Busy(4))
    );
    let ms: Vec<u128> = at
        .into_inner()
        .unwrap()
        .iter()
        .map(Duration::as_millis)
        .collect();
    // Delays of 100, 200, 300 (capped), 300 ms.
    assert_eq!(ms, [0, 100, 300, 600, 900]);
}

#[gated(limit = 1, retry = 3, wait = "1s", jitter = true)]
async fn jittered(calls: &AtomicU32) -> Result<(), ApiError> {
    Err(ApiError::Busy(calls.fetch_add(1, Ordering::SeqCst)))
}

#[tokio::test(start_paused = true)]
async fn jitter_keeps_each_delay_within_the_backoff() {
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    assert!(jittered(&calls).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(start.elapsed() <= Duration::from_secs(3));
}

static ONE: Gate = Gate::new(1);

#[gated(gate = ONE, retry = 1, wait = "10s")]
async fn fails_once(calls: &AtomicU32) -> Result<u32, ApiError> {
    answer(calls, 2)
}

#[gated(gate = ONE)]
async fn quick() -> Instant {
    Instant::now()
}

#[tokio::test(start_paused = true)]
async fn the_permit_is_released_while_backing_off() {
    let start = Instant::now();
    let slow = tokio::spawn(async move {
        let calls = AtomicU32::new(0);
        fails_once(&calls).await
    });
    // Let the first attempt fail and start its 10 s backoff.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        ONE.available_permits(),
        1,
        "no permit is held during the backoff"
    );
    let admitted_at = quick().await;
    assert_eq!(
        admitted_at - start,
        Duration::from_secs(1),
        "admitted at once"
    );
    assert_eq!(slow.await.unwrap(), Ok(2));
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[gated(limit = 1, retry = 2, timeout = "1s")]
async fn slow_then_fast(calls: &AtomicU32) -> Result<u32, ApiError> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    if n < 3 {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    Ok(n)
}

#[gated(limit = 1, retry = 1, timeout = "500ms")]
async fn always_slow(calls: &AtomicU32) -> Result<u32, ApiError> {
    calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(0)
}

#[tokio::test(start_paused = true)]
async fn a_timeout_cancels_a_slow_attempt_and_counts_it_as_failed() {
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    assert_eq!(slow_then_fast(&calls).await, Ok(3));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "two attempts cut at 1 s each"
    );

    let calls = AtomicU32::new(0);
    let start = Instant::now();
    assert_eq!(always_slow(&calls).await, Err(ApiError::TimedOut));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a timed-out attempt is retried"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[gated(limit = 1, timeout = "1s")]
async fn timeout_alone(delay: Duration) -> Result<(), ApiError> {
    tokio::time::sleep(delay).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_timeout_without_retry_makes_one_attempt() {
    assert_eq!(timeout_alone(Duration::from_millis(999)).await, Ok(()));
    assert_eq!(
        timeout_alone(Duration::from_secs(5)).await,
        Err(ApiError::TimedOut)
    );
}

/// Stands for another crate's error type (async-openai's `OpenAIError`): `From<Elapsed>`
/// cannot be written for it here, so the timeout's error is named.
fn io_timed_out(elapsed: Elapsed) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, elapsed)
}

#[gated(limit = 1, retry = 2, timeout = "1s", timeout_error = io_timed_out)]
async fn foreign_error(calls: &AtomicU32, slow_until: u32) -> std::io::Result<u32> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    if n < slow_until {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    Ok(n)
}

#[tokio::test(start_paused = true)]
async fn a_timeout_error_makes_the_error_of_a_last_attempt_that_timed_out() {
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let error = foreign_error(&calls, 100).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(error.to_string(), "attempt timed out");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "each timeout is retried");
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    let calls = AtomicU32::new(0);
    assert_eq!(foreign_error(&calls, 3).await.unwrap(), 3);
}

#[gated(limit = 1, retry = 5, retry_if = is_transient)]
async fn stops_on_bad_request(calls: &AtomicU32) -> Result<(), ApiError> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    if n == 2 {
        Err(ApiError::BadRequest(n))
    } else {
        Err(ApiError::Busy(n))
    }
}

#[tokio::test(start_paused = true)]
async fn retry_if_stops_on_a_non_retryable_error() {
    let calls = AtomicU32::new(0);
    assert_eq!(
        stops_on_bad_request(&calls).await,
        Err(ApiError::BadRequest(2))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[gated(limit = 1, retry = 5, retry_if = |e: &ApiError| matches!(e, ApiError::Busy(n) if *n < 3))]
async fn closure_predicate(calls: &AtomicU32) -> Result<(), ApiError> {
    Err(ApiError::Busy(calls.fetch_add(1, Ordering::SeqCst) + 1))
}

#[tokio::test(start_paused = true)]
async fn retry_if_takes_a_closure_too() {
    let calls = AtomicU32::new(0);
    assert_eq!(closure_predicate(&calls).await, Err(ApiError::Busy(3)));
}

struct Counter {
    attempts: u32,
}

impl Counter {
    #[gated(limit = 1, retry = 2)]
    async fn bump(&mut self) -> Result<u32, ApiError> {
        self.attempts += 1;
        tokio::task::yield_now().await;
        if self.attempts < 3 {
            return Err(ApiError::Busy(self.attempts));
        }
        Ok(self.attempts)
    }
}

#[tokio::test(start_paused = true)]
async fn a_mut_self_method_sees_its_own_changes_across_attempts() {
    let mut counter = Counter { attempts: 0 };
    assert_eq!(counter.bump().await, Ok(3));
}

#[gated(limit = 1, retry = 2)]
async fn question_mark(input: &str) -> Result<u32, std::num::ParseIntError> {
    let n: u32 = input.parse()?;
    Ok(n)
}

#[tokio::test(start_paused = true)]
async fn question_mark_fails_the_attempt_not_the_function() {
    assert_eq!(question_mark("7").await, Ok(7));
    assert!(question_mark("x").await.is_err());
}

fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

#[tokio::test(start_paused = true)]
async fn the_generated_future_is_send_when_the_body_is() {
    let calls = AtomicU32::new(0);
    assert_eq!(assert_send(retry_3(&calls, 1)).await, Ok(1));
    assert_eq!(assert_send(slow_then_fast(&calls)).await, Ok(3));
}
