//! redis-server stopped and restarted in the middle of a run: each failure policy holds
//! while it is down, nothing hangs past the timeout, and sharing resumes by itself.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gate_core::{AcquireError, Admission, Limiter, WaitLimits};
use gate_redis::{FailurePolicy, RedisLimiter};
use support::Server;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_millis(100);

fn limiter(server: &Server, key: &str, policy: FailurePolicy) -> Arc<RedisLimiter> {
    Arc::new(
        RedisLimiter::builder(server.client())
            .key(key)
            .concurrency(2)
            .lease(Duration::from_millis(600))
            .timeout(TIMEOUT)
            .on_failure(policy)
            .build()
            .unwrap(),
    )
}

/// Admits through `limiter` until it is shared again, within `within`.
async fn shared_again(limiter: &RedisLimiter, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(permit) = limiter.admit_with(WaitLimits::NO_WAIT).await
            && permit.is_shared()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_policy_holds_while_redis_is_down_and_sharing_resumes_when_it_returns() {
    let server = Server::start();
    let closed = limiter(&server, "outage-closed", FailurePolicy::Closed);
    let open = limiter(&server, "outage-open", FailurePolicy::Open);
    let local = limiter(
        &server,
        "outage-local",
        FailurePolicy::local(Limiter::new(1)),
    );
    for limiter in [&closed, &open, &local] {
        assert!(limiter.admit().await.unwrap().is_shared());
    }

    // A run in progress through the local policy: every admission answers, in bounded time.
    let stop = Arc::new(AtomicBool::new(false));
    let (shared, fallback) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let run: Vec<_> = (0..4)
        .map(|_| {
            let (local, stop) = (Arc::clone(&local), Arc::clone(&stop));
            let (shared, fallback) = (Arc::clone(&shared), Arc::clone(&fallback));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    let permit = tokio::time::timeout(Duration::from_secs(2), local.admit())
                        .await
                        .expect("an admission hung")
                        .expect("the local policy refused");
                    assert!(asked.elapsed() < Duration::from_secs(2));
                    let counter = if permit.is_shared() {
                        &shared
                    } else {
                        &fallback
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    let held = closed.admit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.stop();
    let asked = Instant::now();
    assert_eq!(closed.admit().await.unwrap_err(), AcquireError::Unavailable);
    assert!(
        asked.elapsed() < TIMEOUT * 5,
        "closed took {:?}",
        asked.elapsed()
    );
    // Refused at once now, without paying the timeout again.
    let asked = Instant::now();
    assert_eq!(closed.admit().await.unwrap_err(), AcquireError::Unavailable);
    assert!(asked.elapsed() < TIMEOUT);
    let admitted = open.admit().await.unwrap();
    assert!(!admitted.is_shared());
    drop(admitted);
    // The local limit (1) holds while Redis is away.
    stop.store(true, Ordering::Relaxed);
    futures_util::future::join_all(run).await;
    let one = local.admit().await.unwrap();
    assert!(!one.is_shared());
    assert_eq!(
        local.admit_with(WaitLimits::NO_WAIT).await.unwrap_err(),
        AcquireError::TimedOut
    );
    drop(one);
    // A permit whose lease cannot be renewed is reported lost once the lease has run out.
    assert!(support::eventually(Duration::from_secs(2), || held.lease_lost()).await);
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.restart();
    for limiter in [&closed, &open, &local] {
        assert!(
            shared_again(limiter, Duration::from_secs(5)).await,
            "{limiter:?} did not recover"
        );
    }
    assert!(shared.load(Ordering::Relaxed) > 0 && fallback.load(Ordering::Relaxed) > 0);
}

// Regression: the first admission after a restart went out on the connection Redis had
// closed, failed ("broken pipe"), and the failure policy then refused every caller for
// `RECHECK_AFTER` though Redis was up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admission_after_a_restart_is_shared_at_once() {
    let server = Server::start();
    let limiter = limiter(&server, "restarted", FailurePolicy::Closed);
    drop(limiter.admit().await.unwrap());
    limiter.flush().await;
    server.stop();
    server.restart();
    let permit = limiter.admit_with(WaitLimits::NO_WAIT).await;
    assert!(permit.is_ok_and(|permit| permit.is_shared()));
}
