//! `#[gated]` on a `const fn` or an `extern` function.

use gate_core::gated;

#[gated(limit = 1)]
const fn constant() -> u32 {
    1
}

#[gated(limit = 1)]
async extern "C" fn foreign() -> u32 {
    1
}

fn main() {
    let _ = constant();
}
