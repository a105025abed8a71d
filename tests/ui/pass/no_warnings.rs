//! The expansion adds no warning to code that had none: `unused_braces`, `unreachable_code`,
//! unused variables and the rest are denied here.

#![deny(warnings, unused, rust_2018_idioms, unused_qualifications)]

use gate_core::gated;

#[derive(Debug)]
struct Failed;

#[gated(limit = 1)]
async fn plain(x: u32) -> u32 {
    x + 1
}

#[gated(limit = 1, retry = 2)]
async fn retried(x: u32) -> Result<u32, Failed> {
    if x == 0 {
        return Err(Failed);
    }
    Ok(x)
}

#[gated(limit = 1, retry = 2)]
async fn always_fails() -> Result<(), Failed> {
    Err(Failed)
}

#[gated(limit = 1)]
async fn unit() {}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        assert_eq!(plain(1).await, 2);
        assert_eq!(retried(1).await.unwrap(), 1);
        assert!(retried(0).await.is_err());
        assert!(always_fails().await.is_err());
        unit().await;
    });
}
