//! Run with: cargo run --example llm_client
//!
//! The seed's Example 3: 50 prompts to an OpenAI-style API through a gate of 10, each with
//! up to 3 attempts and a per-attempt timeout, against a local mock on 127.0.0.1 that stalls
//! some requests and fails others. No API key, no network.
//!
//! The seed wraps `async with sem:` in tenacity's `@retry(stop=stop_after_attempt(3),
//! wait=wait_fixed(2))` and bounds each call with `asyncio.wait_for(..., timeout=30)`. Here a
//! [`Retry`] policy does all three, and a [`Batch`] is `asyncio.gather(...,
//! return_exceptions=True)`: each attempt holds a permit, released while waiting to retry.
//! The mock stalls some requests past the timeout and fails others with a 500, so the
//! retries have something to do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use examples::Out;
use examples::client::{ApiError, ChatClient};
use examples::mock::{MockConfig, MockServer, ServerStats};
use gate_core::{Batch, Gate, Retry};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    run(&Config::default(), &Out::stdout()).await?;
    Ok(())
}

/// The seed's shape, with times scaled down to run in a few seconds.
#[derive(Debug, Clone)]
pub struct Config {
    /// Prompts: "Write a haiku about {topic} #{i}" for five topics, repeated.
    pub prompts: usize,
    /// Permits of the gate (the seed's `Semaphore(10)`).
    pub limit: usize,
    /// Attempts per prompt (the seed's `stop_after_attempt(3)`).
    pub attempts: u32,
    /// Wait between attempts (the seed's `wait_fixed(2)`, scaled down).
    pub wait: Duration,
    /// Per-attempt timeout (the seed's `wait_for(..., timeout=30)`, scaled down).
    pub timeout: Duration,
    /// The mock server: its latency and injected faults.
    pub server: MockConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            prompts: 50,
            limit: 10,
            attempts: 3,
            wait: Duration::from_millis(200),
            timeout: Duration::from_millis(500),
            server: MockConfig {
                max_concurrent: 50,
                rate_per_sec: 1_000.0,
                burst: 50,
                latency: Duration::from_millis(100),
                // The first request for about one prompt in 8 answers 500, and for about one
                // in 6 stalls past the timeout.
                error_one_in: Some(8),
                stall_one_in: Some((6, Duration::from_secs(2))),
                ..MockConfig::default()
            },
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Prompts answered.
    pub successes: usize,
    /// Prompts that failed every attempt.
    pub failures: usize,
    /// Attempts made in all.
    pub attempts: u64,
    /// What the server saw.
    pub server: ServerStats,
}

const TOPICS: [&str; 5] = ["ocean", "mountain", "forest", "desert", "city"];

/// Starts the mock server, runs the seed's `main` against it, and stops it.
pub async fn run(config: &Config, out: &Out) -> std::io::Result<Outcome> {
    let server = MockServer::start(config.server.clone()).await?;
    let client = ChatClient::new(&server.base_url(), None, "gpt-4o-mini")
        .expect("the mock's URL is plain http");
    out.line(format!("Mock OpenAI API on {}", server.base_url()));

    // `sem = Semaphore(10)`.
    let gate = Gate::new(config.limit);
    // `@retry(stop=stop_after_attempt(3), wait=wait_fixed(2))` + `wait_for(..., timeout=30)`:
    // `stop_after_attempt(3)` is 2 retries after the first call.
    let policy = Retry::<ApiError>::builder(config.attempts.saturating_sub(1))
        .fixed(config.wait)
        .timeout(config.timeout)
        .build()
        .expect("valid policy");
    let prompts: Vec<Arc<str>> = TOPICS
        .iter()
        .cycle()
        .take(config.prompts)
        .enumerate()
        .map(|(i, topic)| Arc::from(format!("Write a haiku about {topic} #{i}")))
        .collect();
    let attempt_of: Vec<AtomicU32> = (0..prompts.len()).map(|_| AtomicU32::new(0)).collect();

    // `asyncio.gather(*coros, return_exceptions=True)`: the closure is the seed's
    // `generate_completion`, called once per attempt, each attempt holding a permit.
    let report = Batch::new(&gate)
        .retry(policy)
        .run(prompts.iter().cloned().enumerate(), |(i, prompt)| {
            let (client, out) = (&client, out);
            let attempt = attempt_of[i].fetch_add(1, SeqCst) + 1;
            async move {
                let short: String = prompt.chars().take(40).collect();
                if attempt == 1 {
                    out.line(format!("🔵 Processing: '{short}...'"));
                } else {
                    out.line(format!("🔁 Retrying (attempt {attempt}): '{short}...'"));
                }
                match client.complete(&prompt).await {
                    Ok(text) => {
                        out.line(format!("✅ Completed: '{short}...'"));
                        Ok(text)
                    }
                    Err(e) => {
                        out.line(format!("❌ Error for '{short}...': {e}"));
                        // Tenacity's `raise`: the policy retries it.
                        Err(e)
                    }
                }
            }
        })
        .await;

    let s = &report.summary;
    let server_stats = server.stats();
    out.line("\n📊 Results:");
    out.line(format!("   ✓ Successful: {}", s.succeeded));
    out.line(format!("   ✗ Failed: {}", s.failed));
    out.line(format!(
        "   {} attempts for {} prompts ({} retries): the server stalled {} past the {}ms timeout and answered {} with a 500",
        s.attempts,
        s.total,
        s.retries,
        server_stats.stalled,
        config.timeout.as_millis(),
        server_stats.server_errors,
    ));
    for (i, e) in report.failures() {
        out.line(format!("   prompt {i} gave up: {e}"));
    }
    server.shutdown().await;
    Ok(Outcome {
        successes: s.succeeded,
        failures: s.failed,
        attempts: s.attempts,
        server: server_stats,
    })
}
