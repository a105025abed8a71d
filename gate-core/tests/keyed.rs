//! `KeyedGate`: per-key limits, the cap on keys and idle eviction, two levels, bounded waits
//! and cancellation, and the admission seam.

use std::sync::Arc;
use std::time::Duration;

use gate_core::keyed::{KeyedAcquireError, KeyedGate, KeyedTryAcquireError};
use gate_core::{AcquireError, Admission, Batch, BoxAdmission, OwnedAdmission, Retry};
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready_ok};

#[test]
fn each_key_admits_its_own_limit() {
    let gate = KeyedGate::new(2);
    let a1 = gate.try_acquire(&"a").unwrap();
    let _a2 = gate.try_acquire(&"a").unwrap();
    assert_eq!(
        gate.try_acquire(&"a").unwrap_err(),
        KeyedTryAcquireError::NoPermits
    );
    let _b = gate.try_acquire(&"b").unwrap();
    assert_eq!((gate.key_in_flight(&"a"), gate.in_flight()), (2, 3));
    drop(a1);
    assert!(gate.try_acquire(&"a").is_ok());
    assert_eq!(gate.len(), 2);
}

#[test]
fn a_waiter_is_woken_by_its_keys_release_and_not_by_another_keys() {
    let gate = KeyedGate::new(1);
    let a = gate.try_acquire(&1u32).unwrap();
    let b = gate.try_acquire(&2u32).unwrap();
    let mut waiter = spawn(gate.acquire(&1u32));
    assert_pending!(waiter.poll());
    assert_eq!(gate.waiting(), 1);
    drop(b);
    assert!(!waiter.is_woken());
    drop(a);
    assert!(waiter.is_woken());
    let permit = assert_ready_ok!(waiter.poll());
    assert_eq!((gate.key_in_flight(&1), gate.waiting()), (1, 0));
    drop(permit);
    assert_eq!(gate.in_flight(), 0);
}

#[test]
fn a_callers_own_key_queue_is_first_in_first_out() {
    let gate = KeyedGate::new(1);
    let held = gate.try_acquire(&"k").unwrap();
    let mut first = spawn(gate.acquire(&"k"));
    let mut second = spawn(gate.acquire(&"k"));
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    // Nobody barges past a queue.
    assert!(gate.try_acquire(&"k").is_err());
    drop(held);
    assert!(first.is_woken() && !second.is_woken());
    let permit = assert_ready_ok!(first.poll());
    assert_pending!(second.poll());
    drop(permit);
    let _second = assert_ready_ok!(second.poll());
}

#[test]
fn at_the_cap_the_least_recently_used_idle_key_is_evicted() {
    let gate = KeyedGate::builder(1)
        .max_keys(3)
        .max_idle(3)
        .build()
        .unwrap();
    for key in [1u64, 2, 3] {
        drop(gate.try_acquire(&key).unwrap());
    }
    // 1 is used again, so 2 is now the least recently used.
    drop(gate.try_acquire(&1).unwrap());
    assert_eq!((gate.len(), gate.idle_len()), (3, 3));
    let _four = gate.try_acquire(&4).unwrap();
    assert_eq!(gate.len(), 3);
    assert!(!gate.contains_key(&2));
    assert!(gate.contains_key(&1) && gate.contains_key(&3) && gate.contains_key(&4));
}

// A key taken again stays where it was on the idle list (so that an admission moves no
// neighbour's links): an eviction that meets it busy there must pass over it, and once
// idle again it must be put back at the end, behind the keys idle since before.
#[test]
fn a_busy_key_left_at_the_front_of_the_idle_list_is_passed_over_not_evicted() {
    let gate = KeyedGate::builder(1)
        .max_keys(3)
        .max_idle(3)
        .build()
        .unwrap();
    for key in [1u64, 2, 3] {
        drop(gate.try_acquire(&key).unwrap());
    }
    let one = gate.try_acquire(&1).unwrap();
    assert_eq!((gate.len(), gate.idle_len()), (3, 2));
    drop(gate.try_acquire(&4).unwrap());
    assert!(!gate.contains_key(&2));
    assert_eq!(gate.key_in_flight(&1), 1);
    drop(one);
    assert_eq!((gate.len(), gate.idle_len()), (3, 3));
    // 3 is now the least recently used: idle before 4 went idle, and before 1 did again.
    drop(gate.try_acquire(&5).unwrap());
    assert!(!gate.contains_key(&3));
    assert!(gate.contains_key(&1) && gate.contains_key(&4) && gate.contains_key(&5));
    assert_eq!((gate.len(), gate.idle_len(), gate.in_flight()), (3, 3, 0));
}

