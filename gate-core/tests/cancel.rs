//! Dropping an acquire future at any poll point gives back what it held.

use gate_core::Gate;
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready_ok};

#[test]
fn dropping_before_the_first_poll_holds_nothing() {
    let gate = Gate::new(1);
    drop(gate.acquire());
    assert_eq!(gate.available_permits(), 1);
    assert_eq!(gate.stats().waiting, 0);
}

#[test]
fn dropping_a_queued_waiter_removes_it_from_the_queue() {
    let gate = Gate::new(1);
    let held = gate.try_acquire().unwrap();
    let mut a = spawn(gate.acquire());
    let mut b = spawn(gate.acquire());
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_eq!(gate.stats().waiting, 2);

    drop(a);
    assert_eq!(gate.stats().waiting, 1);
    drop(held);
    assert!(b.is_woken());
    drop(assert_ready_ok!(b.poll()));
}

#[test]
fn dropping_the_head_waiter_lets_those_behind_it_in() {
    // The head wants 2; one permit is free; the waiter behind wants 1.
    let gate = Gate::new(2);
    let held = gate.try_acquire().unwrap();
    let mut head = spawn(gate.acquire_many(2));
    let mut next = spawn(gate.acquire());
    assert_pending!(head.poll());
    assert_pending!(next.poll());

    drop(head);
    // The free permit now fits the next waiter: it must not be stranded.
    assert!(next.is_woken());
    let next_permit = assert_ready_ok!(next.poll());
    drop((held, next_permit));
    assert_eq!(gate.available_permits(), 2);
}

#[test]
fn dropping_a_waiter_that_was_granted_but_not_polled_returns_its_permits() {
    let gate = Gate::new(1);
    let held = gate.try_acquire().unwrap();
    let mut granted = spawn(gate.acquire());
    let mut after = spawn(gate.acquire());
    assert_pending!(granted.poll());
    assert_pending!(after.poll());

    drop(held);
    assert!(granted.is_woken());
    // The permit belongs to `granted` now, but it never collects it.
    drop(granted);
    assert!(after.is_woken());
    let permit = assert_ready_ok!(after.poll());
    drop(permit);
    assert_eq!(gate.available_permits(), 1);
    assert_eq!(gate.stats().in_flight, 0);
}

#[test]
fn dropping_a_completed_acquire_keeps_the_permit_it_returned() {
    let gate = Gate::new(1);
    let mut a = spawn(gate.acquire());
    let permit = assert_ready_ok!(a.poll());
    drop(a);
    assert_eq!(gate.available_permits(), 0);
    drop(permit);
    assert_eq!(gate.available_permits(), 1);
}

#[tokio::test]
async fn a_panicking_task_releases_its_permit() {
    let gate = std::sync::Arc::new(Gate::new(1));
    let g = gate.clone();
    let task = tokio::spawn(async move {
        let _permit = g.acquire().await.unwrap();
        panic!("boom");
    });
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(gate.available_permits(), 1);
}

#[tokio::test]
async fn an_aborted_waiting_task_leaves_no_trace() {
    let gate = std::sync::Arc::new(Gate::new(1));
    let held = gate.try_acquire().unwrap();
    let g = gate.clone();
    let task = tokio::spawn(async move { g.acquire_owned().await.map(drop) });
    tokio::task::yield_now().await;
    assert_eq!(gate.stats().waiting, 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(gate.stats().waiting, 0);
    drop(held);
    assert_eq!(gate.available_permits(), 1);
}
