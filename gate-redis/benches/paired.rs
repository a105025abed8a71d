//! The ratios of `redis.rs`'s lines to the floor, measured paired: the lines take turns in
//! short blocks, round after round, so that a machine whose load changes during the run
//! (a shared CI runner) slows every line alike, and the ratio of medians stays meaningful
//! where criterion's lines, measured one after the other, would each see a different load.
//!
//! Run with: cargo bench -p gate-redis --bench paired (needs redis-server on PATH).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gate_core::Admission;
use gate_core::rate::Rate;
use gate_redis::RedisLimiter;
use redis::aio::ConnectionManager;

/// go-redis/redis_rate's GCRA script (`allowN`), as in `redis.rs`.
const REDIS_RATE: &str = include_str!("redis_rate.lua");

/// Rounds; each runs every line for one block.
const ROUNDS: usize = 200;
/// Calls per caller in one block.
const BLOCK: usize = 20;
/// Callers at once in the throughput rounds.
const CALLERS: usize = 16;

#[derive(Clone, Copy, Debug)]
enum Line {
    Floor,
    /// The admission alone: the block's permits are dropped after its timing.
    Acquire,
    AcquireRelease,
    /// The drop of a permit alone (its release is sent in the background): what a release
    /// costs the caller. The block's admissions are made before its timing.
    Drop,
    Rate,
    RedisRate,
}

const LINES: [Line; 6] = [
    Line::Floor,
    Line::Acquire,
    Line::AcquireRelease,
    Line::Drop,
    Line::Rate,
    Line::RedisRate,
];

struct Bench {
    conn: ConnectionManager,
    trivial: redis::Script,
    redis_rate: redis::Script,
    permits: RedisLimiter,
    rate: RedisLimiter,
}

impl Bench {
    /// One call of `line`; the permit of an `Acquire` is handed back to drop later.
    async fn run(&self, line: Line) -> Option<gate_redis::RedisPermit> {
        let mut conn = self.conn.clone();
        match line {
            Line::Acquire | Line::Drop => return Some(self.permits.admit().await.unwrap()),
            Line::Floor => {
                let _: i64 = self.trivial.invoke_async(&mut conn).await.unwrap();
            }
            Line::AcquireRelease => drop(self.permits.admit().await.unwrap()),
            Line::Rate => drop(self.rate.admit().await.unwrap()),
            Line::RedisRate => {
                let _: redis::Value = self
                    .redis_rate
                    .key("paired-redis-rate")
                    .arg(1_000_000)
                    .arg(1_000_000_000)
                    .arg(1)
                    .arg(1)
                    .invoke_async(&mut conn)
                    .await
                    .unwrap();
            }
        }
        None
    }
}

/// Time per call of one block of `line` by `callers` callers at once.
async fn block(bench: &Arc<Bench>, line: Line, callers: usize) -> Duration {
    if let Line::Drop = line {
        return drops(bench, callers).await;
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let bench = Arc::clone(bench);
            tokio::spawn(async move {
                let mut kept = Vec::new();
                for _ in 0..BLOCK {
                    kept.extend(bench.run(line).await);
                }
                kept
            })
        })
        .collect();
    let mut kept = Vec::new();
    for task in tasks {
        kept.push(task.await.unwrap());
    }
    let per_call = started.elapsed() / (BLOCK * callers) as u32;
    drop(kept);
    per_call
}

/// Time per drop of one block of permits: `callers` callers' worth, dropped one after the
/// other by the task that took them.
async fn drops(bench: &Arc<Bench>, callers: usize) -> Duration {
    let mut held = Vec::with_capacity(BLOCK * callers);
    for _ in 0..BLOCK * callers {
        held.extend(bench.run(Line::Drop).await);
    }
    let started = Instant::now();
    for permit in held {
        drop(permit);
    }
    started.elapsed() / (BLOCK * callers) as u32
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too: keep that short.
    let rounds = if std::env::args().any(|arg| arg == "--bench") {
        ROUNDS
    } else {
        2
    };
    let server = support::server();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bench = Arc::new(Bench {
            conn: ConnectionManager::new(server.client()).await.unwrap(),
            trivial: redis::Script::new("return 1"),
            redis_rate: redis::Script::new(REDIS_RATE),
            permits: RedisLimiter::builder(server.client())
                .key("paired-permits")
                .concurrency(1_000)
                .build()
                .unwrap(),
            rate: RedisLimiter::builder(server.client())
                .key("paired-rate")
                .rate(Rate::per_second(1_000_000_000).burst(1_000_000))
                .build()
                .unwrap(),
        });
        for (group, callers) in [("uncontended", 1), ("throughput", CALLERS)] {
            let mut samples = vec![Vec::new(); LINES.len()];
            for round in 0..rounds {
                // A different line goes first each round.
                for turn in 0..LINES.len() {
                    let i = (round + turn) % LINES.len();
                    samples[i].push(block(&bench, LINES[i], callers).await);
                }
            }
            let medians: Vec<Duration> = samples.into_iter().map(median).collect();
            for (line, per_call) in LINES.iter().zip(&medians) {
                println!(
                    "{group}/{line:?}: {per_call:?} a call, {:.2}x the floor, {:.0} calls/s",
                    per_call.as_secs_f64() / medians[0].as_secs_f64(),
                    1.0 / per_call.as_secs_f64()
                );
            }
        }
    });
}
