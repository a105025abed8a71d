//! Rate, adaptive and shared limiters as users write them: a rate alone, a rate with a burst
//! and a limit, both adaptive algorithms, `backpressure`, a `limiter = PATH` on a generic
//! method, and with `crate` for a renamed dependency.

use std::sync::LazyLock;
use std::time::Duration;

use gate_core::{Backpressure, Elapsed, Limiter, gated};

extern crate gate_core as gate_renamed;

#[derive(Debug)]
enum ApiError {
    TooManyRequests(Option<Duration>),
    TimedOut,
}

impl Backpressure for ApiError {
    fn is_overload(&self) -> bool {
        matches!(self, ApiError::TooManyRequests(_))
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::TooManyRequests(after) => *after,
            ApiError::TimedOut => None,
        }
    }
}

impl From<Elapsed> for ApiError {
    fn from(_: Elapsed) -> Self {
        ApiError::TimedOut
    }
}

static GITHUB: LazyLock<Limiter> =
    LazyLock::new(|| Limiter::builder().concurrency(8).build().unwrap());

#[gated(rate = "500/min")]
async fn ticker(n: u32) -> u32 {
    n
}

#[gated(rate = " 100 / 10 seconds ", burst = 5, limit = 3, crate = "gate_renamed")]
async fn bursty(n: u32) -> u32 {
    n
}

#[gated(adaptive = "aimd", limit = 50, rate = "10/s", retry = 3, wait = "100ms", backpressure = true)]
async fn complete(prompt: &str) -> Result<String, ApiError> {
    Ok(prompt.to_uppercase())
}

#[gated(adaptive = "gradient", timeout = "30s")]
async fn render(page: u32) -> Result<String, ApiError> {
    Ok(format!("page {page}"))
}

struct Client<T>(T);

impl<T: Sync + std::fmt::Display> Client<T> {
    #[gated(limiter = GITHUB, retry = 2, backpressure = true)]
    async fn fetch(&self, path: &str) -> Result<String, ApiError> {
        Ok(format!("{}/{path}", self.0))
    }

    #[gated(limiter = GITHUB)]
    async fn name(&self) -> String {
        self.0.to_string()
    }

    // One limiter for every `T`.
    #[gated(rate = "10/s", adaptive = "aimd", limit = 4, timeout = "1s")]
    async fn ping(&mut self) -> Result<String, ApiError> {
        Ok(format!("pong from {}", self.0))
    }
}

fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        assert_eq!(ticker(1).await, 1);
        assert_eq!(bursty(2).await, 2);
        assert_eq!(assert_send(complete("hi")).await.unwrap(), "HI");
        assert_eq!(render(3).await.unwrap(), "page 3");
        let client = Client("api");
        assert_eq!(assert_send(client.fetch("x")).await.unwrap(), "api/x");
        assert_eq!(client.name().await, "api");
        let mut client = client;
        assert_eq!(client.ping().await.unwrap(), "pong from api");
        let mut other = Client(7);
        assert_eq!(other.ping().await.unwrap(), "pong from 7");
        assert_eq!(GITHUB.stats().admitted, 2);
    });
}
