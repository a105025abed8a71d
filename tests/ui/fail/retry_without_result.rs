//! `retry` and `timeout` need a function returning a `Result`, decided by the type system:
//! the error is on the return type (or on `retry` when there is none).

use gate_core::gated;

#[gated(limit = 1, retry = 3)]
async fn number() -> u32 {
    1
}

#[gated(limit = 1, retry = 3)]
async fn option() -> Option<u32> {
    Some(1)
}

#[gated(limit = 1, retry = 3)]
async fn nothing() {}

#[gated(limit = 1, timeout = "1s")]
async fn nothing_timed() {}

fn main() {}
