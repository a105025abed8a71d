//! Run with: cargo run --example with_vs_without
//!
//! The seed's Example 4: the same 50 calls against a server that refuses anything above 10
//! concurrent requests, first without a gate, then with a gate of 10.
//!
//! Without a gate all 50 arrive at once and the 40 beyond the server's limit are refused;
//! with a gate of 10 they arrive 10 at a time and none is. (The seed counted asyncio tasks to
//! detect concurrency and printed 35 failures; the server here counts the requests it is
//! actually serving.)

use std::time::Duration;

use examples::Out;
use examples::seed::RefusingServer;
use gate_core::{Batch, Gate, Unlimited};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    run(&Config::default(), &Out::stdout()).await;
}

/// The seed's numbers: 50 calls of 0.5 seconds, a server limit of 10, a gate of 10.
#[derive(Debug, Clone)]
pub struct Config {
    /// Calls to make in each run.
    pub calls: usize,
    /// Requests the server serves at once; it refuses the rest.
    pub server_limit: usize,
    /// Permits of the gate in the second run.
    pub gate: usize,
    /// How long the server takes per request.
    pub call_time: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            calls: 50,
            server_limit: 10,
            gate: 10,
            call_time: Duration::from_millis(500),
        }
    }
}

/// What happened in both runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Calls refused in the run without a gate.
    pub failed_without: usize,
    /// Calls refused in the run with a gate.
    pub failed_with: usize,
    /// Most requests the server saw at once without a gate (refused ones included).
    pub peak_without: usize,
    /// Most requests the server saw at once with a gate.
    pub peak_with: usize,
}

/// The seed's `test_without_semaphore` and `test_with_semaphore`, one after the other.
pub async fn run(config: &Config, out: &Out) -> Outcome {
    out.line("🚫 WITHOUT A GATE:");
    let server = RefusingServer::new(config.server_limit, config.call_time);
    // `asyncio.gather` over all calls at once: no limit on admission or on live calls.
    let report = Batch::new(Unlimited)
        .max_in_flight(usize::MAX)
        .run(0..config.calls, |id| server.call(id))
        .await;
    let failed_without = report.summary.failed;
    if let Some((id, e)) = report.failures().next() {
        out.line(format!("   first refusal: request {id}: {e}"));
    }
    out.line(format!("   Failed requests: {failed_without}"));
    let peak_without = server.peak();

    out.line(format!("\n✅ WITH A GATE OF {}:", config.gate));
    let server = RefusingServer::new(config.server_limit, config.call_time);
    // `sem = Semaphore(10)` and `async with sem:` around each call: the batch holds the
    // permit, so the server never sees more than the gate lets through.
    let gate = Gate::new(config.gate);
    let report = Batch::new(&gate)
        .run(0..config.calls, |id| server.call(id))
        .await;
    let failed_with = report.summary.failed;
    out.line(format!("   Failed requests: {failed_with}"));
    out.line(format!(
        "   (the server saw at most {} at once; {:.1}s for {} calls)",
        server.peak(),
        report.summary.elapsed.as_secs_f64(),
        config.calls
    ));
    Outcome {
        failed_without,
        failed_with,
        peak_without,
        peak_with: server.peak(),
    }
}
