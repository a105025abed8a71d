//! A `Limiter`'s token budget: weighted admission, reserve then settle, refusals that never
//! wait, and the seam carrying tokens to any source.

use std::sync::Arc;
use std::time::Duration;

use gate_core::rate::{Rate, RateLimit};
use gate_core::{AcquireError, Admission, BoxAdmission, Gate, Limiter, Report, WaitLimits};
use tokio::time::Instant;

/// 6,000 tokens a minute: 100 a second, a bucket of 6,000.
fn budget() -> Limiter {
    Limiter::builder()
        .tokens("6000/min".parse().unwrap())
        .build()
        .unwrap()
}

fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

#[tokio::test(start_paused = true)]
async fn reservations_wait_for_the_tokens_they_need() {
    let api = budget();
    let start = Instant::now();
    let first = api.acquire_tokens(3_000).await.unwrap();
    let second = api.acquire_tokens(3_000).await.unwrap();
    assert_eq!(secs(start), 0.0, "the bucket holds both at once");
    assert_eq!(first.tokens(), 3_000);
    // The bucket is empty: 3,000 more come back in 30 s at 100 a second.
    let _third = api.acquire_tokens(3_000).await.unwrap();
    assert!((secs(start) - 30.0).abs() < 0.01, "{}", secs(start));
    drop((first, second));
}

#[tokio::test(start_paused = true)]
async fn settling_below_the_estimate_lets_later_callers_in_sooner() {
    let api = budget();
    let mut permit = api.acquire_tokens(6_000).await.unwrap();
    permit.settle(1_000);
    assert_eq!(permit.tokens(), 1_000);
    drop(permit);
    assert_eq!(api.token_limit().unwrap().remaining(), 5_000);
    let start = Instant::now();
    let _next = api.acquire_tokens(5_000).await.unwrap();
    assert_eq!(secs(start), 0.0);
}

#[tokio::test(start_paused = true)]
async fn settling_above_the_estimate_makes_later_callers_wait_for_it() {
    let api = budget();
    let mut permit = api.acquire_tokens(1_000).await.unwrap();
    // The answer ran long: 4,000 tokens spent in all.
    permit.settle(4_000);
    // A second settle corrects the first, it does not add to it.
    permit.settle(5_000);
    drop(permit);
    assert_eq!(api.token_limit().unwrap().remaining(), 1_000);
    let start = Instant::now();
    let _next = api.acquire_tokens(3_000).await.unwrap();
    assert!((secs(start) - 20.0).abs() < 0.01, "{}", secs(start));
}

#[tokio::test(start_paused = true)]
async fn an_unsettled_permit_keeps_its_estimate_charged() {
    let api = budget();
    let permit = api.acquire_tokens(2_500).await.unwrap();
    drop(permit);
    assert_eq!(api.token_limit().unwrap().remaining(), 3_500);
}

#[tokio::test(start_paused = true)]
async fn impossible_reservations_fail_at_once() {
    let api = budget();
    let start = Instant::now();
    assert_eq!(
        api.acquire_tokens(6_001).await.unwrap_err(),
        AcquireError::TooLarge {
            requested: 6_001,
            capacity: 6_000
        }
    );
    assert_eq!(
        api.acquire_tokens(0).await.unwrap_err(),
        AcquireError::ZeroCost
    );
    assert_eq!(
        Arc::new(budget())
            .acquire_owned_tokens(u64::MAX)
            .await
            .unwrap_err(),
        AcquireError::TooLarge {
            requested: u64::MAX,
            capacity: 6_000
        }
    );
    assert_eq!(secs(start), 0.0);
    // Nothing was taken.
    assert_eq!(api.token_limit().unwrap().remaining(), 6_000);
    assert!(
        AcquireError::TooLarge {
            requested: 7,
            capacity: 6
        }
        .to_string()
        .contains("capacity of 6")
    );
}

