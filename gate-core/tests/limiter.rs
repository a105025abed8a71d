//! `Limiter`: concurrency, rate and a shared pause together, fed by `Retry::call`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gate_core::adaptive::{Aimd, Gradient};
use gate_core::rate::Rate;
use gate_core::{AcquireError, Admission, Backpressure, Limiter, Outcome, Retry};
use tokio::time::Instant;

mod support;
use support::InFlight;

#[derive(Debug, PartialEq)]
enum ApiError {
    TooMany(Option<Duration>),
    NotFound,
}

impl Backpressure for ApiError {
    fn is_overload(&self) -> bool {
        matches!(self, ApiError::TooMany(_))
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::TooMany(after) => *after,
            ApiError::NotFound => None,
        }
    }
}

fn policy(retries: u32) -> Retry<ApiError> {
    Retry::builder(retries)
        .fixed(Duration::from_millis(10))
        .honor_retry_after()
        .build()
        .unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_pauses_everyone_sharing_the_limiter() {
    let limiter = Arc::new(Limiter::new(1));
    let start = Instant::now();
    // Holds the only permit, then fails with "come back in 5s".
    let first = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            let permit = limiter.acquire().await.unwrap();
            tokio::time::sleep(ms(100)).await;
            permit.finish(Outcome::Overload {
                retry_after: Some(Duration::from_secs(5)),
            });
        })
    };
    tokio::task::yield_now().await;
    // Already queued at the gate when the pause begins: it keeps waiting, is not failed,
    // and is admitted when the pause ends.
    let queued = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            let _permit = limiter.acquire().await.unwrap();
            start.elapsed()
        })
    };
    first.await.unwrap();
    assert_eq!(
        limiter.paused_until(),
        Some(start + ms(100) + Duration::from_secs(5))
    );
    // A newcomer, with a permit free, also waits for the pause.
    let newcomer = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            let _permit = limiter.acquire().await.unwrap();
            start.elapsed()
        })
    };
    let (queued, newcomer) = (queued.await.unwrap(), newcomer.await.unwrap());
    assert_eq!(queued, ms(5_100));
    assert!(newcomer >= ms(5_100));
    assert_eq!(limiter.paused_until(), None);
}

