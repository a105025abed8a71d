//! Example 2 of the seed: 20 API calls through a gate of 5 take 4 rounds of the call time.
//!
//! The calls go through a [`Batch`], the Rust `asyncio.gather`: results come back in input
//! order, and the summary shows how long callers waited at the gate.

use std::sync::Arc;
use std::time::Duration;

use gate_core::{Batch, Gate};
use tokio::time::{Instant, sleep};

use super::{Gauge, stamp};
use crate::Out;

/// The seed's numbers: 20 calls of 1 second through a gate of 5.
#[derive(Debug, Clone)]
pub struct Config {
    /// Calls to make.
    pub calls: usize,
    /// Permits of the gate.
    pub limit: usize,
    /// How long one call takes.
    pub call_time: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            calls: 20,
            limit: 5,
            call_time: Duration::from_secs(1),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The makespan: first call started to last call done.
    pub elapsed: Duration,
    /// The makespan in units of one call's time (4.0 for the seed's numbers).
    pub rounds: f64,
    /// The responses, in the order the calls were made.
    pub responses: Vec<String>,
    /// Most calls in flight at once.
    pub peak_in_flight: usize,
}

/// Runs the example.
pub async fn run(config: &Config, out: &Out) -> Outcome {
    let gate = Gate::new(config.limit);
    let in_flight = Arc::new(Gauge::default());
    let start = Instant::now();

    let report = Batch::new(&gate)
        .label("api")
        .run(0..config.calls, |id| {
            call_api(
                id,
                config.call_time,
                Arc::clone(&in_flight),
                start,
                out.clone(),
            )
        })
        .await;

    let elapsed = report.summary.elapsed;
    let responses: Vec<String> = report.successes().cloned().collect();
    let rounds = elapsed.as_secs_f64() / config.call_time.as_secs_f64();
    out.line(format!(
        "\n✓ Completed {} API calls in {:.2} seconds",
        responses.len(),
        elapsed.as_secs_f64()
    ));
    out.line(format!(
        "Average time per call: {:.2}s",
        elapsed.as_secs_f64() / responses.len().max(1) as f64
    ));
    out.line(format!(
        "With a gate of {}: {} calls / {} at once = {} rounds × {:.0}s; makespan = {rounds:.2} × the call time",
        config.limit,
        config.calls,
        config.limit,
        config.calls.div_ceil(config.limit.max(1)),
        config.call_time.as_secs_f64(),
    ));
    out.line(format!("{}", report.summary));
    Outcome {
        elapsed,
        rounds,
        responses,
        peak_in_flight: in_flight.peak(),
    }
}

/// One simulated API call; the batch holds a permit of the gate around it.
async fn call_api(
    id: usize,
    call_time: Duration,
    in_flight: Arc<Gauge>,
    start: Instant,
    out: Out,
) -> Result<String, std::convert::Infallible> {
    let (_inside, _) = in_flight.enter();
    out.line(format!("{} Request {id}: Starting API call", stamp(start)));
    sleep(call_time).await;
    out.line(format!("{} Request {id}: Completed", stamp(start)));
    Ok(format!("Response for request {id}"))
}
