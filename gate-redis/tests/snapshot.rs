//! `RedisLimiter::stats` (the seam's `Admission::snapshot`): the shared state as Redis last
//! answered this process, and this process's own counts; and the held set's TTL kept ahead
//! of the permits admitted into it.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gate_core::rate::Rate;
use gate_core::{AcquireError, Admission, WaitLimits};
use gate_redis::{RedisLimiter, RedisLimiterBuilder};
use support::{eventually, key, server};

fn builder(key: &str) -> RedisLimiterBuilder {
    RedisLimiter::builder(server().client()).key(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_shows_the_shared_state_as_last_seen_and_this_processs_counts() {
    let key = key("snapshot");
    let a = Arc::new(builder(&key).concurrency(3).build().unwrap());
    let b = Arc::new(builder(&key).concurrency(3).build().unwrap());
    let before = a.snapshot().expect("a redis limiter keeps statistics");
    assert_eq!((before.limit, before.in_flight, before.admitted), (3, 0, 0));

    let first = a.admit().await.unwrap();
    let second = a.admit().await.unwrap();
    let stats = a.stats();
    assert_eq!((stats.in_flight, stats.waiting, stats.admitted), (2, 0, 2));
    assert_eq!(stats.wait.count, 2);

    // Another process's admission is seen by that process, and by this one only when it
    // next hears from Redis.
    let third = b.admit().await.unwrap();
    assert_eq!(b.stats().in_flight, 3);
    assert_eq!(a.stats().in_flight, 2, "as last seen, not refreshed");

    // Refused at once, timed out, cancelled: counted where it happened.
    assert_eq!(
        b.admit_with(WaitLimits::NO_WAIT).await.unwrap_err(),
        AcquireError::TimedOut
    );
    let bounded = WaitLimits {
        max_wait: Some(Duration::from_millis(100)),
        ..WaitLimits::UNBOUNDED
    };
    assert_eq!(
        b.admit_with(bounded).await.unwrap_err(),
        AcquireError::TimedOut
    );
    assert!(
        eventually(Duration::from_secs(2), || queued(&key) == 0).await,
        "the timed-out caller's place was given back"
    );
    let waiter = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.admit().await.map(drop) })
    };
    assert!(
        eventually(Duration::from_secs(2), || queued(&key) == 1).await,
        "the waiter queued"
    );
    assert!(
        eventually(Duration::from_secs(2), || b.stats().waiting == 1).await,
        "the queued waiter's reply showed it queued: {:?}",
        b.stats()
    );
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    let stats = b.stats();
    assert_eq!(
        (
            stats.admitted,
            stats.rejected,
            stats.timed_out,
            stats.cancelled
        ),
        (1, 1, 1, 1),
        "{stats:?}"
    );

    // A release's reply brings the count up to date. One at a time: two releases sent
    // apart are answered in order, but their replies may be read in either order by the
    // tasks that sent them, and the count is the last one read.
    drop(first);
    a.flush().await;
    assert_eq!(a.stats().in_flight, 2, "second and third");
    drop(second);
    a.flush().await;
    assert_eq!(a.stats().in_flight, 1, "third: {:?}", a.stats());
    drop(third);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_remains_of_the_rate_and_the_budget_is_what_the_last_admission_left() {
    let key = key("snapshot-rate");
    let limiter = builder(&key)
        .rate(Rate::per_minute(60).burst(5))
        .tokens("1000/min".parse().unwrap())
        .build()
        .unwrap();
    assert_eq!(limiter.rate_remaining(), None, "nothing seen yet");
    assert_eq!(limiter.tokens_remaining(), None);
    let _permit = limiter
        .admit_tokens_with(300, WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    assert_eq!(limiter.rate_remaining(), Some(4));
    assert_eq!(limiter.tokens_remaining(), Some(700));
    let _second = limiter.admit().await.unwrap();
    assert_eq!(limiter.rate_remaining(), Some(3));
    // A rate-only limiter has no concurrency to report.
    let stats = limiter.stats();
    assert_eq!((stats.limit, stats.in_flight, stats.admitted), (0, 0, 2));
    let without = builder(&key).concurrency(1).build().unwrap();
    assert_eq!(without.rate_remaining(), None);
}

/// Callers queued in Redis for `key`.
fn queued(key: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(format!("gate:{{{key}}}:queue"))
        .query(&mut server().connection())
        .unwrap()
}

/// Redis's remaining TTL of the held set of `key`, in milliseconds.
fn held_ttl(key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(format!("gate:{{{key}}}:held"))
        .query(&mut server().connection())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_admitted_late_in_the_held_sets_life_extends_it() {
    // The set's TTL is renewed only when less than a lease is left: one admitted then must
    // renew it, or the set (and the permit) could vanish before the holder's first renewal.
    let key = key("held-ttl");
    let lease = Duration::from_millis(500);
    // A holder that crashed with its permit: the set lives on with nobody renewing it.
    {
        let key = key.clone();
        support::crash_holding_a_permit(move || {
            builder(&key).concurrency(4).lease(lease).build().unwrap()
        });
    }
    let ttl = held_ttl(&key);
    assert!(ttl > 0 && ttl <= 1_000, "{ttl}");
    tokio::time::sleep(lease * 3 / 2).await;
    assert!(held_ttl(&key) < 500, "{}", held_ttl(&key));
    let limiter = builder(&key).concurrency(4).lease(lease).build().unwrap();
    let _permit = limiter.admit().await.unwrap();
    let ttl = held_ttl(&key);
    assert!(
        ttl >= 500,
        "the set expires in {ttl} ms, before the permit's lease"
    );
}
