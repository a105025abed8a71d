//! `RedisKeyedLimiter` through gate-core's `KeyedAdmission` seam, against a real
//! redis-server: a key whose rate has no cell within the caller's `max_wait` is refused at
//! once with the rate and Redis's wait (capped), a new key at the cap at once with
//! `TooManyKeys`, and an admitted key says what its rate has left.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gate_core::keyed::{KeyedAcquireError, KeyedAdmission, KeyedAdmit, KeyedAdmitError};
use gate_core::rate::Rate;
use gate_core::{AcquireError, WaitLimits};
use gate_redis::{RedisKeyedLimiter, RedisLimiter, RedisPermit};
use support::{key, server};
use tokio::time::Instant;

fn within(max_wait: Duration) -> WaitLimits {
    WaitLimits {
        max_wait: Some(max_wait),
        max_waiters: 16,
    }
}

/// What the seam said of `key`: at once, or once its future is done.
async fn admit(
    tenants: &Arc<RedisKeyedLimiter<String>>,
    key: &str,
    limits: WaitLimits,
) -> Result<RedisPermit, KeyedAdmitError> {
    match tenants.admit_key(key.to_owned(), limits) {
        KeyedAdmit::Admitted(permit) => Ok(permit),
        KeyedAdmit::Refused(refused) => Err(refused),
        KeyedAdmit::Wait(wait) => wait.await,
    }
}

fn keyed(prefix: &str, rate: Rate) -> Arc<RedisKeyedLimiter<String>> {
    let template = RedisLimiter::builder(server().client())
        .key(prefix)
        .rate(rate);
    Arc::new(RedisKeyedLimiter::new(template).unwrap())
}

#[tokio::test]
async fn a_rate_with_no_cell_within_max_wait_is_refused_at_once_with_redis_wait() {
    let rate = Rate::per_minute(1);
    let tenants = keyed(&key("seam-rate"), rate);
    let first = admit(&tenants, "a", within(Duration::from_secs(1))).await;
    let left = tenants.rate_left(&first.unwrap()).expect("a rate per key");
    assert_eq!((left.rate(), left.remaining()), (rate, 0));
    assert_eq!(left.next(), Duration::from_secs(60));

    let started = Instant::now();
    let refused = admit(&tenants, "a", within(Duration::from_secs(1))).await;
    // Refused when Redis answered, not when `max_wait` ran out.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let Err(KeyedAdmitError::RateLimited(refused)) = refused else {
        panic!("a rate refusal: {refused:?}")
    };
    assert_eq!(refused.rate(), rate);
    let wait = refused.wait();
    assert!(
        wait > Duration::from_secs(58) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    // Another key has its own rate.
    assert!(admit(&tenants, "b", within(Duration::ZERO)).await.is_ok());
}

// The same hook serves a plain limiter: no use waiting out `max_wait` for a cell due later.
#[tokio::test]
async fn a_limiters_rate_past_max_wait_times_out_at_once() {
    let limiter = RedisLimiter::builder(server().client())
        .key(key("seam-limiter"))
        .rate(Rate::per_minute(1))
        .build()
        .unwrap();
    let limits = within(Duration::from_secs(2));
    let _first = limiter.acquire_with(limits).await.unwrap();
    let started = Instant::now();
    let refused = limiter.acquire_with(limits).await.unwrap_err();
    assert_eq!(refused, AcquireError::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(limiter.stats().rejected, 1);
}

// A wait from Redis is a number anything with access to Redis can make huge: it is capped
// at what gate-tower advertises at most.
#[tokio::test]
async fn a_wait_past_the_advertised_cap_is_capped() {
    let rate = Rate::new(1, Duration::from_secs(30 * 24 * 3600)).unwrap();
    let tenants = keyed(&key("seam-cap"), rate);
    let _first = admit(&tenants, "a", within(Duration::ZERO)).await.unwrap();
    let refused = admit(&tenants, "a", within(Duration::ZERO)).await;
    let Err(KeyedAdmitError::RateLimited(refused)) = refused else {
        panic!("a rate refusal: {refused:?}")
    };
    assert_eq!(refused.wait(), Duration::from_millis(i32::MAX as u64));
}

#[tokio::test]
async fn a_new_key_at_the_cap_is_refused_at_once() {
    let template = RedisLimiter::builder(server().client())
        .key(key("seam-cap-keys"))
        .concurrency(1);
    let tenants = Arc::new(
        RedisKeyedLimiter::<String>::builder(template)
            .max_keys(1)
            .build()
            .unwrap(),
    );
    let held = admit(&tenants, "a", within(Duration::ZERO)).await.unwrap();
    // No rate: nothing left to say.
    assert!(tenants.rate_left(&held).is_none());
    let KeyedAdmit::Refused(refused) = tenants.admit_key("b".to_owned(), within(Duration::ZERO))
    else {
        panic!("refused without a round trip")
    };
    assert_eq!(
        refused,
        KeyedAdmitError::Acquire(KeyedAcquireError::TooManyKeys)
    );
    // The busy key's own limit refuses as a gate does.
    let busy = admit(&tenants, "a", within(Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(AcquireError::from(busy), AcquireError::TimedOut);
    drop(held);
}
