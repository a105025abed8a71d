//! With `timeout`, the error type must be able to say "timed out": `E: From<Elapsed>`.

use gate_core::gated;

#[derive(Debug)]
struct ApiError;

#[gated(limit = 1, retry = 2, timeout = "30s")]
async fn call() -> Result<u32, ApiError> {
    Ok(1)
}

fn main() {}
