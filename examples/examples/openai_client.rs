//! Run with: cargo run --example openai_client
//!
//! async-openai, the popular Rust client, behind gate: 40 chat completions started at once
//! against a local OpenAI-style mock on 127.0.0.1 that allows 8 at a time and 20 a second,
//! and answers 429 with `retry-after-ms` beyond either. gate is told 40 a second, twice too
//! many, and learns the rest from the 429s: each pauses everyone for its `retry-after-ms`
//! and shrinks the adaptive limit, and the prompt is retried. No API key, no network.
//!
//! The glue is the block marked below, and it defuses three traps:
//!
//! - **async-openai retries 429s itself**, inside its default HTTP stack
//!   (`OpenAIRetryLayer`), while the caller still counts the call as running: an adaptive
//!   limit never sees a 429 and grows past what the server allows (21 against a server
//!   allowing 8). The stack below has no such layer: the 429 reaches gate, and gate retries.
//! - **`OpenAIError` carries no headers**, so a `Retry-After` is lost by the time the error
//!   comes back. gate's `GateLayer` sits *in* async-openai's tower stack, where it reads
//!   each response's `retry-after-ms` and pauses everyone sharing the limiter.
//! - **The orphan rule blocks `impl Backpressure for OpenAIError`** (both are other
//!   crates'). `RetryBuilder::honor_retry_after_with` takes a function instead, and
//!   `hint::ApiErrorKind` sorts OpenAI's error codes: a 429 `insufficient_quota` (billing,
//!   not rate) or a `context_length_exceeded` stops at once instead of being retried.
//!
//! A per-attempt timeout is the policy's `.timeout(..)`, reported as
//! `Failure::TimedOut`: no `From<Elapsed>` for `OpenAIError` is needed. On a `#[gated]`
//! function returning `Result<_, OpenAIError>`, `timeout = "30s"` takes
//! `timeout_error = |e: Elapsed| ..` to say which `OpenAIError` a timed-out attempt is,
//! since the orphan rule forbids that `From` impl.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
};
use examples::Out;
use examples::mock::{MockConfig, MockServer};
use gate_core::adaptive::Aimd;
use gate_core::hint::ApiErrorKind;
use gate_core::rate::Rate;
use gate_core::{Batch, Limiter, Retry, Signal, Unlimited};
use gate_tower::GateLayer;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let summary = run(&Config::default(), &Out::stdout()).await?;
    if summary.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// How many prompts, and the mock's limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// Chat completions, all started at once.
    pub prompts: usize,
    /// The rate gate allows itself: here twice the server's, as if the tier were misread,
    /// so that some requests get 429s and gate learns the rest from them.
    pub rate: Rate,
    /// The mock: 8 at once, 20 a second.
    pub server: MockConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            prompts: 40,
            rate: Rate::per_second(40),
            server: MockConfig {
                max_concurrent: 8,
                rate_per_sec: 20.0,
                burst: 8,
                latency: Duration::from_millis(200),
                ..MockConfig::default()
            },
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Prompts answered.
    pub succeeded: usize,
    /// Prompts that failed every attempt.
    pub failed: usize,
    /// Attempts made in all: every request async-openai sent, since it retries none itself.
    pub attempts: u64,
    /// Attempts the server answered 429.
    pub rate_limited: u64,
    /// The adaptive concurrency limit at the end.
    pub limit: usize,
}

// ---- The glue ----

/// What an async-openai error says to gate's retry policy and limiter.
pub fn signal(error: &OpenAIError) -> Signal {
    let OpenAIError::ApiError(e) = error else {
        return Signal::NONE;
    };
    let (api, status) = (&e.api_error, Some(e.status_code.as_u16()));
    ApiErrorKind::classify(
        status,
        api.r#type.as_deref(),
        api.code.as_deref(),
        &api.message,
    )
    .signal(None)
}

/// An async-openai client whose HTTP stack goes through `limiter` and does not retry.
pub fn client(base_url: &str, limiter: Arc<Limiter>) -> Client<OpenAIConfig> {
    let layer = GateLayer::with_limiter(limiter)
        .max_wait(Duration::MAX)
        .max_waiters(usize::MAX);
    let http = ServiceBuilder::new()
        .map_response(Into::into) // back to the `reqwest::Response` async-openai reads
        .layer(layer.refuse_with_error()) // learns from each 429's `retry-after-ms`
        .map_response(http::Response::from) // reqwest's response as `http`'s, for the layer
        .service(ReqwestService::new(Default::default())); // no `OpenAIRetryLayer`
    let config = OpenAIConfig::new()
        .with_api_base(base_url)
        .with_api_key("mock");
    Client::with_config(config).with_http_service(http)
}

// ---- End of the glue ----

/// Starts the mock, sends the prompts through async-openai behind gate, and stops.
pub async fn run(config: &Config, out: &Out) -> Result<Summary, Box<dyn std::error::Error>> {
    let server = MockServer::start(config.server.clone()).await?;
    out.line(format!("Mock OpenAI API on {}", server.base_url()));
    let aimd = Aimd::builder().initial(4).max(32).build()?;
    let limiter = Arc::new(
        Limiter::builder()
            .rate(config.rate)
            .adaptive(aimd)
            .build()?,
    );
    let client = client(&server.base_url(), Arc::clone(&limiter));
    let policy = Retry::builder(8)
        .exponential(Duration::from_millis(50), Duration::from_secs(2))
        .jitter(true)
        .timeout(Duration::from_secs(30))
        .honor_retry_after_with(signal)
        .build()?;

    let (attempts, rate_limited) = (AtomicU64::new(0), AtomicU64::new(0));
    // The layer in the client's stack admits each request; the batch only retries.
    let report = Batch::new(&Unlimited)
        .retry(policy)
        .run(0..config.prompts, |i| {
            let (client, attempts, rate_limited) = (&client, &attempts, &rate_limited);
            async move {
                attempts.fetch_add(1, Relaxed);
                let prompt = format!("Write a haiku about gates #{i}");
                let request = CreateChatCompletionRequestArgs::default()
                    .model("gpt-4o-mini")
                    .messages([ChatCompletionRequestUserMessage::from(prompt.as_str()).into()])
                    .max_completion_tokens(64u32)
                    .build()?;
                let answer = client.chat().create(request).await;
                if matches!(&answer, Err(e) if signal(e).overload) {
                    rate_limited.fetch_add(1, Relaxed);
                }
                Ok(answer?.choices.len())
            }
        })
        .await;

    let summary = Summary {
        succeeded: report.summary.succeeded,
        failed: report.summary.failed,
        attempts: attempts.into_inner(),
        rate_limited: rate_limited.into_inner(),
        limit: limiter.limit().unwrap_or(0),
    };
    out.line(format!(
        "{} of {} answered in {} attempts; {} were 429s; the adaptive limit settled at {}",
        summary.succeeded, config.prompts, summary.attempts, summary.rate_limited, summary.limit,
    ));
    for (i, e) in report.failures() {
        out.line(format!("prompt {i} gave up: {e}"));
    }
    server.shutdown().await;
    Ok(summary)
}
