//! `#[gated]` on a function that is not `async`: the error is on `fn`, and the function is
//! still emitted (so `main` below compiles without a second error).

use gate_core::gated;

#[gated(limit = 1)]
fn blocking() -> u32 {
    1
}

fn main() {
    let _ = blocking();
}