#[tokio::test]
async fn at_the_cap_with_every_key_busy_a_new_key_is_refused_rather_than_grown() {
    let gate = KeyedGate::builder(1).max_keys(2).build().unwrap();
    let one = gate.try_acquire(&1u64).unwrap();
    let _two = gate.try_acquire(&2u64).unwrap();
    assert_eq!(
        gate.try_acquire(&3).unwrap_err(),
        KeyedTryAcquireError::TooManyKeys
    );
    assert_eq!(
        gate.acquire(&3).await.unwrap_err(),
        KeyedAcquireError::TooManyKeys
    );
    // A refused key takes no room, and keys already in memory are still served.
    assert_eq!(gate.len(), 2);
    assert!(gate.try_acquire(&1).is_err());
    drop(one);
    let _three = gate.acquire(&3).await.unwrap();
    assert!(!gate.contains_key(&1));
    assert_eq!(gate.len(), 2);
}

#[test]
fn an_evicted_key_comes_back_with_fresh_state_and_no_lost_permits() {
    let gate = KeyedGate::builder(3).max_idle(1).build().unwrap();
    let held: Vec<_> = (0..3).map(|_| gate.try_acquire(&"a").unwrap()).collect();
    drop(held);
    // "b" going idle pushes "a" out of the one idle place.
    drop(gate.try_acquire(&"b").unwrap());
    assert!(!gate.contains_key(&"a"));
    assert_eq!(gate.len(), 1);
    let held: Vec<_> = (0..3).map(|_| gate.try_acquire(&"a").unwrap()).collect();
    assert!(gate.try_acquire(&"a").is_err());
    assert_eq!(gate.key_in_flight(&"a"), 3);
    drop(held);
    assert_eq!(gate.in_flight(), 0);
}

#[test]
fn a_busy_key_is_never_evicted() {
    let gate = KeyedGate::builder(1).max_idle(0).build().unwrap();
    let held = gate.try_acquire(&0u64).unwrap();
    let mut waiter = spawn(gate.acquire(&0u64));
    assert_pending!(waiter.poll());
    for key in 1..100u64 {
        drop(gate.try_acquire(&key).unwrap());
    }
    assert_eq!(gate.len(), 1);
    drop(held);
    let permit = assert_ready_ok!(waiter.poll());
    drop(permit);
    // With no idle place, an idle key is evicted at once.
    assert_eq!(gate.len(), 0);
}

#[test]
fn the_global_limit_binds_across_keys() {
    let gate = KeyedGate::builder(2).global(3).build().unwrap();
    let _a1 = gate.try_acquire(&'a').unwrap();
    let _a2 = gate.try_acquire(&'a').unwrap();
    let b1 = gate.try_acquire(&'b').unwrap();
    assert!(gate.try_acquire(&'b').is_err());
    assert!(gate.try_acquire(&'c').is_err());
    assert_eq!(gate.global_limit(), Some(3));
    drop(b1);
    assert!(gate.try_acquire(&'c').is_ok());
}

