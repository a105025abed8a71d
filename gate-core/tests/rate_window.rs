//! Property: through any pattern of arrivals, checks, waits and cancelled waits, a rate limit
//! admits at most `burst + count × T / period` callers in every window of length `T`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use gate_core::rate::{Rate, RateLimit};
use proptest::prelude::*;
use tokio::time::Instant;

#[derive(Debug, Clone)]
enum Arrival {
    /// Take a cell if one is free now.
    Check,
    /// Wait for a cell.
    Wait,
    /// Wait for a cell, giving up after this many milliseconds.
    WaitAtMost(u64),
}

fn arrival() -> impl Strategy<Value = Arrival> {
    prop_oneof![
        4 => Just(Arrival::Check),
        3 => Just(Arrival::Wait),
        2 => (0..400u64).prop_map(Arrival::WaitAtMost),
    ]
}

/// Gaps between arrivals in milliseconds: often zero (bursts), sometimes long (idle spells).
fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![4 => Just(0u64), 4 => 0..50u64, 1 => 50..2_000u64]
}

fn rate() -> impl Strategy<Value = Rate> {
    (
        1..=20u32,
        prop_oneof![Just(100u64), Just(1_000), Just(3_000)],
        1..=6u32,
    )
        .prop_map(|(count, period_ms, burst)| {
            Rate::new(count, Duration::from_millis(period_ms))
                .unwrap()
                .burst(burst)
        })
}

/// Admission times (relative to the start) of a run of `arrivals`.
fn run(rate: Rate, arrivals: Vec<(u64, Arrival)>) -> Vec<Duration> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let limit = Rc::new(RateLimit::new(rate));
        let admitted = Rc::new(RefCell::new(Vec::new()));
        let start = Instant::now();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let mut at = start;
                for (gap, arrival) in arrivals {
                    at += Duration::from_millis(gap);
                    tokio::time::sleep_until(at).await;
                    let (limit, admitted) = (Rc::clone(&limit), Rc::clone(&admitted));
                    let record = move |at: Instant| {
                        // A waiter runs at its cell's time or within the timer's resolution.
                        let late = Instant::now() - at;
                        assert!(late <= Duration::from_millis(1), "woke {late:?} late");
                        admitted.borrow_mut().push(at - start);
                    };
                    match arrival {
                        Arrival::Check => {
                            if limit.check().is_ok() {
                                record(Instant::now());
                            }
                        }
                        Arrival::Wait => {
                            tokio::task::spawn_local(async move {
                                record(limit.until_ready().await);
                            });
                        }
                        Arrival::WaitAtMost(ms) => {
                            tokio::task::spawn_local(async move {
                                let wait = limit.until_ready();
                                if let Ok(at) =
                                    tokio::time::timeout(Duration::from_millis(ms), wait).await
                                {
                                    record(at);
                                }
                            });
                        }
                    }
                }
                // Let every waiter finish.
                tokio::time::sleep(Duration::from_secs(3_600)).await;
            })
            .await;
        let mut times = admitted.borrow().clone();
        times.sort();
        times
    })
}

/// The most admissions allowed in a closed window of `len`.
fn allowed(rate: Rate, len: Duration) -> u128 {
    u128::from(rate.burst_size())
        + len.as_nanos() * u128::from(rate.count()) / rate.period().as_nanos()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_window_admits_more_than_burst_plus_rate_times_length(
        rate in rate(),
        arrivals in proptest::collection::vec((gap(), arrival()), 1..120),
    ) {
        let waits = arrivals.iter().filter(|(_, a)| matches!(a, Arrival::Wait)).count();
        let times = run(rate, arrivals);
        // Every caller that waited without a deadline got in.
        prop_assert!(times.len() >= waits);
        for i in 0..times.len() {
            for j in i..times.len() {
                let count = (j - i + 1) as u128;
                let len = times[j] - times[i];
                prop_assert!(
                    count <= allowed(rate, len),
                    "{count} admissions within {len:?} under {rate}"
                );
            }
        }
    }
}

#[test]
fn waiters_are_admitted_at_the_full_rate_and_no_faster() {
    // 50 callers wait at once under 10/s with a burst of 5: 5 at once, then one per 100ms.
    let arrivals = (0..50).map(|_| (0, Arrival::Wait)).collect();
    let times = run(Rate::per_second(10).burst(5), arrivals);
    assert_eq!(times.len(), 50);
    assert!(times[..5].iter().all(|t| t.is_zero()));
    for (k, t) in times.iter().enumerate().skip(5) {
        assert_eq!(*t, Duration::from_millis(100 * (k as u64 - 4)), "cell {k}");
    }
}

#[test]
fn a_cancelled_wait_gives_its_cell_to_the_next_caller() {
    let arrivals = vec![
        (0, Arrival::Check),
        // Would be due at 1s; gives up at 500ms and returns the cell.
        (0, Arrival::WaitAtMost(500)),
        (600, Arrival::Wait),
    ];
    let times = run(Rate::per_second(1), arrivals);
    assert_eq!(times, [Duration::ZERO, Duration::from_secs(1)]);
}
