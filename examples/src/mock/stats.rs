//! What the mock has seen, for harnesses to check clients against.

use std::time::Duration;

/// What the mock has seen since it started or was last [`reset`](super::MockServer::reset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Chat-completion requests received.
    pub requests: u64,
    /// Requests answered 200 with a completion.
    pub completed: u64,
    /// Requests answered 429 because `max_concurrent` were already being served.
    pub rejected_concurrency: u64,
    /// Requests answered 429 (`type: requests`) because the request bucket was empty.
    pub rejected_rate: u64,
    /// Requests answered 429 (`type: tokens`) because the token bucket held less than
    /// `prompt + max_tokens`.
    pub rejected_tokens: u64,
    /// Requests answered 429 "Request too large": `prompt + max_tokens` beyond what the
    /// token bucket can ever hold.
    pub rejected_too_large: u64,
    /// Requests answered 429 `insufficient_quota`.
    pub rejected_quota: u64,
    /// Requests answered 500 by fault injection.
    pub server_errors: u64,
    /// Requests stalled by fault injection.
    pub stalled: u64,
    /// Requests answered 400 (malformed body).
    pub bad_requests: u64,
    /// Most requests being served at once.
    pub peak_concurrency: usize,
    /// Tokens charged on admission (`prompt + max_tokens` of each admitted request).
    pub tokens_charged: u64,
    /// Tokens given back when requests finished (the unused `max_tokens`).
    pub tokens_refunded: u64,
    /// Tokens the 200 answers reported in their `usage` (prompt + completion).
    pub completed_tokens: u64,
    /// Every admitted request, in order of admission (the first 2^20 of them: a mock left
    /// running for weeks stops logging rather than fill memory).
    pub admissions: Vec<Admitted>,
}

/// One admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// When it was admitted, from the start (or the last reset).
    pub at: Duration,
    /// Tokens charged on admission: `prompt + max_tokens`.
    pub charged: u64,
    /// Tokens refunded when it finished (0 while it runs).
    pub refunded: u64,
    /// When it finished and was refunded, from the same start; `None` while it runs.
    pub finished: Option<Duration>,
}

impl ServerStats {
    /// All 429 answers.
    pub fn rejected(&self) -> u64 {
        self.rejected_concurrency
            + self.rejected_rate
            + self.rejected_tokens
            + self.rejected_too_large
            + self.rejected_quota
    }

    /// The tokens spent net of refunds.
    pub fn tokens_spent(&self) -> u64 {
        self.tokens_charged.saturating_sub(self.tokens_refunded)
    }

    /// The most requests admitted within any `window` (a closed interval of that length).
    /// Against a bucket of `burst` refilled at `rate` a second it is at most
    /// `burst + rate * window`.
    pub fn most_requests_in(&self, window: Duration) -> u64 {
        let times: Vec<Duration> = self.admissions.iter().map(|a| a.at).collect();
        let mut most = 0;
        let mut start = 0;
        for (end, &t) in times.iter().enumerate() {
            while t.saturating_sub(times[start]) > window {
                start += 1;
            }
            most = most.max(end + 1 - start);
        }
        most as u64
    }

    /// The most tokens taken within any `window`: the charges of the requests admitted in it
    /// less the refunds paid back in it. Against a bucket of `capacity` refilled at `rate` a
    /// second it is at most `capacity + rate * window`.
    pub fn most_tokens_in(&self, window: Duration) -> u64 {
        let mut events: Vec<(Duration, i128)> = self
            .admissions
            .iter()
            .map(|a| (a.at, i128::from(a.charged)))
            .chain(
                self.admissions
                    .iter()
                    .filter_map(|a| a.finished.map(|f| (f, -i128::from(a.refunded)))),
            )
            .collect();
        events.sort_by_key(|&(at, _)| at);
        let mut prefix = Vec::with_capacity(events.len() + 1);
        prefix.push(0i128);
        for &(_, amount) in &events {
            prefix.push(prefix[prefix.len() - 1] + amount);
        }
        // Which events a window [s, s + window] holds changes only where an event leaves
        // (s just past it) or enters (s + window on it): trying those starts tries them all.
        let tick = Duration::from_nanos(1);
        let starts = events
            .iter()
            .flat_map(|&(at, _)| [at.saturating_add(tick), at.saturating_sub(window), at]);
        let mut most = 0i128;
        for s in starts {
            let end = s.saturating_add(window);
            let lo = events.partition_point(|&(at, _)| at < s);
            let hi = events.partition_point(|&(at, _)| at <= end);
            most = most.max(prefix[hi] - prefix[lo.min(hi)]);
        }
        u64::try_from(most.max(0)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(at_ms: u64, charged: u64, refunded: u64, finished_ms: Option<u64>) -> Admitted {
        Admitted {
            at: Duration::from_millis(at_ms),
            charged,
            refunded,
            finished: finished_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn windows_count_admissions_and_net_tokens() {
        let stats = ServerStats {
            admissions: vec![
                admitted(0, 100, 60, Some(500)),
                admitted(100, 100, 0, None),
                admitted(900, 100, 50, Some(1_200)),
                admitted(2_000, 10, 0, None),
            ],
            ..ServerStats::default()
        };
        let s = Duration::from_secs;
        assert_eq!(stats.most_requests_in(s(1)), 3);
        assert_eq!(stats.most_requests_in(Duration::from_millis(100)), 2);
        assert_eq!(stats.most_requests_in(s(10)), 4);
        // 0..1s: +100 +100 -60 +100 = 240; 100ms..1.1s: +100 -60 +100 = 140.
        assert_eq!(stats.most_tokens_in(s(1)), 240);
        assert_eq!(stats.most_tokens_in(Duration::ZERO), 100);
        // Everything: 310 charged, 110 refunded.
        assert_eq!(stats.most_tokens_in(s(10)), 200);
        assert_eq!(ServerStats::default().most_tokens_in(s(1)), 0);
    }
}
