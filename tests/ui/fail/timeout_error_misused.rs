//! `timeout_error` needs `timeout`, must be a function or closure, and must make the
//! function's error type from an `Elapsed`.

use gate_core::gated;

#[derive(Debug)]
struct ApiError;

fn timed_out(_: gate_core::Elapsed) -> ApiError {
    ApiError
}

fn wrong(_: gate_core::Elapsed) -> String {
    String::new()
}

#[gated(limit = 1, retry = 2, timeout_error = timed_out)]
async fn without_timeout() -> Result<u32, ApiError> {
    Ok(1)
}

#[gated(limit = 1, timeout = "1s", timeout_error = "timed out")]
async fn not_a_function() -> Result<u32, ApiError> {
    Ok(1)
}

#[gated(limit = 1, timeout = "1s", timeout_error = wrong)]
async fn wrong_error_type() -> Result<u32, ApiError> {
    Ok(1)
}

fn main() {}
