//! Closing fails every waiter and every later acquire, and leaves held permits alone.

use gate_core::{AcquireError, Gate, TryAcquireError};
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready_err};

#[test]
fn close_wakes_every_waiter_with_an_error() {
    let gate = Gate::new(1);
    let held = gate.try_acquire().unwrap();
    let mut waiters: Vec<_> = (0..40).map(|_| spawn(gate.acquire())).collect();
    for w in &mut waiters {
        assert_pending!(w.poll());
    }

    gate.close();
    assert!(gate.is_closed());
    for w in &mut waiters {
        assert!(w.is_woken());
        assert_eq!(assert_ready_err!(w.poll()), AcquireError::Closed);
    }
    assert_eq!(gate.stats().waiting, 0);

    // Held permits stay valid and come back as usual.
    assert_eq!(gate.stats().in_flight, 1);
    drop(held);
    assert_eq!(gate.stats().in_flight, 0);
}

#[test]
fn acquiring_from_a_closed_gate_fails_at_once() {
    let gate = Gate::new(3);
    // Use the gate once, so its free permits sit on the lock-free path when it closes.
    drop(gate.try_acquire().unwrap());
    gate.close();
    assert_eq!(gate.try_acquire().unwrap_err(), TryAcquireError::Closed);
    let mut a = spawn(gate.acquire());
    assert_eq!(assert_ready_err!(a.poll()), AcquireError::Closed);
}

#[tokio::test]
async fn run_reports_a_closed_gate() {
    let gate = Gate::new(1);
    gate.close();
    assert_eq!(gate.run(async { 1 }).await, Err(AcquireError::Closed));
}
