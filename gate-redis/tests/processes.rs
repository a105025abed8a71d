//! Several OS processes share one limit through a real redis-server: this test binary runs
//! the scenarios, re-executing itself (with `GATE_REDIS_ROLE` set) as the processes.
//!
//! - the in-flight count, kept in Redis by every process, never exceeds the limit;
//! - in every window of length `T`, admissions never exceed `burst + rate × T`;
//! - a holder killed with SIGKILL frees its permits within the lease and not before;
//! - unless it has an instance name: then a process of the same name takes them back at
//!   once, and nothing of a live process's;
//! - a process that flushes before it exits leaves no permit behind.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gate_core::rate::Rate;
use gate_core::{AcquireError, Admission, WaitLimits};
use gate_redis::RedisLimiter;
use support::Server;

/// The environment variable that makes this binary one of the processes.
const ROLE: &str = "GATE_REDIS_ROLE";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(role) = std::env::var(ROLE) {
        runtime.block_on(child(&role));
        return;
    }
    let server = support::server();
    scenario(
        &runtime,
        "in_flight_never_exceeds_the_limit_across_processes",
        in_flight_never_exceeds_the_limit(server),
    );
    scenario(
        &runtime,
        "the_rate_holds_in_every_window_across_processes",
        the_rate_holds_in_every_window(server),
    );
    scenario(
        &runtime,
        "a_holder_killed_with_sigkill_frees_its_permits_within_the_lease_and_not_before",
        a_killed_holder_frees_its_permits(server),
    );
    scenario(
        &runtime,
        "a_restarted_instance_takes_back_what_its_killed_predecessor_held_at_once",
        a_restarted_instance_takes_back_its_predecessors_permits(server),
    );
    scenario(
        &runtime,
        "a_process_that_flushes_before_it_exits_leaves_no_permit_held",
        a_process_that_flushes_leaves_nothing(server),
    );
}

/// Runs one scenario and reports it as the test harness would.
fn scenario(runtime: &tokio::runtime::Runtime, name: &str, run: impl Future<Output = ()>) {
    let started = Instant::now();
    runtime.block_on(run);
    println!("test {name} ... ok ({:?})", started.elapsed());
}

