//! What users write with a token budget: a cost from the arguments or from `&self`, methods
//! taking `&self` and `&mut self`, a generic function, `usage` for a response type without
//! `TokenUsage`, `cost` over a shared limiter, with `retry` and `timeout`; no warnings.

#![deny(warnings, unused, rust_2018_idioms, unused_qualifications)]

use std::sync::LazyLock;

use gate_core::rate::Rate;
use gate_core::{Elapsed, Limiter, TokenUsage, gated};

#[derive(Debug)]
struct ApiError;

impl From<Elapsed> for ApiError {
    fn from(_: Elapsed) -> Self {
        ApiError
    }
}

struct Completion {
    total_tokens: u64,
}

impl TokenUsage for Completion {
    fn tokens_used(&self) -> Option<u64> {
        Some(self.total_tokens)
    }
}

/// A response type that says what it used in its own way.
struct Raw {
    usage: Option<u32>,
}

fn estimate(prompt: &str) -> u64 {
    prompt.len() as u64 / 4 + 16
}

static SHARED: LazyLock<Limiter> = LazyLock::new(|| {
    Limiter::builder()
        .concurrency(4)
        .tokens(Rate::per_minute(10_000))
        .build()
        .unwrap()
});

struct Client {
    max_tokens: u64,
    sent: u32,
}

impl Client {
    #[gated(limit = 8, rate = "500/min", tokens = "180000/min", cost = estimate(prompt) + self.max_tokens)]
    async fn chat(&self, prompt: &str) -> Result<Completion, ApiError> {
        Ok(Completion { total_tokens: estimate(prompt) })
    }

    #[gated(limiter = SHARED, retry = 2, timeout = "30s", cost = self.max_tokens)]
    async fn send(&mut self) -> Result<Completion, ApiError> {
        self.sent += 1;
        Ok(Completion { total_tokens: 1 })
    }
}

#[gated(tokens = "10000/min (burst 2000)", cost = 100, usage = |raw: &Raw| raw.usage.map(u64::from))]
async fn raw() -> Result<Raw, ApiError> {
    Ok(Raw { usage: Some(3) })
}

#[gated(tokens = "10000/min", adaptive = "aimd", cost = items.len() as u64 * 10)]
async fn generic<T: Send + Sync>(items: &[T]) -> Result<Completion, ApiError> {
    Ok(Completion { total_tokens: items.len() as u64 })
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = Client { max_tokens: 64, sent: 0 };
        assert_eq!(client.chat("four").await.unwrap().total_tokens, 17);
        client.send().await.unwrap();
        assert_eq!(client.sent, 1);
        assert_eq!(SHARED.token_limit().unwrap().remaining(), 10_000 - 1);
        assert_eq!(raw().await.unwrap().usage, Some(3));
        assert_eq!(generic(&[1, 2, 3]).await.unwrap().total_tokens, 3);
    });
}
