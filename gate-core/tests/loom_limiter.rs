//! Model checks of the limiter's own atomics with loom: a rate cell booked and given back
//! racing another booking, and the shared pause extended while a waiter clears it.
//!
//! Run with:
//! `RUSTFLAGS="--cfg gate_loom" cargo test -p gate-core --release --test loom_limiter`
#![cfg(gate_loom)]

use std::sync::Arc;

use gate_core::__loom::{Pause, RateCell};
use gate_core::rate::Rate;
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn a_cancelled_rate_cell_goes_back_only_if_nobody_booked_after_it() {
    model(|| {
        // Two cells free at once, on a clock that stands still.
        let cell = Arc::new(RateCell::new(Rate::per_second(1).burst(2)));
        let other = {
            let cell = cell.clone();
            thread::spawn(move || cell.try_book().expect("a burst of 2 has room").span())
        };
        let mine = cell.try_book().expect("a burst of 2 has room");
        cell.cancel(mine);
        let (other_before, _) = other.join().unwrap();
        let (_, mine_after) = mine.span();
        let free = (0..3).filter(|_| cell.try_book().is_some()).count();
        if other_before == mine_after {
            // Booked after mine: giving mine back would free the other's cell too. It goes
            // unused instead (erring slow).
            assert_eq!(free, 0);
        } else {
            // Mine went back (or was booked after the other's): its cell is free again.
            assert_eq!(free, 1);
        }
    });
}

#[test]
fn a_pause_extended_while_a_waiter_clears_it_is_never_lost() {
    model(|| {
        let pause = Arc::new(Pause::new());
        pause.extend_to(10);
        let extenders: Vec<_> = [20, 30]
            .into_iter()
            .map(|until| {
                let pause = pause.clone();
                thread::spawn(move || pause.extend_to(until))
            })
            .collect();
        // A waiter at 15 finds the first pause over and clears it, unless extended first.
        let seen = pause.settle(15);
        for t in extenders {
            t.join().unwrap();
        }
        assert!(matches!(seen, None | Some(20) | Some(30)), "{seen:?}");
        // Both extensions survive the clear, and the longer wins.
        assert_eq!(pause.settle(15), Some(30));
        assert_eq!(pause.settle(30), None);
        assert_eq!(pause.settle(0), None);
    });
}
