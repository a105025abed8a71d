//! [`Limiter::observe`]: the server's own view of its quota corrects the limiter's.

use super::Limiter;
use crate::hint::ServerLimits;

impl Limiter {
    /// Corrects the limiter from what a response's rate-limit headers say
    /// ([`ServerLimits`], read from OpenAI's `x-ratelimit-*` or Anthropic's
    /// `anthropic-ratelimit-*`): **the server's view wins when it says fewer remain**.
    ///
    /// - `requests.remaining` lowers the request rate's free cells to at most that many;
    /// - `tokens.remaining` (Anthropic's `input_tokens.remaining` if there is no combined
    ///   window; input tokens are what a reservation is mostly made of) lowers the
    ///   [token budget](crate::LimiterBuilder::tokens)'s free tokens to at most that many;
    /// - `retry_after` pauses the limiter as a pushback does, within
    ///   [`max_pause`](Self::max_pause).
    ///
    /// Nothing is ever raised: a server that says more remain than the limiter thinks is
    /// not believed (another client of the same key may be spending it, or the limiter is
    /// set below the server's quota on purpose). What was lowered comes back at the
    /// limiter's own rate. Call it with every response, 429s included; it costs a few
    /// atomic operations. Values are hostile input and are taken as they are: a remaining
    /// count of 0 holds the limiter for one interval of its rate at most per call, and a
    /// `retry_after` is capped.
    ///
    /// The server counted its `remaining` when it admitted the request that carries it;
    /// requests this process sent after that one are already counted here but not there,
    /// so just after a correction the limiter may be ahead of the server by what one round
    /// trip's worth of requests reserved. The next response corrects it again.
    ///
    /// ```
    /// use gate_core::Limiter;
    /// use gate_core::hint::ServerLimits;
    /// use http::{HeaderMap, HeaderValue};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let api = Limiter::builder()
    ///     .rate("500/min (burst 500)".parse().unwrap())
    ///     .tokens("150000/min".parse().unwrap())
    ///     .build()
    ///     .unwrap();
    /// let mut headers = HeaderMap::new();
    /// // Another process spent most of the minute's tokens.
    /// headers.insert("x-ratelimit-remaining-tokens", HeaderValue::from_static("12000"));
    /// headers.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("480"));
    /// api.observe(&ServerLimits::from_headers(&headers));
    /// assert_eq!(api.token_limit().unwrap().remaining(), 12_000);
    /// assert_eq!(api.rate_limit().unwrap().remaining(), 480);
    /// # }
    /// ```
    pub fn observe(&self, limits: &ServerLimits) {
        if let (Some(rate), Some(remaining)) = (&self.rate, limits.requests.remaining) {
            rate.lower_remaining_to(remaining);
        }
        let tokens = limits.tokens.remaining.or(limits.input_tokens.remaining);
        if let (Some(budget), Some(remaining)) = (&self.tokens, tokens) {
            budget.lower_remaining_to(remaining);
        }
        if let Some(retry_after) = limits.retry_after {
            self.pause_for(retry_after);
        }
    }
}
