//! Run with: cargo run --example basic_gate
//!
//! The seed's Example 1: six workers, a gate of three. All six start at once (zone 1), at
//! most three are inside the gate (zone 2), and each goes on alone once past it (zone 3).
//! The gate limits only the code that holds a permit, not the workers: six workers through a
//! gate of three take two rounds of the work's two seconds.

use std::sync::Arc;
use std::time::Duration;

use examples::Out;
use examples::seed::{Gauge, stamp};
use futures_util::future::join_all;
use gate_core::Gate;
use tokio::time::{Instant, sleep};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    run(&Config::default(), &Out::stdout()).await;
}

/// The seed's numbers: 6 workers, a gate of 3, 2 seconds of expensive work.
#[derive(Debug, Clone)]
pub struct Config {
    /// Workers started at once.
    pub workers: usize,
    /// Permits of the gate.
    pub limit: usize,
    /// How long each worker holds its permit.
    pub work: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workers: 6,
            limit: 3,
            work: Duration::from_secs(2),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// From the first start to the last worker done.
    pub elapsed: Duration,
    /// Most workers inside the gate at once.
    pub peak_inside: usize,
}

/// The seed's `main`: one gate, every worker started at once.
pub async fn run(config: &Config, out: &Out) -> Outcome {
    // `sem = Semaphore(3)`: the gate's capacity.
    let gate = Gate::new(config.limit);
    let inside = Arc::new(Gauge::default());
    let start = Instant::now();

    // `asyncio.gather(*coros)`: every worker starts now, in one task, polled in order.
    let workers = (0..config.workers).map(|i| {
        worker(
            format!("Worker-{i}"),
            &gate,
            &inside,
            start,
            config.work,
            out,
        )
    });
    join_all(workers).await;

    let elapsed = start.elapsed();
    let rounds = config.workers.div_ceil(config.limit.max(1));
    out.line(format!(
        "\n{} workers, gate of {}: done in {:.1}s = {rounds} rounds of {:.1}s; at most {} were ever inside.",
        config.workers,
        config.limit,
        elapsed.as_secs_f64(),
        config.work.as_secs_f64(),
        inside.peak(),
    ));
    Outcome {
        elapsed,
        peak_inside: inside.peak(),
    }
}

/// The seed's `worker`: three zones, the gate around the middle one.
async fn worker(
    name: String,
    gate: &Gate,
    inside: &Arc<Gauge>,
    start: Instant,
    work: Duration,
    out: &Out,
) {
    // ========== ZONE 1: every worker runs this at once ==========
    out.line(format!(
        "{} {name}: Started! Approaching the gate...",
        stamp(start)
    ));

    // ========== ZONE 2: the gate; at most `limit` workers in here ==========
    // `async with sem:` is a scope holding the permit.
    {
        let _permit = gate.acquire().await.expect("the gate is never closed");
        let (_inside, _) = inside.enter();
        out.line(format!(
            "{} {name}: Inside the gate! Working on expensive task...",
            stamp(start)
        ));
        sleep(work).await;
        out.line(format!(
            "{} {name}: Finished expensive work, exiting gate.",
            stamp(start)
        ));
    } // The permit drops here: the next waiting worker goes in.

    // ========== ZONE 3: every worker runs this at once ==========
    out.line(format!("{} {name}: Past the gate, all done!", stamp(start)));
}
