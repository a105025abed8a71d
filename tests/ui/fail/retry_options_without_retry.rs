//! Retry options (`backoff`, `wait`, `max_delay`, `jitter`, `retry_if`) without `retry`.

use gate_core::gated;

fn never(_: &()) -> bool {
    false
}

#[gated(limit = 1, backoff = "exponential", wait = "1s", max_delay = "2s", jitter = true, retry_if = never)]
async fn options_alone() -> Result<(), ()> {
    Ok(())
}

fn main() {}
