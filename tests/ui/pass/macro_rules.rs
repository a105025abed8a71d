//! `#[gated]` on functions written by a `macro_rules!` macro, with the body passed in.

use gate_core::gated;

macro_rules! gated_fn {
    ($name:ident, $arg:ident, $limit:literal, $body:block) => {
        #[gated(limit = $limit)]
        async fn $name($arg: u32) -> u32 $body
    };
}

gated_fn!(double, x, 2, { x * 2 });
gated_fn!(triple, x, 3, {
    let y = x;
    y * 3
});

macro_rules! gated_retry {
    ($name:ident) => {
        #[gated(limit = 1, retry = 2, wait = "1ms")]
        async fn $name(x: u32) -> Result<u32, String> {
            if x == 0 { Err("zero".to_owned()) } else { Ok(x) }
        }
    };
}

gated_retry!(nonzero);

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        assert_eq!(double(2).await, 4);
        assert_eq!(triple(2).await, 6);
        assert_eq!(nonzero(5).await, Ok(5));
        assert_eq!(nonzero(0).await, Err("zero".to_owned()));
    });
}
