//! `backpressure = true` needs an error type that implements `Backpressure`, and something
//! to act on: retries or a limiter.

use gate_core::gated;

#[derive(Debug)]
struct ApiError;

#[gated(rate = "10/s", backpressure = true)]
async fn call() -> Result<u32, ApiError> {
    Ok(1)
}

#[gated(limit = 2, backpressure = true)]
async fn nothing_to_act_on() -> Result<u32, ApiError> {
    Ok(1)
}

fn main() {}
