//! Each metric moves as it should under a scripted scenario on paused time, read through
//! `metrics-util`'s debugging recorder installed for the test's thread.
#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::time::Duration;

use gate_core::adaptive::Aimd;
use gate_core::rate::Rate;
use gate_core::{AcquireError, Gate, Limiter, Outcome, Retry};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::time::advance;

/// A series: its name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// What the recorder holds now. Counters read as set (gates publish totals); gauges and
/// histograms as recorded since the last read.
fn read(snapshotter: &Snapshotter) -> HashMap<Series, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), value)
        })
        .collect()
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<_> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

fn gauge(values: &HashMap<Series, DebugValue>, name: &str, gate: &str) -> f64 {
    match values.get(&series(name, &[("gate.name", gate)])) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name}: {other:?}"),
    }
}

fn admissions(values: &HashMap<Series, DebugValue>, gate: &str, outcome: &str) -> u64 {
    let key = series(
        "gate.admissions",
        &[("gate.name", gate), ("outcome", outcome)],
    );
    match values.get(&key) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("admissions {outcome}: {other:?}"),
    }
}

fn waits(values: &HashMap<Series, DebugValue>, gate: &str) -> Vec<f64> {
    match values.get(&series("gate.wait.duration", &[("gate.name", gate)])) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|v| v.into_inner()).collect(),
        None => Vec::new(),
        other => panic!("waits: {other:?}"),
    }
}

