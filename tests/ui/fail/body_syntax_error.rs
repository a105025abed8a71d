//! A syntax error in the body is the compiler's one error: `#[gated]` parses only the
//! signature, so it neither adds an error of its own nor leaves the function unexpanded
//! (`main` calls it as the `async fn` it is, without a second error).

use gate_core::gated;

#[gated(limit = 1, retry = 2)]
async fn broken(x: u32) -> Result<u32, ()> {
    let y = x +;
    Ok(y)
}

fn main() {
    let _ = broken(1);
}
