//! `RedisKeyedLimiter` against a real redis-server: per-key limits shared by several keyed
//! limiters (each with its own connection, as separate processes have), keys independent of
//! each other, idle keys gone from Redis by their TTLs, and this process's keys in memory
//! bounded under a stream of new keys.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gate_core::keyed::KeyedAcquireError;
use gate_core::rate::Rate;
use gate_core::{AcquireError, Admission, BoxAdmission, OwnedAdmission, Report, Retry, WaitLimits};
use gate_redis::{RedisKeyedLimiter, RedisLimiter, RedisLimiterBuilder};
use support::{eventually, held, key, server};
use tokio::time::Instant;

fn template(prefix: &str) -> RedisLimiterBuilder {
    RedisLimiter::builder(server().client()).key(prefix)
}

/// Keys of Redis whose name matches `pattern`.
fn redis_keys(pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query(&mut server().connection())
        .unwrap()
}

/// Counts the callers in flight per key, and the most seen at once.
#[derive(Default)]
struct Counts {
    now: Mutex<HashMap<&'static str, usize>>,
    most: Mutex<HashMap<&'static str, usize>>,
}

impl Counts {
    fn enter(&self, key: &'static str) {
        let mut now = self.now.lock().unwrap();
        let count = now.entry(key).or_default();
        *count += 1;
        let mut most = self.most.lock().unwrap();
        let seen = most.entry(key).or_default();
        *seen = (*seen).max(*count);
    }

    fn leave(&self, key: &'static str) {
        *self.now.lock().unwrap().get_mut(key).unwrap() -= 1;
    }

