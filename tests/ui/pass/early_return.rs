//! `?` and early `return` in a gated body, with and without retries: with retries they end
//! the attempt, not the function.

use gate_core::gated;

#[gated(limit = 1)]
async fn parse(input: &str) -> Result<u32, std::num::ParseIntError> {
    if input.is_empty() {
        return Ok(0);
    }
    let n: u32 = input.parse()?;
    Ok(n)
}

#[gated(limit = 1, retry = 2)]
async fn parse_retried(input: &str) -> Result<u32, std::num::ParseIntError> {
    if input.is_empty() {
        return Ok(0);
    }
    let n: u32 = input.parse()?;
    Ok(n)
}

#[gated(limit = 1)]
async fn nothing_returned(flag: bool) {
    if flag {
        return;
    }
    println!("not returned early");
}

#[gated(limit = 1)]
async fn diverges() -> u32 {
    panic!("never called")
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        assert_eq!(parse("").await, Ok(0));
        assert_eq!(parse("12").await, Ok(12));
        assert!(parse("x").await.is_err());
        assert_eq!(parse_retried("").await, Ok(0));
        assert_eq!(parse_retried("12").await, Ok(12));
        assert!(parse_retried("x").await.is_err());
        nothing_returned(true).await;
        nothing_returned(false).await;
    });
    let _ = diverges;
}
