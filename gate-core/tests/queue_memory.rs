//! A gate gives back the memory of a queue that has drained, counted in bytes by
//! `allocation-counter`'s global allocator (this test binary only).

use gate_core::Gate;
use tokio_test::task::spawn;

// Regression: after 10^5 waiters drained, a gate still held 12.9 MB (128 bytes per former
// waiter) until it was dropped.
#[test]
fn a_drained_queue_of_100_000_waiters_leaves_a_few_kib() {
    const WAITERS: usize = 100_000;
    let gate = Gate::new(0);
    let mut queued = 0;
    let info = allocation_counter::measure(|| {
        let mut waiters: Vec<_> = (0..WAITERS).map(|_| spawn(gate.acquire())).collect();
        for waiter in &mut waiters {
            assert!(waiter.poll().is_pending());
        }
        gate.add_permits(WAITERS);
        for waiter in &mut waiters {
            assert!(waiter.poll().is_ready());
        }
        queued = waiters.len();
    });
    assert_eq!((queued, gate.available_permits()), (WAITERS, WAITERS));
    assert!(info.bytes_max > (WAITERS * 100) as u64, "{info:?}");
    assert!(
        info.bytes_current < 16 * 1024,
        "the drained gate still holds {} bytes",
        info.bytes_current
    );
}
