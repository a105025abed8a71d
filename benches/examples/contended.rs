//! A cross-check of the contended lines of `benches/gate.rs`: the gate and tokio's semaphore
//! in alternating rounds of one process, so both meet the same scheduler regime.
//!
//! Run with: cargo run --release -p benches --example contended -- PERMITS
//!
//! Criterion runs each line on its own, and on a small machine a run lands in one of two
//! regimes of the multi-thread runtime (up to 2x apart, for any semaphore), which hides the
//! difference between the semaphores themselves. Alternating rounds compare like with like.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: usize = 64;
const ROUNDS: usize = 50;
const REPEATS: u32 = 300;

/// Mean time of `REPEATS` runs of `TASKS` tasks, each acquiring (through `acquire`),
/// yielding and releasing `ROUNDS` times.
fn measure<S, F, Fut, P>(rt: &tokio::runtime::Runtime, new: impl Fn() -> S, acquire: F) -> Duration
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = P> + Send,
    P: Send,
{
    let start = Instant::now();
    rt.block_on(async {
        for _ in 0..REPEATS {
            let shared = Arc::new(new());
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        for _ in 0..ROUNDS {
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
    start.elapsed() / REPEATS
}

fn main() {
    let permits: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .expect("usage: contended PERMITS");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut ratios = Vec::new();
    for round in 0..6 {
        let gate = measure(
            &rt,
            || gate_core::Gate::new(permits),
            |g| async move { g.acquire_owned().await.unwrap() },
        );
        let tokio = measure(
            &rt,
            || tokio::sync::Semaphore::new(permits),
            |s| async move { s.acquire_owned().await.unwrap() },
        );
        let ratio = gate.as_secs_f64() / tokio.as_secs_f64();
        ratios.push(ratio);
        println!("round {round}: gate {gate:?}, tokio {tokio:?}, ratio {ratio:.2}");
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    println!(
        "{permits} permits: gate / tokio = {mean:.2} (mean of {} rounds)",
        ratios.len()
    );
}
