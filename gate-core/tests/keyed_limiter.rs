//! `KeyedLimiter`: a limiter per key from a template, evicted only when idle (no permit out
//! and a full bucket), under a hard cap (paused clock).

use std::sync::Arc;
use std::time::Duration;

use gate_core::Limiter;
use gate_core::keyed::{KeyedAcquireError, KeyedLimiter, KeyedTryAcquireError};
use gate_core::rate::Rate;
use tokio::time::advance;

fn ten_a_second() -> Limiter {
    Limiter::builder()
        .rate(Rate::per_second(10).burst(1))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_rate() {
    let limits = KeyedLimiter::new(ten_a_second);
    let _a = limits.try_acquire(&'a').unwrap();
    assert_eq!(
        limits.try_acquire(&'a').unwrap_err(),
        KeyedTryAcquireError::NoPermits
    );
    let _b = limits.try_acquire(&'b').unwrap();
    advance(Duration::from_millis(100)).await;
    let _a = limits.try_acquire(&'a').unwrap();
    // A waiting acquire waits for its own key's next cell only.
    let started = tokio::time::Instant::now();
    let _a = limits.acquire(&'a').await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(limits.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_check_takes_a_cell_of_its_key_and_holds_nothing() {
    let limits = KeyedLimiter::builder(ten_a_second).max_keys(2).build();
    assert_eq!(limits.check(&'a'), Ok(()), "a new key");
    assert_eq!(limits.check(&'a'), Err(KeyedTryAcquireError::NoPermits));
    assert_eq!(limits.check(&'b'), Ok(()));
    let a = limits.limiter(&'a').unwrap();
    assert_eq!(Arc::strong_count(&a), 2, "the table's and this one only");
    assert_eq!((a.stats().admitted, a.stats().in_flight), (1, 0));
    drop(a);
    // Both buckets are empty, so neither key is idle: a new key is refused at the cap.
    assert_eq!(limits.check(&'c'), Err(KeyedTryAcquireError::TooManyKeys));
    advance(Duration::from_millis(100)).await;
    assert_eq!(limits.check(&'a'), Ok(()), "its next cell");
    assert_eq!(limits.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_key_whose_bucket_is_not_full_is_not_evicted_and_at_the_cap_a_new_key_is_refused() {
    let limits = KeyedLimiter::builder(ten_a_second).max_keys(2).build();
    drop(limits.try_acquire(&'a').unwrap());
    drop(limits.try_acquire(&'b').unwrap());
    // Both buckets are empty: evicting either would hand out a fresh burst.
    assert_eq!(
        limits.acquire(&'c').await.unwrap_err(),
        KeyedAcquireError::TooManyKeys
    );
    assert!(limits.contains_key(&'a') && limits.contains_key(&'b'));
    advance(Duration::from_millis(100)).await;
    // Refilled and unused: now idle, so the new key's sweep evicts both.
    let _c = limits.try_acquire(&'c').unwrap();
    assert_eq!(limits.len(), 1);
    assert!(limits.contains_key(&'c'));
}

#[tokio::test(start_paused = true)]
async fn a_key_with_a_permit_out_is_never_evicted() {
    let limits = KeyedLimiter::builder(|| Limiter::new(1))
        .max_keys(1)
        .build();
    let held = limits.acquire(&'a').await.unwrap();
    advance(Duration::from_secs(3_600)).await;
    assert_eq!(
        limits.try_acquire(&'b').unwrap_err(),
        KeyedTryAcquireError::TooManyKeys
    );
    drop(held);
    let _b = limits.try_acquire(&'b').unwrap();
    assert!(!limits.contains_key(&'a'));
}

#[tokio::test(start_paused = true)]
async fn an_evicted_key_comes_back_with_a_fresh_limiter() {
    let limits = KeyedLimiter::builder(ten_a_second).max_keys(1).build();
    drop(limits.try_acquire(&'a').unwrap());
    advance(Duration::from_millis(100)).await;
    drop(limits.try_acquire(&'b').unwrap());
    assert!(!limits.contains_key(&'a'));
    advance(Duration::from_millis(100)).await;
    // Its burst is whole again, as it was before eviction: nothing gained, nothing lost.
    let _a = limits.try_acquire(&'a').unwrap();
    assert!(limits.try_acquire(&'a').is_err());
}

#[tokio::test(start_paused = true)]
async fn a_paused_key_is_kept_until_its_pause_ends() {
    let limits = KeyedLimiter::builder(ten_a_second).max_keys(1).build();
    limits
        .limiter(&'a')
        .unwrap()
        .pause_for(Duration::from_secs(5));
    advance(Duration::from_secs(1)).await;
    assert!(limits.try_acquire(&'b').is_err());
    advance(Duration::from_secs(5)).await;
    assert!(limits.try_acquire(&'b').is_ok());
}

#[tokio::test(start_paused = true)]
async fn keys_streamed_through_are_evicted_as_their_buckets_refill() {
    const KEYS: u64 = 100_000;
    let limits = KeyedLimiter::builder(|| {
        Limiter::builder()
            .rate(Rate::per_second(1_000).burst(1))
            .build()
            .unwrap()
    })
    .max_idle(16)
    .build();
    let mut most = 0;
    for key in 0..KEYS {
        drop(limits.try_acquire(&key).unwrap());
        most = most.max(limits.len());
        // One new key every 100 µs: each bucket refills in 1 ms, ten keys later.
        advance(Duration::from_micros(100)).await;
    }
    println!("{KEYS} keys streamed: at most {most} in memory");
    // 16 kept, the 10 whose buckets are still refilling, and a few the sweep has marked
    // but not yet come back to: not 100,000.
    assert!(most <= 32, "{most} keys in memory");
}

// Regression: keys in steady use were swept out as soon as their buckets refilled, so a
// hot key made a new limiter (the costly part) on almost every check.
#[test]
fn keys_in_steady_use_keep_their_limiters() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let made = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&made);
    let limits = KeyedLimiter::new(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        Limiter::builder()
            .rate(Rate::per_second(1_000_000_000).burst(1_000))
            .build()
            .unwrap()
    });
    for i in 0..20_000u64 {
        assert!(limits.try_acquire(&(i % 1_000)).is_ok());
    }
    assert_eq!(made.load(Ordering::Relaxed), 1_000);
}

#[test]
fn its_futures_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let limits = KeyedLimiter::<String>::new(ten_a_second);
    let key = "k".to_string();
    assert_send(&limits.acquire(&key));
}

// Regression: a key was idle once its request bucket refilled, whatever its token budget
// owed, so evicting it and making it again handed out a fresh budget.
#[tokio::test(start_paused = true)]
async fn a_key_whose_token_budget_is_not_full_is_not_evicted() {
    let limits = KeyedLimiter::builder(|| {
        Limiter::builder()
            .rate(Rate::per_second(10).burst(1))
            .tokens(Rate::per_second(100).burst(100))
            .build()
            .unwrap()
    })
    .max_keys(1)
    .build();
    let mut permit = limits.try_acquire(&'a').unwrap();
    permit.settle(100);
    drop(permit);
    // The request bucket is full again, the token budget not (it refills in a second).
    advance(Duration::from_millis(500)).await;
    assert_eq!(
        limits.try_acquire(&'b').unwrap_err(),
        KeyedTryAcquireError::TooManyKeys
    );
    advance(Duration::from_millis(500)).await;
    assert!(limits.try_acquire(&'b').is_ok());
    assert!(!limits.contains_key(&'a'));
}
