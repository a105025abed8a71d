//! Deadlines and queue bounds fail fast with their own errors, and stats count them.

use std::time::Duration;

use gate_core::{AcquireError, Gate, WaitLimits};
use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};

#[tokio::test(start_paused = true)]
async fn acquire_timeout_fails_at_the_deadline_and_not_before() {
    let gate = Gate::new(1);
    let held = gate.try_acquire().unwrap();
    let start = tokio::time::Instant::now();
    let err = gate
        .acquire_timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err, AcquireError::TimedOut);
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    assert_eq!(gate.stats().timed_out, 1);
    assert_eq!(gate.stats().waiting, 0);
    drop(held);
    assert_eq!(gate.available_permits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_permit_arriving_before_the_deadline_wins() {
    let gate = std::sync::Arc::new(
        Gate::builder(1)
            .max_wait(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let held = gate.clone().try_acquire_owned().unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(999)).await;
        drop(held);
    });
    let permit = gate.acquire().await.unwrap();
    assert_eq!(permit.num_permits(), 1);
    let wait = gate.stats().wait;
    assert_eq!(wait.max, Duration::from_millis(999));
}

#[tokio::test(start_paused = true)]
async fn a_zero_max_wait_never_queues() {
    let gate = Gate::builder(1).max_wait(Duration::ZERO).build().unwrap();
    let held = gate.try_acquire().unwrap();
    assert_eq!(gate.acquire().await.unwrap_err(), AcquireError::TimedOut);
    assert_eq!(gate.stats().waiting, 0);
    drop(held);
    assert!(gate.acquire().await.is_ok());
}

#[test]
fn max_waiters_refuses_exactly_the_one_over_the_bound() {
    let gate = Gate::builder(1).max_waiters(2).build().unwrap();
    let held = gate.try_acquire().unwrap();
    let mut a = spawn(gate.acquire());
    let mut b = spawn(gate.acquire());
    let mut c = spawn(gate.acquire());
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    assert_eq!(assert_ready_err!(c.poll()), AcquireError::QueueFull);
    assert_eq!(gate.stats().rejected, 1);

    // Once one leaves the queue there is room again.
    drop(held);
    let pa = assert_ready_ok!(a.poll());
    let mut d = spawn(gate.acquire());
    assert_pending!(d.poll());
    drop(pa);
    drop(assert_ready_ok!(b.poll()));
    drop(assert_ready_ok!(d.poll()));
}

#[test]
fn acquire_with_overrides_the_gate_s_own_limits() {
    let gate = Gate::new(1);
    let held = gate.try_acquire().unwrap();
    let mut refused = spawn(gate.acquire_with(1, WaitLimits::NO_WAIT));
    assert_eq!(assert_ready_err!(refused.poll()), AcquireError::TimedOut);
    let limits = WaitLimits {
        max_wait: None,
        max_waiters: 0,
    };
    let mut full = spawn(gate.acquire_with(1, limits));
    assert_eq!(assert_ready_err!(full.poll()), AcquireError::QueueFull);
    drop(held);
}

/// Starts `n` tasks that each hold the permit of a one-permit gate for 10 ms, so that task
/// `i` waits `i * 10` ms, and returns the gate's stats once all are done.
async fn queue_of(n: u64) -> gate_core::Stats {
    let gate = std::sync::Arc::new(Gate::new(1));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire().await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }));
    }
    while gate.stats().waiting < n as usize - 1 {
        tokio::task::yield_now().await;
    }
    let mid = gate.stats();
    assert_eq!((mid.in_flight, mid.waiting), (1, n as usize - 1));
    for t in tasks {
        t.await.unwrap();
    }
    gate.stats()
}

#[tokio::test(start_paused = true)]
async fn stats_time_every_waiter_in_a_short_queue() {
    let stats = queue_of(8).await;
    assert_eq!(stats.admitted, 8);
    assert_eq!(stats.wait.count, 8);
    assert_eq!(stats.wait.max, Duration::from_millis(70));
    assert_eq!(stats.wait.mean, Duration::from_millis(35));
    assert_eq!(stats.wait.p99, Duration::from_millis(70));
}

#[tokio::test(start_paused = true)]
async fn stats_estimate_the_wait_distribution_of_a_long_queue() {
    // Task i waits i * 10 ms: a uniform spread from 0 to 990 ms.
    let stats = queue_of(100).await;
    assert_eq!(stats.admitted, 100);
    assert_eq!(stats.wait.count, 100);
    // A long queue is timed one waiter in eight: the estimates are within one sample.
    let max = stats.wait.max.as_millis();
    assert!((910..=990).contains(&max), "max = {max} ms");
    let mean = stats.wait.mean.as_millis();
    assert!((450..=560).contains(&mean), "mean = {mean} ms");
    let p99 = stats.wait.p99.as_millis();
    assert!((900..=990).contains(&p99), "p99 = {p99} ms");
    let p50 = stats.wait.p50.as_millis();
    assert!((430..=640).contains(&p50), "p50 = {p50} ms");
}
