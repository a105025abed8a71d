//! [`Runner`]: one line through the limiter and the API, retried, to its [`Record`].

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use gate_core::hint::{self, ServerLimits};
use gate_core::retry::{Attempt, Attempts, Step};
use gate_core::{AcquireError, Report, Retry};
use serde_json::{Map, Value, json};

use super::error::CallError;
use super::input::Line;
use super::output::Record;
use super::quota::Quota;
use super::stop::Stop;
use super::summary::{Counters, Stopped};

pub use super::quota::MAX_HINT;

/// The longest one attempt may take before it is cancelled and retried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a line waits before asking again for admission from a shared quota whose
/// Redis is out of reach.
pub const UNAVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// The largest response body read; a longer one is a transport error.
pub const MAX_BODY: usize = 64 << 20;

/// The retry policy: `retries` retries of what may pass next time (429 rate limits, 5xx,
/// transport errors, timeouts), with exponential backoff from 500 ms to 30 s (for a
/// `period` of a minute; shorter in proportion), full jitter, and never sooner than the
/// server's `Retry-After` (up to [`MAX_HINT`]).
pub fn policy(retries: u32, period: Duration) -> Retry<CallError> {
    let scale = period.as_secs_f64() / 60.0;
    Retry::builder(retries)
        .exponential(
            Duration::from_millis(500).mul_f64(scale),
            Duration::from_secs(30).mul_f64(scale),
        )
        .jitter(true)
        .honor_retry_after()
        .max_retry_after(MAX_HINT)
        .retry_if(CallError::is_retryable)
        .timeout(ATTEMPT_TIMEOUT)
        .build()
        .expect("a valid policy")
}

/// A 2xx answer.
#[derive(Debug)]
struct Answer {
    body: Value,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// `usage.total_tokens`, if the response reports it.
    total_tokens: Option<u64>,
}

/// Sends lines to `{base_url}/chat/completions` under one [`Quota`].
#[derive(Debug)]
pub struct Runner {
    http: reqwest::Client,
    endpoint: String,
    api_key: Option<String>,
    quota: Quota,
    policy: Retry<CallError>,
    counters: Arc<Counters>,
    stop: Stop,
}

