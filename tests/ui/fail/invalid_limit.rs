//! `limit` must be an integer literal of at least 1.

use gate_core::gated;

#[gated(limit = 0)]
async fn zero() {}

#[gated(limit = -2)]
async fn negative() {}

#[gated(limit = "10")]
async fn string() {}

const N: usize = 4;

#[gated(limit = N)]
async fn constant() {}

#[gated(limit)]
async fn no_value() {}

fn main() {}
