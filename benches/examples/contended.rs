//! A cross-check of the contended lines of `benches/gate.rs`: the gate and tokio's semaphore
//! in alternating rounds of one process, so both meet the same scheduler regime.
//!
//! Run with: cargo run --release -p benches --example contended -- PERMITS [--sustained]
//!
//! The default shape is short runs (64 tasks x 50 acquires, repeated 300 times, 6 rounds);
//! `--sustained` is the shape of a long-lived contended gate: 64 tasks x 3,000 acquires each,
//! 9 rounds, the order of the two alternating from round to round.
//!
//! Criterion runs each line on its own, and on a small machine a run lands in one of two
//! regimes of the multi-thread runtime (up to 2x apart, for any semaphore), which hides the
//! difference between the semaphores themselves. Alternating rounds compare like with like.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: usize = 64;

/// How long each measurement runs.
#[derive(Clone, Copy)]
struct Shape {
    /// Acquire, yield, release cycles per task.
    rounds: usize,
    /// Runs of all tasks per measurement, averaged.
    repeats: u32,
    /// Measurements of each semaphore.
    measurements: usize,
}

const SHORT: Shape = Shape {
    rounds: 50,
    repeats: 300,
    measurements: 6,
};

const SUSTAINED: Shape = Shape {
    rounds: 3_000,
    repeats: 1,
    measurements: 9,
};

/// Mean time of `shape.repeats` runs of `TASKS` tasks, each acquiring (through `acquire`),
/// yielding and releasing `shape.rounds` times.
fn measure<S, F, Fut, P>(
    rt: &tokio::runtime::Runtime,
    shape: Shape,
    new: impl Fn() -> S,
    acquire: F,
) -> Duration
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = P> + Send,
    P: Send,
{
    let start = Instant::now();
    rt.block_on(async {
        for _ in 0..shape.repeats {
            let shared = Arc::new(new());
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        for _ in 0..shape.rounds {
                            let _permit = acquire(shared.clone()).await;
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        }
    });
    start.elapsed() / shape.repeats
}

fn main() {
    let mut args = std::env::args().skip(1);
    let permits: usize = args
        .next()
        .and_then(|arg| arg.parse().ok())
        .expect("usage: contended PERMITS [--sustained]");
    let shape = match args.next().as_deref() {
        None => SHORT,
        Some("--sustained") => SUSTAINED,
        Some(other) => panic!("unknown argument {other}; usage: contended PERMITS [--sustained]"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let gate = || {
        measure(
            &rt,
            shape,
            || gate_core::Gate::new(permits),
            |g| async move { g.acquire_owned().await.unwrap() },
        )
    };
    let tokio = || {
        measure(
            &rt,
            shape,
            || tokio::sync::Semaphore::new(permits),
            |s| async move { s.acquire_owned().await.unwrap() },
        )
    };
    let mut ratios = Vec::new();
    for round in 0..shape.measurements {
        // Alternate which goes first, so neither always meets a warmer runtime.
        let (gate, tokio) = if round % 2 == 0 {
            let gate = gate();
            (gate, tokio())
        } else {
            let tokio = tokio();
            (gate(), tokio)
        };
        let ratio = gate.as_secs_f64() / tokio.as_secs_f64();
        ratios.push(ratio);
        println!("round {round}: gate {gate:?}, tokio {tokio:?}, ratio {ratio:.2}");
    }
    ratios.sort_by(f64::total_cmp);
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    println!(
        "{permits} permits: gate / tokio = {mean:.2} mean, {:.2} median, {:.2}..{:.2} (of {} rounds)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        ratios.len()
    );
}
