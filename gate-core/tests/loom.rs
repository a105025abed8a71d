//! Model checks of the gate with loom: every interleaving of the operations below, up to a
//! bounded number of preemptions, keeps permits conserved and the limit held.
//!
//! Run with:
//! `RUSTFLAGS="--cfg gate_loom" cargo test -p gate-core --release --test loom`
#![cfg(gate_loom)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use gate_core::{AcquireError, Gate};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// Polls `acquire` once, so that it queues, then drops it: the permit may be granted in
/// between, and is then dropped with it.
fn queue_then_give_up<F: Future>(acquire: F) {
    let mut acquire = pin!(acquire);
    let mut cx = Context::from_waker(Waker::noop());
    if let Poll::Ready(permit) = acquire.as_mut().poll(&mut cx) {
        drop(permit);
    }
}

fn assert_idle(gate: &Gate, limit: usize) {
    let stats = gate.stats();
    assert_eq!((stats.in_flight, stats.waiting), (0, 0));
    assert_eq!(gate.available_permits(), limit);
}

#[test]
fn two_tasks_never_hold_one_permit_together() {
    model(|| {
        let gate = Arc::new(Gate::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (gate, inside) = (gate.clone(), inside.clone());
                thread::spawn(move || {
                    loom::future::block_on(async {
                        let _permit = gate.acquire().await.unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_idle(&gate, 1);
    });
}

#[test]
fn close_races_a_waiter() {
    model(|| {
        let gate = Arc::new(Gate::new(1));
        let held = gate.clone().try_acquire_owned().unwrap();
        let waiter = {
            let gate = gate.clone();
            thread::spawn(move || loom::future::block_on(gate.acquire()).map(drop))
        };
        let closer = {
            let gate = gate.clone();
            thread::spawn(move || gate.close())
        };
        closer.join().unwrap();
        drop(held);
        // Either it got in before the close, or the close failed it.
        match waiter.join().unwrap() {
            Ok(()) | Err(AcquireError::Closed) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
        assert_idle(&gate, 1);
    });
}

#[test]
fn cancel_races_a_release() {
    model(|| {
        let gate = Arc::new(Gate::new(1));
        let held = gate.clone().try_acquire_owned().unwrap();
        let canceller = {
            let gate = gate.clone();
            thread::spawn(move || {
                queue_then_give_up(gate.acquire());
            })
        };
        let releaser = thread::spawn(move || drop(held));
        canceller.join().unwrap();
        releaser.join().unwrap();
        assert_idle(&gate, 1);
    });
}

#[test]
fn the_head_waiter_cancelling_does_not_strand_the_next() {
    model(|| {
        let gate = Arc::new(Gate::new(2));
        let held = gate.clone().try_acquire_owned().unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let mut head = Box::pin(gate.clone().acquire_many_owned(2));
        assert!(head.as_mut().poll(&mut cx).is_pending());
        let next = {
            let gate = gate.clone();
            thread::spawn(move || loom::future::block_on(gate.acquire()).map(drop))
        };
        let canceller = thread::spawn(move || drop(head));
        canceller.join().unwrap();
        // The one free permit must reach `next` without anyone releasing anything.
        next.join().unwrap().unwrap();
        drop(held);
        assert_idle(&gate, 2);
    });
}

/// Waiters learn that they were granted from one word per gate and their ticket, not from a
/// cell of their own: a waiter leaving the middle of the queue while permits are handed on
/// must neither strand the waiter behind it nor let anyone in twice.
#[test]
fn a_waiter_leaving_the_middle_of_the_queue_races_the_grants() {
    model(|| {
        let gate = Arc::new(Gate::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let held = gate.clone().try_acquire_owned().unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let mut first = Box::pin(gate.clone().acquire_owned());
        let mut middle = Box::pin(gate.clone().acquire_owned());
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert!(middle.as_mut().poll(&mut cx).is_pending());
        let last = {
            let (gate, inside) = (gate.clone(), inside.clone());
            thread::spawn(move || {
                loom::future::block_on(async {
                    let _permit = gate.acquire().await.unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two inside");
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
        };
        // The middle waiter gives up, perhaps after the first passed the permit on to it.
        let canceller = thread::spawn(move || drop(middle));
        drop(held);
        loom::future::block_on(async {
            let _permit = first.await.unwrap();
            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two inside");
            inside.fetch_sub(1, Ordering::SeqCst);
        });
        canceller.join().unwrap();
        last.join().unwrap();
        assert_idle(&gate, 1);
    });
}

#[test]
fn resize_races_acquire_and_release() {
    model(|| {
        let gate = Arc::new(Gate::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let held = gate.clone().try_acquire_owned().unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (gate, inside) = (gate.clone(), inside.clone());
                thread::spawn(move || {
                    loom::future::block_on(async {
                        let _permit = gate.acquire().await.unwrap();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= 2, "{now} inside with a limit of at most 2");
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        gate.set_limit(2).unwrap();
        drop(held);
        for t in waiters {
            t.join().unwrap();
        }
        assert_idle(&gate, 2);
    });
}

#[test]
fn the_lock_free_path_respects_close_and_shrink() {
    use loom::sync::atomic::AtomicBool;
    model(|| {
        let gate = Arc::new(Gate::new(2));
        let closed = Arc::new(AtomicBool::new(false));
        let taker = {
            let (gate, closed) = (gate.clone(), closed.clone());
            thread::spawn(move || {
                for _ in 0..2 {
                    let was_closed = closed.load(Ordering::SeqCst);
                    if let Ok(permit) = gate.try_acquire() {
                        assert!(!was_closed, "a permit taken after close returned");
                        assert!(gate.stats().in_flight <= 2);
                        drop(permit);
                    }
                }
            })
        };
        let held = gate.try_acquire();
        gate.set_limit(1).unwrap();
        drop(held);
        gate.close();
        closed.store(true, Ordering::SeqCst);
        taker.join().unwrap();
        assert_eq!(gate.stats().in_flight, 0);
        assert_eq!(gate.available_permits(), 1);
    });
}

#[test]
fn a_lock_free_release_racing_a_shrink_keeps_the_new_limit() {
    model(|| {
        let gate = Arc::new(Gate::new(2));
        let first = gate.clone().try_acquire_owned().unwrap();
        let second = gate.clone().try_acquire_owned().unwrap();
        let releaser = thread::spawn(move || drop(first));
        let shrinker = {
            let gate = gate.clone();
            thread::spawn(move || gate.set_limit(1).unwrap())
        };
        releaser.join().unwrap();
        shrinker.join().unwrap();
        // One permit is still out and the limit is one: nothing may be taken.
        assert!(gate.try_acquire().is_err());
        drop(second);
        assert_idle(&gate, 1);
        let again = gate.try_acquire().unwrap();
        assert!(gate.try_acquire().is_err());
        drop(again);
    });
}

/// The fast pool alone, as the gate drives it: lock-free takes and gives racing the lock
/// holder draining the pool (what a caller about to queue does).
mod fast_pool {
    use super::*;
    use gate_core::__loom::FastPool;

    #[test]
    fn takes_gives_and_a_drain_never_lose_or_duplicate_a_permit() {
        model(|| {
            let pool = Arc::new(FastPool::new(1));
            let held = Arc::new(AtomicUsize::new(0));
            // Permits handed to the lock holder: drained, or given back while it held them.
            let locked = Arc::new(AtomicUsize::new(0));
            let takers: Vec<_> = (0..2)
                .map(|_| {
                    let (pool, held, locked) = (pool.clone(), held.clone(), locked.clone());
                    thread::spawn(move || {
                        if pool.try_take(1).is_some() {
                            assert_eq!(held.fetch_add(1, Ordering::SeqCst), 0, "duplicated");
                            held.fetch_sub(1, Ordering::SeqCst);
                            if !pool.try_give(1) {
                                locked.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    })
                })
                .collect();
            locked.fetch_add(pool.enter_slow(), Ordering::SeqCst);
            for t in takers {
                t.join().unwrap();
            }
            // Closed, the pool holds nothing: the one permit is with the lock holder.
            assert_eq!(pool.permits(), 0);
            assert_eq!(pool.try_take(1), None);
            let free = locked.load(Ordering::SeqCst);
            assert_eq!(free, 1, "a permit was lost or duplicated");
            pool.leave_slow(free);
            assert_eq!(pool.try_take(1), Some(0));
        });
    }

    #[test]
    fn weighted_takes_never_hold_more_than_the_pool() {
        model(|| {
            let pool = Arc::new(FastPool::new(2));
            let held = Arc::new(AtomicUsize::new(0));
            let takers: Vec<_> = [2, 1]
                .into_iter()
                .map(|n| {
                    let (pool, held) = (pool.clone(), held.clone());
                    thread::spawn(move || {
                        if pool.try_take(n).is_some() {
                            let before = held.fetch_add(n, Ordering::SeqCst);
                            assert!(before + n <= 2, "{} permits held", before + n);
                            held.fetch_sub(n, Ordering::SeqCst);
                            assert!(pool.try_give(n), "nobody closed the pool");
                        }
                    })
                })
                .collect();
            for t in takers {
                t.join().unwrap();
            }
            assert_eq!(pool.permits(), 2);
        });
    }
}

/// A keyed gate with no global limit gives a permit back with one atomic decrement of its
/// key's word, and takes the shard's lock only if the word says callers are queued: these
/// models race that release with the steps under the lock that read or change the word.
mod keyed {
    use super::*;
    use gate_core::keyed::{KeyedGate, KeyedTryAcquireError};

    fn assert_keyed_idle(gate: &KeyedGate<u8>) {
        assert_eq!((gate.in_flight(), gate.waiting()), (0, 0));
        assert_eq!(gate.idle_len(), gate.len());
    }

    #[test]
    fn a_release_racing_a_caller_that_queues_never_loses_the_wake_up() {
        model(|| {
            let gate = Arc::new(KeyedGate::<u8>::new(1));
            let held = gate.try_acquire_owned(&0).unwrap();
            let releaser = thread::spawn(move || drop(held));
            // Finds no room, then queues: the release lands before, between or after.
            let permit = loom::future::block_on(gate.acquire(&0)).unwrap();
            assert_eq!(gate.key_in_flight(&0), 1);
            drop(permit);
            releaser.join().unwrap();
            assert_keyed_idle(&gate);
        });
    }

    #[test]
    fn a_queued_caller_leaving_races_a_release() {
        model(|| {
            let gate = Arc::new(KeyedGate::<u8>::new(1));
            let held = gate.try_acquire_owned(&0).unwrap();
            let canceller = {
                let gate = gate.clone();
                thread::spawn(move || {
                    queue_then_give_up(gate.acquire(&0));
                })
            };
            let releaser = thread::spawn(move || drop(held));
            canceller.join().unwrap();
            releaser.join().unwrap();
            assert_keyed_idle(&gate);
            // No permit lost, none left over.
            let permit = gate.try_acquire(&0).unwrap();
            assert!(gate.try_acquire(&0).is_err());
            drop(permit);
        });
    }

    #[test]
    fn a_release_racing_an_eviction_leaves_a_fresh_key_and_no_lost_permit() {
        model(|| {
            let gate = Arc::new(
                KeyedGate::<u8>::builder(1)
                    .max_keys(1)
                    .max_idle(0)
                    .build()
                    .unwrap(),
            );
            let held = gate.try_acquire_owned(&1).unwrap();
            let releaser = thread::spawn(move || drop(held));
            // At the cap: key 2 gets in only once key 1's permit is back, by evicting it.
            let (two, releaser) = match gate.try_acquire(&2) {
                Ok(two) => (two, Some(releaser)),
                Err(KeyedTryAcquireError::TooManyKeys) => {
                    releaser.join().unwrap();
                    (gate.try_acquire(&2).unwrap(), None)
                }
                Err(other) => panic!("{other}"),
            };
            assert!(!gate.contains_key(&1));
            assert_eq!(gate.key_in_flight(&2), 1);
            drop(two);
            if let Some(releaser) = releaser {
                releaser.join().unwrap();
            }
            assert_keyed_idle(&gate);
            // Key 1 comes back with its whole limit.
            let one = gate.try_acquire(&1).unwrap();
            assert_eq!(
                gate.try_acquire(&1).unwrap_err(),
                KeyedTryAcquireError::NoPermits
            );
            drop(one);
        });
    }
}
