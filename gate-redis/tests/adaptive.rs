//! Adaptive shares under a fleet's limit in a real redis-server: each limiter (a process,
//! with its own connections) adapts its own share from its own attempts' outcomes, under
//! the concurrency limit kept in Redis, against a scripted server that refuses whatever
//! runs beyond its capacity.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use gate_core::adaptive::Aimd;
use gate_core::{Admission, Outcome, Report};
use gate_redis::RedisLimiter;
use support::{eventually, held, key, server};
use tokio::time::Instant;

/// `n` limiters on `key` with a fleet limit of `fleet`, each with an AIMD share starting at
/// `initial` and growing to at most the fleet's limit.
fn fleet(n: usize, key: &str, fleet: usize, initial: usize) -> Vec<Arc<RedisLimiter>> {
    (0..n)
        .map(|_| {
            let aimd = Aimd::builder().initial(initial).max(fleet).build().unwrap();
            let limiter = RedisLimiter::builder(server().client())
                .key(key)
                .concurrency(fleet)
                .adaptive(aimd)
                .build()
                .unwrap();
            Arc::new(limiter)
        })
        .collect()
}

/// A server that takes `capacity` requests at once and refuses (429) any beyond them.
#[derive(Default)]
struct Server {
    capacity: usize,
    in_flight: AtomicUsize,
    served: AtomicU64,
    refused: AtomicU64,
}

impl Server {
    /// One request of `work`: whether it was served.
    async fn call(&self, work: Duration) -> Outcome {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let outcome = if now > self.capacity {
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.refused.fetch_add(1, Ordering::SeqCst);
            Outcome::Overload { retry_after: None }
        } else {
            tokio::time::sleep(work).await;
            self.served.fetch_add(1, Ordering::SeqCst);
            Outcome::Success
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        outcome
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.served.load(Ordering::SeqCst),
            self.refused.load(Ordering::SeqCst),
        )
    }
}

/// `callers` callers per limiter hammer `server` through their limiter until `until`.
async fn hammer(
    limiters: &[Arc<RedisLimiter>],
    callers: usize,
    server: &Arc<Server>,
    until: Instant,
) {
    let mut tasks = Vec::new();
    for limiter in limiters {
        for _ in 0..callers {
            let (limiter, server) = (Arc::clone(limiter), Arc::clone(server));
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let permit = limiter.admit().await.unwrap();
                    let outcome = server.call(Duration::from_millis(10)).await;
                    permit.finish(outcome);
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_find_a_capacity_below_the_fleet_limit_and_stop_the_refusals() {
    const CAPACITY: usize = 6;
    let key = key("adaptive-capacity");
    // A fleet limit of 24 is four times what the server takes: fixed, three quarters of
    // what it admits would be refused.
    let limiters = fleet(3, &key, 24, 8);
    let server = Arc::new(Server {
        capacity: CAPACITY,
        ..Server::default()
    });
    let start = Instant::now();
    hammer(&limiters, 8, &server, start + Duration::from_millis(1_500)).await;
    let (served_early, refused_early) = server.counts();
    hammer(
        &limiters,
        8,
        &server,
        Instant::now() + Duration::from_millis(1_500),
    )
    .await;
    let (served, refused) = server.counts();
    let (served_late, refused_late) = (served - served_early, refused - refused_early);
    let shares: Vec<usize> = limiters.iter().map(|l| l.share_limit().unwrap()).collect();
    let total: usize = shares.iter().sum();
    let refused_pct = 100.0 * refused_late as f64 / (served_late + refused_late).max(1) as f64;
    eprintln!(
        "shares {shares:?} (total {total}); first 1.5 s: {served_early} served, {refused_early} \
         refused; next 1.5 s: {served_late} served, {refused_late} refused ({refused_pct:.1}%)"
    );
    // The same fleet without shares: the fixed limit of 24 is what reaches the server.
    let fixed: Vec<_> = (0..3)
        .map(|_| {
            let limiter = RedisLimiter::builder(support::server().client())
                .key(&key)
                .concurrency(24)
                .build()
                .unwrap();
            Arc::new(limiter)
        })
        .collect();
    let control = Arc::new(Server {
        capacity: CAPACITY,
        ..Server::default()
    });
    hammer(
        &fixed,
        8,
        &control,
        Instant::now() + Duration::from_millis(1_000),
    )
    .await;
    let (served_fixed, refused_fixed) = control.counts();
    let fixed_pct = 100.0 * refused_fixed as f64 / (served_fixed + refused_fixed).max(1) as f64;
    eprintln!("without shares: {served_fixed} served, {refused_fixed} refused ({fixed_pct:.1}%)");
    assert!(
        total <= 2 * CAPACITY + limiters.len(),
        "the shares stayed far above the server's capacity: {shares:?}"
    );
    // AIMD probes one above the capacity now and then (refusals are quick, successes take
    // 10 ms, so a probe's refusals weigh more than its share of the time).
    assert!(
        refused_pct <= 40.0,
        "{refused_pct:.1}% refused once adapted"
    );
    assert!(
        fixed_pct >= 2.0 * refused_pct,
        "{fixed_pct:.1}% refused without shares"
    );
    // Found, not starved: the server is kept busy.
    assert!(served_late >= 200, "only {served_late} served in 1.5 s");
    // The limit in Redis is the fleet's ceiling, untouched by the shares.
    assert!(limiters.iter().all(|l| l.limit() == Some(24)));
    assert!(
        eventually(Duration::from_secs(2), || held(support::server(), &key)
            == 0)
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_refusing_every_process_cuts_each_share_once_and_the_fleet_limit_not_at_all() {
    let key = key("adaptive-storm");
    let limiters = fleet(3, &key, 24, 8);
    // Every share full: 8 running in each of the three.
    let mut permits = Vec::new();
    for limiter in &limiters {
        for _ in 0..8 {
            permits.push(limiter.admit().await.unwrap());
        }
    }
    assert_eq!(held(server(), &key), 24);
    // The server refuses them all, the latest first.
    for permit in permits.into_iter().rev() {
        permit.finish(Outcome::Overload { retry_after: None });
    }
    // One overshoot counts once per share: each falls to just below the 8 it ran (AIMD's
    // slow start ends there), so the fleet's total falls once, from 24 to 21; a shared limit
    // cut by each of the three would have fallen three times.
    let shares: Vec<_> = limiters.iter().map(|l| l.share_limit().unwrap()).collect();
    assert_eq!(shares, [7, 7, 7]);
    assert!(limiters.iter().all(|l| l.limit() == Some(24)));
    assert!(eventually(Duration::from_secs(2), || held(server(), &key) == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_does_not_grow_while_the_fleet_limit_holds_its_callers_back() {
    let key = key("adaptive-ceiling");
    // A share of 4 under a fleet limit of 2: at most 2 of the share's 4 seats ever run.
    let aimd = Aimd::builder().initial(4).max(16).build().unwrap();
    let limiter = Arc::new(
        RedisLimiter::builder(server().client())
            .key(&key)
            .concurrency(2)
            .adaptive(aimd)
            .build()
            .unwrap(),
    );
    let most = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (limiter, most, running) = (limiter.clone(), most.clone(), running.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..6 {
                let permit = limiter.admit().await.unwrap();
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                permit.finish(Outcome::Success);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
    // 48 successes, none with the share's 4 running: no sign the share is too small.
    assert_eq!(limiter.share_limit(), Some(4));
    assert_eq!(limiter.capacity(), Some(2));
}
