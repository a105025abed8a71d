//! What a run did: [`Counters`] while it runs, [`Summary`] (the last line of stdout) at the
//! end.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Live counts, shared by the runner, the progress bar and the summary.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lines answered with a response.
    pub succeeded: AtomicU64,
    /// Lines answered with an error (after their retries).
    pub failed: AtomicU64,
    /// Requests sent.
    pub attempts: AtomicU64,
    /// Requests the server answered 429.
    pub refused_429: AtomicU64,
    /// `usage.prompt_tokens` summed over the responses.
    pub prompt_tokens: AtomicU64,
    /// `usage.completion_tokens` summed over the responses.
    pub completion_tokens: AtomicU64,
}

impl Counters {
    /// Adds one response's usage.
    pub fn add_usage(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.fetch_add(prompt, Relaxed);
        self.completion_tokens.fetch_add(completion, Relaxed);
    }

    /// Prompt and completion tokens so far.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens
            .load(Relaxed)
            .saturating_add(self.completion_tokens.load(Relaxed))
    }

    /// The summary of a run that took `elapsed`, after `skipped` lines answered by an
    /// earlier run, stopped early for `stopped` if it did.
    pub fn summary(&self, skipped: u64, elapsed: Duration, stopped: Option<Stopped>) -> Summary {
        let succeeded = self.succeeded.load(Relaxed);
        let failed = self.failed.load(Relaxed);
        let attempts = self.attempts.load(Relaxed);
        let refused_429 = self.refused_429.load(Relaxed);
        let prompt_tokens = self.prompt_tokens.load(Relaxed);
        let completion_tokens = self.completion_tokens.load(Relaxed);
        let total_tokens = prompt_tokens.saturating_add(completion_tokens);
        let minutes = elapsed.as_secs_f64() / 60.0;
        let per_min = |n: u64| {
            if minutes > 0.0 {
                round1(n as f64 / minutes)
            } else {
                0.0
            }
        };
        Summary {
            succeeded,
            failed,
            skipped,
            attempts,
            retries: attempts.saturating_sub(succeeded + failed),
            refused_429,
            refused_pct: if attempts == 0 {
                0.0
            } else {
                round1(100.0 * refused_429 as f64 / attempts as f64)
            },
            prompt_tokens,
            completion_tokens,
            total_tokens,
            elapsed_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            requests_per_min: per_min(succeeded + failed),
            tokens_per_min: per_min(total_tokens),
            stopped,
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Why a run ended before the end of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// Ctrl-C (or SIGTERM): no more lines were started, the ones on the wire finished.
    Interrupted,
    /// The server said `insufficient_quota`: no other request would succeed.
    InsufficientQuota,
    /// A line could not be parsed (exit status 2): the lines before it were answered, none
    /// after it was read.
    BadInput,
}

/// The last line of stdout, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Lines answered with a response in this run.
    pub succeeded: u64,
    /// Lines answered with an error in this run.
    pub failed: u64,
    /// Lines answered by an earlier run (`--resume`), not sent again.
    pub skipped: u64,
    /// Requests sent.
    pub attempts: u64,
    /// Attempts beyond each line's first.
    pub retries: u64,
    /// Requests the server refused with 429.
    pub refused_429: u64,
    /// `refused_429` as a percentage of `attempts`.
    pub refused_pct: f64,
    /// Prompt tokens the server reported.
    pub prompt_tokens: u64,
    /// Completion tokens the server reported.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
    /// Wall time, in seconds.
    pub elapsed_s: f64,
    /// Lines answered per minute.
    pub requests_per_min: f64,
    /// Tokens used per minute.
    pub tokens_per_min: f64,
    /// Why the run ended early, if it did.
    pub stopped: Option<Stopped>,
}

impl Summary {
    /// The exit status: 0 when every line of this run succeeded and the input was read to
    /// its end, 2 when a line could not be parsed, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self.stopped {
            Some(Stopped::BadInput) => 2,
            Some(_) => 1,
            None if self.failed > 0 => 1,
            None => 0,
        }
    }

    /// The JSON line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a summary serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_rates_and_exit_codes() {
        let counters = Counters::default();
        counters.succeeded.store(9, Relaxed);
        counters.failed.store(1, Relaxed);
        counters.attempts.store(16, Relaxed);
        counters.refused_429.store(4, Relaxed);
        counters.add_usage(1_000, 500);
        assert_eq!(counters.tokens(), 1_500);
        let summary = counters.summary(5, Duration::from_secs(30), None);
        assert_eq!(summary.retries, 6);
        assert_eq!(summary.refused_pct, 25.0);
        assert_eq!(summary.requests_per_min, 20.0);
        assert_eq!(summary.tokens_per_min, 3_000.0);
        assert_eq!(summary.exit_code(), 1, "a line failed");
        let line: serde_json::Value = serde_json::from_str(&summary.to_line()).unwrap();
        assert_eq!(line["succeeded"], 9);
        assert_eq!(line["skipped"], 5);
        assert_eq!(line["elapsed_s"], 30.0);
        assert_eq!(line["stopped"], serde_json::Value::Null);

        let clean = Counters::default().summary(0, Duration::ZERO, None);
        assert_eq!(
            (clean.exit_code(), clean.refused_pct, clean.tokens_per_min),
            (0, 0.0, 0.0)
        );
        let bad = Counters::default().summary(0, Duration::ZERO, Some(Stopped::BadInput));
        assert_eq!(bad.exit_code(), 2);
        assert!(bad.to_line().contains(r#""stopped":"bad_input""#));
        let interrupted =
            Counters::default().summary(0, Duration::ZERO, Some(Stopped::Interrupted));
        assert_eq!(interrupted.exit_code(), 1);
    }
}