#[tokio::test(start_paused = true)]
async fn retry_call_reports_overloads_and_the_pause_outlasts_the_backoff() {
    let limiter = Limiter::builder().concurrency(4).build().unwrap();
    let calls = AtomicUsize::new(0);
    let start = Instant::now();
    let result = policy(3)
        .call(&limiter, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(ApiError::TooMany(Some(Duration::from_secs(2))))
                } else {
                    Ok(start.elapsed())
                }
            }
        })
        .await;
    // The retry waited for the pause, not only its own 10ms backoff.
    assert_eq!(result.unwrap(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn errors_without_overload_do_not_pause() {
    let limiter = Limiter::new(2);
    let err = policy(0)
        .call(&limiter, || async { Err::<(), _>(ApiError::NotFound) })
        .await
        .unwrap_err();
    assert_eq!(err.into_inner(), Some(ApiError::NotFound));
    assert_eq!(limiter.paused_until(), None);
}

#[tokio::test(start_paused = true)]
async fn rate_and_concurrency_hold_together() {
    let limiter = Arc::new(
        Limiter::builder()
            .concurrency(2)
            .rate(Rate::per_second(10))
            .build()
            .unwrap(),
    );
    let running = Arc::new(InFlight::new());
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (limiter, running, starts) = (
                Arc::clone(&limiter),
                Arc::clone(&running),
                Arc::clone(&starts),
            );
            tokio::spawn(async move {
                let _permit = limiter.acquire().await.unwrap();
                starts.lock().unwrap().push(start.elapsed());
                running.visit(ms(350)).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(running.peak(), 2);
    let starts = starts.lock().unwrap();
    // Concurrency binds (2 per 350ms is slower than 10/s), and starts are never closer
    // than the rate's interval.
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= ms(100), "{pair:?}");
    }
    assert_eq!(*starts.last().unwrap(), ms(9 * 350 + 100));
}

// Regression (the seed's `AdaptiveSemaphore`): resizing swapped in a new semaphore while
// permits of the old one were held, so the limit was exceeded and permits were lost.
#[tokio::test(start_paused = true)]
async fn aimd_resizes_the_one_gate_and_cancellations_teach_nothing() {
    let limiter = Limiter::builder()
        .adaptive(Aimd::builder().initial(4).build().unwrap())
        .build()
        .unwrap();
    let permits: Vec<_> = futures_admit(&limiter, 4).await;
    assert_eq!(limiter.stats().in_flight, 4);
    // Dropped without a report: cancelled attempts say nothing.
    drop(permits);
    assert_eq!(limiter.limit(), Some(4));

    // Only the attempt admitted into a full gate (the last of each round) shows that the
    // limit binds: each round of successes adds exactly one in slow start.
    for expected in 5..=8 {
        let limit = limiter.limit().unwrap();
        let permits = futures_admit(&limiter, limit).await;
        for permit in permits {
            permit.finish(Outcome::Success);
        }
        assert_eq!(limiter.limit(), Some(expected));
    }
    // Successes while the gate is not full (app-limited) add nothing.
    for _ in 0..20 {
        limiter.admit().await.unwrap().finish(Outcome::Success);
    }
    assert_eq!(limiter.limit(), Some(8));

    // An overload while 8 are out, reported by the one admitted eighth, ends slow start just
    // below that: 7. The permits still out are not revoked, and the gate admits nobody new
    // until they drain below the new limit.
    let mut permits = futures_admit(&limiter, 8).await;
    permits
        .pop()
        .unwrap()
        .finish(Outcome::Overload { retry_after: None });
    assert_eq!(limiter.limit(), Some(7));
    assert_eq!(limiter.stats().in_flight, 7);
    assert!(limiter.gate().try_acquire().is_err());
    permits.truncate(6);
    assert_eq!(limiter.stats().in_flight, 6);
    assert!(limiter.gate().try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn timeouts_count_as_overload_once_per_attempt() {
    let limiter = Limiter::builder()
        .adaptive(Aimd::builder().initial(10).build().unwrap())
        .build()
        .unwrap();
    let policy = Retry::<ApiError>::builder(2)
        .timeout(ms(50))
        .build()
        .unwrap();
    let err = policy
        .call(&limiter, || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<(), ApiError>(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 3);
    // The first timed-out attempt halves (slow start ends); the next two fall within one
    // window of it and count once.
    assert_eq!(limiter.limit(), Some(5));
}

#[tokio::test(start_paused = true)]
async fn a_closed_limiter_fails_waiters() {
    let limiter = Arc::new(Limiter::new(1));
    let held = limiter.acquire().await.unwrap();
    let waiter = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.acquire().await.map(drop) })
    };
    tokio::task::yield_now().await;
    limiter.close();
    assert_eq!(waiter.await.unwrap(), Err(AcquireError::Closed));
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn gradient_limiter_measures_latency_per_attempt() {
    let limiter = Limiter::builder()
        .adaptive(
            Gradient::builder()
                .initial(4)
                .probe_interval(0)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // A full window of fast attempts grows the limit by sqrt(4).
    let permits = futures_admit(&limiter, 4).await;
    tokio::time::sleep(ms(100)).await;
    for permit in permits {
        permit.finish(Outcome::Success);
    }
    assert_eq!(limiter.limit(), Some(6));
    // A window three times slower shrinks it.
    let permits = futures_admit(&limiter, 6).await;
    tokio::time::sleep(ms(300)).await;
    for permit in permits {
        permit.finish(Outcome::Success);
    }
    assert!(limiter.limit().unwrap() < 6);
}

#[tokio::test(start_paused = true)]
async fn a_gradient_limiter_on_paused_time_does_not_collapse() {
    // Regression: on paused time every latency reads zero, which Gradient took for the
    // worst queueing: the limit halved every window, down to 1.
    let limiter = Limiter::builder()
        .adaptive(
            Gradient::builder()
                .initial(8)
                .probe_interval(0)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    for _ in 0..20 {
        let limit = limiter.limit().unwrap();
        let permits = futures_admit(&limiter, limit).await;
        for permit in permits {
            permit.finish(Outcome::Success);
        }
    }
    assert!(limiter.limit().unwrap() >= 8, "{:?}", limiter.limit());
}

async fn futures_admit(limiter: &Limiter, n: usize) -> Vec<gate_core::LimiterPermit<'_>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(limiter.admit().await.unwrap());
    }
    out
}

fn assert_send_static<T: Send + 'static>(_: &T) {}

#[tokio::test(start_paused = true)]
async fn owned_permits_travel_into_spawned_tasks() {
    let limiter = Arc::new(
        Limiter::builder()
            .adaptive(Aimd::builder().initial(2).build().unwrap())
            .build()
            .unwrap(),
    );
    let acquire = Arc::clone(&limiter).acquire_owned();
    assert_send_static(&acquire);
    let permit = acquire.await.unwrap();
    let finished = tokio::spawn(async move {
        permit.finish(Outcome::Overload {
            retry_after: Some(Duration::from_secs(1)),
        });
    });
    finished.await.unwrap();
    assert!(limiter.paused_until().is_some());
    // Slow start ended at half the limit: only one attempt was running when it was refused.
    assert_eq!(limiter.limit(), Some(1));
    assert_eq!(limiter.stats().in_flight, 0);
    // Dropped unreported: released, nothing learnt.
    drop(Arc::clone(&limiter).acquire_owned().await.unwrap());
    assert_eq!((limiter.limit(), limiter.stats().in_flight), (Some(1), 0));
}

#[tokio::test(start_paused = true)]
async fn a_pause_extended_while_waiting_is_waited_out_in_full() {
    let limiter = Arc::new(Limiter::new(4));
    let start = Instant::now();
    limiter.pause_for(Duration::from_secs(1));
    let waiter = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move {
            let _permit = limiter.acquire().await.unwrap();
            start.elapsed()
        })
    };
    tokio::time::sleep(ms(500)).await;
    limiter.pause_for(Duration::from_secs(2));
    // A shorter pause never cuts a longer one short.
    limiter.pause_for(ms(100));
    assert_eq!(waiter.await.unwrap(), ms(2_500));
}

/// The try without a future admits only when nothing stands in the way, and a miss takes
/// nothing: no permit, no rate cell, no count in the statistics.
#[tokio::test(start_paused = true)]
async fn the_uncontended_try_admits_only_when_nothing_is_in_the_way() {
    let limiter = Arc::new(
        Limiter::builder()
            .concurrency(2)
            .rate(Rate::per_second(2).burst(2))
            .build()
            .unwrap(),
    );
    let first = limiter.try_acquire_uncontended().expect("all is free");
    let second = limiter
        .try_acquire_owned_uncontended()
        .expect("so is a second permit and cell");
    assert!(
        limiter.try_acquire_uncontended().is_none(),
        "no permit left"
    );
    drop((first, second));
    assert!(limiter.try_acquire_uncontended().is_none(), "no cell left");
    assert_eq!(limiter.stats().in_flight, 0, "the miss kept no permit");
    tokio::time::advance(Duration::from_millis(500)).await;
    let third = limiter.try_acquire_uncontended().expect("a cell is due");
    drop(third);

    limiter.pause_for(Duration::from_secs(10));
    assert!(limiter.try_acquire_uncontended().is_none(), "paused");
    tokio::time::advance(Duration::from_secs(10)).await;
    // The pause is over (and two cells have come back), but `is_set` is cleared only by a
    // caller that waits it out: the try defers to the waiting path.
    let waited = limiter.acquire().await.unwrap();
    drop(waited);
    assert!(limiter.try_acquire_uncontended().is_some());
    let stats = limiter.stats();
    assert_eq!((stats.admitted, stats.rejected), (5, 0));
}

// `check` is `try_acquire_uncontended` with the permit dropped at once: over the same steps
// (a rate, a full gate, a pause, a close) it answers the same and leaves the same statistics,
// and no permit ever shows in flight.
#[tokio::test(start_paused = true)]
async fn a_check_answers_as_an_uncontended_try_whose_permit_drops_at_once() {
    let build = || {
        Limiter::builder()
            .concurrency(2)
            .rate(Rate::per_second(2).burst(3))
            .build()
            .unwrap()
    };
    let (checked, tried) = (build(), build());
    let both = || {
        let checks = checked.check();
        assert_eq!(checks, tried.try_acquire_uncontended().is_some());
        assert_eq!(checked.stats().in_flight, tried.stats().in_flight);
        checks
    };
    let held_checked = checked.try_acquire_uncontended().unwrap();
    let held_tried = tried.try_acquire_uncontended().unwrap();
    assert_eq!(
        [both(), both(), both()],
        [true, true, false],
        "the burst of 3"
    );
    tokio::time::advance(Duration::from_millis(500)).await;
    let full = (
        checked.try_acquire_uncontended(),
        tried.try_acquire_uncontended(),
    );
    assert!(full.0.is_some() && full.1.is_some());
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(!both(), "a cell is due but both permits are out");
    drop((full, held_checked, held_tried));
    assert!(both(), "the cell was not taken by the refusal");
    for limiter in [&checked, &tried] {
        limiter.pause_for(Duration::from_secs(1));
    }
    assert!(!both(), "paused");
    tokio::time::advance(Duration::from_secs(1)).await;
    drop((checked.acquire().await, tried.acquire().await));
    assert!(both());
    for limiter in [&checked, &tried] {
        limiter.close();
    }
    assert!(!both(), "closed");
    let (a, b) = (checked.stats(), tried.stats());
    assert_eq!((a.admitted, a.rejected, a.in_flight), (7, 0, 0));
    assert_eq!(
        (a.admitted, a.rejected, a.in_flight, a.wait.count),
        (b.admitted, b.rejected, b.in_flight, b.wait.count)
    );
}

/// A finished acquire polled again panics rather than admit a second time.
#[test]
fn an_acquire_polled_after_completion_admits_nothing_more() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    let limiter = Limiter::new(4);
    let mut acquire = Box::pin(limiter.acquire());
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(permit)) = acquire.as_mut().poll(&mut cx) else {
        panic!("a free permit is admitted at once");
    };
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = acquire.as_mut().poll(&mut cx);
    }));
    assert!(again.is_err(), "polled after completion");
    assert_eq!(
        limiter.stats().in_flight,
        1,
        "and nothing more was admitted"
    );
    drop(permit);
}
