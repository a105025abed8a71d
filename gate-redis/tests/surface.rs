//! A `RedisLimiter` plugs in wherever a local limiter does, with nothing changed in them:
//! `Retry::call` (whose overload reports pause every process), `Batch` (sized by the shared
//! limit), `BoxAdmission`, gate-tower's `GateLayer::with_admission` and
//! `#[gated(limiter = X)]`.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use gate_core::{Admission, Backpressure, Batch, BoxAdmission, Outcome, Report, Retry};
use gate_redis::RedisLimiter;
use gate_tower::GateLayer;
use http::{Request, Response, StatusCode};
use support::{eventually, held, key, server};
use tower::{Layer, ServiceExt, service_fn};

#[derive(Debug, PartialEq)]
struct Overloaded;

impl Backpressure for Overloaded {
    fn is_overload(&self) -> bool {
        true
    }

    fn retry_after(&self) -> Option<Duration> {
        Some(Duration::from_millis(300))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_call_reports_an_overload_as_a_shared_pause() {
    let key = key("surface-retry");
    let limiter = RedisLimiter::builder(server().client())
        .key(&key)
        .concurrency(2)
        .build()
        .unwrap();
    let other = RedisLimiter::builder(server().client())
        .key(&key)
        .concurrency(2)
        .build()
        .unwrap();
    let policy = Retry::<Overloaded>::builder(0)
        .honor_retry_after()
        .build()
        .unwrap();
    let answer = policy
        .call(&limiter, || async { Err::<(), _>(Overloaded) })
        .await;
    assert!(answer.is_err());
    let pause = format!("gate:{{{key}}}:pause");
    assert!(
        eventually(Duration::from_secs(1), || {
            redis::cmd("EXISTS")
                .arg(&pause)
                .query::<bool>(&mut server().connection())
                .unwrap()
        })
        .await,
        "the overload paused the limit in Redis"
    );
    assert!(
        other
            .admit_with(gate_core::WaitLimits::NO_WAIT)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_within_the_shared_limit() {
    let key = key("surface-batch");
    let limiter = RedisLimiter::builder(server().client())
        .key(&key)
        .concurrency(3)
        .build()
        .unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let report = Batch::new(&limiter)
        .run(0..20, |i| {
            let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most));
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(i * 2)
            }
        })
        .await;
    assert!(report.all_succeeded());
    assert_eq!(
        report.successes().copied().sum::<i32>(),
        (0..20).map(|i| i * 2).sum()
    );
    assert!(most.load(Ordering::SeqCst) <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boxed_redis_limiter_admits_and_releases() {
    let key = key("surface-boxed");
    let limiter = RedisLimiter::builder(server().client())
        .key(&key)
        .concurrency(1)
        .build()
        .unwrap();
    let boxed = BoxAdmission::new(Arc::new(limiter));
    assert_eq!(boxed.capacity(), Some(1));
    let permit = boxed
        .admit_boxed(gate_core::WaitLimits::UNBOUNDED)
        .await
        .unwrap();
    assert_eq!(held(server(), &key), 1);
    permit.finish(Outcome::Success);
    assert!(eventually(Duration::from_secs(1), || held(server(), &key) == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_over_a_redis_limiter_holds_the_shared_permit_while_the_call_runs() {
    let key = key("surface-layer");
    let limiter = RedisLimiter::builder(server().client())
        .key(&key)
        .concurrency(1)
        .build()
        .unwrap();
    let layer = GateLayer::with_admission(Arc::new(limiter));
    let held_key = key.clone();
    let service = layer.layer(service_fn(move |_: Request<String>| {
        let held_key = held_key.clone();
        async move {
            let held = held(server(), &held_key);
            let response = Response::builder()
                .header("x-held", held)
                .body(String::new());
            Ok::<_, Infallible>(response.unwrap())
        }
    }));
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-held"],
        "1",
        "the call ran holding the permit in Redis"
    );
    drop(response);
    assert!(eventually(Duration::from_secs(1), || held(server(), &key) == 0).await);
}

static GATED_KEY: LazyLock<String> = LazyLock::new(|| key("surface-gated"));

static SHARED: LazyLock<RedisLimiter> = LazyLock::new(|| {
    RedisLimiter::builder(server().client())
        .key(GATED_KEY.as_str())
        .concurrency(2)
        .build()
        .unwrap()
});

#[gate_core::gated(limiter = SHARED, retry = 1, wait = "10ms")]
async fn held_while_called() -> Result<usize, ()> {
    Ok(held(server(), &GATED_KEY))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_function_draws_from_a_redis_limiter() {
    assert_eq!(held_while_called().await, Ok(1));
    assert!(eventually(Duration::from_secs(1), || held(server(), &GATED_KEY) == 0).await);
}
