//! Zero or negative values where they make no sense.

use gate_core::gated;

#[gated(limit = 1, retry = 0)]
async fn retry_zero() -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 1, retry = -1)]
async fn retry_negative() -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 1, timeout = "0s")]
async fn timeout_zero() -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 1, retry = 1, wait = "-1s")]
async fn wait_negative() -> Result<(), ()> {
    Ok(())
}

fn main() {}
