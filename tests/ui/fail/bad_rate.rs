//! A rate that `Rate::parse` rejects is a compile error on its literal, checked by the same
//! parser that runs at run time; `burst` needs a rate and must be at least 1.

use gate_core::gated;

#[gated(rate = "500/mn")]
async fn unknown_unit() {}

#[gated(rate = "500")]
async fn no_period() {}

#[gated(rate = "0/s")]
async fn zero() {}

#[gated(rate = 500)]
async fn not_a_string() {}

#[gated(limit = 2, burst = 5)]
async fn burst_without_rate() {}

#[gated(rate = "10/s", burst = 0)]
async fn zero_burst() {}

fn main() {}
