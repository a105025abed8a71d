//! Every argument, as the README writes them: a shared gate, exponential backoff with a cap,
//! jitter, a per-attempt timeout, `retry_if`, and `crate` for a renamed dependency.

use gate_core::{Elapsed, Gate, gated};

extern crate gate_core as gate_renamed;

static OPENAI: Gate = Gate::new(10);

#[derive(Debug)]
enum ApiError {
    Transient,
    TimedOut,
}

impl From<Elapsed> for ApiError {
    fn from(_: Elapsed) -> Self {
        ApiError::TimedOut
    }
}

fn is_transient(e: &ApiError) -> bool {
    matches!(e, ApiError::Transient | ApiError::TimedOut)
}

struct Client;

#[gated(
    gate = OPENAI,
    retry = 3,
    backoff = "exponential",
    wait = "500ms",
    max_delay = "10s",
    jitter = true,
    timeout = "30s",
    retry_if = is_transient,
)]
async fn embed(_client: &Client, text: &str) -> Result<Vec<f32>, ApiError> {
    Ok(text.bytes().map(f32::from).collect())
}

#[gated(limit = 10, retry = 3, backoff = "fixed", wait = "2s", crate = "gate_renamed")]
async fn complete(_client: &Client, prompt: &str) -> Result<String, ApiError> {
    Ok(format!("echo: {prompt}"))
}

#[gated(limit = 1, retry = 1, wait = "1m", timeout = "1h")]
async fn long_units() -> Result<(), ApiError> {
    Ok(())
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        assert_eq!(embed(&Client, "ab").await.unwrap(), [97.0, 98.0]);
        assert_eq!(complete(&Client, "hi").await.unwrap(), "echo: hi");
        long_units().await.unwrap();
    });
}
