//! The shared token budget: reservations across limiters on one key, settled in the
//! background, refusals that never wait, and the keys' TTLs.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gate_core::rate::Rate;
use gate_core::{AcquireError, Admission, Report, WaitLimits};
use gate_redis::{RedisLimiter, RedisLimiterBuilder};
use support::{eventually, key, server};
use tokio::time::Instant;

fn builder(key: &str) -> RedisLimiterBuilder {
    RedisLimiter::builder(server().client()).key(key)
}

/// 6,000 tokens a second: a bucket of 6,000, refilling 6 a millisecond.
fn budget(key: &str) -> Arc<RedisLimiter> {
    Arc::new(
        builder(key)
            .tokens("6000/s".parse().unwrap())
            .build()
            .unwrap(),
    )
}

/// The shared budget's state in Redis, as a TAT in microseconds, if it is stored.
fn stored_tat(key: &str) -> Option<u64> {
    let mut conn = server().connection();
    let value: Option<String> = redis::cmd("GET")
        .arg(format!("gate:{{{key}}}:tokens"))
        .query(&mut conn)
        .unwrap();
    value.map(|v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_budget() {
    let key = key("tokens-shared");
    let (a, b) = (budget(&key), budget(&key));
    let start = Instant::now();
    let held = a
        .admit_tokens_with(5_400, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    assert_eq!(held.tokens(), 5_400);
    // 600 left in Redis: 3,000 more need about 400 ms at 6 a millisecond.
    let waited = b
        .admit_tokens_with(3_000, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        (Duration::from_millis(350)..Duration::from_millis(900)).contains(&elapsed),
        "{elapsed:?}"
    );
    drop((held, waited));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_gives_back_what_was_not_used_to_every_process() {
    let key = key("tokens-refund");
    let (a, b) = (budget(&key), budget(&key));
    let mut permit = a
        .admit_tokens_with(6_000, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    // The answer used 500: 5,500 go back, in the background.
    permit.settle(500);
    assert_eq!(permit.tokens(), 500);
    drop(permit);
    assert!(
        eventually(Duration::from_secs(2), || stored_tat(&key).is_none_or(
            |tat| {
                let now = redis_now_micros();
                tat < now + 600_000
            }
        ))
        .await
    );
    let start = Instant::now();
    let _next = b
        .admit_tokens_with(5_000, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_beyond_the_estimate_is_owed_by_everyone() {
    let key = key("tokens-charge");
    let (a, b) = (budget(&key), budget(&key));
    let mut permit = a
        .admit_tokens_with(100, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    // It ran long: 6,000 in all, a whole bucket; and a hostile usage saturates, never wraps.
    permit.settle(6_000);
    drop(permit);
    assert!(
        eventually(Duration::from_secs(2), || stored_tat(&key)
            .is_some_and(|tat| tat > redis_now_micros() + 600_000))
        .await
    );
    let start = Instant::now();
    let _next = b
        .admit_tokens_with(3_000, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    let mut huge = a.admit_tokens_with(1, WaitLimits::UNBOUNDED).await.unwrap();
    huge.settle(u64::MAX);
    drop(huge);
    assert!(
        eventually(Duration::from_secs(2), || stored_tat(&key)
            .is_some_and(|tat| tat > redis_now_micros() + 3_600_000_000))
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_reservations_fail_at_once_without_a_round_trip() {
    let key = key("tokens-too-large");
    let limiter = budget(&key);
    assert_eq!(limiter.token_capacity(), Some(6_000));
    assert_eq!(
        limiter
            .acquire_tokens_with(6_001, WaitLimits::UNBOUNDED)
            .await
            .unwrap_err(),
        AcquireError::TooLarge {
            requested: 6_001,
            capacity: 6_000
        }
    );
    assert_eq!(
        limiter
            .acquire_tokens_with(0, WaitLimits::UNBOUNDED)
            .await
            .unwrap_err(),
        AcquireError::ZeroCost
    );
    assert_eq!(stored_tat(&key), None, "nothing was reserved");
    // Without a budget, estimates are ignored.
    let plain = builder(&key).concurrency(1).build().unwrap();
    let permit = plain
        .acquire_tokens_with(0, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    assert_eq!(permit.tokens(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_requests_and_permits_are_taken_together_or_not_at_all() {
    let key = key("tokens-together");
    let limiter = Arc::new(
        builder(&key)
            .concurrency(1)
            .rate(Rate::per_second(100).burst(10))
            .tokens("6000/s".parse().unwrap())
            .build()
            .unwrap(),
    );
    let held = limiter
        .admit_tokens_with(6_000, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    // The permit is taken: a caller that may not wait is refused and takes no tokens.
    let refused = limiter.admit_tokens_with(10, WaitLimits::NO_WAIT).await;
    assert_eq!(refused.unwrap_err(), AcquireError::TimedOut);
    drop(held);
    // The permit comes back at once; the tokens in a second: a bounded waiter times out.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let limits = WaitLimits {
        max_wait: Some(Duration::from_millis(200)),
        ..WaitLimits::UNBOUNDED
    };
    let timed_out = limiter.admit_tokens_with(6_000, limits).await;
    assert_eq!(timed_out.unwrap_err(), AcquireError::TimedOut);
    let start = Instant::now();
    let _later = limiter
        .admit_tokens_with(6_000, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_key_has_a_ttl() {
    let key = key("tokens-ttl");
    let limiter = budget(&key);
    let _permit = limiter
        .admit_tokens_with(3_000, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    let mut conn = server().connection();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("gate:{{{key}}}:tokens"))
        .query(&mut conn)
        .unwrap();
    assert!((1..=1_000).contains(&ttl), "{ttl}");
}

/// Redis's clock, in microseconds.
fn redis_now_micros() -> u64 {
    let mut conn = server().connection();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    secs * 1_000_000 + micros
}

#[cfg(feature = "http")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_process_hears_from_the_server_holds_for_all() {
    use gate_core::hint::ServerLimits;

    let key = key("tokens-observe");
    let (a, b) = (budget(&key), budget(&key));
    let said = |remaining: &'static str| {
        ServerLimits::from_pairs([("x-ratelimit-remaining-tokens", remaining.as_bytes())])
    };
    // More than we think: not believed. Fewer: believed, by every process.
    a.observe(&said("99999999999999999999999"));
    a.observe(&said("600"));
    assert!(
        eventually(Duration::from_secs(2), || stored_tat(&key).is_some()).await,
        "the correction reached Redis"
    );
    let start = Instant::now();
    let _permit = b
        .admit_tokens_with(3_000, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        (Duration::from_millis(300)..Duration::from_millis(900)).contains(&elapsed),
        "{elapsed:?}"
    );
}

// Regression: the interval between tokens was rounded up to a whole microsecond a token, so
// 30,000 tokens a second (33.334 µs apart) were booked 34 µs apart: the budget ran 2% slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fraction_of_a_microsecond_between_tokens_is_rounded_once_a_reservation() {
    let key = key("tokens-fraction");
    let rate: Rate = "30000/s".parse().unwrap();
    // gate-core's interval, rounded up to a whole nanosecond.
    assert_eq!(rate.interval(), Duration::from_nanos(33_334));
    let limiter = builder(&key).tokens(rate).build().unwrap();
    let before = redis_now_micros();
    let mut permit = limiter
        .admit_tokens_with(30_000, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    let after = redis_now_micros();
    // The whole bucket, from a full one: 30,000 x 33.334 µs ahead (1.02 s at 34 µs).
    let tat = stored_tat(&key).unwrap();
    assert!(
        (before + 1_000_020..=after + 1_000_020).contains(&tat),
        "booked {} µs ahead in a call of {} µs",
        tat - before,
        after - before
    );
    // Half of it given back: 15,000 x 33.334 µs.
    permit.settle(15_000);
    assert!(
        eventually(Duration::from_secs(2), || stored_tat(&key) != Some(tat)).await,
        "not settled"
    );
    assert_eq!(tat - stored_tat(&key).unwrap(), 500_010);
    drop(permit);
}
