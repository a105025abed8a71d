//! Example 1 of the seed: six workers, a gate of three, and the three zones.
//!
//! Every worker runs; only the code holding a permit is limited. Zone 1 (before the gate) and
//! zone 3 (after it) run for all six at once; zone 2 (inside) for three at most.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use gate_core::Gate;
use tokio::time::{Instant, sleep};

use super::{Gauge, stamp};
use crate::Out;

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

/// Runs the example.
pub async fn run(config: &Config, out: &Out) -> Outcome {
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
