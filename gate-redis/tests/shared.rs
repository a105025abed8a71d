//! A limit shared through a real redis-server by several limiters (each with its own
//! connections, as separate processes have): concurrency, the queue, the rate, the pause,
//! leases and `set_limit`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gate_core::rate::Rate;
use gate_core::{AcquireError, Admission, Outcome, Report, WaitLimits};
use gate_redis::{RedisLimiter, RedisLimiterBuilder};
use support::{eventually, held, key, server};
use tokio::time::Instant;

fn builder(key: &str) -> RedisLimiterBuilder {
    RedisLimiter::builder(server().client()).key(key)
}

/// `n` limiters on one key, as `n` processes would build them.
fn fleet(n: usize, build: impl Fn() -> RedisLimiterBuilder) -> Vec<Arc<RedisLimiter>> {
    (0..n).map(|_| Arc::new(build().build().unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_is_held_in_redis_and_released_in_the_background_on_drop() {
    let key = key("held");
    let limiter = builder(&key).concurrency(2).build().unwrap();
    let permit = limiter.admit().await.unwrap();
    assert!(permit.is_shared());
    assert_eq!(held(server(), &key), 1);
    let second = limiter.admit().await.unwrap();
    assert_eq!(held(server(), &key), 2);
    let refused = limiter.admit_with(WaitLimits::NO_WAIT).await;
    assert_eq!(refused.unwrap_err(), AcquireError::TimedOut);
    drop(permit);
    second.finish(Outcome::Success);
    assert!(eventually(Duration::from_secs(2), || held(server(), &key) == 0).await);
}

// Regression: a name was put in the hash tag as it was, so `a}{b`'s keys were
// `gate:{a}{b}:...`, in the Cluster slot of the limit named `a` (Redis hashes what is between
// the first `{` and the next `}`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_braces_keeps_its_keys_in_a_hash_tag_of_its_own() {
    let plain = key("tag");
    let braced = format!("{plain}}}{{b%");
    let limiter = builder(&braced).concurrency(1).build().unwrap();
    assert_eq!(limiter.key(), braced);
    let _permit = limiter.admit().await.unwrap();
    let escaped = format!("{plain}%7D%7Bb%25");
    assert_eq!(held(server(), &escaped), 1);
    assert_eq!(held(server(), &plain), 0);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("gate:*{plain}*"))
        .query(&mut server().connection())
        .unwrap();
    assert!(!keys.is_empty());
    for name in &keys {
        let tag = &name["gate:{".len()..name.find('}').unwrap()];
        assert_eq!(tag, escaped, "{name}");
    }
    // The escaped form, given as a name, is another limit (its `%` is escaped in turn):
    // it admits while the braced limit's one permit is held.
    let other = builder(&escaped).concurrency(1).build().unwrap();
    let _held = other.admit_with(WaitLimits::NO_WAIT).await.unwrap();
    assert_eq!(held(server(), &format!("{plain}%257D%257Bb%2525")), 1);
}

/// One caller counted in flight while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(in_flight: &'a AtomicUsize, most: &AtomicUsize) -> Self {
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        Self(in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_never_exceeded_across_limiters_with_random_cancellation() {
    const LIMIT: usize = 3;
    let key = key("never-exceeded");
    let limiters = fleet(3, || {
        builder(&key)
            .concurrency(LIMIT)
            .lease(Duration::from_secs(2))
    });
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..60_u64 {
        let limiter = Arc::clone(&limiters[task as usize % limiters.len()]);
        let (in_flight, most, done) = (in_flight.clone(), most.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let work = async {
                let permit = limiter.admit().await.unwrap();
                // Counted out before the permit goes, even when cancelled while holding it.
                let counted = InFlight::enter(&in_flight, &most);
                tokio::time::sleep(Duration::from_millis(3)).await;
                drop(counted);
                drop(permit);
                done.fetch_add(1, Ordering::SeqCst);
            };
            // Every third caller gives up after a pseudo-random 1 to 13 ms, wherever it is.
            if task % 3 == 0 {
                let _ = tokio::time::timeout(Duration::from_millis(1 + task * 7 % 13), work).await;
            } else {
                work.await;
            }
        }));
    }
    tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::future::join_all(tasks),
    )
    .await
    .expect("every caller is admitted or gives up");
    assert!(
        most.load(Ordering::SeqCst) <= LIMIT,
        "{} in flight",
        most.load(Ordering::SeqCst)
    );
    assert!(done.load(Ordering::SeqCst) >= 40);
    assert!(eventually(Duration::from_secs(2), || held(server(), &key) == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_woken_by_a_release_in_another_limiter_without_polling() {
    let key = key("woken");
    // A lease of 8 s polls every 2 s: a wake-up far sooner than that came from pub/sub.
    let limiters = fleet(2, || {
        builder(&key).concurrency(1).lease(Duration::from_secs(8))
    });
    let permit = limiters[0].admit().await.unwrap();
    let waiter = {
        let limiter = Arc::clone(&limiters[1]);
        tokio::spawn(async move {
            let permit = limiter.admit().await.unwrap();
            (Instant::now(), permit)
        })
    };
    // The waiter is queued and subscribed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released = Instant::now();
    drop(permit);
    let (admitted, _permit) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    let latency = admitted - released;
    assert!(
        latency < Duration::from_millis(500),
        "woken after {latency:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_admitted_in_arrival_order_across_limiters() {
    let key = key("order");
    let limiters = fleet(3, || builder(&key).concurrency(1));
    let holder = limiters[0].admit().await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..6 {
        let limiter = Arc::clone(&limiters[i % 3]);
        let order = Arc::clone(&order);
        waiters.push(tokio::spawn(async move {
            let permit = limiter.admit().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(permit);
        }));
        // Each waiter is in the queue before the next arrives.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    drop(holder);
    tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(waiters),
    )
    .await
    .unwrap();
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_waiter_gives_its_place_back_at_once() {
    let key = key("cancelled");
    // Without the give-back, the cancelled place would block the queue for its lease (5 s).
    let limiters = fleet(2, || {
        builder(&key).concurrency(1).lease(Duration::from_secs(5))
    });
    let holder = limiters[0].admit().await.unwrap();
    let gave_up = limiters[1]
        .admit_with(WaitLimits {
            max_wait: Some(Duration::from_millis(100)),
            max_waiters: 10,
        })
        .await;
    assert_eq!(gave_up.unwrap_err(), AcquireError::TimedOut);
    let next = {
        let limiter = Arc::clone(&limiters[1]);
        tokio::spawn(async move { limiter.admit().await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(holder);
    tokio::time::timeout(Duration::from_secs(1), next)
        .await
        .expect("the next waiter is not stuck behind the cancelled one")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded_across_limiters() {
    let key = key("queue-full");
    let limiters = fleet(2, || builder(&key).concurrency(1));
    let _holder = limiters[0].admit().await.unwrap();
    let limits = WaitLimits {
        max_wait: None,
        max_waiters: 1,
    };
    let first = {
        let limiter = Arc::clone(&limiters[0]);
        tokio::spawn(async move { limiter.admit_with(limits).await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = limiters[1].admit_with(limits).await;
    assert_eq!(second.unwrap_err(), AcquireError::QueueFull);
    first.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_holds_in_every_window_across_limiters() {
    const RATE: u32 = 40;
    const BURST: u32 = 5;
    let key = key("rate");
    let limiters = fleet(3, || {
        builder(&key).rate(Rate::per_second(RATE).burst(BURST))
    });
    let admitted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..12 {
        let limiter = Arc::clone(&limiters[task % 3]);
        let admitted = Arc::clone(&admitted);
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < Duration::from_millis(1_200) {
                let _permit = limiter.admit().await.unwrap();
                admitted.lock().unwrap().push(Instant::now());
            }
        }));
    }
    futures_util::future::join_all(tasks).await;
    let mut times = admitted.lock().unwrap().clone();
    times.sort();
    // Times are read on arrival of the answer, up to a scheduling delay after Redis decided:
    // the windows are widened by a tolerance.
    let slack = Duration::from_millis(30);
    for (i, &from) in times.iter().enumerate() {
        for window in [
            Duration::from_millis(100),
            Duration::from_millis(500),
            Duration::from_secs(1),
        ] {
            let count = times[i..]
                .iter()
                .take_while(|&&t| t - from <= window)
                .count();
            let bound = BURST as f64 + RATE as f64 * (window + slack).as_secs_f64();
            assert!(
                count as f64 <= bound + 1.0,
                "{count} admitted in {window:?} (bound {bound})"
            );
        }
    }
    // And the fleet was kept busy: close to the rate over the run.
    assert!(times.len() >= 40, "only {} admitted", times.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushback_pauses_every_limiter_and_no_longer_than_the_cap() {
    let key = key("pause");
    let limiters = fleet(2, || {
        builder(&key)
            .concurrency(4)
            .max_pause(Duration::from_millis(400))
    });
    let permit = limiters[0].admit().await.unwrap();
    // A hostile Retry-After: a century.
    permit.finish(Outcome::Overload {
        retry_after: Some(Duration::from_secs(100 * 365 * 86_400)),
    });
    let pause_key = format!("gate:{{{key}}}:pause");
    assert!(
        eventually(Duration::from_secs(1), || {
            redis::cmd("PTTL")
                .arg(&pause_key)
                .query::<i64>(&mut server().connection())
                .unwrap()
                > 0
        })
        .await
    );
    let left: i64 = redis::cmd("PTTL")
        .arg(&pause_key)
        .query(&mut server().connection())
        .unwrap();
    assert!(left <= 400, "paused for {left} ms");
    assert_eq!(
        limiters[1]
            .admit_with(WaitLimits::NO_WAIT)
            .await
            .unwrap_err(),
        AcquireError::TimedOut
    );
    let asked = Instant::now();
    let _permit = tokio::time::timeout(Duration::from_secs(2), limiters[1].admit())
        .await
        .unwrap()
        .unwrap();
    assert!(
        asked.elapsed() >= Duration::from_millis(100),
        "the pause was not waited for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holders_permit_expires_with_its_lease_and_not_before() {
    let key = key("crashed");
    let lease = Duration::from_millis(800);
    // The "crashed" holder: its runtime (and so its renewals and release) ends with the
    // permit still held.
    {
        let key = key.clone();
        support::crash_holding_a_permit(move || {
            builder(&key).concurrency(1).lease(lease).build().unwrap()
        });
    }
    let crashed = Instant::now();
    let limiter = builder(&key).concurrency(1).lease(lease).build().unwrap();
    tokio::time::sleep(lease / 2).await;
    assert_eq!(
        limiter.admit_with(WaitLimits::NO_WAIT).await.unwrap_err(),
        AcquireError::TimedOut,
        "freed before its lease ran out"
    );
    let _permit = tokio::time::timeout(Duration::from_secs(3), limiter.admit())
        .await
        .unwrap()
        .unwrap();
    let freed = crashed.elapsed();
    assert!(
        freed >= lease / 2 && freed < lease + Duration::from_millis(600),
        "freed after {freed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_keeps_its_permit_past_the_lease_and_is_told_when_it_is_lost() {
    let key = key("renewed");
    let lease = Duration::from_millis(300);
    let limiter = builder(&key).concurrency(1).lease(lease).build().unwrap();
    let permit = limiter.admit().await.unwrap();
    tokio::time::sleep(lease * 3).await;
    assert_eq!(held(server(), &key), 1, "renewed in the background");
    assert!(!permit.lease_lost());
    // As Redis would after a stall longer than the lease: the permit is gone.
    let _: i64 = redis::cmd("DEL")
        .arg(format!("gate:{{{key}}}:held"))
        .query(&mut server().connection())
        .unwrap();
    assert!(eventually(Duration::from_secs(2), || permit.lease_lost()).await);
    assert_eq!(held(server(), &key), 0, "a lost lease is not taken back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_limit_is_shared_and_wakes_waiters() {
    let key = key("set-limit");
    let limiters = fleet(2, || builder(&key).concurrency(1));
    let _first = limiters[0].admit().await.unwrap();
    let waiter = {
        let limiter = Arc::clone(&limiters[1]);
        tokio::spawn(async move { limiter.admit().await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    limiters[0].set_limit(2).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let _second = limiters[1].admit().await.unwrap();
    assert_eq!(limiters[1].capacity(), Some(2));
    assert_eq!(held(server(), &key), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_has_a_ttl() {
    let key = key("ttl");
    let limiter = builder(&key)
        .concurrency(1)
        .rate(Rate::per_second(10))
        .lease(Duration::from_millis(500))
        .build()
        .unwrap();
    limiter.set_limit(1).await.unwrap();
    let _holder = limiter.admit().await.unwrap();
    let queued = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.admit().await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut conn = server().connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("gate:{{{key}}}:*"))
        .query(&mut conn)
        .unwrap();
    assert!(keys.len() >= 5, "{keys:?}");
    for name in keys {
        // -1: no TTL; -2: expired since it was listed (the rate's key lives ~100 ms), fine.
        let ttl: i64 = redis::cmd("PTTL").arg(&name).query(&mut conn).unwrap();
        assert!(ttl != -1, "{name} has no TTL");
    }
    queued.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_settings_are_brought_within_what_redis_accepts() {
    // A pause cap and an idle TTL of `Duration::MAX` would be refused by Redis (an invalid
    // expire time), failing every pause and every admission: they are capped instead.
    let key = key("hostile-settings");
    let limiter = builder(&key)
        .concurrency(1)
        .max_pause(Duration::MAX)
        .idle_ttl(Duration::MAX)
        .build()
        .unwrap();
    limiter.set_limit(1).await.unwrap();
    let permit = limiter.admit().await.unwrap();
    assert!(permit.is_shared());
    permit.pushback(Duration::MAX);
    let pause_key = format!("gate:{{{key}}}:pause");
    assert!(
        eventually(Duration::from_secs(1), || {
            redis::cmd("PTTL")
                .arg(&pause_key)
                .query::<i64>(&mut server().connection())
                .unwrap()
                > 0
        })
        .await
    );
    let left: i64 = redis::cmd("PTTL")
        .arg(&pause_key)
        .query(&mut server().connection())
        .unwrap();
    assert!(left <= 86_400_000, "paused for {left} ms");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("gate:{{{key}}}:limit"))
        .query(&mut server().connection())
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 365 * 86_400_000,
        "limit kept for {ttl} ms"
    );
}

/// A waiter in a runtime of its own, which stops dead 200 ms after it asked, as a killed
/// process does: nothing gives its place back. Join the thread to wait for its end.
fn crash_waiting(builder: RedisLimiterBuilder) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let limiter = Arc::new(runtime.block_on(async { builder.build().unwrap() }));
        let waiter = Arc::clone(&limiter);
        runtime.spawn(async move { waiter.admit().await.map(drop) });
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
        runtime.shutdown_background();
    })
}

// The acquire script skips the queue while its state says it is empty: a caller that joins
// it must say otherwise, or a newcomer takes a freed permit from the waiter in front of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_never_takes_a_freed_permit_from_a_waiter_in_the_queue() {
    let key = key("newcomer");
    let lease = Duration::from_secs(2);
    let build = || builder(&key).concurrency(1).lease(lease);
    let holder = build().build().unwrap();
    let permit = holder.admit().await.unwrap();
    let state = format!("gate:{{{key}}}:state");
    let read_state = || {
        redis::cmd("GET")
            .arg(&state)
            .query::<Option<String>>(&mut server().connection())
            .unwrap()
    };
    assert_eq!(
        read_state().as_deref(),
        Some("0"),
        "the queue is known empty"
    );
    // A waiter that stops dead in the queue: nobody wakes it, it never takes the permit.
    crash_waiting(build()).join().unwrap();
    let last_look = Instant::now();
    drop(permit);
    assert!(eventually(Duration::from_secs(1), || held(server(), &key) == 0).await);
    let newcomer = build().build().unwrap();
    let refused = newcomer.admit_with(WaitLimits::NO_WAIT).await.unwrap_err();
    assert!(
        last_look.elapsed() < lease / 2,
        "too slow: the waiter's place lapsed"
    );
    assert_eq!(refused, AcquireError::TimedOut, "the waiter is in front");
    // Once the waiter's place lapses, the queue is known empty again.
    let admitted = tokio::time::timeout(Duration::from_secs(3), newcomer.admit())
        .await
        .unwrap()
        .unwrap();
    assert!(admitted.is_shared());
    assert_eq!(read_state().as_deref(), Some("0"));
}

// A crashed waiter kept its place at the head of the queue for a whole lease, so that a
// crashed process's waiters stalled every other process's admissions for that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_waiters_place_in_the_queue_lapses_half_a_lease_after_its_last_look() {
    let key = key("crashed-waiter");
    let lease = Duration::from_secs(2);
    let build = || builder(&key).concurrency(1).lease(lease);
    let holder = build().build().unwrap();
    let permit = holder.admit().await.unwrap();
    // A waiter in a runtime of its own, which then stops dead, as a killed process does:
    // nothing gives its place back.
    let queue = format!("gate:{{{key}}}:queue");
    let queued = || {
        redis::cmd("ZCARD")
            .arg(&queue)
            .query::<usize>(&mut server().connection())
            .unwrap()
    };
    let crashed = crash_waiting(build());
    assert!(eventually(Duration::from_secs(2), || queued() == 1).await);
    let last_look = Instant::now();
    crashed.join().unwrap();
    let live = Arc::new(build().build().unwrap());
    let waiter = tokio::spawn({
        let live = Arc::clone(&live);
        async move { live.admit().await.map(|permit| (Instant::now(), permit)) }
    });
    assert!(eventually(Duration::from_secs(2), || queued() == 2).await);
    drop(permit);
    let (admitted, _permit) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let after = admitted - last_look;
    assert!(
        after >= lease / 2 - Duration::from_millis(100),
        "the crashed waiter's place was not kept: admitted {after:?} after its last look"
    );
    assert!(
        after < lease,
        "the crashed waiter's place was kept {after:?}, a lease"
    );
}

// A queued waiter next in line, waiting for the rate, kept its place only as long as its
// last look at a full limit had granted: past it, it was queued again behind later waiters,
// and the waiters took turns at the head, admitted in no particular order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_next_in_line_keeps_its_place_while_it_waits_for_the_rate() {
    let key = key("next-in-line");
    // A cell a second; a place lasts half a lease (0.2 s) from each look, one every 0.1 s.
    let limiters = fleet(3, || {
        builder(&key)
            .concurrency(1)
            .rate(Rate::per_second(1).burst(1))
            .lease(Duration::from_millis(400))
    });
    let holder = limiters[0].admit().await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for (i, limiter) in limiters.iter().enumerate() {
        let (limiter, order) = (Arc::clone(limiter), Arc::clone(&order));
        waiters.push(tokio::spawn(async move {
            let permit = limiter.admit().await.unwrap();
            order.lock().unwrap().push(i);
            drop(permit);
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The limit has room for the first waiter; each waits about a second for its cell.
    drop(holder);
    tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(waiters),
    )
    .await
    .unwrap();
    assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
}

// The acquire call is written by hand (not through redis-rs's script invocation, which loads
// the script on `NOSCRIPT` by itself): a Redis that lost its scripts must still admit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_loads_the_script_again_after_redis_lost_it() {
    let key = key("noscript");
    let limiter = builder(&key)
        .concurrency(2)
        .rate(Rate::per_second(1_000))
        .build()
        .unwrap();
    drop(limiter.admit().await.unwrap());
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut server().connection())
        .unwrap();
    let permit = limiter.admit().await.unwrap();
    assert!(
        permit.is_shared(),
        "admitted by Redis, not by the failure policy"
    );
    assert_eq!(held(server(), &key), 1);
}
