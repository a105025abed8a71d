//! Backoff settings that do not fit together.

use gate_core::gated;

#[gated(limit = 1, retry = 1, backoff = "exponental", wait = "1s")]
async fn misspelled() -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 1, retry = 1, backoff = "exponential")]
async fn no_first_delay() -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 1, retry = 1, wait = "1s", max_delay = "2s")]
async fn cap_without_exponential() -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 1, retry = 1, backoff = "exponential", wait = "2s", max_delay = "1s")]
async fn cap_below_first_delay() -> Result<(), ()> {
    Ok(())
}

fn main() {}
