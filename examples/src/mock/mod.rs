//! A mock OpenAI API on 127.0.0.1, faithful enough to point real clients at (async-openai,
//! Python's `openai`, curl) offline, with the limits OpenAI enforces and answers as OpenAI
//! answers them.
//!
//! # What it serves
//!
//! - `POST /v1/chat/completions`: a deterministic reply, as JSON or, with `"stream": true`,
//!   as Server-Sent Events (`data: {chat.completion.chunk}` lines: the role first, then the
//!   content a token at a time, then a chunk with `finish_reason`, then `data: [DONE]`; with
//!   `"stream_options": {"include_usage": true}` a last chunk with `usage` and no `choices`).
//!   Content as a string or as a list of parts (`[{"type": "text", "text": ..}]`), assistant
//!   messages with `tool_calls` and `"content": null`, and `tool` messages answering them
//!   are accepted; fields the mock does not use (temperature, tools, ...) are ignored; any
//!   model name is served. A malformed body gets OpenAI's 400
//!   (`{"error": {"message", "type": "invalid_request_error", "param", "code"}}`).
//! - `GET /v1/models` and `GET /v1/models/{id}` (the ids in [`MODELS`]; 404
//!   `model_not_found` for others).
//! - Every response has an `x-request-id`; every chat-completions response (200, 400, 429,
//!   500) has OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, the resets in
//!   OpenAI's duration format (`20ms`, `1.5s`, `6m0s`).
//!
//! # Tokens
//!
//! The reply's length is chosen from the prompt, so the same prompt gets the same usage on
//! every run: `prompt_tokens` is the prompt's characters / 4, rounded up (OpenAI's rule of
//! thumb, [`estimate_tokens`]), `completion_tokens` is between 16 and 256 words (a word is a
//! token), at most `max_tokens` (then `finish_reason` is `"length"`).
//!
//! # Limits
//!
//! Checked in this order when a well-formed request arrives; a refused request is not
//! charged.
//!
//! 1. **Quota** (optional, [`MockConfig::quota`]): once the tokens spent reach it, 429 with
//!    `type` and `code` `insufficient_quota`, as OpenAI answers when billing is exhausted.
//! 2. **Too large**: `prompt_tokens + max_tokens` beyond the token bucket can never be served:
//!    429, `type: tokens`, `code: rate_limit_exceeded`, "Request too large for ..." (no
//!    `Retry-After`: waiting does not help).
//! 3. **Concurrency**: [`MockConfig::max_concurrent`] served at once. OpenAI publishes no
//!    such limit and has no error type for it; the mock answers as for the request rate
//!    (`type: requests`, `code: rate_limit_exceeded`, which every client already handles),
//!    with a message naming the concurrency limit, and counts it apart.
//! 4. **Requests**: a bucket of [`MockConfig::burst`] requests refilled continuously at
//!    [`MockConfig::rate_per_sec`]; 429 `type: requests`.
//! 5. **Tokens**: a bucket of [`MockConfig::token_burst`] tokens refilled continuously at
//!    [`MockConfig::token_rate_per_sec`]. Admission charges `prompt_tokens + max_tokens`
//!    (`max_tokens` or `max_completion_tokens`, else [`MockConfig::default_max_tokens`]), as
//!    OpenAI does; the unused part is refunded when the completion is done. 429 `type: tokens`.
//!
//! Rate 429s carry `retry-after` (whole seconds, rounded up, at least 1) and
//! `retry-after-ms`. [`ServerStats`] counts each kind of refusal and logs every admission.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use examples::mock::{MockConfig, MockServer};
//!
//! // 500 requests and 150,000 tokens a minute, 8 at once.
//! let server = MockServer::start(MockConfig::per_minute(500, 150_000, 8)).await?;
//! println!("POST {}/chat/completions", server.base_url());
//! # Ok(()) }
//! ```

pub mod cli;
mod format;
mod limits;
mod openai;
mod server;
mod stats;

pub use format::duration as format_duration;
pub use limits::TokenBucket;
pub use openai::{MODELS, estimate_tokens, usage_for};
pub use server::MockServer;
pub use stats::{Admitted, ServerStats};

use std::time::Duration;

/// The mock's limits and behaviour.
///
/// The default is a small paid tier for requests (20 a second, 8 back to back, 8 at once,
/// 250 ms a completion) with a token budget that does not bind for short prompts (150,000 a
/// minute); [`per_minute`](Self::per_minute) sets limits as a provider publishes them.
#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    /// Requests served at once; more are answered 429 at once.
    pub max_concurrent: usize,
    /// Requests admitted per second (the request bucket's refill rate).
    pub rate_per_sec: f64,
    /// Requests that may arrive back to back before the rate applies (the request bucket's
    /// size, sent as `x-ratelimit-limit-requests`).
    pub burst: u32,
    /// Tokens admitted per second (the token bucket's refill rate: TPM / 60).
    pub token_rate_per_sec: f64,
    /// The token bucket's size (sent as `x-ratelimit-limit-tokens`): a request whose
    /// `prompt + max_tokens` exceeds it is "too large".
    pub token_burst: u64,
    /// The `max_tokens` charged for a request that gives neither `max_tokens` nor
    /// `max_completion_tokens` (1,024; OpenAI does not document its own).
    pub default_max_tokens: u64,
    /// Mean time to produce a completion; each request takes 60% to 140% of it. A stream
    /// sends its first chunk after half of it and the rest over the other half.
    pub latency: Duration,
    /// Injects a 500 into the first request for one prompt in `n` (chosen by a hash of the
    /// prompt, so the same prompts fail on every run); a retry of that prompt is served.
    /// The prompt's tokens stay charged, the completion's are refunded.
    pub error_one_in: Option<u64>,
    /// Stalls the first request for one prompt in `n` (chosen by another hash) for this long
    /// before answering; a retry of that prompt is served at the usual latency.
    pub stall_one_in: Option<(u64, Duration)>,
    /// The tokens the key may spend in all (net of refunds) before every request is
    /// answered 429 `insufficient_quota`; `None` for no quota.
    pub quota: Option<u64>,
}