    fn most(&self, key: &'static str) -> usize {
        self.most.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_keys_rate_holds_across_limiters_and_keys_do_not_share_it() {
    const RATE: u32 = 20;
    const BURST: u32 = 3;
    let prefix = key("keyed-rate");
    let fleet: Vec<Arc<RedisKeyedLimiter<&'static str>>> = (0..2)
        .map(|_| {
            let template = template(&prefix).rate(Rate::per_second(RATE).burst(BURST));
            Arc::new(RedisKeyedLimiter::new(template).unwrap())
        })
        .collect();
    let admitted: Arc<Mutex<HashMap<&str, Vec<Instant>>>> = Arc::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let keyed = Arc::clone(&fleet[task % 2]);
        let tenant = if task % 4 < 2 { "a" } else { "b" };
        let admitted = Arc::clone(&admitted);
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < Duration::from_millis(1_200) {
                let _permit = keyed.acquire(&tenant).await.unwrap();
                let now = Instant::now();
                admitted
                    .lock()
                    .unwrap()
                    .entry(tenant)
                    .or_default()
                    .push(now);
            }
        }));
    }
    futures_util::future::join_all(tasks).await;
    let admitted = admitted.lock().unwrap();
    // Times are read on the answer's arrival, up to a scheduling delay after Redis decided.
    let slack = Duration::from_millis(30);
    for tenant in ["a", "b"] {
        let mut times = admitted[tenant].clone();
        times.sort();
        for (i, &from) in times.iter().enumerate() {
            for window in [Duration::from_millis(250), Duration::from_secs(1)] {
                let count = times[i..]
                    .iter()
                    .take_while(|&&t| t - from <= window)
                    .count();
                let bound = f64::from(BURST) + f64::from(RATE) * (window + slack).as_secs_f64();
                assert!(
                    count as f64 <= bound + 1.0,
                    "key {tenant}: {count} admitted in {window:?} (bound {bound})"
                );
            }
        }
        // Each key had its own rate: both ran close to it, neither took the other's.
        assert!(
            times.len() >= 20,
            "key {tenant}: only {} admitted",
            times.len()
        );
    }
    // Both keys together went past one key's bound: they are two limits, not one.
    let total = admitted["a"].len() + admitted["b"].len();
    let one_key = f64::from(BURST) + f64::from(RATE) * 1.25;
    assert!(total as f64 > one_key + 5.0, "{total} admitted in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_keys_concurrency_holds_across_limiters_and_a_release_wakes_the_other() {
    const LIMIT: usize = 2;
    let prefix = key("keyed-concurrency");
    let fleet: Vec<Arc<RedisKeyedLimiter<&'static str>>> = (0..2)
        .map(|_| Arc::new(RedisKeyedLimiter::new(template(&prefix).concurrency(LIMIT)).unwrap()))
        .collect();
    let counts = Arc::new(Counts::default());
    let served = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..12 {
        let keyed = Arc::clone(&fleet[task % 2]);
        let tenant = if task % 3 == 0 { "b" } else { "a" };
        let (counts, served) = (Arc::clone(&counts), Arc::clone(&served));
        tasks.push(tokio::spawn(async move {
            for _ in 0..6 {
                let permit = keyed.acquire(&tenant).await.unwrap();
                counts.enter(tenant);
                tokio::time::sleep(Duration::from_millis(5)).await;
                counts.leave(tenant);
                drop(permit);
                served.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    futures_util::future::join_all(tasks).await;
    assert_eq!(served.load(Ordering::SeqCst), 72);
    assert!(counts.most("a") <= LIMIT, "a: {}", counts.most("a"));
    assert!(counts.most("b") <= LIMIT, "b: {}", counts.most("b"));
    // Each key had its own permits: both used them all at some point.
    assert_eq!(counts.most("a"), LIMIT);
    assert_eq!(counts.most("b"), LIMIT);
    for tenant in ["a", "b"] {
        let name = fleet[0].redis_name(&tenant);
        assert!(eventually(Duration::from_secs(2), || held(server(), &name) == 0).await);
    }

    // Key "a" full in one limiter: the other admits "b" at once, refuses "a", and its "a"
    // waiter is woken by the release (through the one subscription), not by the slow poll
    // (a quarter of the 10 s lease).
    let a1 = fleet[0].acquire(&"a").await.unwrap();
    let a2 = fleet[0].acquire(&"a").await.unwrap();
    let b = fleet[1].acquire_with(&"b", WaitLimits::NO_WAIT).await;
    assert!(b.is_ok());
    let refused = fleet[1].acquire_with(&"a", WaitLimits::NO_WAIT).await;
    assert_eq!(refused.unwrap_err(), KeyedAcquireError::TimedOut);
    let waiter = tokio::spawn({
        let keyed = Arc::clone(&fleet[1]);
        async move {
            let permit = keyed.acquire(&"a").await.unwrap();
            (Instant::now(), permit)
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let released = Instant::now();
    drop(a1);
    let (admitted, _permit) = waiter.await.unwrap();
    assert!(
        admitted - released < Duration::from_secs(1),
        "woken {:?} after the release",
        admitted - released
    );
    drop(a2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keys_state_vanishes_from_redis_by_its_ttl() {
    let prefix = key("keyed-ttl");
    let keyed: RedisKeyedLimiter<String> = RedisKeyedLimiter::new(
        template(&prefix)
            .concurrency(1)
            .rate(Rate::per_second(50))
            .lease(Duration::from_millis(300))
            .idle_ttl(Duration::from_millis(800)),
    )
    .unwrap();
    let tenant = "org-{1}".to_string();
    let name = keyed.redis_name(&tenant);
    assert_eq!(name, format!("{prefix}:org-%7B1%7D"));
    // A limit stored with `set_limit` (the longest-lived key), a permit, a waiter.
    keyed.limiter(&tenant).unwrap().set_limit(1).await.unwrap();
    let holder = keyed.acquire(&tenant).await.unwrap();
    let refused = keyed.acquire_with(&tenant, WaitLimits::NO_WAIT).await;
    assert!(refused.is_err());
    let pattern = format!("gate:{{{name}}}:*");
    assert!(
        redis_keys(&pattern).len() >= 3,
        "{:?}",
        redis_keys(&pattern)
    );
    drop(holder);
    // Nobody uses the key any more: every one of its keys expires by itself within the
    // idle TTL (the limit's) and the leases (permits and places in the queue).
    let gone = eventually(Duration::from_secs(2), || redis_keys(&pattern).is_empty()).await;
    assert!(gone, "left in Redis: {:?}", redis_keys(&pattern));
    // The hash tag is the key's own: `{PREFIX:org-%7B1%7D}`, escaped.
    let other = "org-2".to_string();
    let _permit = keyed.acquire(&other).await.unwrap();
    let keys = redis_keys(&format!("gate:{{{}}}:*", keyed.redis_name(&other)));
    assert!(!keys.is_empty());
    for name in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&name)
            .query(&mut server().connection())
            .unwrap();
        assert!(ttl != -1, "{name} has no TTL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_memory_stay_bounded_under_ten_thousand_keys_streamed() {
    const MAX_KEYS: usize = 256;
    const MAX_IDLE: usize = 32;
    let prefix = key("keyed-stream");
    let keyed: Arc<RedisKeyedLimiter<u64>> = Arc::new(
        RedisKeyedLimiter::builder(template(&prefix).rate(Rate::per_second(1_000)))
            .max_keys(MAX_KEYS)
            .max_idle(MAX_IDLE)
            .build()
            .unwrap(),
    );
    let most = Arc::new(AtomicUsize::new(0));
    // Four streams of new keys at once, each key used once and let go.
    let mut tasks = Vec::new();
    for stream in 0..4_u64 {
        let (keyed, most) = (Arc::clone(&keyed), Arc::clone(&most));
        tasks.push(tokio::spawn(async move {
            for i in 0..2_500_u64 {
                let permit = keyed.acquire(&(i * 4 + stream)).await.unwrap();
                drop(permit);
                most.fetch_max(keyed.len(), Ordering::SeqCst);
            }
        }));
    }
    futures_util::future::join_all(tasks).await;
    let most = most.load(Ordering::SeqCst);
    assert!(most <= MAX_KEYS, "{most} keys in memory");
    // The sweep keeps the keys near `max_idle`, far below the cap.
    assert!(most <= MAX_IDLE * 2, "{most} keys in memory");
    assert!(
        keyed.len() <= MAX_IDLE * 2,
        "{} keys at the end",
        keyed.len()
    );
    // An evicted key comes back with the state Redis kept: its rate is not reset.
    let back = keyed.acquire(&0).await;
    assert!(back.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_at_the_cap_with_every_key_busy_is_refused_then_admitted_once_one_goes() {
    let prefix = key("keyed-cap");
    let keyed: RedisKeyedLimiter<u32> =
        RedisKeyedLimiter::builder(template(&prefix).concurrency(1))
            .max_keys(4)
            .max_idle(0)
            .build()
            .unwrap();
    let mut held_permits = Vec::new();
    for tenant in 0..4 {
        held_permits.push(keyed.acquire(&tenant).await.unwrap());
    }
    assert_eq!(keyed.len(), 4);
    let refused = keyed.acquire(&4).await;
    assert_eq!(refused.unwrap_err(), KeyedAcquireError::TooManyKeys);
    assert!(!keyed.contains_key(&4));
    drop(held_permits.pop());
    let admitted = keyed.acquire(&4).await;
    assert!(admitted.is_ok());
    assert!(keyed.len() <= 4);
    assert!(
        !keyed.contains_key(&3),
        "the idle key was evicted for the new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_handle_is_an_admission_for_retry_and_boxes() {
    let prefix = key("keyed-handle");
    let keyed: Arc<RedisKeyedLimiter<String>> =
        Arc::new(RedisKeyedLimiter::new(template(&prefix).concurrency(1)).unwrap());
    let tenant = keyed.handle("t-1".to_string());
    assert_eq!(tenant.capacity(), Some(1));
    let answer = Retry::new(0)
        .call(&tenant, || async { Ok::<_, ()>(7) })
        .await
        .unwrap();
    assert_eq!(answer, 7);
    let name = keyed.redis_name(&"t-1".to_string());
    let boxed = BoxAdmission::new(Arc::new(tenant.clone()));
    let permit = boxed.admit_boxed(WaitLimits::UNBOUNDED).await.unwrap();
    assert_eq!(held(server(), &name), 1);
    let refused = Arc::new(tenant.clone())
        .admit_owned_with(WaitLimits::NO_WAIT)
        .await;
    assert_eq!(refused.unwrap_err(), AcquireError::TimedOut);
    // Another key is not held up.
    let other = keyed.handle("t-2".to_string());
    assert!(other.admit_with(WaitLimits::NO_WAIT).await.is_ok());
    drop(permit);
    assert!(eventually(Duration::from_secs(2), || held(server(), &name) == 0).await);
}

/// Clients connected to `server` right now, as it counts them.
fn connected_clients(server: &support::Server) -> usize {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(&mut server.connection())
        .unwrap();
    let line = info
        .lines()
        .find_map(|line| line.strip_prefix("connected_clients:"))
        .unwrap();
    // Less the connection that asked.
    line.trim().parse::<usize>().unwrap() - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_goes_through_one_connection_and_one_subscription() {
    // A server of this test's own, so that no other test's clients are counted.
    let own = support::Server::start();
    let keyed: Arc<RedisKeyedLimiter<u32>> = Arc::new(
        RedisKeyedLimiter::new(
            RedisLimiter::builder(own.client())
                .key("one-connection")
                .concurrency(1),
        )
        .unwrap(),
    );
    // 50 keys, each with a permit out and a waiter queued behind it: every key has used
    // the connection, the renewals and the subscription.
    let mut permits = Vec::new();
    for tenant in 0..50 {
        permits.push(keyed.acquire(&tenant).await.unwrap());
    }
    let waiters: Vec<_> = (0..50)
        .map(|tenant| {
            let keyed = Arc::clone(&keyed);
            tokio::spawn(async move { keyed.acquire(&tenant).await.map(drop) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One multiplexed connection and one pub/sub connection, for 50 keys.
    assert_eq!(connected_clients(&own), 2);
    drop(permits);
    for waiter in waiters {
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("each waiter is woken by its key's release")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_task_renews_the_leases_of_every_key_that_holds_permits() {
    let prefix = key("keyed-renew");
    let lease = Duration::from_millis(300);
    let keyed: RedisKeyedLimiter<u32> =
        RedisKeyedLimiter::new(template(&prefix).concurrency(1).lease(lease)).unwrap();
    let first = keyed.acquire(&1).await.unwrap();
    // A key that takes its permit later, after a renewal found no key holding any.
    tokio::time::sleep(lease).await;
    let second = keyed.acquire(&2).await.unwrap();
    // Held for several leases: both are renewed, neither is lost nor taken by another.
    tokio::time::sleep(lease * 4).await;
    for (tenant, permit) in [(1, &first), (2, &second)] {
        assert!(!permit.lease_lost(), "key {tenant}'s lease was lost");
        assert_eq!(held(server(), &keyed.redis_name(&tenant)), 1);
        let refused = keyed.acquire_with(&tenant, WaitLimits::NO_WAIT).await;
        assert_eq!(refused.unwrap_err(), KeyedAcquireError::TimedOut);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_limit_holds_across_keys_and_limiters_and_a_refusal_gives_the_key_back() {
    const PER_KEY: usize = 2;
    const GLOBAL: usize = 3;
    let prefix = key("keyed-global");
    let global_name = key("keyed-global-all");
    let fleet: Vec<Arc<RedisKeyedLimiter<&'static str>>> = (0..2)
        .map(|_| {
            let global = template(&global_name).concurrency(GLOBAL).build().unwrap();
            let keyed = RedisKeyedLimiter::builder(template(&prefix).concurrency(PER_KEY))
                .global(global)
                .build()
                .unwrap();
            Arc::new(keyed)
        })
        .collect();
    let counts = Arc::new(Counts::default());
    let mut tasks = Vec::new();
    for task in 0..12 {
        let keyed = Arc::clone(&fleet[task % 2]);
        let tenant = ["a", "b", "c"][task % 3];
        let counts = Arc::clone(&counts);
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let _permit = keyed.acquire(&tenant).await.unwrap();
                counts.enter(tenant);
                counts.enter("all");
                tokio::time::sleep(Duration::from_millis(5)).await;
                counts.leave("all");
                counts.leave(tenant);
            }
        }));
    }
    futures_util::future::join_all(tasks).await;
    assert_eq!(counts.most("all"), GLOBAL);
    for tenant in ["a", "b", "c"] {
        assert!(
            counts.most(tenant) <= PER_KEY,
            "{tenant}: {}",
            counts.most(tenant)
        );
    }
    assert!(eventually(Duration::from_secs(2), || held(server(), &global_name) == 0).await);

    // The global limit full: a key with room of its own is refused, and gives its permit
    // back, so the key is not held by a caller that got nothing.
    let mut held_all = Vec::new();
    for tenant in ["a", "b", "c"] {
        held_all.push(fleet[0].acquire(&tenant).await);
    }
    assert!(held_all.iter().all(Result::is_ok));
    assert_eq!(held(server(), &global_name), GLOBAL);
    let refused = fleet[1].acquire_with(&"d", WaitLimits::NO_WAIT).await;
    assert_eq!(refused.unwrap_err(), KeyedAcquireError::TimedOut);
    let d = fleet[1].redis_name(&"d");
    assert!(eventually(Duration::from_secs(2), || held(server(), &d) == 0).await);
    // The handle's capacity is the smaller of the two limits.
    assert_eq!(fleet[1].handle("e").capacity(), Some(PER_KEY));
    drop(held_all);
    let permit = fleet[1].acquire(&"d").await.unwrap();
    // A server's time to stay away pauses the key, not every key.
    permit.pushback(Duration::from_secs(2));
    let paused = |name: &str| {
        redis::cmd("EXISTS")
            .arg(format!("gate:{{{name}}}:pause"))
            .query::<bool>(&mut server().connection())
            .unwrap()
    };
    assert!(eventually(Duration::from_secs(1), || paused(&d)).await);
    assert!(!paused(&global_name));
}

/// The ids of the permits of limit `name` held in Redis.
fn held_ids(name: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(format!("gate:{{{name}}}:held"))
        .arg(0)
        .arg(-1)
        .query(&mut server().connection())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_again_after_eviction_never_reuses_an_id() {
    // Regression: each key's ids restarted at 0 when it was made again, so a release of its
    // evicted incarnation still on its way could free the new incarnation's permit.
    let prefix = key("keyed-ids");
    let keyed: RedisKeyedLimiter<u32> =
        RedisKeyedLimiter::builder(template(&prefix).concurrency(1))
            .max_keys(1)
            .max_idle(0)
            .build()
            .unwrap();
    let name = keyed.redis_name(&1);
    let first = keyed.acquire(&1).await.unwrap();
    let before = held_ids(&name);
    drop(first);
    assert!(eventually(Duration::from_secs(2), || held_ids(&name).is_empty()).await);
    // Key 2 takes the only place in memory: key 1 is evicted, and made again after.
    drop(keyed.acquire(&2).await.unwrap());
    assert!(!keyed.contains_key(&1));
    let _again = keyed.acquire(&1).await.unwrap();
    let after = held_ids(&name);
    assert_eq!((before.len(), after.len()), (1, 1));
    assert_ne!(before, after);
}

#[tokio::test]
async fn an_adaptive_template_is_refused_at_build_rather_than_ignored_for_every_key() {
    let adaptive = template(&key("keyed-adaptive"))
        .concurrency(8)
        .adaptive(gate_core::adaptive::Aimd::new());
    let built = RedisKeyedLimiter::<u32>::builder(adaptive).build();
    assert!(matches!(
        built.map(|_| ()),
        Err(gate_redis::BuildError::AdaptivePerKey)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_takes_back_what_an_earlier_process_of_its_instance_left() {
    let prefix = key("keyed-instance");
    let keyed: RedisKeyedLimiter<&str> = RedisKeyedLimiter::builder(
        template(&prefix)
            .concurrency(1)
            .lease(Duration::from_secs(30))
            .instance("pod-0"),
    )
    .max_idle(0)
    .build()
    .unwrap();
    // What a killed process left: a permit of instance `pod-0` under another incarnation
    // in each of two keys, and one of `pod-1` in a third, each with half a minute of lease.
    let mut conn = server().connection();
    let mut orphan = |tenant: &'static str, id: &str| {
        let held = format!("gate:{{{}}}:held", keyed.redis_name(&tenant));
        let (secs, _): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
        let _: () = redis::pipe()
            .zadd(&held, id, (secs + 30) * 1_000)
            .pexpire(&held, 60_000)
            .query(&mut conn)
            .unwrap();
    };
    orphan("a", "pod-0/00000000000000aa/0000000000000001-0");
    orphan("b", "pod-0/00000000000000aa/0000000000000001-1");
    orphan("c", "pod-1/00000000000000aa/0000000000000001-2");

    // Each key's first admission takes its own key's orphan back, not another instance's.
    let a = keyed.acquire_with(&"a", WaitLimits::NO_WAIT).await.unwrap();
    assert_eq!(
        held(server(), &keyed.redis_name(&"b")),
        1,
        "b untouched yet"
    );
    let b = keyed.acquire_with(&"b", WaitLimits::NO_WAIT).await.unwrap();
    assert_eq!(
        keyed
            .acquire_with(&"c", WaitLimits::NO_WAIT)
            .await
            .unwrap_err(),
        KeyedAcquireError::TimedOut
    );
    assert_eq!(held(server(), &keyed.redis_name(&"c")), 1);
    // Another keyed limiter of this process, with the same instance name, takes nothing of
    // the first's.
    let twin: RedisKeyedLimiter<&str> = RedisKeyedLimiter::builder(
        template(&prefix)
            .concurrency(1)
            .lease(Duration::from_secs(30))
            .instance("pod-0"),
    )
    .build()
    .unwrap();
    assert_eq!(
        twin.acquire_with(&"b", WaitLimits::NO_WAIT)
            .await
            .unwrap_err(),
        KeyedAcquireError::TimedOut
    );
    assert!(!b.lease_lost());
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_returns_once_the_releases_of_every_key_have_reached_redis() {
    let prefix = key("keyed-flush");
    let keyed: RedisKeyedLimiter<u32> =
        RedisKeyedLimiter::builder(template(&prefix).concurrency(2))
            .build()
            .unwrap();
    for round in 0..5 {
        let permits = [
            keyed.acquire(&1).await.unwrap(),
            keyed.acquire(&2).await.unwrap(),
        ];
        drop(permits);
        keyed.flush().await;
        for tenant in [1, 2] {
            assert_eq!(
                held(server(), &keyed.redis_name(&tenant)),
                0,
                "round {round}: key {tenant}'s release had not arrived"
            );
        }
    }
}
