//! Server hints are untrusted input: every `Retry-After` a limiter or a retry policy honours
//! is capped, for any `Duration` up to `Duration::MAX`, with no panic and no inversion (a
//! longer hint never waits less).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gate_core::adaptive::Aimd;
use gate_core::{Backpressure, Limiter, Outcome, Retry, gated};
use tokio::time::Instant;

/// An overload error carrying a server's hint.
#[derive(Debug, PartialEq)]
struct TooMany(Duration);

impl std::fmt::Display for TooMany {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "too many requests, retry after {:?}", self.0)
    }
}

impl Backpressure for TooMany {
    fn is_overload(&self) -> bool {
        true
    }
    fn retry_after(&self) -> Option<Duration> {
        Some(self.0)
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// Hints in increasing order, from sane to hostile: `Retry-After: 1000000000000` (31,700
/// years), an HTTP-date in 2099 (73 years), `Duration::MAX`.
fn hints() -> [Duration; 9] {
    [
        Duration::ZERO,
        Duration::from_secs(1),
        Duration::from_secs(59),
        MINUTE,
        MINUTE + Duration::from_nanos(1),
        Duration::from_secs(114 * 3600),
        YEAR * 73,
        Duration::from_secs(1_000_000_000_000),
        Duration::MAX,
    ]
}

#[tokio::test(start_paused = true)]
async fn a_limiter_pauses_at_most_its_cap_for_any_hint() {
    // Regression: `pause_for(Duration::MAX)` panicked (`Instant` overflow), a hint of 10^12
    // seconds paused for 292 years, and the biggest hints paused least.
    let mut last = Duration::ZERO;
    for hint in hints() {
        let limiter = Limiter::new(4);
        let now = Instant::now();
        limiter.pause_for(hint);
        let paused = limiter
            .paused_until()
            .map_or(Duration::ZERO, |until| until - now);
        assert_eq!(paused, hint.min(Limiter::DEFAULT_MAX_PAUSE), "{hint:?}");
        assert!(paused >= last, "a longer hint paused less: {hint:?}");
        last = paused;

        // The same through an attempt's report, and through `pause_until`.
        let limiter = Limiter::new(4);
        let permit = limiter.acquire().await.unwrap();
        permit.finish(Outcome::Overload {
            retry_after: Some(hint),
        });
        assert_eq!(
            limiter.paused_until(),
            Some(now + paused).filter(|_| paused > Duration::ZERO)
        );
        let limiter = Limiter::new(4);
        if let Some(until) = now.checked_add(hint) {
            limiter.pause_until(until);
            assert_eq!(
                limiter.paused_until().map(|until| until - now),
                Some(paused).filter(|p| !p.is_zero())
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_waits_out_the_cap_not_the_hint() {
    let limiter = Arc::new(Limiter::new(4));
    let start = Instant::now();
    limiter.pause_for(Duration::MAX);
    let waited = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            let _permit = limiter.acquire().await.unwrap();
            start.elapsed()
        })
    };
    assert_eq!(waited.await.unwrap(), MINUTE);
    assert_eq!(limiter.paused_until(), None);
}

#[tokio::test(start_paused = true)]
async fn the_limiters_cap_is_configurable() {
    let now = Instant::now();
    let patient = Limiter::builder()
        .concurrency(4)
        .max_pause(Duration::from_secs(15 * 60))
        .build()
        .unwrap();
    patient.pause_for(YEAR);
    assert_eq!(patient.paused_until(), Some(now + Duration::from_secs(900)));
    // Trusting every hint still saturates instead of panicking, and stays monotone.
    let trusting = Limiter::builder().max_pause(Duration::MAX).build().unwrap();
    trusting.pause_for(YEAR * 73);
    assert_eq!(trusting.paused_until(), Some(now + YEAR * 73));
    trusting.pause_for(Duration::MAX);
    assert!(trusting.paused_until().unwrap() >= now + YEAR * 73);
    // Zero turns pauses off.
    let deaf = Limiter::builder()
        .max_pause(Duration::ZERO)
        .build()
        .unwrap();
    deaf.pause_for(MINUTE);
    assert_eq!(deaf.paused_until(), None);
}

/// When a retried call that first hears `hint` makes its second attempt, if it does.
async fn second_attempt_after(policy: Retry<TooMany>, hint: Duration) -> Option<Duration> {
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let result = policy
        .run(|| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            std::future::ready(if first {
                Err(TooMany(hint))
            } else {
                Ok(start.elapsed())
            })
        })
        .await;
    match result {
        Ok(second) => Some(second),
        Err(error) => {
            // Ended at once, saying why.
            assert_eq!(start.elapsed(), Duration::ZERO);
            assert_eq!(error.attempts(), 1);
            assert_eq!(error.hint_too_long(), Some(hint));
            None
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_a_hint_up_to_its_cap_and_fails_fast_beyond() {
    // Regression: a retry slept for whatever the server said: 114 hours (openai-dotnet#404),
    // 31,700 years, or, for `Duration::MAX`, tokio's "far future".
    let policy = Retry::builder(3)
        .fixed(Duration::from_millis(10))
        .honor_retry_after()
        .build()
        .unwrap();
    assert_eq!(policy.max_retry_after(), MINUTE);
    for hint in hints() {
        let second = second_attempt_after(policy, hint).await;
        if hint <= MINUTE {
            assert_eq!(
                second,
                Some(hint.max(Duration::from_millis(10))),
                "{hint:?}"
            );
        } else {
            // A longer hint never retries sooner: it never retries at all.
            assert_eq!(second, None, "{hint:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_retry_cap_is_configurable_and_named_in_the_error() {
    let patient = Retry::builder(1)
        .honor_retry_after()
        .max_retry_after(Duration::from_secs(3600))
        .build()
        .unwrap();
    let hour = Duration::from_secs(3600);
    assert_eq!(second_attempt_after(patient, hour).await, Some(hour));
    let err = patient
        .run(|| async { Err::<(), _>(TooMany(hour * 2)) })
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed after 1 attempt: too many requests, retry after 7200s \
         (the server asked to wait 7200s, longer than the 3600s the policy waits)"
    );
    // The retries running out is not a hint's doing.
    let err = patient
        .run(|| async { Err::<(), _>(TooMany(Duration::from_secs(1))) })
        .await
        .unwrap_err();
    assert_eq!((err.attempts(), err.hint_too_long()), (2, None));
    // A policy that does not honour hints is not stopped by them.
    let deaf = Retry::fixed(1, Duration::from_millis(10));
    assert_eq!(
        second_attempt_after(deaf, Duration::MAX).await,
        Some(Duration::from_millis(10))
    );
}

#[tokio::test(start_paused = true)]
async fn a_hostile_hint_through_retry_call_pauses_the_limiter_for_its_cap_only() {
    let limiter = Limiter::builder().adaptive(Aimd::new()).build().unwrap();
    let policy = Retry::builder(5).honor_retry_after().build().unwrap();
    let start = Instant::now();
    let err = policy
        .call(&limiter, || async {
            Err::<(), _>(TooMany(Duration::from_secs(1_000_000_000_000)))
        })
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 1);
    assert_eq!(limiter.paused_until(), Some(start + MINUTE));
    let _next = limiter.acquire().await.unwrap();
    assert_eq!(start.elapsed(), MINUTE);
}

#[derive(Debug, PartialEq)]
enum ApiError {
    TooMany(Duration),
}

impl Backpressure for ApiError {
    fn is_overload(&self) -> bool {
        true
    }
    fn retry_after(&self) -> Option<Duration> {
        let ApiError::TooMany(after) = self;
        Some(*after)
    }
}

static CALLS: AtomicU32 = AtomicU32::new(0);

/// Answers its first call with "come back in 31,700 years", then succeeds.
#[gated(limit = 4, adaptive = "aimd", backpressure = true, retry = 3)]
async fn moderate() -> Result<Duration, ApiError> {
    if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(ApiError::TooMany(Duration::from_secs(1_000_000_000_000)));
    }
    Ok(Duration::ZERO)
}

#[tokio::test(start_paused = true)]
async fn gated_backpressure_caps_the_hint_too() {
    // Regression: `#[gated(backpressure = true)]` paused its limiter for 292 years and slept
    // for the hint before retrying.
    let start = Instant::now();
    assert_eq!(
        moderate().await,
        Err(ApiError::TooMany(Duration::from_secs(1_000_000_000_000)))
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "failed fast");
    assert_eq!(moderate().await, Ok(Duration::ZERO));
    assert_eq!(start.elapsed(), MINUTE, "the next call waited out the cap");
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
}
