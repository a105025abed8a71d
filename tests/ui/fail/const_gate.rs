//! `gate = NAME` needs a gate that lives for the whole program: a `const` would be a new gate
//! at every call and limit nothing, and a value of another type is not a gate.

use gate_core::{Gate, gated};

const NOT_SHARED: Gate = Gate::new(1);

#[gated(gate = NOT_SHARED)]
async fn uses_a_const() {}

static NOT_A_GATE: u32 = 1;

#[gated(gate = NOT_A_GATE)]
async fn uses_a_number() {}

#[gated(gate = "NOT_SHARED")]
async fn uses_a_string() {}

fn main() {}
