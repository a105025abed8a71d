//! Exactly one of `limit` and `gate`.

use gate_core::{Gate, gated};

static SHARED: Gate = Gate::new(2);

#[gated(limit = 2, gate = SHARED)]
async fn both() {}

#[gated]
async fn neither() {}

#[gated(retry = 3)]
async fn neither_with_retry() -> Result<(), ()> {
    Ok(())
}

fn main() {}
