//! A token budget that `Rate::parse` rejects is a compile error on its literal, in the words
//! of `tokens`; a cost must be a `u64`.

use gate_core::{TokenUsage, gated};

struct Reply;

impl TokenUsage for Reply {
    fn tokens_used(&self) -> Option<u64> {
        None
    }
}

#[gated(tokens = "180000/mn", cost = 1)]
async fn unknown_unit() -> Result<Reply, ()> {
    Ok(Reply)
}

#[gated(tokens = "0/min", cost = 1)]
async fn zero() -> Result<Reply, ()> {
    Ok(Reply)
}

#[gated(tokens = "180000/min", cost = prompt.len())]
async fn cost_not_u64(prompt: &str) -> Result<Reply, ()> {
    let _ = prompt;
    Ok(Reply)
}

fn main() {}
