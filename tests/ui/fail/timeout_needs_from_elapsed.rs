//! With `timeout`, the error type must be able to say "timed out": `E: From<Elapsed>`, or
//! `timeout_error = ..`, which the message names first (the `From` impl is impossible for
//! another crate's error type).

use gate_core::gated;

#[derive(Debug)]
struct ApiError;

#[gated(limit = 1, retry = 2, timeout = "30s")]
async fn call() -> Result<u32, ApiError> {
    Ok(1)
}

fn main() {}
