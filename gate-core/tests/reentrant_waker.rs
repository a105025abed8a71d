//! A waker whose drop re-enters the gate (it holds one of the gate's permits, as an `ArcWake`
//! holding an `OwnedPermit` or a custom executor's task may) never deadlocks it: the gate
//! drops displaced wakers only after releasing its lock. tokio had the same bug
//! (tokio-rs/tokio#5429; its test `release_permits_at_drop`).

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use gate_core::{AcquireError, Gate, OwnedPermit};

/// A waker that holds a permit: dropping its last reference releases the permit.
struct HoldsPermit(#[allow(dead_code)] Mutex<Option<OwnedPermit>>);

impl Wake for HoldsPermit {
    fn wake(self: Arc<Self>) {}
}

/// A waker whose last drop gives `gate`'s only permit back.
fn waker_holding_the_permit(gate: &Arc<Gate>) -> Waker {
    let permit = Arc::clone(gate).try_acquire_owned().unwrap();
    Waker::from(Arc::new(HoldsPermit(Mutex::new(Some(permit)))))
}

/// Queues `acquire` with a waker that holds `gate`'s only permit, then lets go of that
/// waker: the queue holds the only reference to it, and dropping it releases the permit.
fn queue_with_a_permit_holding_waker<F: Future>(gate: &Arc<Gate>, acquire: Pin<&mut F>) {
    let holder = waker_holding_the_permit(gate);
    assert!(acquire.poll(&mut Context::from_waker(&holder)).is_pending());
}

/// Runs `f` on its own thread and fails the test, instead of hanging it, if `f` deadlocks.
fn without_deadlock(f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("the gate deadlocked: a waker was dropped under its lock");
}

// Regression: re-polling with another waker dropped the old one under the lock.
#[test]
fn replacing_the_waker_drops_the_old_one_after_the_lock() {
    without_deadlock(|| {
        let gate = Arc::new(Gate::new(1));
        let mut acquire = pin!(gate.acquire());
        queue_with_a_permit_holding_waker(&gate, acquire.as_mut());
        let mut cx = Context::from_waker(Waker::noop());
        // Displacing it releases the permit, which goes to this very waiter.
        assert!(acquire.as_mut().poll(&mut cx).is_pending());
        let Poll::Ready(permit) = acquire.as_mut().poll(&mut cx) else {
            panic!("the released permit was granted to the waiter");
        };
        drop(permit.unwrap());
        assert_eq!(gate.available_permits(), 1);
    });
}

// Regression: a cancelled waiter's waker was dropped under the lock.
#[test]
fn cancelling_drops_the_waker_after_the_lock() {
    without_deadlock(|| {
        let gate = Arc::new(Gate::new(1));
        {
            let mut acquire = pin!(gate.acquire());
            queue_with_a_permit_holding_waker(&gate, acquire.as_mut());
        }
        let stats = gate.stats();
        assert_eq!((stats.in_flight, stats.waiting), (0, 0));
        assert_eq!(gate.available_permits(), 1);
    });
}

// Regression: a timed-out waiter's waker was dropped under the lock.
#[test]
fn timing_out_drops_the_waker_after_the_lock() {
    without_deadlock(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let gate = Arc::new(Gate::new(1));
            let mut acquire = pin!(gate.acquire_timeout(Duration::from_millis(10)));
            queue_with_a_permit_holding_waker(&gate, acquire.as_mut());
            tokio::time::sleep(Duration::from_millis(20)).await;
            let result = std::future::poll_fn(|cx| acquire.as_mut().poll(cx)).await;
            assert_eq!(result.unwrap_err(), AcquireError::TimedOut);
            assert_eq!(gate.available_permits(), 1);
            assert_eq!(gate.stats().timed_out, 1);
        });
    });
}
