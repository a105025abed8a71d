//! `timeout_error` names the error of a timed-out attempt for an error type that cannot
//! implement `From<Elapsed>`: here `std::io::Error`, another crate's type, as async-openai's
//! `OpenAIError` is to its users. A path and a closure both work, with or without `retry`.

use std::io;
use std::time::Duration;

use gate_core::{Elapsed, gated};

fn timed_out(elapsed: Elapsed) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, elapsed)
}

#[gated(limit = 2, retry = 1, timeout = "1s", timeout_error = timed_out)]
async fn by_path(delay: Duration) -> io::Result<u32> {
    tokio::time::sleep(delay).await;
    Ok(1)
}

#[gated(limit = 2, timeout = "1s", timeout_error = |e| io::Error::other(e))]
async fn by_closure() -> Result<u32, io::Error> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(2)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(by_path(Duration::ZERO).await.unwrap(), 1);
        let slow = by_path(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(slow.kind(), io::ErrorKind::TimedOut);
        let slow = by_closure().await.unwrap_err();
        assert_eq!(slow.to_string(), "attempt timed out");
    });
}
