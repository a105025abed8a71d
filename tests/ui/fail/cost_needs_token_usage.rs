//! With `cost`, each success is settled from what it reports: the `Ok` type implements
//! `TokenUsage`, or `usage` reads it. The message names `usage` (another crate's response type
//! cannot implement `TokenUsage`), and `usage` must fit the `Ok` type.

use gate_core::gated;

#[gated(tokens = "180000/min", cost = 100)]
async fn says_nothing() -> Result<String, ()> {
    Ok(String::new())
}

fn wrong(_: &u32) -> Option<u64> {
    None
}

#[gated(tokens = "180000/min", cost = 100, usage = wrong)]
async fn wrong_usage() -> Result<String, ()> {
    Ok(String::new())
}

#[gated(tokens = "180000/min", cost = 100)]
async fn not_a_result() -> String {
    String::new()
}

fn main() {}