/// Starts this binary as a process with `role`, on `server`.
fn spawn(server: &Server, role: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(ROLE, format!("{}:{role}", server.port()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `children` to exit successfully, within `within`.
fn wait_all(children: Vec<Child>, within: Duration) {
    let deadline = Instant::now() + within;
    for mut child in children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "a process failed: {status}");
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("a process did not finish in {within:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

async fn in_flight_never_exceeds_the_limit(server: &Server) {
    let key = support::key("processes-in-flight");
    let children = (0..4)
        .map(|_| spawn(server, &format!("work:{key}:3:25")))
        .collect();
    wait_all(children, Duration::from_secs(30));
    let mut conn = server.connection();
    let most: usize = redis::cmd("GET")
        .arg(format!("{key}:most"))
        .query(&mut conn)
        .unwrap();
    let done: usize = redis::cmd("GET")
        .arg(format!("{key}:done"))
        .query(&mut conn)
        .unwrap();
    assert!(most <= 3, "{most} in flight at once");
    assert!(most >= 2, "the processes never overlapped ({most})");
    assert_eq!(done, 100);
}

async fn the_rate_holds_in_every_window(server: &Server) {
    const RATE: u64 = 50;
    const BURST: u64 = 5;
    let key = support::key("processes-rate");
    let children = (0..3)
        .map(|_| spawn(server, &format!("rate:{key}:{RATE}:{BURST}")))
        .collect();
    wait_all(children, Duration::from_secs(30));
    let mut times: Vec<u64> = redis::cmd("LRANGE")
        .arg(format!("{key}:times"))
        .arg(0)
        .arg(-1)
        .query(&mut server.connection())
        .unwrap();
    times.sort_unstable();
    // Each time is Redis's, read just after the admission: widened by a tolerance.
    let slack = 30_000;
    for (i, &from) in times.iter().enumerate() {
        for window in [100_000, 500_000, 1_000_000_u64] {
            let count = times[i..]
                .iter()
                .take_while(|&&t| t - from <= window)
                .count() as u64;
            let bound = BURST + RATE * (window + slack) / 1_000_000 + 1;
            assert!(
                count <= bound,
                "{count} admitted in {window} us (bound {bound})"
            );
        }
    }
    assert!(times.len() >= 50, "only {} admitted", times.len());
}

async fn a_killed_holder_frees_its_permits(server: &Server) {
    let key = support::key("processes-killed");
    let lease = Duration::from_millis(1_000);
    let mut holder = spawn(server, &format!("hold:{key}:{}", lease.as_millis()));
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held");
    // Past a renewal or two: the holder was alive and renewing.
    tokio::time::sleep(lease).await;
    holder.kill().unwrap();
    let killed = Instant::now();
    holder.wait().unwrap();
    assert_eq!(support::held(server, &key), 2);
    let limiter = RedisLimiter::builder(server.client())
        .key(&key)
        .concurrency(2)
        .lease(lease)
        .build()
        .unwrap();
    tokio::time::sleep(lease / 2).await;
    assert_eq!(
        limiter.admit_with(WaitLimits::NO_WAIT).await.unwrap_err(),
        AcquireError::TimedOut,
        "freed before the lease ran out"
    );
    let first = tokio::time::timeout(Duration::from_secs(3), limiter.admit())
        .await
        .unwrap()
        .unwrap();
    let second = limiter.admit_with(WaitLimits::NO_WAIT).await.unwrap();
    let freed = killed.elapsed();
    assert!(
        freed < lease + Duration::from_millis(600),
        "freed after {freed:?}"
    );
    drop((first, second));
}

async fn a_restarted_instance_takes_back_its_predecessors_permits(server: &Server) {
    let key = support::key("processes-instance");
    // A lease long enough that only the reclaim can free the permits within the test.
    let lease = Duration::from_secs(30);
    let build = |instance: &str| {
        RedisLimiter::builder(server.client())
            .key(&key)
            .concurrency(2)
            .lease(lease)
            .instance(instance)
            .build()
            .unwrap()
    };
    let mut holder = spawn(
        server,
        &format!("hold-as:{key}:{}:worker-1", lease.as_millis()),
    );
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held and queued");
    holder.kill().unwrap();
    holder.wait().unwrap();
    let mut conn = server.connection();
    let queued = |conn: &mut redis::Connection| -> usize {
        redis::cmd("ZCARD")
            .arg(format!("gate:{{{key}}}:queue"))
            .query(conn)
            .unwrap()
    };
    assert_eq!(support::held(server, &key), 2);
    assert_eq!(queued(&mut conn), 1);

    // Another name takes nothing.
    let other = build("worker-2");
    assert_eq!(
        other.admit_with(WaitLimits::NO_WAIT).await.unwrap_err(),
        AcquireError::TimedOut,
        "another instance took the killed one's permits"
    );
    assert_eq!(support::held(server, &key), 2);

    // The same name, in a new process (this one), takes back its permits and its place.
    let restarted = build("worker-1");
    let first = restarted.admit_with(WaitLimits::NO_WAIT).await.unwrap();
    let second = restarted.admit_with(WaitLimits::NO_WAIT).await.unwrap();
    assert_eq!(support::held(server, &key), 2);
    assert_eq!(queued(&mut conn), 0);

    // A second limiter of the same name in the same process takes nothing from the first.
    let twin = build("worker-1");
    assert_eq!(
        twin.admit_with(WaitLimits::NO_WAIT).await.unwrap_err(),
        AcquireError::TimedOut,
        "a limiter took its own process's permits"
    );
    assert!(!first.lease_lost() && !second.lease_lost());
    drop((first, second));
    let _again = tokio::time::timeout(Duration::from_secs(3), twin.admit())
        .await
        .expect("a released permit is free again")
        .unwrap();
}

async fn a_process_that_flushes_leaves_nothing(server: &Server) {
    // Each process drops its permits (each a release sent in the background) and exits at
    // once; with its runtime the background task ends, so a release not yet sent would
    // leave its permit held for a lease.
    for round in 0..5 {
        let key = support::key(&format!("processes-flush-{round}"));
        let child = spawn(server, &format!("drop-and-exit:{key}"));
        wait_all(vec![child], Duration::from_secs(10));
        assert_eq!(
            support::held(server, &key),
            0,
            "round {round}: a permit dropped before the exit is still held"
        );
    }
}

/// A process's part: `PORT:ROLE:ARGS...`.
async fn child(role: &str) {
    let parts: Vec<&str> = role.split(':').collect();
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", parts[0])).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    match parts[1..] {
        ["work", key, limit, count] => {
            let limiter = RedisLimiter::builder(client.clone())
                .key(key)
                .concurrency(limit.parse().unwrap())
                .build()
                .unwrap();
            // Counts in and out in Redis, and keeps the most seen at once.
            let enter = redis::Script::new(
                "local n = redis.call('INCR', KEYS[1]) \
                 if n > tonumber(redis.call('GET', KEYS[2]) or 0) then redis.call('SET', KEYS[2], n) end \
                 return n",
            );
            let (in_flight, most, done) = (
                format!("{key}:in"),
                format!("{key}:most"),
                format!("{key}:done"),
            );
            for _ in 0..count.parse::<usize>().unwrap() {
                let permit = limiter.admit().await.unwrap();
                let _: i64 = enter
                    .key(&in_flight)
                    .key(&most)
                    .invoke_async(&mut conn)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _: i64 = redis::cmd("DECR")
                    .arg(&in_flight)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let _: i64 = redis::cmd("INCR")
                    .arg(&done)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                drop(permit);
            }
            // Its last releases reach Redis before it exits.
            limiter.flush().await;
        }
        ["rate", key, rate, burst] => {
            let rate = Rate::per_second(rate.parse().unwrap()).burst(burst.parse().unwrap());
            let limiter = RedisLimiter::builder(client.clone())
                .key(key)
                .rate(rate)
                .build()
                .unwrap();
            let record = redis::Script::new(
                "local t = redis.call('TIME') \
                 return redis.call('RPUSH', KEYS[1], t[1] * 1000000 + t[2])",
            );
            let times = format!("{key}:times");
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(1_200) {
                let _permit = limiter.admit().await.unwrap();
                let _: i64 = record.key(&times).invoke_async(&mut conn).await.unwrap();
            }
        }
        ["hold", key, lease] => {
            let limiter = RedisLimiter::builder(client.clone())
                .key(key)
                .concurrency(2)
                .lease(Duration::from_millis(lease.parse().unwrap()))
                .build()
                .unwrap();
            let _permits = (
                limiter.admit().await.unwrap(),
                limiter.admit().await.unwrap(),
            );
            println!("held");
            // Killed by the parent long before this ends.
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        ["drop-and-exit", key] => {
            let limiter = RedisLimiter::builder(client.clone())
                .key(key)
                .concurrency(4)
                .build()
                .unwrap();
            let permits = (
                limiter.admit().await.unwrap(),
                limiter.admit().await.unwrap(),
            );
            drop(permits);
            limiter.flush().await;
        }
        ["hold-as", key, lease, instance] => {
            let limiter = RedisLimiter::builder(client.clone())
                .key(key)
                .concurrency(2)
                .lease(Duration::from_millis(lease.parse().unwrap()))
                .instance(instance)
                .build()
                .unwrap();
            let _permits = (
                limiter.admit().await.unwrap(),
                limiter.admit().await.unwrap(),
            );
            // And a third caller, queued in Redis.
            let waiting = tokio::spawn(async move { limiter.admit().await.map(drop) });
            let queue = format!("gate:{{{key}}}:queue");
            loop {
                let queued: usize = redis::cmd("ZCARD")
                    .arg(&queue)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if queued == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            println!("held and queued");
            // Killed by the parent long before this ends.
            let _ = tokio::time::timeout(Duration::from_secs(60), waiting).await;
        }
        _ => panic!("unknown role {role}"),
    }
}
