//! The ways the demo pushes its prompts: each is one entry of [`Strategy::ALL`] and one arm
//! of [`Strategy::run`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use gate_core::Batch;
use gate_core::adaptive::Aimd;
use gate_core::batch::Summary;
use gate_core::rate::Rate;
use gate_core::retry::{Attempt, Attempts, Step};
use gate_core::{AcquireError, Admission, Gate, Limiter, Retry, Unlimited};

use crate::client::{ApiError, ChatClient};

/// One way of pushing a batch of prompts at an API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// Every prompt at once, no retry: the seed's "without semaphore".
    NoLimit,
    /// A gate of 10 and tenacity's `stop_after_attempt(3), wait_fixed(2)`: the seed's recipe.
    FixedGate,
    /// A gate of 10, retrying with exponential backoff and jitter, waiting at least as long
    /// as the server's `Retry-After`.
    GateRetryAfter,
    /// The client's published rate limit, a concurrency limit found by AIMD, and
    /// `Retry-After` honoured by every caller at once (a [`Limiter`]).
    RateAdaptive,
    /// A [`Limiter`] with the published request rate and token budget: each attempt reserves
    /// its estimate (prompt characters / 4 + `max_tokens`, OpenAI's own count) and settles
    /// with the `usage` the response reports; AIMD concurrency and `Retry-After` as above.
    /// Run against a mock whose token limit binds.
    TokenBudget,
}

impl Strategy {
    /// Every strategy, in the order the demo runs them.
    pub const ALL: [Strategy; 5] = [
        Strategy::NoLimit,
        Strategy::FixedGate,
        Strategy::GateRetryAfter,
        Strategy::RateAdaptive,
        Strategy::TokenBudget,
    ];

    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoLimit => "no limit",
            Self::FixedGate => "gate 10 + fixed retry",
            Self::GateRetryAfter => "gate 10 + Retry-After",
            Self::RateAdaptive => "rate + adaptive + Retry-After",
            Self::TokenBudget => "rate + tokens + adaptive",
        }
    }

    /// One line on what it does.
    pub fn description(self) -> &'static str {
        match self {
            Self::NoLimit => "every prompt at once, no retry (the seed's \"without semaphore\")",
            Self::FixedGate => {
                "Gate::new(10), 3 attempts 2s apart (the seed's Semaphore(10) + tenacity recipe)"
            }
            Self::GateRetryAfter => {
                "Gate::new(10), 15 attempts, exponential backoff with jitter, at least Retry-After"
            }
            Self::RateAdaptive => {
                "Limiter: the published rate, AIMD concurrency, Retry-After pauses every caller"
            }
            Self::TokenBudget => {
                "Limiter: the published rate and tokens a minute, reserve prompt + max_tokens, \
                 settle with the usage, AIMD concurrency, Retry-After"
            }
        }
    }

    /// Whether the strategy keeps within the server's limits by itself (its rate limit is the
    /// server's, its concurrency limit adapts), so it should finish every prompt with hardly
    /// a 429. The others find the limits by hitting them, and may run out of attempts.
    pub fn stays_within_limits(self) -> bool {
        matches!(self, Self::RateAdaptive | Self::TokenBudget)
    }

    /// Whether the strategy runs against the mock whose token limit binds
    /// ([`Config::token_server`](super::Config::token_server)).
    pub fn binds_on_tokens(self) -> bool {
        matches!(self, Self::TokenBudget)
    }

    /// Pushes `prompts` through `client` this way.
    pub async fn run(self, prompts: &[Arc<str>], client: &ChatClient, knobs: &Knobs) -> Pushed {
        let scale = |d: Duration| d.mul_f64(knobs.time_scale);
        let timeout = scale(Duration::from_secs(30));
        let label = self.name();
        match self {
            Self::NoLimit => {
                let batch = Batch::new(Unlimited).max_in_flight(usize::MAX);
                push(batch.retry(Retry::new(0)), label, prompts, client, knobs).await
            }
            Self::FixedGate => {
                let gate = Gate::new(10);
                let policy = Retry::builder(2)
                    .fixed(scale(Duration::from_secs(2)))
                    .timeout(timeout)
                    .build()
                    .expect("valid policy");
                push(
                    Batch::new(&gate).retry(policy),
                    label,
                    prompts,
                    client,
                    knobs,
                )
                .await
            }
            Self::GateRetryAfter => {
                let gate = Gate::new(10);
                let policy = backoff_policy(knobs, timeout);
                push(
                    Batch::new(&gate).retry(policy),
                    label,
                    prompts,
                    client,
                    knobs,
                )
                .await
            }
            Self::RateAdaptive => {
                let aimd = Aimd::builder()
                    .initial(4)
                    .max(256)
                    .build()
                    .expect("valid AIMD settings");
                let limiter = Limiter::builder()
                    .rate(knobs.rate)
                    .adaptive(aimd)
                    .build()
                    .expect("valid limiter");
                let policy = backoff_policy(knobs, timeout);
                push(
                    Batch::new(&limiter).retry(policy),
                    label,
                    prompts,
                    client,
                    knobs,
                )
                .await
            }
            Self::TokenBudget => {
                let aimd = Aimd::builder()
                    .initial(4)
                    .max(256)
                    .build()
                    .expect("valid AIMD settings");
                let limiter = Limiter::builder()
                    .rate(knobs.rate)
                    .tokens(knobs.tokens)
                    .adaptive(aimd)
                    .build()
                    .expect("valid limiter");
                let policy = backoff_policy(knobs, timeout);
                push_tokens(&limiter, &policy, label, prompts, client, knobs).await
            }
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings shared by all strategies.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    /// Multiplies every client-side wait and timeout (1.0, or 0.1 with `--fast`).
    pub time_scale: f64,
    /// The rate limit the client was told it has (a provider publishes it per tier).
    pub rate: Rate,
    /// The token budget the client was told it has (tokens a minute, and how many may be
    /// spent at once).
    pub tokens: Rate,
    /// Whether to draw progress bars.
    pub progress: bool,
}

/// What one strategy did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The batch summary.
    pub summary: Summary,
    /// 429 answers received.
    pub rate_limited: u64,
}

