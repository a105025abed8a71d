//! The ways the demo pushes its prompts: each is one entry of [`Strategy::ALL`] and one arm
//! of [`Strategy::run`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use gate_core::Batch;
use gate_core::adaptive::Aimd;
use gate_core::batch::Summary;
use gate_core::rate::Rate;
use gate_core::retry::{Attempt, Attempts, Step};
use gate_core::{AcquireError, Admission, Gate, Limiter, Retry, Unlimited};

use crate::client::{ApiError, ChatClient, Completion};
use crate::plot::{self, Reading, Timeline};

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
                let limit = || None;
                push(
                    batch.retry(Retry::new(0)),
                    limit,
                    label,
                    prompts,
                    client,
                    knobs,
                )
                .await
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
                    || Some(gate.limit()),
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
                    || Some(gate.limit()),
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
                    || limiter.limit(),
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
    /// The client's own timeline of the run, sampled every [`plot::EVERY`]: its
    /// concurrency limit, requests on the wire, and totals of requests, tokens and 429s.
    pub timeline: Timeline,
}

/// The client's counts while a strategy runs, read by [`plot::record`].
#[derive(Debug, Default)]
struct Probe {
    requests: AtomicU64,
    in_flight: AtomicUsize,
    tokens: AtomicU64,
    rate_limited: AtomicU64,
}

impl Probe {
    /// Counts a request going out; it is on the wire until the guard drops.
    fn send(&self) -> OnWire<'_> {
        self.requests.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        OnWire(self)
    }

    /// Counts what an answer says: its tokens, or a 429.
    fn answered(&self, answer: &Result<Completion, ApiError>) {
        match answer {
            Ok(completion) => {
                self.tokens
                    .fetch_add(completion.usage.map_or(0, |u| u.total_tokens), Relaxed);
            }
            Err(e) if e.is_too_many_requests() => {
                self.rate_limited.fetch_add(1, Relaxed);
            }
            Err(_) => {}
        }
    }

    fn read(&self, limit: Option<usize>) -> Reading {
        Reading {
            limit,
            in_flight: Some(self.in_flight.load(Relaxed)),
            requests: self.requests.load(Relaxed),
            tokens: self.tokens.load(Relaxed),
            refused: self.rate_limited.load(Relaxed),
        }
    }
}

/// A request on the wire, counted out when dropped (answered, timed out or cancelled).
struct OnWire<'a>(&'a Probe);

impl Drop for OnWire<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
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

/// Pushes `prompts` through `batch`, recording the run's timeline with the concurrency
/// limit that `limit` reads.
async fn push<A>(
    batch: Batch<A, ApiError>,
    limit: impl Fn() -> Option<usize>,
    label: &'static str,
    prompts: &[Arc<str>],
    client: &ChatClient,
    knobs: &Knobs,
) -> Pushed
where
    A: Admission,
{
    let probe = Probe::default();
    let run = batch
        .label(label)
        .progress(knobs.progress)
        .run(prompts.iter().cloned(), |prompt| {
            let probe = &probe;
            async move {
                let _on_wire = probe.send();
                let answer = client.chat(&prompt).await;
                probe.answered(&answer);
                answer.map(|completion| completion.content)
            }
        });
    let (report, timeline) = plot::record(|| probe.read(limit()), run).await;
    Pushed {
        summary: report.summary,
        rate_limited: probe.rate_limited.load(Relaxed),
        timeline,
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
    let probe = Probe::default();
    let timeout = Duration::from_secs(30).mul_f64(knobs.time_scale);
    let run = Batch::new(Unlimited)
        .max_in_flight(usize::MAX)
        .retry(Retry::new(0))
        .label(label)
        .progress(knobs.progress)
        .run(prompts.iter().cloned(), |prompt| {
            let probe = &probe;
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
                    let on_wire = probe.send();
                    let attempt = Attempt::within(timeout, client.chat(&prompt)).await;
                    drop(on_wire);
                    if let Attempt::Returned(answer) = &attempt {
                        probe.answered(answer);
                    }
                    let attempt = match attempt {
                        Attempt::Returned(Ok(completion)) => {
                            if let Some(usage) = completion.usage {
                                permit.settle(usage.total_tokens);
                            }
                            Attempt::Returned(Ok(completion.content))
                        }
                        Attempt::Returned(Err(e)) => {
                            if e.is_too_many_requests() {
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
        });
    let (mut report, timeline) = plot::record(|| probe.read(limiter.limit()), run).await;
    let summary = &mut report.summary;
    summary.attempts = probe.requests.load(Relaxed);
    summary.retries = summary.attempts.saturating_sub(summary.total as u64);
    Pushed {
        summary: report.summary,
        rate_limited: probe.rate_limited.load(Relaxed),
        timeline,
    }
}
