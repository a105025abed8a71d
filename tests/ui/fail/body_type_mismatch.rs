//! A type error in the body points at the user's code and return type, not at generated code.

use gate_core::gated;

#[gated(limit = 1)]
async fn plain() -> u32 {
    "one"
}

#[gated(limit = 1, retry = 2)]
async fn retried() -> Result<u32, ()> {
    Ok("one")
}

#[gated(limit = 1, retry = 2)]
async fn retried_question_mark() -> Result<u32, ()> {
    let n: u32 = "1".parse()?;
    Ok(n)
}

fn main() {}
