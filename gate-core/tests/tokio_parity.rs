//! What users porting from `tokio::sync::Semaphore` reach for, with tokio's semantics; several
//! cases follow tokio's own `tests/sync_semaphore.rs`.

use std::sync::Arc;

use gate_core::{AcquireError, Gate, TryAcquireError};
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready_ok};

// Regression: `acquire_many(0)` waited behind a queue; tokio answers at once.
#[tokio::test]
async fn zero_permits_are_granted_at_once_even_behind_a_queue() {
    let gate = Gate::new(1);
    let held = gate.try_acquire().unwrap();
    let mut queued = spawn(gate.acquire());
    assert_pending!(queued.poll());
    let none = gate.acquire_many(0).await.unwrap();
    assert_eq!(none.num_permits(), 0);
    assert_eq!(gate.try_acquire_many(0).unwrap().num_permits(), 0);
    drop(none);
    drop(held);
    drop(assert_ready_ok!(queued.poll()));
    gate.close();
    assert_eq!(
        gate.acquire_many(0).await.unwrap_err(),
        AcquireError::Closed
    );
    assert_eq!(
        gate.try_acquire_many(0).unwrap_err(),
        TryAcquireError::Closed
    );
}

#[test]
fn add_permits_raises_the_limit_and_admits_waiters() {
    let gate = Gate::new(0);
    let mut waiter = spawn(gate.acquire_many(2));
    assert_pending!(waiter.poll());
    gate.add_permits(1);
    assert_pending!(waiter.poll());
    gate.add_permits(1);
    assert!(waiter.is_woken());
    let permit = assert_ready_ok!(waiter.poll());
    assert_eq!((permit.num_permits(), gate.limit()), (2, 2));
}

#[test]
#[should_panic(expected = "would exceed Gate::MAX_PERMITS")]
fn add_permits_past_the_maximum_panics() {
    Gate::new(Gate::MAX_PERMITS).add_permits(1);
}

// `set_limit(limit() + 1)` from two threads can lose an update; `add_permits` cannot.
#[test]
fn concurrent_add_permits_lose_no_update() {
    let gate = Arc::new(Gate::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || (0..1_000).for_each(|_| gate.add_permits(1)))
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(gate.limit(), 4_000);
    assert_eq!(gate.available_permits(), 4_000);
}

#[test]
fn forget_permits_takes_only_free_ones() {
    let gate = Gate::new(5);
    let held = gate.try_acquire_many(2).unwrap();
    assert_eq!(gate.forget_permits(10), 3);
    assert_eq!((gate.limit(), gate.available_permits()), (2, 0));
    assert_eq!(gate.forget_permits(1), 0);
    drop(held);
    assert_eq!(gate.available_permits(), 2);
}

#[test]
fn a_forgotten_permit_leaves_the_gate_for_good() {
    let gate = Gate::new(3);
    gate.try_acquire_many(2).unwrap().forget();
    assert_eq!((gate.limit(), gate.available_permits()), (1, 1));
    let gate = Arc::new(Gate::new(3));
    Arc::clone(&gate).try_acquire_owned().unwrap().forget();
    assert_eq!((gate.limit(), gate.available_permits()), (2, 2));
    // Forgetting while a shrink drains never takes the limit below zero.
    let held = gate.try_acquire_many(2).unwrap();
    gate.set_limit(1).unwrap();
    held.forget();
    assert_eq!((gate.limit(), gate.available_permits()), (0, 0));
    gate.add_permits(1);
    assert_eq!(gate.available_permits(), 1);
}

#[test]
fn split_and_merge_move_permits_between_guards() {
    let gate = Gate::new(5);
    let mut permit = gate.try_acquire_many(4).unwrap();
    assert!(permit.split(5).is_none(), "cannot split more than it holds");
    let part = permit.split(3).unwrap();
    assert_eq!((permit.num_permits(), part.num_permits()), (1, 3));
    drop(part);
    assert_eq!(gate.available_permits(), 4);
    permit.merge(gate.try_acquire_many(2).unwrap());
    assert_eq!((permit.num_permits(), gate.available_permits()), (3, 2));
    drop(permit);
    assert_eq!(gate.available_permits(), 5);

    let gate = Arc::new(Gate::new(5));
    let mut owned = Arc::clone(&gate).try_acquire_many_owned(4).unwrap();
    let part = owned.split(1).unwrap();
    assert_eq!((owned.num_permits(), part.num_permits()), (3, 1));
    owned.merge(part);
    assert_eq!((owned.num_permits(), gate.available_permits()), (4, 1));
    drop(owned);
    assert_eq!(gate.available_permits(), 5);
}

#[test]
#[should_panic(expected = "different gates")]
fn merging_permits_of_two_gates_panics() {
    let (a, b) = (Gate::new(1), Gate::new(1));
    let mut permit = a.try_acquire().unwrap();
    permit.merge(b.try_acquire().unwrap());
}

#[tokio::test]
async fn owned_many_permits_can_be_taken_and_awaited() {
    let gate = Arc::new(Gate::new(3));
    let permit = Arc::clone(&gate).try_acquire_many_owned(3).unwrap();
    assert_eq!(
        Arc::clone(&gate).try_acquire_many_owned(1).unwrap_err(),
        TryAcquireError::NoPermits
    );
    let mut waiter = spawn(Arc::clone(&gate).acquire_many_owned(2));
    assert_pending!(waiter.poll());
    drop(permit);
    assert_eq!(assert_ready_ok!(waiter.poll()).num_permits(), 2);
}

// Regression: a zero `max_wait` refusal was counted as `timed_out`; it never waited, so it
// is a rejection.
#[tokio::test]
async fn a_zero_wait_refusal_counts_as_rejected() {
    let gate = Gate::builder(1)
        .max_wait(std::time::Duration::ZERO)
        .build()
        .unwrap();
    let _held = gate.try_acquire().unwrap();
    assert_eq!(gate.acquire().await.unwrap_err(), AcquireError::TimedOut);
    let stats = gate.stats();
    assert_eq!((stats.rejected, stats.timed_out), (1, 0));
}