/// Up to 14 retries, exponential from 100ms to 2s (scaled) with full jitter, never sooner than
/// the server's `Retry-After`; only transient errors are retried.
fn backoff_policy(knobs: &Knobs, timeout: Duration) -> Retry<ApiError> {
    Retry::builder(14)
        .exponential(
            Duration::from_millis(100).mul_f64(knobs.time_scale),
            Duration::from_secs(2).mul_f64(knobs.time_scale),
        )
        .jitter(true)
        .timeout(timeout)
        .retry_if(ApiError::is_transient)
        .honor_retry_after()
        .build()
        .expect("valid policy")
}

async fn push<A>(
    batch: Batch<A, ApiError>,
    label: &'static str,
    prompts: &[Arc<str>],
    client: &ChatClient,
    knobs: &Knobs,
) -> Pushed
where
    A: Admission,
{
    let rate_limited = AtomicU64::new(0);
    let report = batch
        .label(label)
        .progress(knobs.progress)
        .run(prompts.iter().cloned(), |prompt| {
            let rate_limited = &rate_limited;
            async move {
                let answer = client.complete(&prompt).await;
                if answer.as_ref().is_err_and(ApiError::is_too_many_requests) {
                    rate_limited.fetch_add(1, Relaxed);
                }
                answer
            }
        })
        .await;
    Pushed {
        summary: report.summary,
        rate_limited: rate_limited.load(Relaxed),
    }
}

/// Pushes `prompts` with a token budget: each attempt reserves the prompt's estimate from
/// `limiter`, settles it with the usage the response reports (0 for a 429, which the server
/// does not charge), and is retried under `policy` ([`Attempts`]). A [`Batch`] drives the
/// prompts and draws the progress bar; the retries happen inside each item, so the
/// summary's attempts are counted here.
async fn push_tokens(
    limiter: &Limiter,
    policy: &Retry<ApiError>,
    label: &'static str,
    prompts: &[Arc<str>],
    client: &ChatClient,
    knobs: &Knobs,
) -> Pushed {
    let rate_limited = AtomicU64::new(0);
    let attempts_made = AtomicU64::new(0);
    let timeout = Duration::from_secs(30).mul_f64(knobs.time_scale);
    let mut report = Batch::new(Unlimited)
        .max_in_flight(usize::MAX)
        .retry(Retry::new(0))
        .label(label)
        .progress(knobs.progress)
        .run(prompts.iter().cloned(), |prompt| {
            let (rate_limited, attempts_made) = (&rate_limited, &attempts_made);
            async move {
                let estimate = client.estimate(&prompt);
                let mut attempts = Attempts::new();
                loop {
                    let mut permit =
                        limiter
                            .acquire_tokens(estimate)
                            .await
                            .map_err(|e| match e {
                                AcquireError::TooLarge { .. } => ApiError::TooLarge {
                                    message: e.to_string(),
                                },
                                _ => ApiError::Transport(format!("not admitted: {e}")),
                            })?;
                    attempts_made.fetch_add(1, Relaxed);
                    let attempt = Attempt::within(timeout, client.chat(&prompt)).await;
                    let attempt = match attempt {
                        Attempt::Returned(Ok(completion)) => {
                            if let Some(usage) = completion.usage {
                                permit.settle(usage.total_tokens);
                            }
                            Attempt::Returned(Ok(completion.content))
                        }
                        Attempt::Returned(Err(e)) => {
                            if e.is_too_many_requests() {
                                rate_limited.fetch_add(1, Relaxed);
                                permit.settle(0);
                            }
                            Attempt::Returned(Err(e))
                        }
                        Attempt::TimedOut => Attempt::TimedOut,
                    };
                    match attempts.next_timed(permit, attempt, policy) {
                        Step::Done(returned) => return returned,
                        Step::Wait(delay) => tokio::time::sleep(delay).await,
                    }
                }
            }
        })
        .await;
    let summary = &mut report.summary;
    summary.attempts = attempts_made.load(Relaxed);
    summary.retries = summary.attempts.saturating_sub(summary.total as u64);
    Pushed {
        summary: report.summary,
        rate_limited: rate_limited.load(Relaxed),
    }
}
