//! `adaptive` is "aimd" or "gradient"; a close misspelling gets "did you mean".

use gate_core::gated;

#[gated(adaptive = "aimdd", limit = 10)]
async fn misspelled() -> Result<(), ()> {
    Ok(())
}

#[gated(adaptive = "vegas")]
async fn unknown() -> Result<(), ()> {
    Ok(())
}

#[gated(adaptive = aimd)]
async fn not_a_string() -> Result<(), ()> {
    Ok(())
}

fn main() {}
