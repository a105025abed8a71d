//! `adaptive` resizes the function's own limit, so it cannot use a shared `Gate`; nor can
//! `rate`. An adaptive limit learns from `Result`s.

use gate_core::{Gate, gated};

static SHARED: Gate = Gate::new(4);

#[gated(gate = SHARED, adaptive = "aimd")]
async fn adaptive_gate() -> Result<(), ()> {
    Ok(())
}

#[gated(gate = SHARED, rate = "10/s")]
async fn rate_gate() {}

#[gated(adaptive = "aimd", limit = 10)]
async fn adaptive_without_result() {}

fn main() {}
