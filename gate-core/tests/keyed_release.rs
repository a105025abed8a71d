//! A keyed gate with no global limit gives a permit back off its shard's lock (one atomic
//! decrement of the key's word) unless callers are queued for the key: a release on another
//! thread racing a caller that queues must never leave that caller unwoken. (The loom model
//! in `tests/loom.rs` checks every interleaving of one race; this runs many on real threads.)

use std::sync::{Arc, Barrier};
use std::thread;

use gate_core::keyed::KeyedGate;
use tokio_test::task::spawn;

#[test]
fn a_release_on_another_thread_racing_a_caller_that_queues_never_loses_the_wake_up() {
    const ROUNDS: usize = 2_000;
    let gate = Arc::new(KeyedGate::<u64>::new(1));
    let (mut queued, mut at_once) = (0, 0);
    for round in 0..ROUNDS {
        let held = gate.try_acquire_owned(&7).unwrap();
        let start = Arc::new(Barrier::new(2));
        let releaser = {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                drop(held);
            })
        };
        let mut acquire = spawn(gate.acquire(&7));
        start.wait();
        // Finds the permit taken and queues, or finds it back: the release lands before,
        // during or after this poll.
        let first = acquire.poll();
        releaser.join().unwrap();
        let permit = match first {
            std::task::Poll::Ready(permit) => {
                at_once += 1;
                permit.unwrap()
            }
            std::task::Poll::Pending => {
                queued += 1;
                // The release is done: it must have granted the permit and woken the caller.
                assert!(acquire.is_woken(), "round {round}: the wake-up was lost");
                match acquire.poll() {
                    std::task::Poll::Ready(permit) => permit.unwrap(),
                    std::task::Poll::Pending => panic!("round {round}: woken without a permit"),
                }
            }
        };
        assert_eq!((gate.key_in_flight(&7), gate.waiting()), (1, 0));
        drop(permit);
        drop(acquire);
        assert_eq!(gate.in_flight(), 0);
    }
    println!("{queued} rounds queued first, {at_once} found the permit back at once");
    assert_eq!(queued + at_once, ROUNDS);
}

#[test]
fn a_key_whose_last_permit_came_back_off_the_lock_is_counted_idle_and_evicted() {
    let gate: KeyedGate<u64> = KeyedGate::builder(2).max_idle(1).build().unwrap();
    let permits: Vec<_> = [1u64, 1, 2]
        .iter()
        .map(|key| gate.try_acquire(key).unwrap())
        .collect();
    drop(permits);
    // Counting finds both keys idle, keeps one and evicts the other.
    assert_eq!((gate.len(), gate.idle_len(), gate.in_flight()), (1, 1, 0));
    // The key kept comes back with its whole limit; so does the one evicted.
    for key in [1u64, 2] {
        let held = [
            gate.try_acquire(&key).unwrap(),
            gate.try_acquire(&key).unwrap(),
        ];
        assert!(gate.try_acquire(&key).is_err());
        assert_eq!(gate.key_in_flight(&key), 2);
        drop(held);
    }
}
