//! Property: through any mix of acquires, cancelled acquires, reported and unreported
//! (cancelled) attempts, and resizes by the algorithm, a `Limiter` keeps its permits
//! conserved and tells its algorithm exactly how many of the gate's permits were in use
//! (attempts running, and waiters granted a permit but not yet polled) and what the limit
//! was when each reported attempt was admitted; unreported attempts are never samples.
//! Callers holding a permit while they wait for a rate cell are not counted as running.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gate_core::adaptive::{Aimd, LimitAlgorithm, Sample};
use gate_core::{Limiter, LimiterPermit, Outcome};
use proptest::prelude::*;
use tokio_test::task::spawn;

/// An algorithm that records its samples and sets the limit a script asks for.
#[derive(Debug)]
struct Scripted {
    samples: Arc<Mutex<Vec<Sample>>>,
    script: Vec<usize>,
    next: usize,
}

impl LimitAlgorithm for Scripted {
    fn initial_limit(&self) -> usize {
        3
    }

    fn wants_latency(&self) -> bool {
        false
    }

    fn update(&mut self, sample: &Sample) -> usize {
        self.samples.lock().unwrap().push(*sample);
        let limit = self.script[self.next % self.script.len()];
        self.next += 1;
        limit
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Start an acquire (every pending acquire is polled after each step).
    Acquire,
    /// Drop a pending acquire, at whatever point it has reached.
    Cancel(usize),
    /// Report how a held attempt ended.
    Finish(usize, u8),
    /// Drop a held attempt without a report: a cancelled attempt.
    Drop(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        1 => any::<usize>().prop_map(Op::Cancel),
        3 => (any::<usize>(), 0..4u8).prop_map(|(i, o)| Op::Finish(i, o)),
        1 => any::<usize>().prop_map(Op::Drop),
    ]
}

fn outcome(code: u8) -> Outcome {
    match code {
        0 => Outcome::Success,
        1 => Outcome::Overload { retry_after: None },
        2 => Outcome::TimedOut,
        _ => Outcome::Failed,
    }
}

proptest! {
    #[test]
    fn samples_report_exactly_what_was_running(
        script in proptest::collection::vec(1..6usize, 1..8),
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let limiter = Limiter::builder()
            .adaptive(Scripted { samples: Arc::clone(&samples), script, next: 0 })
            .build()
            .unwrap();
        let mut pending = Vec::new();
        // Each held permit with the running count and limit expected in its sample.
        let mut held: Vec<(LimiterPermit<'_>, usize, usize)> = Vec::new();
        let mut expected = Vec::new();
        for op in ops {
            match op {
                Op::Acquire => pending.push(spawn(limiter.acquire())),
                Op::Cancel(i) if !pending.is_empty() => {
                    drop(pending.remove(i % pending.len()));
                }
                Op::Finish(i, code) if !held.is_empty() => {
                    let (permit, in_flight, at_limit) = held.remove(i % held.len());
                    let outcome = outcome(code);
                    permit.finish(outcome);
                    expected.push((outcome, in_flight, at_limit));
                }
                Op::Drop(i) if !held.is_empty() => {
                    drop(held.remove(i % held.len()));
                }
                _ => {}
            }
            // Poll every pending acquire: those that fit are admitted now, in order.
            let mut still = Vec::new();
            for mut task in pending.drain(..) {
                match task.poll() {
                    std::task::Poll::Ready(permit) => {
                        let permit = permit.unwrap();
                        // Read through the gate's public statistics, at the moment of
                        // admission: at least every attempt already running, plus this one.
                        let in_flight = limiter.stats().in_flight;
                        prop_assert!(in_flight > held.len());
                        held.push((permit, in_flight, limiter.limit().unwrap()));
                    }
                    std::task::Poll::Pending => still.push(task),
                }
            }
            pending = still;
            prop_assert_eq!(limiter.stats().in_flight, held.len());
        }
        let samples = samples.lock().unwrap().clone();
        prop_assert_eq!(samples.len(), expected.len());
        for (sample, (outcome, in_flight, limit)) in samples.iter().zip(&expected) {
            prop_assert_eq!(sample.outcome, *outcome);
            prop_assert_eq!(sample.in_flight, *in_flight);
            prop_assert_eq!(sample.limit, *limit);
            prop_assert_eq!(sample.latency, Duration::ZERO);
        }
        drop(held);
        drop(pending);
        prop_assert_eq!(limiter.stats().in_flight, 0);
    }
}

proptest! {
    /// AIMD learns nothing from a success while the gate has room, so the limiter only
    /// counts those and passes the count on with the next sample. The limits it sets must be
    /// exactly those of the same algorithm fed every sample.
    #[test]
    fn counting_successes_with_room_changes_no_decision(
        steps in proptest::collection::vec(
            (1..10usize, proptest::collection::vec(0..4u8, 1..8)),
            1..80,
        ),
    ) {
        let aimd = || Aimd::builder().initial(4).min(1).max(12).build().unwrap();
        let limiter = Limiter::builder().adaptive(aimd()).build().unwrap();
        let mut direct = aimd();
        for (wanted, codes) in steps {
            // Admit up to `wanted` attempts at once, noting how full the gate was for each.
            let mut held = Vec::new();
            for _ in 0..wanted {
                match spawn(limiter.acquire()).poll() {
                    std::task::Poll::Ready(permit) => {
                        let in_flight = limiter.stats().in_flight;
                        held.push((permit.unwrap(), in_flight, limiter.limit().unwrap()));
                    }
                    // The gate is full; dropping the acquire cancels it.
                    std::task::Poll::Pending => break,
                }
            }
            for (i, (permit, in_flight, limit)) in held.into_iter().enumerate() {
                let outcome = outcome(codes[i % codes.len()]);
                permit.finish(outcome);
                direct.update(&Sample::new(outcome, Duration::ZERO, in_flight, limit));
                prop_assert_eq!(limiter.limit(), Some(direct.limit()));
            }
        }
    }
}

/// An algorithm that only counts successes with room and wants `wanted` of them counted.
#[derive(Debug)]
struct Counting {
    wanted: usize,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl LimitAlgorithm for Counting {
    fn initial_limit(&self) -> usize {
        8
    }

    fn wants_latency(&self) -> bool {
        false
    }

    fn learns_from_successes_with_room(&self) -> bool {
        false
    }

    fn successes_with_room_wanted(&self) -> usize {
        self.wanted
    }

    fn update(&mut self, sample: &Sample) -> usize {
        self.samples.lock().unwrap().push(*sample);
        8
    }
}

/// Successes with room are counted up to what the algorithm wants, and no further (past
/// that, a success with room costs no atomic add); an algorithm that wants them all gets
/// the exact count.
#[test]
fn successes_with_room_are_counted_up_to_what_the_algorithm_wants() {
    for (wanted, expected) in [(3, 3), (usize::MAX, 10)] {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let limiter = Limiter::builder()
            .adaptive(Counting {
                wanted,
                samples: Arc::clone(&samples),
            })
            .build()
            .unwrap();
        for _ in 0..10 {
            let permit = spawn(limiter.acquire()).poll();
            let std::task::Poll::Ready(permit) = permit else {
                panic!("an uncontended acquire waited");
            };
            permit.unwrap().finish(Outcome::Success);
        }
        assert!(
            samples.lock().unwrap().is_empty(),
            "successes with room are only counted"
        );
        let permit = match spawn(limiter.acquire()).poll() {
            std::task::Poll::Ready(permit) => permit.unwrap(),
            std::task::Poll::Pending => panic!("an uncontended acquire waited"),
        };
        permit.finish(Outcome::Overload { retry_after: None });
        let samples = samples.lock().unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].skipped, expected, "wanted {wanted}");
    }
}

/// Callers that hold a permit while they wait for their rate cell are not load: an attempt
/// admitted while another still waits for the rate sees only what really runs.
#[tokio::test(start_paused = true)]
async fn callers_waiting_for_the_rate_are_not_counted_as_running() {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let limiter = Limiter::builder()
        .rate(gate_core::rate::Rate::per_second(1))
        .adaptive(Scripted {
            samples: Arc::clone(&samples),
            script: vec![3],
            next: 0,
        })
        .build()
        .unwrap();
    let first = limiter.acquire().await.unwrap();
    let mut second = spawn(limiter.acquire());
    let mut third = spawn(limiter.acquire());
    assert!(second.poll().is_pending() && third.poll().is_pending());
    // Both hold a permit now, waiting for their cells.
    assert_eq!(limiter.stats().in_flight, 3);
    first.finish(Outcome::Success);
    tokio::time::advance(Duration::from_secs(1)).await;
    let second = match second.poll() {
        std::task::Poll::Ready(permit) => permit.unwrap(),
        std::task::Poll::Pending => panic!("the second cell is due"),
    };
    assert!(third.poll().is_pending(), "the third cell is not");
    second.finish(Outcome::Success);
    let in_flight: Vec<_> = samples
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.in_flight)
        .collect();
    // The second ran alone: the third held a permit but was waiting for the rate.
    assert_eq!(in_flight, [1, 1]);
}

/// An algorithm that wants latencies and records them.
#[derive(Debug)]
struct Timed(Arc<Mutex<Vec<Duration>>>);

impl LimitAlgorithm for Timed {
    fn initial_limit(&self) -> usize {
        4
    }

    fn update(&mut self, sample: &Sample) -> usize {
        self.0.lock().unwrap().push(sample.latency);
        4
    }
}

/// A clock that moves only when told to.
struct Manual(Arc<std::sync::atomic::AtomicU64>);

impl gate_core::rate::Clock for Manual {
    fn now_nanos(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A limiter built with a clock of its own measures latencies on it, as it reads its rate.
#[test]
fn latencies_are_read_on_the_limiters_clock() {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let now = Arc::new(std::sync::atomic::AtomicU64::new(1_000));
    let limiter = Limiter::builder()
        .adaptive(Timed(Arc::clone(&latencies)))
        .clock(Manual(Arc::clone(&now)))
        .build()
        .unwrap();
    let permit = limiter.try_acquire_uncontended().unwrap();
    now.fetch_add(5_000_000, std::sync::atomic::Ordering::Relaxed);
    permit.finish(Outcome::Success);
    assert_eq!(*latencies.lock().unwrap(), [Duration::from_millis(5)]);
}
