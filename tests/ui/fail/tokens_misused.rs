//! A token budget needs a cost and a cost needs a budget, each reported on its key: `tokens`
//! without `cost`, `cost` without `tokens` or `limiter`, either with a `Gate`, `tokens` beside
//! a shared limiter (which sets its own), `cost = 0`, `usage` without `cost`, and a budget
//! that is not a string.

use gate_core::{Gate, gated};

static SHARED: Gate = Gate::new(2);

#[gated(limit = 8, tokens = "180000/min")]
async fn tokens_without_cost(prompt: &str) -> Result<usize, ()> {
    Ok(prompt.len())
}

#[gated(limit = 8, cost = prompt.len() as u64)]
async fn cost_without_tokens(prompt: &str) -> Result<usize, ()> {
    Ok(prompt.len())
}

#[gated(gate = SHARED, cost = 100)]
async fn cost_with_a_gate() -> Result<(), ()> {
    Ok(())
}

#[gated(gate = SHARED, tokens = "180000/min", cost = 100)]
async fn tokens_with_a_gate() -> Result<(), ()> {
    Ok(())
}

#[gated(limiter = SHARED, tokens = "180000/min", cost = 100)]
async fn tokens_with_a_limiter() -> Result<(), ()> {
    Ok(())
}

#[gated(tokens = "180000/min", cost = 0)]
async fn zero_cost() -> Result<(), ()> {
    Ok(())
}

#[gated(limit = 8, usage = |_| None)]
async fn usage_without_cost() -> Result<(), ()> {
    Ok(())
}

#[gated(tokens = 180000, cost = 1)]
async fn not_a_string() -> Result<(), ()> {
    Ok(())
}

fn main() {}
