//! The ratios of `redis.rs`'s lines to the floor, measured paired: the lines take turns in
//! short blocks, round after round, so that a machine whose load changes during the run
//! (a shared CI runner) slows every line alike, and the ratio of medians stays meaningful
//! where criterion's lines, measured one after the other, would each see a different load.
//!
//! Besides `redis.rs`'s lines, a ladder from the floor to an admission, each rung one step
//! more of what an admission does, so that the step that costs is the one whose line jumps:
//!
//! - `Floor`: a bare `EVALSHA` of `return 1` on the bench's connection.
//! - `FloorKeys`: the same script with an admission's seven keys and two arguments.
//! - `Raw`: the admission's own script and command (the bytes the limiter sends, read back
//!   from Redis's slow log, with a new id each call) on the bench's connection.
//! - `RawLimiterConn`: the same on a connection configured as the limiter's.
//! - `Invoke`: the same the way the limiter calls it (a clone of the connection, the call
//!   within `tokio::time::timeout`).
//! - `Acquire`: the whole admission, `admit()`.
//! - `FloorNoDelay`, `RawNoDelay` and `AcquireNoDelay`: the floor, the raw admission and
//!   the admission on connections with `TCP_NODELAY` (redis-rs leaves Nagle's algorithm on
//!   unless told).
//!
//! Then, each line alone, the time Redis spends per call (`INFO commandstats`).
//!
//! `PAIRED_RUNTIME=current` runs it all on a current-thread runtime (else a multi-thread
//! one with two workers); `PAIRED_GROUPS=uncontended` skips the throughput rounds.
//!
//! Run with: cargo bench -p gate-redis --bench paired (needs redis-server on PATH).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gate_core::Admission;
use gate_core::rate::Rate;
use gate_redis::RedisLimiter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// go-redis/redis_rate's GCRA script (`allowN`), as in `redis.rs`.
const REDIS_RATE: &str = include_str!("redis_rate.lua");

/// Rounds; each runs every line for one block.
const ROUNDS: usize = 200;
/// Calls per caller in one block.
const BLOCK: usize = 20;
/// Callers at once in the throughput rounds.
const CALLERS: usize = 16;
/// Calls of one line alone for its time in Redis.
const SERVER_CALLS: usize = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    Floor,
    /// The floor's script with an admission's keys and arguments.
    FloorKeys,
    /// The admission's command on the bench's connection.
    Raw,
    /// The admission's command on a connection configured as the limiter's.
    RawLimiterConn,
    /// The admission's command as the limiter sends it: within a timeout.
    Invoke,
    /// The admission alone: the block's permits are dropped after its timing.
    Acquire,
    AcquireRelease,
    /// The drop of a permit alone (its release is sent in the background): what a release
    /// costs the caller. The block's admissions are made before its timing.
    Drop,
    Rate,
    RedisRate,
    /// The floor on a connection with `TCP_NODELAY`.
    FloorNoDelay,
    /// The admission's command on a connection configured as the limiter's, with
    /// `TCP_NODELAY`.
    RawNoDelay,
    /// The admission by a limiter whose connection has `TCP_NODELAY`.
    AcquireNoDelay,
}

const LINES: [Line; 13] = [
    Line::Floor,
    Line::FloorKeys,
    Line::Raw,
    Line::RawLimiterConn,
    Line::Invoke,
    Line::Acquire,
    Line::AcquireRelease,
    Line::Drop,
    Line::Rate,
    Line::RedisRate,
    Line::FloorNoDelay,
    Line::RawNoDelay,
    Line::AcquireNoDelay,
];

/// The lines measured alone for their time in Redis.
const SERVER_LINES: [Line; 6] = [
    Line::Floor,
    Line::FloorKeys,
    Line::Raw,
    Line::Acquire,
    Line::Rate,
    Line::RedisRate,
];

/// What a call leaves to undo after the timing.
enum Kept {
    Permit(gate_redis::RedisPermit),
    /// A permit taken by a raw admission, removed by hand.
    Raw(String),
}

/// An admission's command as the limiter sends it, read from Redis's slow log: the
/// script's hash, its keys and its arguments after the id.
struct Captured {
    hash: String,
    keys: Vec<String>,
    /// The held set, from which the raw admissions' permits are removed.
    held: String,
    rest: Vec<String>,
}

struct Bench {
    conn: ConnectionManager,
    /// A connection configured as a limiter's.
    limiter_conn: ConnectionManager,
    nodelay_conn: ConnectionManager,
    /// A connection configured as a limiter's, with `TCP_NODELAY`.
    nodelay_limiter_conn: ConnectionManager,
    trivial: redis::Script,
    redis_rate: redis::Script,
    permits: RedisLimiter,
    nodelay_permits: RedisLimiter,
    rate: RedisLimiter,
    captured: Captured,
    raw_ids: AtomicU64,
}

