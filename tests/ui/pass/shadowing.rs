//! Generated code uses absolute paths, so a program that shadows `Result`, `Option`, `Ok`,
//! `core` or `std` in its module or in the body still works.

#![allow(dead_code)]

mod core {}
mod std {}

type Result<T> = ::std::result::Result<T, Error>;

#[derive(Debug)]
struct Error;

enum Option {
    Nope,
}

use gate_core::gated;

#[gated(limit = 2, retry = 1)]
async fn aliased(ok: bool) -> Result<u8> {
    if ok { Ok(1) } else { Err(Error) }
}

#[gated(limit = 2)]
async fn shadow_in_body() -> u8 {
    mod core {}
    struct Ok;
    enum Result {
        Err,
    }
    let _ = (Ok, Result::Err, Option::Nope);
    3
}

#[gated(limit = 2, retry = 1)]
async fn shadow_in_retried_body() -> ::std::result::Result<u8, Error> {
    mod core {}
    type Option = u8;
    let x: Option = 4;
    ::std::result::Result::Ok(x)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        assert_eq!(aliased(true).await.unwrap(), 1);
        assert!(aliased(false).await.is_err());
        assert_eq!(shadow_in_body().await, 3);
        assert_eq!(shadow_in_retried_body().await.unwrap(), 4);
    });
}
