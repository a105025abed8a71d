//! Throughput against one key, of one process and of a fleet of OS processes, on a
//! redis-server of the bench's own (127.0.0.1, a free port): each line runs for a fixed time
//! in 1 and then in 4 processes (copies of this binary, started together), each with
//! `CALLERS` tasks calling in a loop, and reports the admissions a second of them all.
//!
//! - `floor`: a bare `EVALSHA` of a trivial script, the most one key can serve;
//! - `gate-redis/acquire+release`: a concurrency limiter's admission and the drop of its
//!   permit (its release sent in the background, and counted against Redis all the same);
//! - `gate-redis/rate`: a rate limiter's admission (rate checks a second for one key);
//! - `peer/redis_rate`: one call of a plain GCRA script of the redis_rate kind
//!   (go-redis/redis_rate's `allowN`), the way a user would run it.
//!
//! The lines take turns, round after round, and each reports its median round, so that a
//! machine whose load changes during the run slows every line alike.
//!
//! Run with: cargo bench -p gate-redis --bench fleet (needs redis-server on PATH).

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gate_core::Admission;
use gate_core::rate::Rate;
use gate_redis::RedisLimiter;
use redis::aio::ConnectionManager;

/// go-redis/redis_rate's GCRA script (`allowN`), as in `redis.rs`.
const REDIS_RATE: &str = include_str!("redis_rate.lua");

/// Tasks calling at once in each process.
const CALLERS: usize = 16;
/// Rounds; each runs every line once with each number of processes.
const ROUNDS: usize = 5;
/// How long one line runs in one round.
const RUN: Duration = Duration::from_secs(1);
/// How long before the common start the processes are spawned: enough to start and connect.
const LEAD: Duration = Duration::from_millis(400);

const LINES: [&str; 4] = [
    "floor",
    "gate-redis/acquire+release",
    "gate-redis/rate",
    "peer/redis_rate",
];

/// What a worker process is given, through its environment.
const ROLE: &str = "GATE_REDIS_FLEET_WORKER";

fn main() {
    if let Ok(spec) = std::env::var(ROLE) {
        return worker(&spec);
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too: keep that short.
    let (rounds, run) = if std::env::args().any(|arg| arg == "--bench") {
        (ROUNDS, RUN)
    } else {
        (1, Duration::from_millis(100))
    };
    let server = support::server();
    let mut results = vec![[Vec::new(), Vec::new()]; LINES.len()];
    for round in 0..rounds {
        for turn in 0..LINES.len() {
            let i = (round + turn) % LINES.len();
            for (p, processes) in [1, 4].into_iter().enumerate() {
                let rate = fleet(&server.url(), LINES[i], processes, run);
                results[i][p].push(rate);
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<[f64; 2]> = results
        .into_iter()
        .map(|[one, four]| [median(one), median(four)])
        .collect();
    for (line, [one, four]) in LINES.iter().zip(&medians) {
        println!(
            "fleet/{line}: 1 process {one:.0}/s ({:.2}x the floor), 4 processes {four:.0}/s \
             ({:.2}x the floor)",
            one / medians[0][0],
            four / medians[0][1],
        );
    }
    let [rate, peer] = [medians[2], medians[3]];
    println!(
        "fleet: gate-redis's rate checks over redis_rate's: {:.2}x (1 process), {:.2}x (4)",
        rate[0] / peer[0],
        rate[1] / peer[1]
    );
}

/// Runs `line` in `processes` worker processes at once for `run`; admissions a second of
/// them all.
fn fleet(url: &str, line: &str, processes: usize, run: Duration) -> f64 {
    let start = SystemTime::now() + LEAD;
    let start_ms = start.duration_since(UNIX_EPOCH).unwrap().as_millis();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .env(ROLE, format!("{url} {line} {start_ms} {}", run.as_millis()))
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a worker")
        })
        .collect();
    let mut total = 0_u64;
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "a worker failed");
        total += String::from_utf8(output.stdout)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap();
    }
    total as f64 / run.as_secs_f64()
}

/// A worker: `CALLERS` tasks call `line` from the common start for the run's length; prints
/// how many calls completed in it.
fn worker(spec: &str) {
    let mut parts = spec.split(' ');
    let (url, line) = (parts.next().unwrap(), parts.next().unwrap().to_owned());
    let start_ms: u64 = parts.next().unwrap().parse().unwrap();
    let run = Duration::from_millis(parts.next().unwrap().parse().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = runtime.block_on(async move {
        let client = redis::Client::open(url).unwrap();
        let target = Arc::new(Target::new(client, &line).await);
        // One call first, so that the script is loaded and the connection made.
        target.call().await;
        let start = UNIX_EPOCH + Duration::from_millis(start_ms);
        let lead = start
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::time::sleep(lead).await;
        let deadline = tokio::time::Instant::now() + run;
        let done = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (target, done) = (Arc::clone(&target), Arc::clone(&done));
                tokio::spawn(async move {
                    while tokio::time::Instant::now() < deadline {
                        target.call().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        done.load(Ordering::Relaxed)
    });
    println!("{done}");
}

/// What one line calls.
enum Target {
    Script(ConnectionManager, redis::Script, bool),
    Limiter(RedisLimiter),
}

impl Target {
    async fn new(client: redis::Client, line: &str) -> Self {
        let conn = || async { ConnectionManager::new(client.clone()).await.unwrap() };
        match line {
            "floor" => Self::Script(conn().await, redis::Script::new("return 1"), false),
            "peer/redis_rate" => Self::Script(conn().await, redis::Script::new(REDIS_RATE), true),
            "gate-redis/acquire+release" => Self::Limiter(
                RedisLimiter::builder(client)
                    .key("fleet-permits")
                    .concurrency(100_000)
                    .build()
                    .unwrap(),
            ),
            _ => Self::Limiter(
                // A rate no bench reaches: every check admits, as the peer's does.
                RedisLimiter::builder(client)
                    .key("fleet-rate")
                    .rate(Rate::per_second(1_000_000_000).burst(1_000_000))
                    .build()
                    .unwrap(),
            ),
        }
    }

    async fn call(&self) {
        match self {
            Self::Script(conn, script, rate) => {
                let mut conn = conn.clone();
                let mut invocation = script.prepare_invoke();
                if *rate {
                    invocation
                        .key("fleet-redis-rate")
                        .arg(1_000_000)
                        .arg(1_000_000_000)
                        .arg(1)
                        .arg(1);
                }
                let _: redis::Value = invocation.invoke_async(&mut conn).await.unwrap();
            }
            Self::Limiter(limiter) => drop(limiter.admit().await.unwrap()),
        }
    }
}
