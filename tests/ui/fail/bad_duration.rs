//! Durations are string literals with a unit, checked when the macro runs.

use gate_core::gated;

#[gated(limit = 1, retry = 1, wait = "2 sec")]
async fn unknown_unit() -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 1, retry = 1, wait = "500")]
async fn no_unit() -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 1, retry = 1, wait = "1.5s")]
async fn fraction() -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 1, retry = 1, wait = 500)]
async fn not_a_string() -> Result<(), ()> {
    Ok(())
}

fn main() {}