fn recorder() -> (Snapshotter, metrics::LocalRecorderGuard<'static>) {
    let recorder = Box::leak(Box::new(DebuggingRecorder::new()));
    let snapshotter = recorder.snapshotter();
    (snapshotter, metrics::set_default_local_recorder(recorder))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_gate_publishes_its_gauges_counters_and_waits() {
    let (snapshotter, _guard) = recorder();
    let gate = Gate::builder(2)
        .name("api")
        .max_wait(Duration::from_secs(1))
        .max_waiters(2)
        .build()
        .unwrap();
    let first = gate.acquire().await.unwrap();
    let second = gate.try_acquire().unwrap();

    // One queues and gets in after 100ms; one queues and is dropped; one times out.
    let mut admitted = tokio_test::task::spawn(gate.acquire());
    assert!(admitted.poll().is_pending());
    let mut cancelled = tokio_test::task::spawn(gate.acquire());
    assert!(cancelled.poll().is_pending());
    assert_eq!(
        gate.try_acquire().unwrap_err(),
        gate_core::TryAcquireError::NoPermits
    );
    assert_eq!(gate.acquire().await.unwrap_err(), AcquireError::QueueFull);

    gate.publish_metrics();
    let values = read(&snapshotter);
    assert_eq!(gauge(&values, "gate.limit", "api"), 2.0);
    assert_eq!(gauge(&values, "gate.in_flight", "api"), 2.0);
    assert_eq!(gauge(&values, "gate.waiting", "api"), 2.0);
    assert_eq!(admissions(&values, "api", "admitted"), 2);
    assert_eq!(admissions(&values, "api", "rejected"), 2);
    assert!(
        waits(&values, "api").is_empty(),
        "two admitted at once: no wait"
    );

    advance(Duration::from_millis(100)).await;
    drop(cancelled);
    drop(first);
    let permit = admitted.await.unwrap();
    let timed_out = tokio::spawn(async move {
        let gate = Gate::builder(0)
            .name("never")
            .max_wait(Duration::from_millis(10))
            .build()
            .unwrap();
        let refused = gate.acquire().await.unwrap_err();
        gate.publish_metrics();
        refused
    });
    assert_eq!(timed_out.await.unwrap(), AcquireError::TimedOut);

    gate.publish_metrics();
    let values = read(&snapshotter);
    assert_eq!(gauge(&values, "gate.in_flight", "api"), 2.0);
    assert_eq!(gauge(&values, "gate.waiting", "api"), 0.0);
    assert_eq!(admissions(&values, "api", "admitted"), 3);
    assert_eq!(admissions(&values, "api", "cancelled"), 1);
    assert_eq!(admissions(&values, "api", "timed_out"), 0);
    assert_eq!(admissions(&values, "never", "timed_out"), 1);
    // Only the wait since the last publication, near 100ms (the middle of its bucket).
    let published = waits(&values, "api");
    assert_eq!(published.len(), 1, "{published:?}");
    assert!((published[0] - 0.1).abs() <= 0.0125, "{published:?}");
    drop((permit, second));

    gate.publish_metrics();
    let values = read(&snapshotter);
    assert_eq!(gauge(&values, "gate.in_flight", "api"), 0.0);
    assert!(waits(&values, "api").is_empty(), "nothing new");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unnamed_gate_publishes_nothing() {
    let (snapshotter, _guard) = recorder();
    let gate = Gate::new(1);
    let _permit = gate.acquire().await.unwrap();
    gate.publish_metrics();
    Limiter::new(1).publish_metrics();
    assert!(read(&snapshotter).is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_limiter_publishes_its_limit_pushback_pause_and_budgets() {
    let (snapshotter, _guard) = recorder();
    let limiter = Limiter::builder()
        .name("llm")
        .adaptive(Aimd::new())
        .rate(Rate::per_second(10).try_burst(10).unwrap())
        .tokens("1000/min".parse().unwrap())
        .build()
        .unwrap();
    let permit = limiter.acquire_tokens(300).await.unwrap();
    limiter.publish_metrics();
    let values = read(&snapshotter);
    assert_eq!(gauge(&values, "gate.limit", "llm"), 10.0);
    assert_eq!(gauge(&values, "gate.in_flight", "llm"), 1.0);
    assert_eq!(gauge(&values, "gate.rate.remaining", "llm"), 9.0);
    assert_eq!(gauge(&values, "gate.tokens.remaining", "llm"), 700.0);
    assert_eq!(gauge(&values, "gate.paused", "llm"), 0.0);

    // The server pushes back: counted, the limiter pauses and the adaptive limit drops.
    permit.finish(Outcome::Overload {
        retry_after: Some(Duration::from_secs(2)),
    });
    limiter.publish_metrics();
    let values = read(&snapshotter);
    let pushback = series("gate.pushback", &[("gate.name", "llm")]);
    assert_eq!(values[&pushback], DebugValue::Counter(1));
    assert_eq!(gauge(&values, "gate.paused", "llm"), 1.0);
    assert!(gauge(&values, "gate.limit", "llm") < 10.0);
    assert_eq!(gauge(&values, "gate.in_flight", "llm"), 0.0);

    advance(Duration::from_secs(2)).await;
    limiter.publish_metrics();
    let values = read(&snapshotter);
    assert_eq!(gauge(&values, "gate.paused", "llm"), 0.0);
    assert_eq!(gauge(&values, "gate.rate.remaining", "llm"), 10.0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_limiter_without_a_concurrency_limit_publishes_no_limit() {
    let (snapshotter, _guard) = recorder();
    let limiter = Limiter::builder()
        .name("rate-only")
        .rate(Rate::per_second(5))
        .build()
        .unwrap();
    limiter.publish_metrics();
    let values = read(&snapshotter);
    assert!(!values.contains_key(&series("gate.limit", &[("gate.name", "rate-only")])));
    assert!(values.contains_key(&series(
        "gate.rate.remaining",
        &[("gate.name", "rate-only")]
    )));
}

#[derive(Debug, PartialEq)]
struct Busy;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_are_counted_by_outcome() {
    let (snapshotter, _guard) = recorder();
    let gate = Gate::new(1);
    // Three retries: four attempts, the last of which gives up.
    let policy = Retry::fixed(3, Duration::from_millis(10));
    let result: Result<(), _> = policy.call(&gate, || async { Err(Busy) }).await;
    assert!(result.is_err());
    let values = read(&snapshotter);
    let retried = series("gate.retries", &[("outcome", "retried")]);
    let gave_up = series("gate.retries", &[("outcome", "gave_up")]);
    assert_eq!(values[&retried], DebugValue::Counter(3));
    assert_eq!(values[&gave_up], DebugValue::Counter(1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_keyed_gate_publishes_its_global_level_keys_and_refusals() {
    use gate_core::keyed::{KeyedAcquireError, KeyedGate, KeyedTryAcquireError};

    let (snapshotter, _guard) = recorder();
    let gate: KeyedGate<&str> = KeyedGate::builder(1)
        .global(2)
        .max_keys(2)
        .max_idle(0)
        .max_wait(Duration::from_millis(50))
        .max_waiters(1)
        .name("tenants")
        .build()
        .unwrap();
    let a = gate.try_acquire(&"a").unwrap();
    let b = gate.acquire(&"b").await.unwrap();
    // One of `a` queues; the next is refused (queue full), then refused at once by
    // `try_acquire`; a third key finds both keys busy.
    let mut queued = tokio_test::task::spawn(gate.acquire(&"a"));
    assert!(queued.poll().is_pending());
    assert_eq!(
        gate.acquire(&"a").await.unwrap_err(),
        KeyedAcquireError::QueueFull
    );
    assert_eq!(
        gate.try_acquire(&"b").unwrap_err(),
        KeyedTryAcquireError::NoPermits
    );
    assert_eq!(
        gate.acquire(&"c").await.unwrap_err(),
        KeyedAcquireError::TooManyKeys
    );
    assert_eq!(
        gate.try_acquire(&"c").unwrap_err(),
        KeyedTryAcquireError::TooManyKeys
    );

    gate.publish_metrics();
    let values = read(&snapshotter);
    assert_eq!(gauge(&values, "gate.limit", "tenants"), 2.0);
    assert_eq!(gauge(&values, "gate.in_flight", "tenants"), 2.0);
    assert_eq!(gauge(&values, "gate.waiting", "tenants"), 1.0);
    assert_eq!(gauge(&values, "gate.keys", "tenants"), 2.0);
    assert_eq!(admissions(&values, "tenants", "admitted"), 2);
    assert_eq!(admissions(&values, "tenants", "rejected"), 2);
    assert_eq!(admissions(&values, "tenants", "too_many_keys"), 2);
    assert_eq!(admissions(&values, "tenants", "timed_out"), 0);

    // The queued caller times out; one more queues and is dropped; `b` goes idle and is
    // evicted (max_idle 0), `a` is granted and released.
    advance(Duration::from_millis(50)).await;
    assert_eq!(queued.await.unwrap_err(), KeyedAcquireError::TimedOut);
    let mut dropped = tokio_test::task::spawn(gate.acquire(&"a"));
    assert!(dropped.poll().is_pending());
    drop(dropped);
    drop(b);
    gate.publish_metrics();
    let values = read(&snapshotter);
    assert_eq!(admissions(&values, "tenants", "timed_out"), 1);
    assert_eq!(admissions(&values, "tenants", "cancelled"), 1);
    assert_eq!(gauge(&values, "gate.in_flight", "tenants"), 1.0);
    assert_eq!(gauge(&values, "gate.waiting", "tenants"), 0.0);
    assert_eq!(gauge(&values, "gate.keys", "tenants"), 1.0);

    // A queued caller granted by a release is admitted.
    let mut granted = tokio_test::task::spawn(gate.acquire(&"a"));
    assert!(granted.poll().is_pending());
    drop(a);
    let a = granted.await.unwrap();
    gate.publish_metrics();
    let values = read(&snapshotter);
    assert_eq!(admissions(&values, "tenants", "admitted"), 3);
    drop(a);
    gate.publish_metrics();
    let values = read(&snapshotter);
    assert_eq!(gauge(&values, "gate.in_flight", "tenants"), 0.0);
    assert_eq!(gauge(&values, "gate.keys", "tenants"), 0.0);
    // Never a series per key.
    assert!(
        values.keys().all(|(_, labels)| labels
            .iter()
            .all(|(k, _)| k == "gate.name" || k == "outcome")),
        "{values:?}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_keyed_limiter_publishes_its_keys_sums_and_refusals() {
    use gate_core::keyed::{KeyedAcquireError, KeyedLimiter};

    let (snapshotter, _guard) = recorder();
    let limits: KeyedLimiter<u32> = KeyedLimiter::builder(|| {
        Limiter::builder()
            .concurrency(1)
            .rate(Rate::per_second(10))
            .build()
            .unwrap()
    })
    .max_keys(2)
    .name("per-key")
    .build();
    let one = limits.acquire(&1).await.unwrap();
    let two = limits.acquire(&2).await.unwrap();
    let mut waiting = tokio_test::task::spawn(limits.acquire(&1));
    assert!(waiting.poll().is_pending());
    assert_eq!(
        limits.acquire(&3).await.unwrap_err(),
        KeyedAcquireError::TooManyKeys
    );

    limits.publish_metrics();
    let values = read(&snapshotter);
    assert_eq!(gauge(&values, "gate.keys", "per-key"), 2.0);
    assert_eq!(gauge(&values, "gate.in_flight", "per-key"), 2.0);
    assert_eq!(gauge(&values, "gate.waiting", "per-key"), 1.0);
    assert_eq!(admissions(&values, "per-key", "too_many_keys"), 1);
    assert!(!values.contains_key(&series("gate.limit", &[("gate.name", "per-key")])));

    // Both released and refilled: key 3's sweep evicts the idle keys and it gets in.
    drop((one, two));
    let one = waiting.await.unwrap();
    drop(one);
    advance(Duration::from_secs(1)).await;
    let three = limits.acquire(&3).await.unwrap();
    limits.publish_metrics();
    let values = read(&snapshotter);
    assert_eq!(gauge(&values, "gate.keys", "per-key"), 1.0);
    assert_eq!(gauge(&values, "gate.in_flight", "per-key"), 1.0);
    assert_eq!(gauge(&values, "gate.waiting", "per-key"), 0.0);
    assert_eq!(admissions(&values, "per-key", "too_many_keys"), 1);
    drop(three);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn unnamed_keyed_gates_and_limiters_publish_nothing() {
    use gate_core::keyed::{KeyedGate, KeyedLimiter};

    let (snapshotter, _guard) = recorder();
    let gate: KeyedGate<u8> = KeyedGate::new(1);
    let _permit = gate.try_acquire(&1).unwrap();
    gate.publish_metrics();
    let limits: KeyedLimiter<u8> = KeyedLimiter::new(|| Limiter::new(1));
    let _permit = limits.acquire(&1).await.unwrap();
    limits.publish_metrics();
    assert!(read(&snapshotter).is_empty());
}