impl Bench {
    /// One call of `line`; a permit is handed back to release later.
    async fn run(&self, line: Line) -> Option<Kept> {
        let mut conn = self.conn.clone();
        match line {
            Line::Acquire | Line::Drop => {
                return Some(Kept::Permit(self.permits.admit().await.unwrap()));
            }
            Line::AcquireNoDelay => {
                return Some(Kept::Permit(self.nodelay_permits.admit().await.unwrap()));
            }
            Line::Floor => {
                let _: i64 = self.trivial.invoke_async(&mut conn).await.unwrap();
            }
            Line::FloorNoDelay => {
                let mut conn = self.nodelay_conn.clone();
                let _: i64 = self.trivial.invoke_async(&mut conn).await.unwrap();
            }
            Line::FloorKeys => {
                let mut invocation = self.trivial.prepare_invoke();
                for key in &self.captured.keys {
                    invocation.key(key);
                }
                invocation.arg("0000000000000000-0").arg(0);
                let _: i64 = invocation.invoke_async(&mut conn).await.unwrap();
            }
            Line::Raw | Line::RawLimiterConn | Line::RawNoDelay | Line::Invoke => {
                let id = format!(
                    "{:016x}-{}",
                    0xfeed_u64,
                    self.raw_ids.fetch_add(1, Ordering::Relaxed)
                );
                let command = self.raw_command(&id);
                match line {
                    Line::Raw => {
                        let _: redis::Value = command.query_async(&mut conn).await.unwrap();
                    }
                    Line::RawLimiterConn | Line::RawNoDelay => {
                        let mut conn = if line == Line::RawNoDelay {
                            self.nodelay_limiter_conn.clone()
                        } else {
                            self.limiter_conn.clone()
                        };
                        let _: redis::Value = command.query_async(&mut conn).await.unwrap();
                    }
                    _ => {
                        let mut conn = self.limiter_conn.clone();
                        let call = command.query_async::<redis::Value>(&mut conn);
                        let _ = tokio::time::timeout(Duration::from_millis(250), call)
                            .await
                            .unwrap()
                            .unwrap();
                    }
                }
                return Some(Kept::Raw(id));
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

    /// The captured admission for `id`, written into one buffer as the limiter does.
    fn raw_command(&self, id: &str) -> redis::Cmd {
        let captured = &self.captured;
        let mut command = redis::Cmd::with_capacity(16, 256);
        command
            .arg("EVALSHA")
            .arg(&captured.hash)
            .arg(captured.keys.len());
        for key in &captured.keys {
            command.arg(key);
        }
        command.arg(id);
        for arg in &captured.rest {
            command.arg(arg);
        }
        command
    }

    /// Undoes what a block left: drops its permits, removes its raw admissions' permits.
    async fn undo(&self, kept: Vec<Kept>) {
        let mut raw = redis::cmd("ZREM");
        raw.arg(&self.captured.held);
        let mut any = false;
        for kept in kept {
            match kept {
                Kept::Permit(permit) => drop(permit),
                Kept::Raw(id) => {
                    raw.arg(id);
                    any = true;
                }
            }
        }
        if any {
            let _: i64 = raw.query_async(&mut self.conn.clone()).await.unwrap();
        }
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
        kept.extend(task.await.unwrap());
    }
    let per_call = started.elapsed() / (BLOCK * callers) as u32;
    bench.undo(kept).await;
    per_call
}

/// Time per drop of one block of permits: `callers` callers' worth, dropped one after the
/// other by the task that took them.
async fn drops(bench: &Arc<Bench>, callers: usize) -> Duration {
    let mut held = Vec::with_capacity(BLOCK * callers);
    for _ in 0..BLOCK * callers {
        if let Some(Kept::Permit(permit)) = bench.run(Line::Drop).await {
            held.push(permit);
        }
    }
    let started = Instant::now();
    for permit in held {
        drop(permit);
    }
    started.elapsed() / (BLOCK * callers) as u32
}

/// Microseconds Redis spends per call of `line`, run alone (`INFO commandstats`), in
/// blocks as in the timed rounds: the permits of a block are held until its count is read
/// (their releases are calls of a script too), and released before the next. The median
/// of the blocks, so that a block during which another process took Redis's core does not
/// count.
async fn server_time(bench: &Bench, line: Line) -> f64 {
    let mut blocks = Vec::with_capacity(SERVER_CALLS / BLOCK);
    for _ in 0..SERVER_CALLS / BLOCK {
        // The background calls of earlier blocks and lines (releases) end first.
        bench.permits.flush().await;
        bench.rate.flush().await;
        bench.nodelay_permits.flush().await;
        let (calls_before, usec_before) = evalsha_stats(bench).await;
        let mut kept = Vec::with_capacity(BLOCK);
        for _ in 0..BLOCK {
            kept.extend(bench.run(line).await);
        }
        let (calls_after, usec_after) = evalsha_stats(bench).await;
        bench.undo(kept).await;
        let calls = calls_after.saturating_sub(calls_before).max(1);
        blocks.push(usec_after.saturating_sub(usec_before) as f64 / calls as f64);
    }
    blocks.sort_by(f64::total_cmp);
    blocks[blocks.len() / 2]
}

/// Redis's count of `EVALSHA` calls so far, and the microseconds they took.
async fn evalsha_stats(bench: &Bench) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut bench.conn.clone())
        .await
        .unwrap();
    let stats = info
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
        .unwrap_or_default();
    let field = |name: &str| {
        stats
            .split(',')
            .find_map(|field| field.strip_prefix(name))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("calls="), field("usec="))
}

/// Reads back the last admission's `EVALSHA` from Redis's slow log.
async fn capture(server: &support::Server, conn: &mut ConnectionManager, key: &str) -> Captured {
    let limiter = RedisLimiter::builder(server.client())
        .key(key)
        .concurrency(1_000)
        .build()
        .unwrap();
    // Loads the script, so that the captured call is the one an admission makes.
    drop(limiter.admit().await.unwrap());
    limiter.flush().await;
    let config = |value: &'static str| {
        let mut command = redis::cmd("CONFIG");
        command.arg("SET").arg("slowlog-log-slower-than").arg(value);
        command
    };
    let _: () = config("0").query_async(conn).await.unwrap();
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(conn)
        .await
        .unwrap();
    let permit = limiter.admit().await.unwrap();
    // Each entry is `[id, time, duration, [arguments], client, name]`.
    let log: Vec<Vec<redis::Value>> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(16)
        .query_async(conn)
        .await
        .unwrap();
    let _: () = config("10000").query_async(conn).await.unwrap();
    drop(permit);
    limiter.flush().await;
    let args: Vec<String> = log
        .into_iter()
        .filter_map(|entry| redis::from_redis_value(entry.into_iter().nth(3)?).ok())
        .find(|args: &Vec<String>| args[0].eq_ignore_ascii_case("evalsha"))
        .expect("the admission's EVALSHA in the slow log");
    let count: usize = args[2].parse().unwrap();
    let keys = args[3..3 + count].to_vec();
    let held = keys
        .iter()
        .find(|key| key.ends_with(":held"))
        .unwrap()
        .clone();
    Captured {
        hash: args[1].clone(),
        keys,
        held,
        rest: args[4 + count..].to_vec(),
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too: keep that short.
    let benching = std::env::args().any(|arg| arg == "--bench");
    let rounds = if benching { ROUNDS } else { 2 };
    let current = std::env::var("PAIRED_RUNTIME").is_ok_and(|flavor| flavor == "current");
    let uncontended_only =
        std::env::var("PAIRED_GROUPS").is_ok_and(|groups| groups == "uncontended");
    let server = support::server();
    let runtime = if current {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    println!(
        "runtime: {}",
        if current {
            "current-thread"
        } else {
            "multi-thread, 2 workers"
        }
    );
    let nodelay_client = || {
        let info = redis::IntoConnectionInfo::into_connection_info(server.url())
            .unwrap()
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        redis::Client::open(info).unwrap()
    };
    runtime.block_on(async {
        let mut conn = ConnectionManager::new(server.client()).await.unwrap();
        let captured = capture(server, &mut conn, "paired-raw").await;
        // As `RedisLimiter` configures its connection.
        let limiter_config = ConnectionManagerConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(Duration::from_millis(250)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(250));
        let bench = Arc::new(Bench {
            conn,
            limiter_conn: ConnectionManager::new_with_config(
                server.client(),
                limiter_config.clone(),
            )
            .await
            .unwrap(),
            nodelay_limiter_conn: ConnectionManager::new_with_config(
                nodelay_client(),
                limiter_config,
            )
            .await
            .unwrap(),
            nodelay_conn: ConnectionManager::new(nodelay_client()).await.unwrap(),
            trivial: redis::Script::new("return 1"),
            redis_rate: redis::Script::new(REDIS_RATE),
            permits: RedisLimiter::builder(server.client())
                .key("paired-permits")
                .concurrency(1_000)
                .build()
                .unwrap(),
            nodelay_permits: RedisLimiter::builder(nodelay_client())
                .key("paired-permits-nodelay")
                .concurrency(1_000)
                .build()
                .unwrap(),
            rate: RedisLimiter::builder(server.client())
                .key("paired-rate")
                .rate(Rate::per_second(1_000_000_000).burst(1_000_000))
                .build()
                .unwrap(),
            captured,
            raw_ids: AtomicU64::new(0),
        });
        let groups: &[(&str, usize)] = if uncontended_only {
            &[("uncontended", 1)]
        } else {
            &[("uncontended", 1), ("throughput", CALLERS)]
        };
        for &(group, callers) in groups {
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
        if benching {
            for line in SERVER_LINES {
                let usec = server_time(&bench, line).await;
                println!("server/{line:?}: {usec:.2} us a call in Redis");
            }
        }
    });
}
