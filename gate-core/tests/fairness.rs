//! Strict FIFO: permits go to the longest waiter and nobody barges past the queue.

use gate_core::{Gate, TryAcquireError};
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready_ok};

#[test]
fn released_permits_go_to_waiters_in_arrival_order() {
    let gate = Gate::new(1);
    let held = gate.try_acquire().unwrap();
    let mut waiters: Vec<_> = (0..5).map(|_| spawn(gate.acquire())).collect();
    for w in &mut waiters {
        assert_pending!(w.poll());
    }

    drop(held);
    let mut order = Vec::new();
    for _ in 0..5 {
        let (i, permit) = waiters
            .iter_mut()
            .enumerate()
            .find_map(|(i, w)| match w.is_woken() {
                true => Some((i, assert_ready_ok!(w.poll()))),
                false => None,
            })
            .expect("exactly one waiter is woken per release");
        order.push(i);
        // Nobody else was woken while the permit is held.
        assert!(waiters.iter().all(|w| !w.is_woken()));
        drop(permit);
    }
    assert_eq!(order, [0, 1, 2, 3, 4]);
}

#[test]
fn try_acquire_cannot_barge_past_queued_waiters() {
    let gate = Gate::new(2);
    let big = gate.try_acquire_many(2).unwrap();
    let mut waiter = spawn(gate.acquire_many(2));
    assert_pending!(waiter.poll());

    drop(big);
    // Both permits went to the waiter, nothing is free.
    assert!(waiter.is_woken());
    assert_eq!(gate.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
    let permit = assert_ready_ok!(waiter.poll());
    assert_eq!(permit.num_permits(), 2);
}

#[test]
fn a_large_request_at_the_front_holds_up_smaller_ones_behind_it() {
    let gate = Gate::new(3);
    let one = gate.try_acquire().unwrap();
    let two = gate.try_acquire().unwrap();
    let mut big = spawn(gate.acquire_many(3));
    let mut small = spawn(gate.acquire());
    assert_pending!(big.poll());
    assert_pending!(small.poll());
    // One permit is free, but the small waiter may not take it ahead of the big one.
    assert_eq!(gate.available_permits(), 1);
    assert_eq!(gate.try_acquire().unwrap_err(), TryAcquireError::NoPermits);

    drop(one);
    assert!(!big.is_woken() && !small.is_woken());
    drop(two);
    assert!(big.is_woken());
    let big_permit = assert_ready_ok!(big.poll());
    assert_pending!(small.poll());
    drop(big_permit);
    assert!(small.is_woken());
    drop(assert_ready_ok!(small.poll()));
}

#[test]
fn try_acquire_succeeds_once_the_queue_is_empty() {
    let gate = Gate::new(1);
    let p = gate.try_acquire().unwrap();
    let mut w = spawn(gate.acquire());
    assert_pending!(w.poll());
    drop(p);
    drop(assert_ready_ok!(w.poll()));
    assert!(gate.try_acquire().is_ok());
}

/// The lock-free try, for middleware with a waiting path of its own: it takes a free
/// permit, never barges past a queue, finds nothing on a closed gate, and a miss is not a
/// rejection in the statistics (the caller goes on to wait, or refuses and counts that).
#[test]
fn the_uncontended_try_takes_only_what_nobody_waits_for() {
    let gate = std::sync::Arc::new(Gate::new(2));
    let first = gate.try_acquire_uncontended().expect("a permit is free");
    let second = gate
        .try_acquire_owned_uncontended()
        .expect("so is a second");
    assert_eq!(
        std::sync::Arc::strong_count(&gate),
        2,
        "the Arc is cloned on success"
    );
    assert!(gate.try_acquire_uncontended().is_none(), "none is left");
    assert_eq!(std::sync::Arc::strong_count(&gate), 2, "and not on a miss");

    let mut waiter = spawn(gate.acquire());
    assert_pending!(waiter.poll());
    drop(first);
    assert!(
        gate.try_acquire_uncontended().is_none(),
        "the freed permit is the waiter's"
    );
    let granted = assert_ready_ok!(waiter.poll());
    drop(second);
    let stats = gate.stats();
    assert_eq!((stats.admitted, stats.rejected), (3, 0));

    gate.close();
    drop(granted);
    assert!(gate.try_acquire_uncontended().is_none(), "closed");
}
