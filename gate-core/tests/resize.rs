//! `set_limit` grows at once, shrinks as permits come back, and never loses or duplicates a
//! permit; limits beyond the maximum are refused before anything changes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gate_core::{Gate, TryAcquireError};
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready_ok};

mod support;
use support::InFlight;

#[test]
fn growing_admits_waiters_at_once() {
    let gate = Gate::new(1);
    let held = gate.try_acquire().unwrap();
    let mut a = spawn(gate.acquire());
    let mut b = spawn(gate.acquire());
    assert_pending!(a.poll());
    assert_pending!(b.poll());

    gate.set_limit(3).unwrap();
    assert!(a.is_woken() && b.is_woken());
    let pa = assert_ready_ok!(a.poll());
    let pb = assert_ready_ok!(b.poll());
    assert_eq!(gate.stats().in_flight, 3);
    drop((held, pa, pb));
    assert_eq!(gate.available_permits(), 3);
}

#[test]
fn shrinking_while_permits_are_out_takes_effect_as_they_come_back() {
    let gate = Gate::new(4);
    let mut held: Vec<_> = (0..4).map(|_| gate.try_acquire().unwrap()).collect();
    let mut waiter = spawn(gate.acquire());
    assert_pending!(waiter.poll());

    gate.set_limit(2).unwrap();
    assert_eq!(gate.limit(), 2);
    assert_eq!(gate.available_permits(), 0);

    // 4 -> 3 -> 2 in flight: still at or above the new limit, nobody gets in.
    held.pop();
    held.pop();
    assert!(!waiter.is_woken());
    assert_eq!(gate.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
    // 2 -> 1: now one fits.
    held.pop();
    assert!(waiter.is_woken());
    let p = assert_ready_ok!(waiter.poll());
    assert_eq!(gate.stats().in_flight, 2);
    drop((held, p));
    assert_eq!(gate.available_permits(), 2);
}

#[test]
fn shrinking_to_zero_and_back_loses_nothing() {
    let gate = Gate::new(2);
    let held = gate.try_acquire().unwrap();
    gate.set_limit(0).unwrap();
    let mut waiter = spawn(gate.acquire());
    assert_pending!(waiter.poll());
    drop(held);
    assert!(!waiter.is_woken());
    gate.set_limit(2).unwrap();
    drop(assert_ready_ok!(waiter.poll()));
    assert_eq!(gate.available_permits(), 2);
}

#[test]
fn overflow_is_rejected_before_any_state_changes() {
    let too_big = Gate::MAX_PERMITS + 1;
    let err = Gate::try_new(too_big).unwrap_err();
    assert_eq!(err.requested(), too_big);
    assert!(err.to_string().contains("exceeds the maximum"));
    assert!(Gate::builder(too_big).build().is_err());

    let gate = Gate::new(3);
    let held = gate.try_acquire().unwrap();
    assert!(gate.set_limit(too_big).is_err());
    assert!(gate.set_limit(usize::MAX).is_err());
    let stats = gate.stats();
    assert_eq!((stats.limit, stats.in_flight), (3, 1));
    drop(held);
    assert_eq!(gate.available_permits(), 3);
    assert!(Gate::try_new(Gate::MAX_PERMITS).is_ok());
}

#[test]
#[should_panic(expected = "the limit exceeds Gate::MAX_PERMITS")]
fn new_panics_with_a_message_on_overflow() {
    let _ = Gate::new(usize::MAX);
}

#[test]
#[should_panic(expected = "no gate can grant more than Gate::MAX_PERMITS")]
fn acquire_many_panics_on_an_impossible_request() {
    let gate = Gate::new(1);
    drop(gate.acquire_many(usize::MAX));
}

/// The seed's `AdaptiveSemaphore` resizes by swapping in a new semaphore while permits of the
/// old one are still held: the new one hands out its full count on top of them, so more
/// tasks run at once than any limit it ever had. `Gate::set_limit` resizes the one gate
/// everyone shares, so the limit holds.
#[tokio::test(start_paused = true)]
async fn seed_adaptive_semaphore_breaks_the_limit_and_set_limit_does_not() {
    use std::sync::Mutex;
    use tokio::sync::Semaphore;
    use tokio::time::{Duration, sleep};

    fn peak() -> Arc<InFlight> {
        Arc::new(InFlight::new())
    }

    // The seed, in Rust: shrink from 10 to 5 by replacing the semaphore.
    let seed = Arc::new(Mutex::new(Arc::new(Semaphore::new(10))));
    let seed_peak = peak();
    let mut tasks = Vec::new();
    for i in 0..30u64 {
        let (seed, peak) = (seed.clone(), seed_peak.clone());
        tasks.push(tokio::spawn(async move {
            sleep(Duration::from_millis(i * 10)).await;
            let sem = seed.lock().unwrap().clone();
            let _permit = sem.acquire_owned().await.unwrap();
            peak.enter();
            sleep(Duration::from_secs(1)).await;
            peak.leave();
        }));
    }
    sleep(Duration::from_millis(150)).await;
    *seed.lock().unwrap() = Arc::new(Semaphore::new(5));
    for t in tasks {
        t.await.unwrap();
    }
    let seed_max = seed_peak.peak();
    assert!(seed_max > 10, "the seed's swap let {seed_max} run at once");

    // Ours: the same schedule, one gate, `set_limit(5)`.
    let gate = Arc::new(Gate::new(10));
    let ours = peak();
    let after_shrink = peak();
    let shrunk = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..30u64 {
        let (gate, peak, after, shrunk) = (
            gate.clone(),
            ours.clone(),
            after_shrink.clone(),
            shrunk.clone(),
        );
        tasks.push(tokio::spawn(async move {
            sleep(Duration::from_millis(i * 10)).await;
            let _permit = gate.acquire().await.unwrap();
            peak.enter();
            let counted = shrunk.load(Ordering::SeqCst);
            if counted {
                after.enter();
            }
            sleep(Duration::from_secs(1)).await;
            if counted {
                after.leave();
            }
            peak.leave();
        }));
    }
    sleep(Duration::from_millis(150)).await;
    gate.set_limit(5).unwrap();
    shrunk.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(ours.peak() <= 10);
    assert!(after_shrink.peak() <= 5);
    assert_eq!(gate.available_permits(), 5);
}
