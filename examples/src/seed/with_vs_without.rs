//! Example 4 of the seed: the same 50 calls against a server that refuses anything above
//! 10 concurrent requests, first without a gate, then with a gate of 10.
//!
//! Without a gate all 50 arrive at once and the 40 beyond the server's limit are refused;
//! with a gate of 10 they arrive 10 at a time and none is. (The seed counted asyncio tasks to
//! detect concurrency and printed 35 failures; this server counts the requests it is
//! actually serving.)

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use gate_core::{Batch, Gate, Unlimited};
use tokio::time::sleep;

use super::Gauge;
use crate::Out;

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

/// The server's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitExceeded {
    /// Requests the server was holding when this one arrived, this one included.
    pub concurrent: usize,
}

impl fmt::Display for RateLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limit exceeded ({} concurrent)", self.concurrent)
    }
}

impl std::error::Error for RateLimitExceeded {}

/// A server that serves `limit` requests at once and refuses any beyond.
#[derive(Debug)]
pub struct RefusingServer {
    limit: usize,
    call_time: Duration,
    load: Arc<Gauge>,
}

impl RefusingServer {
    /// A server of the given limit and response time.
    pub fn new(limit: usize, call_time: Duration) -> Self {
        Self {
            limit,
            call_time,
            load: Arc::default(),
        }
    }

    /// Serves one request, or refuses it at once if `limit` are already being served.
    pub async fn call(&self, id: usize) -> Result<String, RateLimitExceeded> {
        let (_serving, concurrent) = self.load.enter();
        if concurrent > self.limit {
            return Err(RateLimitExceeded { concurrent });
        }
        sleep(self.call_time).await;
        Ok(format!("Success: {id}"))
    }

    /// Most requests held at once, refused ones included.
    pub fn peak(&self) -> usize {
        self.load.peak()
    }
}

/// Runs the example.
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
