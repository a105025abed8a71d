//! Run with: cargo run --example api_calls
//!
//! The seed's Example 2: 20 simulated API calls of one second through a gate of 5. The
//! makespan is 4 rounds of the call time, about 4 seconds.
//!
//! The calls go through a [`Batch`], the Rust `asyncio.gather`: it holds a permit of the
//! gate around each call, returns the results in input order, and its summary shows how long
//! callers waited at the gate.

use std::sync::Arc;
use std::time::Duration;

use examples::Out;
use examples::seed::{Gauge, stamp};
use gate_core::{Batch, Gate};
use tokio::time::{Instant, sleep};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    run(&Config::default(), &Out::stdout()).await;
}

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

/// The seed's `main`: a gate of 5, every call handed to the batch at once.
pub async fn run(config: &Config, out: &Out) -> Outcome {
    // `sem = Semaphore(5)`.
    let gate = Gate::new(config.limit);
    let in_flight = Arc::new(Gauge::default());
    let start = Instant::now();

    // `results = await asyncio.gather(*coros)`, with `async with sem:` around each call.
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

/// The seed's `call_api`: one simulated call. The batch holds a permit of the gate around
/// it, so the body needs no `async with sem:` of its own.
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
