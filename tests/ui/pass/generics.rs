//! Generic functions with where-clauses, lifetimes, `impl Trait` in argument and return
//! position, and a `Send` future wherever the body's is.

use std::fmt::{Debug, Display};

use gate_core::gated;

#[derive(Debug)]
struct Failed;

#[gated(limit = 3)]
async fn describe<T>(value: T) -> String
where
    T: Debug + Send,
{
    format!("{value:?}")
}

#[gated(limit = 3, retry = 2)]
async fn longest<'a, 'b: 'a>(a: &'a str, b: &'b str) -> Result<&'a str, Failed> {
    Ok(if a.len() >= b.len() { a } else { b })
}

#[gated(limit = 3)]
async fn shown(value: impl Display + Send) -> impl Display {
    format!("<{value}>")
}

#[gated(limit = 3, retry = 1)]
async fn shown_or_not(value: impl Display + Send, ok: bool) -> Result<impl Display, Failed> {
    if ok { Ok(value.to_string()) } else { Err(Failed) }
}

#[gated(limit = 3, retry = 1, timeout = "1s")]
async fn generic_error<E>(fail: Option<fn() -> E>) -> Result<u8, E>
where
    E: From<gate_core::Elapsed> + Send,
{
    match fail {
        Some(make) => Err(make()),
        None => Ok(1),
    }
}

impl From<gate_core::Elapsed> for Failed {
    fn from(_: gate_core::Elapsed) -> Self {
        Failed
    }
}

fn require_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        assert_eq!(require_send(describe(1)).await, "1");
        assert_eq!(require_send(describe("a")).await, "\"a\"");
        assert_eq!(require_send(longest("ab", "c")).await.unwrap(), "ab");
        assert_eq!(require_send(shown(5)).await.to_string(), "<5>");
        assert_eq!(require_send(shown_or_not(5, true)).await.unwrap().to_string(), "5");
        assert!(shown_or_not(5, false).await.is_err());
        assert_eq!(require_send(generic_error::<Failed>(None)).await.unwrap(), 1);
        assert!(generic_error(Some(|| Failed)).await.is_err());
    });
}
