//! `retry_if` must take a reference to the function's error type.

use gate_core::gated;

#[derive(Debug)]
struct ApiError;

fn wrong(_: &String) -> bool {
    true
}

#[gated(limit = 1, retry = 2, retry_if = wrong)]
async fn call() -> Result<u32, ApiError> {
    Ok(1)
}

fn main() {}