#[tokio::test(start_paused = true)]
async fn a_limiter_without_a_budget_ignores_estimates() {
    let api = Limiter::new(2);
    let permit = api.acquire_tokens(0).await.unwrap();
    assert_eq!(permit.tokens(), 0);
    let mut other = api.acquire_tokens(u64::MAX).await.unwrap();
    other.settle(10);
    assert_eq!(other.tokens(), 0);
    assert!(api.token_limit().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_reservation_gives_its_tokens_back() {
    let api = budget();
    let held = api.acquire_tokens(6_000).await.unwrap();
    // Waits 40 s for 4,000 tokens; given up after 10 s.
    let cancelled = tokio::time::timeout(Duration::from_secs(10), api.acquire_tokens(4_000)).await;
    assert!(cancelled.is_err());
    drop(held);
    // 1,000 tokens have come back in those 10 s, and the cancelled booking went back.
    assert_eq!(api.token_limit().unwrap().remaining(), 1_000);
}

#[tokio::test(start_paused = true)]
async fn tokens_and_requests_bind_together() {
    // 60 requests a minute (burst 1) and 6,000 tokens a minute.
    let api = Limiter::builder()
        .rate(Rate::per_minute(60))
        .tokens("6000/min".parse().unwrap())
        .concurrency(4)
        .build()
        .unwrap();
    let start = Instant::now();
    // Small requests: the request rate binds, one a second.
    for _ in 0..3 {
        let mut permit = api.acquire_tokens(10).await.unwrap();
        permit.settle(10);
    }
    assert!((secs(start) - 2.0).abs() < 0.01, "{}", secs(start));
    // A whole bucket: the tokens are there, the request cell is due at 3 s.
    let _big = api.acquire_tokens(6_000).await.unwrap();
    assert!((secs(start) - 3.0).abs() < 0.01, "{}", secs(start));
    // Another: the request cell is due at 4 s, the tokens a minute after the last bucket.
    let _bigger = api.acquire_tokens(6_000).await.unwrap();
    assert!((secs(start) - 63.0).abs() < 0.01, "{}", secs(start));
}

#[tokio::test(start_paused = true)]
async fn a_bounded_wait_for_tokens_times_out_and_is_counted() {
    let api = budget();
    let _all = api.acquire_tokens(6_000).await.unwrap();
    let limits = WaitLimits {
        max_wait: Some(Duration::from_secs(5)),
        ..WaitLimits::UNBOUNDED
    };
    let refused = api.acquire_tokens_with(1_000, limits).await;
    assert_eq!(refused.unwrap_err(), AcquireError::TimedOut);
    let at_once = WaitLimits {
        max_wait: Some(Duration::ZERO),
        ..WaitLimits::UNBOUNDED
    };
    assert_eq!(
        api.acquire_tokens_with(1_000, at_once).await.unwrap_err(),
        AcquireError::TimedOut
    );
    let stats = api.stats();
    assert_eq!((stats.timed_out, stats.rejected), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_pause_that_starts_while_waiting_for_tokens_returns_them() {
    let api = Arc::new(budget());
    let start = Instant::now();
    let held = api.acquire_tokens(6_000).await.unwrap();
    let waiter = tokio::spawn({
        let api = Arc::clone(&api);
        async move {
            let permit = api.acquire_tokens(1_000).await.unwrap();
            (permit.tokens(), secs(start))
        }
    });
    // The waiter's 1,000 tokens are due at 10 s; a pause from 9 s to 30 s holds it back.
    tokio::time::sleep(Duration::from_secs(9)).await;
    api.pause_for(Duration::from_secs(21));
    drop(held);
    let (tokens, admitted_at) = waiter.await.unwrap();
    assert_eq!(tokens, 1_000);
    assert!((admitted_at - 30.0).abs() < 0.01, "{admitted_at}");
    // Admitted after the pause, with its tokens charged once, not twice: at 30 s, 3,000
    // have come back and 1,000 of them are the waiter's.
    let remaining = api.token_limit().unwrap().remaining();
    assert!((1_900..=2_000).contains(&remaining), "{remaining}");
}

#[tokio::test(start_paused = true)]
async fn the_seam_carries_tokens_to_any_source() {
    let limiter = Arc::new(budget());
    let boxed = BoxAdmission::new(Arc::clone(&limiter));
    let mut permit = boxed
        .admit_tokens_with(4_000, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    Report::settle(&mut permit, 1_500);
    drop(permit);
    assert_eq!(limiter.token_limit().unwrap().remaining(), 4_500);
    let mut owned = boxed
        .admit_tokens_boxed(4_500, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    // Refused by the server, which charged nothing: all 4,500 go back.
    owned.settle(0);
    drop(owned);
    assert_eq!(limiter.token_limit().unwrap().remaining(), 4_500);
    // A gate has no budget: tokens are ignored, settling does nothing.
    let gate = Gate::new(1);
    let mut permit = gate
        .admit_tokens_with(u64::MAX, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    Report::settle(&mut permit, 3);
}

#[test]
fn a_token_rate_without_a_burst_holds_a_whole_period() {
    let limiter = Limiter::builder()
        .tokens("180000/min".parse().unwrap())
        .build()
        .unwrap();
    assert_eq!(limiter.token_limit().unwrap().capacity(), 180_000);
    let smaller = Limiter::builder()
        .tokens("180000/min (burst 30000)".parse().unwrap())
        .build()
        .unwrap();
    assert_eq!(smaller.token_limit().unwrap().capacity(), 30_000);
}

#[tokio::test(start_paused = true)]
async fn the_server_view_lowers_what_is_left_and_never_raises_it() {
    let tokens = RateLimit::new(Rate::per_minute(6_000).burst(6_000));
    tokens.lower_remaining_to(0);
    assert_eq!(tokens.remaining(), 0);
    assert!(tokens.check().is_err());
    // Refills at the limit's own rate from there.
    tokio::time::advance(Duration::from_millis(10)).await;
    assert_eq!(tokens.remaining(), 1);
    tokens.lower_remaining_to(6_000);
    tokens.lower_remaining_to(u64::MAX);
    assert_eq!(tokens.remaining(), 1);
    // Charging and refunding saturate rather than overflow.
    tokens.charge(u64::MAX);
    assert_eq!(tokens.remaining(), 0);
    tokens.refund(u64::MAX);
    assert_eq!(tokens.remaining(), 6_000);
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn the_server_headers_correct_the_limiter_and_never_raise_it() {
    use gate_core::hint::ServerLimits;

    let api = Limiter::builder()
        .rate("600/min (burst 600)".parse().unwrap())
        .tokens("6000/min".parse().unwrap())
        .build()
        .unwrap();
    let headers = |pairs: &[(&'static str, &'static str)]| {
        ServerLimits::from_pairs(pairs.iter().map(|(n, v)| (*n, v.as_bytes())))
    };
    // Anthropic's input tokens stand in when there is no combined window.
    api.observe(&headers(&[(
        "anthropic-ratelimit-input-tokens-remaining",
        "4000",
    )]));
    assert_eq!(api.token_limit().unwrap().remaining(), 4_000);
    // OpenAI's say fewer: believed; then more: not believed.
    api.observe(&headers(&[
        ("x-ratelimit-remaining-tokens", "1000"),
        ("x-ratelimit-remaining-requests", "2"),
    ]));
    api.observe(&headers(&[
        ("x-ratelimit-remaining-tokens", "5999"),
        ("x-ratelimit-remaining-requests", "599"),
    ]));
    assert_eq!(api.token_limit().unwrap().remaining(), 1_000);
    assert_eq!(api.rate_limit().unwrap().remaining(), 2);
    // So a reservation of 2,000 waits for 1,000 more, 10 s at 100 a second.
    let start = Instant::now();
    let _permit = api.acquire_tokens(2_000).await.unwrap();
    assert!((secs(start) - 10.0).abs() < 0.01, "{}", secs(start));
    // Hostile values: a count beyond u64 saturates (no effect), a Retry-After of 10^12 s
    // pauses for the cap.
    api.observe(&headers(&[
        ("x-ratelimit-remaining-tokens", "99999999999999999999999"),
        ("retry-after", "1000000000000"),
    ]));
    let paused = api.paused_until().unwrap() - Instant::now();
    assert_eq!(paused, Limiter::DEFAULT_MAX_PAUSE);
}
