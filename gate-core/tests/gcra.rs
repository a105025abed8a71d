//! Properties of the pure GCRA step, the specification every store of a rate limit's state
//! (the in-process `RateLimit`, a Redis script) is tested against.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gate_core::rate::{Clock, Decision, Gcra, Rate, RateLimit};
use proptest::prelude::*;

/// A GCRA for `count` cells per `period_ms` with a burst, as a rate limit builds it.
fn gcra() -> impl Strategy<Value = Gcra> {
    (1..1000u32, 1..5000u64, 1..8u32).prop_map(|(count, period_ms, burst)| {
        Gcra::from_rate(
            Rate::new(count, Duration::from_millis(period_ms))
                .unwrap()
                .burst(burst),
        )
    })
}

/// Runs `steps` (a time increment and a weight each) from a fresh cell at `start`; returns the
/// admissions, as (time, cells), and the final state.
fn run(gcra: Gcra, start: u64, steps: &[(u64, u64)]) -> (Vec<(u64, u64)>, u64) {
    let (mut tat, mut now) = (0, start);
    let mut admitted = Vec::new();
    for &(dt, n) in steps {
        now = now.saturating_add(dt);
        if let Decision::Admit { tat: next } = gcra.step(tat, now, n) {
            admitted.push((now, n));
            tat = next;
        }
    }
    (admitted, tat)
}

proptest! {
    #[test]
    fn no_window_admits_more_than_burst_plus_rate(
        gcra in gcra(),
        start in 0..u64::MAX / 2,
        steps in proptest::collection::vec((0..4u64, 0..10u64), 1..120),
    ) {
        // Time increments in quarters of an interval, so windows of every phase occur.
        let quarter = (gcra.interval() / 4).max(1);
        let steps: Vec<_> = steps.iter().map(|&(dt, n)| (dt * quarter, n)).collect();
        let (admitted, _) = run(gcra, start, &steps);
        for (i, &(from, _)) in admitted.iter().enumerate() {
            let mut cells = 0;
            for &(to, n) in &admitted[i..] {
                cells += n;
                let bound = gcra.burst() + (to - from) / gcra.interval();
                prop_assert!(cells <= bound, "{cells} cells in [{from}, {to}], bound {bound}");
            }
        }
    }

    #[test]
    fn n_cells_at_once_are_n_single_cells(
        gcra in gcra(),
        now in any::<u64>(),
        ahead in -8..24i64,
        n in 1..12u64,
    ) {
        // The state a few half-intervals either side of now, where the answers change.
        let half = i64::try_from(gcra.interval() / 2).unwrap();
        let tat = now.saturating_add_signed(ahead * half);
        let mut single = tat;
        let mut all_fit = true;
        for _ in 0..n {
            match gcra.step(single, now, 1) {
                Decision::Admit { tat } => single = tat,
                _ => {
                    all_fit = false;
                    break;
                }
            }
        }
        match gcra.step(tat, now, n) {
            Decision::Admit { tat: at_once } => {
                prop_assert!(all_fit);
                prop_assert_eq!(at_once, single);
            }
            _ => prop_assert!(!all_fit),
        }
    }

    #[test]
    fn a_wait_is_exact_and_never_is_final(
        interval in any::<u64>(),
        tolerance in any::<u64>(),
        tat in any::<u64>(),
        now in any::<u64>(),
        n in any::<u64>(),
    ) {
        // Any inputs at all: no overflow (tests run with overflow checks), and the answers hold.
        let gcra = Gcra::new(interval, tolerance);
        match gcra.step(tat, now, n) {
            Decision::Admit { tat: next } => {
                prop_assert!(n == 0 || next > tat.max(now) || interval == 0);
                prop_assert!(n <= gcra.burst());
            }
            Decision::Wait { nanos } => {
                prop_assert!(nanos > 0);
                let due = now.checked_add(nanos).expect("the due time fits");
                let after = gcra.step(tat, due, n);
                prop_assert!(!matches!(after, Decision::Wait { .. }), "{:?}", after);
                prop_assert_eq!(gcra.step(tat, due - 1, n), Decision::Wait { nanos: 1 });
            }
            Decision::Never => {
                prop_assert!(n > 0);
                // Never at one time is never at any later time.
                for later in [now.saturating_add(1), now.saturating_add(now / 2), u64::MAX] {
                    prop_assert_eq!(gcra.step(tat, later, n), Decision::Never);
                }
            }
        }
    }

    #[test]
    fn a_rate_limit_answers_as_the_step_does(
        gcra_rate in (1..1000u32, 1..5000u64, 1..8u32),
        start in 0..u64::MAX / 2,
        steps in proptest::collection::vec(0..4u64, 1..100),
    ) {
        // The in-process store over a clock told the time: every check agrees with the step
        // run on a plain variable, and a denied check changes nothing.
        let (count, period_ms, burst) = gcra_rate;
        let rate = Rate::new(count, Duration::from_millis(period_ms)).unwrap().burst(burst);
        let gcra = Gcra::from_rate(rate);
        let clock = Manual(AtomicU64::new(start));
        let limit = RateLimit::with_clock(rate, &clock);
        let quarter = (gcra.interval() / 4).max(1);
        let mut tat = 0;
        for dt in steps {
            let now = clock.0.fetch_add(dt * quarter, Ordering::SeqCst) + dt * quarter;
            match (gcra.step(tat, now, 1), limit.check()) {
                (Decision::Admit { tat: next }, Ok(())) => tat = next,
                (Decision::Wait { nanos }, Err(wait)) => {
                    prop_assert_eq!(wait.wait_time(), Duration::from_nanos(nanos));
                }
                (step, check) => prop_assert!(false, "step {step:?}, check {check:?}"),
            }
        }
    }
}

/// A clock that reads what it is told.
struct Manual(AtomicU64);

impl Clock for Manual {
    fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[test]
fn more_than_the_burst_is_never_a_wait() {
    // A weighted request larger than the bucket would otherwise wait for ever.
    let gcra = Gcra::from_rate(Rate::per_minute(60).burst(10));
    assert_eq!(gcra.burst(), 10);
    assert!(matches!(gcra.step(0, 0, 10), Decision::Admit { .. }));
    assert_eq!(gcra.step(0, 0, 11), Decision::Never);
    assert_eq!(gcra.step(0, u64::MAX / 2, 11), Decision::Never);
}