#[test]
fn max_waiters_counts_the_callers_of_one_key() {
    let gate = KeyedGate::builder(1).max_waiters(1).build().unwrap();
    let _a = gate.try_acquire(&'a').unwrap();
    let _b = gate.try_acquire(&'b').unwrap();
    let mut a_waits = spawn(gate.acquire(&'a'));
    assert_pending!(a_waits.poll());
    let mut a_refused = spawn(gate.acquire(&'a'));
    assert!(matches!(
        a_refused.poll(),
        std::task::Poll::Ready(Err(KeyedAcquireError::QueueFull))
    ));
    // Another key's queue is its own.
    let mut b_waits = spawn(gate.acquire(&'b'));
    assert_pending!(b_waits.poll());
    assert_eq!(gate.waiting(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_times_out_after_max_wait_and_leaves_the_queue() {
    let gate = KeyedGate::builder(1)
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    let _held = gate.try_acquire(&"k").unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(
        gate.acquire(&"k").await.unwrap_err(),
        KeyedAcquireError::TimedOut
    );
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(gate.waiting(), 0);
    // Zero never waits.
    let refused = gate
        .acquire_with(&"k", gate_core::WaitLimits::NO_WAIT)
        .await;
    assert_eq!(refused.unwrap_err(), KeyedAcquireError::TimedOut);
}

#[test]
fn a_granted_future_dropped_before_collecting_passes_its_permit_on() {
    let gate = KeyedGate::builder(1).global(1).build().unwrap();
    let held = gate.try_acquire(&'a').unwrap();
    let mut granted = spawn(gate.acquire(&'b'));
    let mut next = spawn(gate.acquire(&'c'));
    assert_pending!(granted.poll());
    assert_pending!(next.poll());
    drop(held);
    assert!(granted.is_woken());
    // Granted, never polled again: dropping it releases the permit to the next key.
    drop(granted);
    assert!(next.is_woken());
    let permit = assert_ready_ok!(next.poll());
    assert_eq!((gate.in_flight(), gate.waiting()), (1, 0));
    drop(permit);
    assert_eq!(gate.in_flight(), 0);
}

#[test]
fn a_cancelled_waiter_takes_its_key_off_the_ring() {
    let gate = KeyedGate::builder(1).global(1).build().unwrap();
    let held = gate.try_acquire(&'a').unwrap();
    let mut cancelled = spawn(gate.acquire(&'b'));
    let mut next = spawn(gate.acquire(&'c'));
    assert_pending!(cancelled.poll());
    assert_pending!(next.poll());
    drop(cancelled);
    assert_eq!(gate.waiting(), 1);
    drop(held);
    let _next = assert_ready_ok!(next.poll());
}

#[tokio::test]
async fn owned_permits_outlive_the_borrow_of_the_gate() {
    let gate = Arc::new(KeyedGate::new(1));
    let permit = Arc::clone(&gate)
        .acquire_owned("k".to_string())
        .await
        .unwrap();
    assert!(gate.try_acquire_owned(&"k".to_string()).is_err());
    let waiter = tokio::spawn(Arc::clone(&gate).acquire_owned("k".to_string()));
    tokio::task::yield_now().await;
    drop(permit);
    let again = waiter.await.unwrap().unwrap();
    assert_eq!(again.gate().key_in_flight(&"k".to_string()), 1);
}

#[tokio::test]
async fn a_key_handle_admits_through_the_seam() {
    let gate = Arc::new(KeyedGate::builder(2).global(3).build().unwrap());
    let tenant = Arc::new(gate.handle(7u64));
    assert_eq!(tenant.capacity(), Some(2));

    let answer = Retry::new(0)
        .call(&*tenant, || async { Ok::<_, ()>(gate.key_in_flight(&7)) })
        .await;
    assert_eq!(answer.ok(), Some(1));

    let report = Batch::new(&*tenant)
        .run(0..20u32, |i| {
            let gate = Arc::clone(&gate);
            async move {
                assert!(gate.key_in_flight(&7) <= 2);
                tokio::task::yield_now().await;
                Ok::<_, ()>(i)
            }
        })
        .await;
    assert!(report.all_succeeded());

    let boxed = Arc::new(BoxAdmission::new(Arc::clone(&tenant)));
    let one = boxed.try_admit_owned().unwrap();
    let two = Arc::clone(&boxed).admit_owned().await.unwrap();
    assert!(boxed.try_admit().is_none());
    assert_eq!(gate.key_in_flight(&7), 2);
    drop((one, two));
    assert_eq!(gate.in_flight(), 0);
}

#[tokio::test]
async fn through_the_seam_too_many_keys_reads_as_a_full_queue() {
    let gate = Arc::new(KeyedGate::builder(1).max_keys(1).build().unwrap());
    let _held = gate.try_acquire(&1u64).unwrap();
    let other = gate.handle(2u64);
    assert_eq!(other.admit().await.unwrap_err(), AcquireError::QueueFull);
    assert!(other.try_admit().is_none());
}