impl Runner {
    /// A runner for `base_url` (checked by the caller), counting into `counters` and
    /// stopping on `stop`.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        quota: Quota,
        policy: Retry<CallError>,
        counters: Arc<Counters>,
        stop: Stop,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .build()
            .expect("a client without TLS always builds");
        Self {
            http,
            endpoint: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            api_key,
            quota,
            policy,
            counters,
            stop,
        }
    }

    /// The limits the requests go through.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Runs `line` to its record: admitted for its estimated tokens, settled with the
    /// tokens the server reports (0 for a 429, which the server did not charge; the
    /// estimate stays charged for an attempt that got no usage back), the server's
    /// rate-limit headers fed to the limiter, retried by the policy. `None` if the run was
    /// stopped before the line was answered: the line is left for `--resume`.
    pub async fn run(&self, line: Line) -> Option<Record> {
        let mut attempts = Attempts::new();
        loop {
            let admitted = tokio::select! {
                biased;
                () = self.stop.stopped() => return None,
                admitted = self.quota.admit(line.estimate) => admitted,
            };
            let mut permit = match admitted {
                Ok(permit) => permit,
                // A shared quota refuses while Redis is out of reach (it fails closed): the
                // line waits for Redis to come back rather than fail.
                Err(AcquireError::Unavailable) => {
                    tokio::select! {
                        biased;
                        () = self.stop.stopped() => return None,
                        () = tokio::time::sleep(UNAVAILABLE_RETRY) => continue,
                    }
                }
                Err(AcquireError::TooLarge {
                    requested,
                    capacity,
                }) => {
                    let error = CallError::TooLarge {
                        status: 0,
                        body: json!({"error": {"message": format!(
                            "the request is estimated at {requested} tokens, more than the \
                             {capacity} that --tpm allows in a minute"
                        )}}),
                    };
                    return Some(self.failed(line, &error, attempts.made()));
                }
                // The estimate is never 0 and a local limiter is never closed: nothing else
                // can happen, but a line must still end in a record.
                Err(e) => {
                    let error = CallError::Transport(format!("not admitted: {e}"));
                    return Some(self.failed(line, &error, attempts.made()));
                }
            };
            self.counters.attempts.fetch_add(1, Relaxed);
            let attempt = Attempt::within(ATTEMPT_TIMEOUT, self.attempt(&line.body)).await;
            match &attempt {
                Attempt::Returned(Ok(answer)) => {
                    if let Some(used) = answer.total_tokens {
                        permit.settle(used);
                    }
                }
                Attempt::Returned(Err(error)) => {
                    if error.is_429() {
                        self.counters.refused_429.fetch_add(1, Relaxed);
                    }
                    if error.is_uncharged() {
                        permit.settle(0);
                    }
                }
                Attempt::TimedOut => {}
            }
            match attempts.next_timed(permit, attempt, &self.policy) {
                Step::Done(Ok(answer)) => {
                    self.counters.succeeded.fetch_add(1, Relaxed);
                    self.counters
                        .add_usage(answer.prompt_tokens, answer.completion_tokens);
                    return Some(Record {
                        index: line.index,
                        metadata: line.metadata,
                        result: Ok(answer.body),
                    });
                }
                Step::Done(Err(error)) => {
                    if matches!(error, CallError::QuotaExhausted { .. }) {
                        self.stop.stop(Stopped::InsufficientQuota);
                    }
                    return Some(self.failed(line, &error, attempts.made()));
                }
                Step::Wait(delay) => {
                    tokio::select! {
                        biased;
                        () = self.stop.stopped() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    fn failed(&self, line: Line, error: &CallError, attempts: u32) -> Record {
        self.counters.failed.fetch_add(1, Relaxed);
        Record {
            index: line.index,
            metadata: line.metadata,
            result: Err(error.to_json(attempts)),
        }
    }

    /// One request: sends `body`, feeds the response's rate-limit headers to the limiter,
    /// reads at most [`MAX_BODY`] of the body.
    async fn attempt(&self, body: &Map<String, Value>) -> Result<Answer, CallError> {
        let mut request = self.http.post(&self.endpoint).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let sent = tokio::time::Instant::now();
        let mut response = request
            .send()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let headers = response.headers();
        self.quota
            .observe_aged(&ServerLimits::from_headers(headers), sent.elapsed());
        let retry_after = hint::retry_after(headers);
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?
        {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(CallError::Transport(format!(
                    "response body over {MAX_BODY} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let parsed = serde_json::from_slice::<Value>(&bytes);
        if !(200..300).contains(&status) {
            let body = parsed.unwrap_or_else(|_| {
                json!({"error": {"message": String::from_utf8_lossy(&bytes[..bytes.len().min(500)])}})
            });
            return Err(CallError::from_response(status, retry_after, body));
        }
        let body = match parsed {
            Ok(body @ Value::Object(_)) => body,
            Ok(_) => return Err(CallError::Malformed("not a JSON object".into())),
            Err(e) => return Err(CallError::Malformed(e.to_string())),
        };
        let usage = &body["usage"];
        Ok(Answer {
            prompt_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
            total_tokens: usage["total_tokens"].as_u64(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_servers_remaining_counts_lower_the_buckets_and_never_raise_them() {
        let quota = Quota::local(600, 180_000, Duration::from_secs(60), 8);
        let limiter = quota.limiter().unwrap();
        let (requests, tokens) = (
            limiter.rate_limit().unwrap(),
            limiter.token_limit().unwrap(),
        );
        assert_eq!((requests.remaining(), tokens.remaining()), (600, 180_000));
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("599"),
        );
        headers.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static(" 1000 "),
        );
        let observe = |headers: &HeaderMap| quota.observe(&ServerLimits::from_headers(headers));
        observe(&headers);
        assert_eq!((requests.remaining(), tokens.remaining()), (599, 1_000));
        headers.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_static("5000"),
        );
        headers.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("-3"),
        );
        observe(&headers);
        assert_eq!(tokens.remaining(), 1_000, "never raised");
        assert_eq!(requests.remaining(), 599, "not a number: ignored");
        headers.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        observe(&HeaderMap::new());
        observe(&headers);
        assert_eq!(tokens.remaining(), 1_000);
        // 3,000 tokens a second come back (within the rounding of a cell's nanoseconds).
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!((3_999..=4_000).contains(&tokens.remaining()));
    }

    #[test]
    fn the_policy_shrinks_its_backoff_with_the_period() {
        let minute = policy(5, Duration::from_secs(60));
        assert_eq!(minute.max_attempts(), 6);
        assert_eq!(
            minute.backoff().delay(1),
            Duration::from_millis(500),
            "the first retry"
        );
        let fast = policy(5, Duration::from_secs(6));
        assert_eq!(fast.backoff().delay(1), Duration::from_millis(50));
        assert_eq!(fast.max_retry_after(), MAX_HINT);
        assert!(!fast.is_retryable(&CallError::Malformed("x".into())));
    }
}