impl Default for MockConfig {
    /// 20 requests/s (8 back to back), 8 at once, 250 ms per completion, 150,000 tokens a
    /// minute (all of them at once): a small paid tier.
    fn default() -> Self {
        Self {
            max_concurrent: 8,
            rate_per_sec: 20.0,
            burst: 8,
            token_rate_per_sec: 150_000.0 / 60.0,
            token_burst: 150_000,
            default_max_tokens: 1_024,
            latency: Duration::from_millis(250),
            error_one_in: None,
            stall_one_in: None,
            quota: None,
        }
    }
}

impl MockConfig {
    /// Limits as OpenAI publishes them: `rpm` requests and `tpm` tokens a minute,
    /// `concurrency` at once. Each bucket holds a whole minute's worth and refills
    /// continuously, which is what OpenAI's headers show (at 150,000 TPM, a request of 16
    /// tokens leaves `x-ratelimit-reset-tokens: 6ms`). Lower [`burst`](Self::burst) and
    /// [`token_burst`](Self::token_burst) to model a provider that enforces over shorter
    /// periods.
    pub fn per_minute(rpm: u32, tpm: u64, concurrency: usize) -> Self {
        Self {
            max_concurrent: concurrency,
            rate_per_sec: f64::from(rpm) / 60.0,
            burst: rpm,
            token_rate_per_sec: tpm as f64 / 60.0,
            token_burst: tpm,
            ..Self::default()
        }
    }

    /// The shortest time any client could need for `requests` successful requests that use
    /// `tokens` tokens in all (prompt + completion, as their `usage` reports): the largest of
    /// what the request rate (after its bucket), the token rate (after its bucket) and the
    /// concurrency limit at the mean latency allow. A lower bound: admission also needs each
    /// request's unused `max_tokens` for as long as it runs.
    pub fn ideal_makespan(&self, requests: usize, tokens: u64) -> Duration {
        if requests == 0 {
            return Duration::ZERO;
        }
        let latency = self.latency.as_secs_f64();
        let beyond_burst = requests.saturating_sub(self.burst as usize) as f64;
        let by_rate = beyond_burst / self.rate_per_sec + latency;
        let beyond_bucket = tokens.saturating_sub(self.token_burst) as f64;
        let by_tokens = beyond_bucket / self.token_rate_per_sec + latency;
        let by_concurrency = (requests as f64 / self.max_concurrent.max(1) as f64).ceil() * latency;
        Duration::try_from_secs_f64(by_rate.max(by_tokens).max(by_concurrency))
            .unwrap_or(Duration::MAX)
    }

    /// Which limit [`ideal_makespan`](Self::ideal_makespan) found binding: `"requests"`,
    /// `"tokens"` or `"concurrency"`.
    pub fn binding_limit(&self, requests: usize, tokens: u64) -> &'static str {
        let latency = self.latency.as_secs_f64();
        let by_rate = requests.saturating_sub(self.burst as usize) as f64 / self.rate_per_sec;
        let by_tokens = tokens.saturating_sub(self.token_burst) as f64 / self.token_rate_per_sec;
        let by_concurrency =
            (requests as f64 / self.max_concurrent.max(1) as f64).ceil() * latency - latency;
        if by_tokens >= by_rate && by_tokens >= by_concurrency {
            "tokens"
        } else if by_rate >= by_concurrency {
            "requests"
        } else {
            "concurrency"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ideal_makespan_is_set_by_the_binding_limit() {
        let config = MockConfig {
            latency: Duration::from_secs(1),
            ..MockConfig::per_minute(600, 60_000, 100)
        };
        // 1,000 requests of 100 tokens: 100,000 tokens, 40,000 beyond the bucket at 1,000/s;
        // 400 requests beyond the bucket at 10/s: both 40 s, plus a latency.
        assert_eq!(
            config.ideal_makespan(1_000, 100_000),
            Duration::from_secs(41)
        );
        // Twice the tokens: the token rate binds.
        assert_eq!(
            config.ideal_makespan(1_000, 200_000),
            Duration::from_secs(141)
        );
        assert_eq!(config.binding_limit(1_000, 200_000), "tokens");
        assert_eq!(config.binding_limit(2_000, 100_000), "requests");
        // 8 at once, 1 s each: 80 requests take 10 s.
        let narrow = MockConfig {
            max_concurrent: 8,
            ..config
        };
        assert_eq!(narrow.ideal_makespan(80, 8_000), Duration::from_secs(10));
        assert_eq!(narrow.binding_limit(80, 8_000), "concurrency");
        assert_eq!(narrow.ideal_makespan(0, 0), Duration::ZERO);
    }
}
