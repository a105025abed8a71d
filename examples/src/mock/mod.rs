//! A mock OpenAI-compatible API on 127.0.0.1: `POST /v1/chat/completions` with a rate limit,
//! a concurrency limit, realistic latency, and `429 Too Many Requests` + `Retry-After` beyond
//! either limit, as the real services answer.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use examples::mock::{MockConfig, MockServer};
//!
//! let server = MockServer::start(MockConfig::default()).await?;
//! println!("POST {}/chat/completions", server.base_url());
//! # Ok(()) }
//! ```

mod limits;
mod server;

pub use limits::TokenBucket;
pub use server::{MockServer, ServerStats};

use std::time::Duration;

/// The mock's limits and behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    /// Requests served at once; more are answered 429 at once.
    pub max_concurrent: usize,
    /// Requests admitted per second (token bucket refill rate).
    pub rate_per_sec: f64,
    /// Requests that may arrive back to back before the rate applies (token bucket size).
    pub burst: u32,
    /// Mean time to produce a completion; each request takes 60% to 140% of it.
    pub latency: Duration,
    /// Injects a 500 into the first request for one prompt in `n` (chosen by a hash of the
    /// prompt, so the same prompts fail on every run); a retry of that prompt is served.
    pub error_one_in: Option<u64>,
    /// Stalls the first request for one prompt in `n` (chosen by another hash) for this long
    /// before answering; a retry of that prompt is served at the usual latency.
    pub stall_one_in: Option<(u64, Duration)>,
}

impl Default for MockConfig {
    /// 20 requests/s, 8 at once, 250 ms per completion: a small paid tier.
    fn default() -> Self {
        Self {
            max_concurrent: 8,
            rate_per_sec: 20.0,
            burst: 8,
            latency: Duration::from_millis(250),
            error_one_in: None,
            stall_one_in: None,
        }
    }
}

impl MockConfig {
    /// The shortest time any client could need for `requests` successful requests: bounded
    /// by the rate (after the burst) and by the concurrency limit at the mean latency.
    pub fn ideal_makespan(&self, requests: usize) -> Duration {
        if requests == 0 {
            return Duration::ZERO;
        }
        let latency = self.latency.as_secs_f64();
        let beyond_burst = requests.saturating_sub(self.burst as usize) as f64;
        let by_rate = beyond_burst / self.rate_per_sec + latency;
        let by_concurrency = (requests as f64 / self.max_concurrent.max(1) as f64).ceil() * latency;
        Duration::from_secs_f64(by_rate.max(by_concurrency))
    }
}
