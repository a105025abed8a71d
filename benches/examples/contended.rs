//! A cross-check of the contended lines of `benches/gate.rs`: the gate and tokio's semaphore
//! in alternating rounds of one process, so both meet the same scheduler regime.
//!
//! Run with: cargo run --release -p benches --example contended -- PERMITS [--sustained [ROUNDS]]
//! [--only gate|tokio]
//!
//! The default shape is short runs (64 tasks x 50 acquires, repeated 300 times, 6 rounds);
//! `--sustained` is the shape of a long-lived contended gate: 64 tasks x 3,000 acquires each,
//! 9 rounds (or `ROUNDS`), the order of the two alternating from round to round.
//!
//! Each round reports two ratios: of wall time, and of the CPU time the process's threads
//! spent (read from Linux's `/proc/self/task/*/schedstat`; absent elsewhere). On a machine
//! shared with other work, a worker thread that is descheduled stretches the wall time of
//! whichever semaphore it happens to hit, while the CPU time counts only the work done.
//!
//! Criterion runs each line on its own, and on a small machine a run lands in one of two
//! regimes of the multi-thread runtime (up to 2x apart, for any semaphore), which hides the
//! difference between the semaphores themselves. Alternating rounds compare like with like.
//!
//! `--only NAME` runs one semaphore alone, for counting instructions under callgrind
//! (`valgrind --tool=callgrind target/release/examples/contended 4 --sustained 2 --only
//! gate`): the difference between 2 rounds and 1 is the cost of 192,000 acquire, yield and
//! release cycles, runtime included, and it does not move with the machine's load.

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

/// CPU time spent so far by every thread of this process, if the OS says.
fn cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Mean wall and CPU time of `shape.repeats` runs of `TASKS` tasks, each acquiring (through
/// `acquire`), yielding and releasing `shape.rounds` times.
fn measure<S, F, Fut, P>(
    rt: &tokio::runtime::Runtime,
    shape: Shape,
    new: impl Fn() -> S,
    acquire: F,
) -> (Duration, Option<Duration>)
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = P> + Send,
    P: Send,
{
    let cpu_start = cpu_time();
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
    let wall = start.elapsed() / shape.repeats;
    let cpu = cpu_time()
        .zip(cpu_start)
        .map(|(end, start)| end.saturating_sub(start) / shape.repeats);
    (wall, cpu)
}

/// Prints the mean, median and range of `ratios`, sorting them.
fn summary(permits: usize, what: &str, ratios: &mut [f64]) {
    if ratios.is_empty() {
        return;
    }
    ratios.sort_by(f64::total_cmp);
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    println!(
        "{permits} permits: gate / tokio {what} = {mean:.2} mean, {:.2} median, {:.2}..{:.2} (of {} rounds)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
        ratios.len()
    );
}

fn main() {
    let usage = "usage: contended PERMITS [--sustained [ROUNDS]] [--only gate|tokio]";
    let mut args = std::env::args().skip(1).peekable();
    let permits: usize = args.next().and_then(|arg| arg.parse().ok()).expect(usage);
    let (mut shape, mut only) = (SHORT, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sustained" => {
                shape = SUSTAINED;
                if let Some(rounds) = args.next_if(|arg| !arg.starts_with("--")) {
                    shape.measurements = rounds.parse().expect(usage);
                }
            }
            "--only" => only = Some(args.next().expect(usage)),
            other => panic!("unknown argument {other}; {usage}"),
        }
    }
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
    if let Some(only) = only {
        let run: &dyn Fn() -> (Duration, Option<Duration>) = match only.as_str() {
            "gate" => &gate,
            "tokio" => &tokio,
            other => panic!("unknown semaphore {other}; {usage}"),
        };
        for round in 0..shape.measurements {
            let (wall, cpu) = run();
            println!("round {round}: {only} {wall:?}, CPU {cpu:?}");
        }
        return;
    }
    let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    for round in 0..shape.measurements {
        // Alternate which goes first, so neither always meets a warmer runtime.
        let (gate, tokio) = if round % 2 == 0 {
            let gate = gate();
            (gate, tokio())
        } else {
            let tokio = tokio();
            (gate(), tokio)
        };
        let ((gate, gate_cpu), (tokio, tokio_cpu)) = (gate, tokio);
        let ratio = gate.as_secs_f64() / tokio.as_secs_f64();
        ratios.push(ratio);
        print!("round {round}: gate {gate:?}, tokio {tokio:?}, ratio {ratio:.2}");
        if let (Some(gate), Some(tokio)) = (gate_cpu, tokio_cpu) {
            let ratio = gate.as_secs_f64() / tokio.as_secs_f64();
            cpu_ratios.push(ratio);
            print!("; CPU gate {gate:?}, tokio {tokio:?}, ratio {ratio:.2}");
        }
        println!();
    }
    summary(permits, "wall", &mut ratios);
    summary(permits, "CPU", &mut cpu_ratios);
}
