//! [`ApiErrorKind`]: what an LLM provider's error object says about retrying it.

use std::time::Duration;

use crate::Signal;

/// What an OpenAI or Anthropic error says about retrying: wait and retry, or give up.
///
/// Both providers answer a failed call with a JSON error object: OpenAI's
/// `{"error": {"message", "type", "param", "code"}}`, Anthropic's
/// `{"type": "error", "error": {"type", "message"}}`. [`classify`](Self::classify) reads its
/// fields and the HTTP status, whatever client parsed them (async-openai's `ApiError` has
/// `r#type`, `code` and `message`; its `ApiErrorResponse` the status too):
///
/// | says | kind | retry? |
/// |---|---|---|
/// | code or type `insufficient_quota`; type `billing_error`; status 402 | [`QuotaExhausted`](Self::QuotaExhausted) | no: the account's credit or quota is spent |
/// | code `context_length_exceeded`; type `request_too_large`; status 413; a message starting `Request too large` (OpenAI's 429 for one request above the tokens-per-minute window) | [`TooLarge`](Self::TooLarge) | no: this request never fits |
/// | type `overloaded_error`; status 503 or 529 | [`Overloaded`](Self::Overloaded) | yes, after a wait |
/// | code `rate_limit_exceeded`; type `rate_limit_error`, `requests` or `tokens`; status 429 | [`RateLimited`](Self::RateLimited) | yes, after a wait |
/// | anything else (a 400, a 401, a 500) | [`Other`](Self::Other) | not an overload: the caller's `retry_if` decides |
///
/// The rows are tried in this order, so a 429 that says `insufficient_quota` is
/// [`QuotaExhausted`](Self::QuotaExhausted), not [`RateLimited`](Self::RateLimited) (the
/// mistake langchainjs#1929 made). Names match exactly; the message prefix ignores ASCII
/// case. Nothing is parsed, so any value (empty, huge, garbage) is safe.
///
/// An error type built from a provider's answer implements
/// [`Backpressure`](crate::Backpressure) with [`is_overload`](Self::is_overload) and
/// [`is_permanent`](Self::is_permanent); a [`Retry`](crate::Retry) that
/// [honours server hints](crate::RetryBuilder::honor_retry_after) then waits out rate limits
/// and stops at once on the rest.
///
/// # Examples
///
/// ```
/// use gate_core::hint::ApiErrorKind;
///
/// // OpenAI: a rate limit, and a spent quota, both with status 429.
/// let rate = ApiErrorKind::classify(Some(429), Some("requests"), Some("rate_limit_exceeded"), "Rate limit reached");
/// assert_eq!(rate, ApiErrorKind::RateLimited);
/// assert!(rate.is_overload() && !rate.is_permanent());
/// let quota = ApiErrorKind::classify(
///     Some(429),
///     Some("insufficient_quota"),
///     Some("insufficient_quota"),
///     "You exceeded your current quota, please check your plan and billing details.",
/// );
/// assert_eq!(quota, ApiErrorKind::QuotaExhausted);
/// assert!(quota.is_permanent() && !quota.is_overload());
///
/// // Anthropic: overloaded, without the status at hand.
/// let busy = ApiErrorKind::classify(None, Some("overloaded_error"), None, "Overloaded");
/// assert!(busy.is_overload());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// Too many requests or tokens for now: retry after the server's hint.
    RateLimited,
    /// The server is overloaded (Anthropic's `overloaded_error`, a 503 or 529): retry after
    /// a wait.
    Overloaded,
    /// The account's quota or credit is spent (`insufficient_quota`, `billing_error`):
    /// retrying cannot help until someone pays.
    QuotaExhausted,
    /// The request is larger than the model's context or the token window can ever hold:
    /// retrying the same request cannot help.
    TooLarge,
    /// Nothing to do with load or quota.
    Other,
}

impl ApiErrorKind {
    /// Sorts an error by its HTTP status (if known), its `type`, its `code` and its
    /// `message`, as the [table](Self) says.
    pub fn classify(
        status: Option<u16>,
        error_type: Option<&str>,
        code: Option<&str>,
        message: &str,
    ) -> Self {
        let is = |names: &[&str]| {
            [error_type, code]
                .into_iter()
                .flatten()
                .any(|field| names.contains(&field))
        };
        if is(&["insufficient_quota", "billing_error"]) || status == Some(402) {
            Self::QuotaExhausted
        } else if is(&["context_length_exceeded", "request_too_large"])
            || status == Some(413)
            || starts_with_ignore_case(message, "request too large")
        {
            Self::TooLarge
        } else if is(&["overloaded_error"]) || matches!(status, Some(503 | 529)) {
            Self::Overloaded
        } else if is(&[
            "rate_limit_exceeded",
            "rate_limit_error",
            "requests",
            "tokens",
        ]) || status == Some(429)
        {
            Self::RateLimited
        } else {
            Self::Other
        }
    }

    /// Whether the server is overloaded or rate-limiting: wait, then retry.
    pub const fn is_overload(self) -> bool {
        matches!(self, Self::RateLimited | Self::Overloaded)
    }

    /// Whether retrying cannot help ([`Backpressure::is_permanent`](crate::Backpressure::is_permanent)).
    pub const fn is_permanent(self) -> bool {
        matches!(self, Self::QuotaExhausted | Self::TooLarge)
    }

    /// This kind as a [`Signal`], with the server's hint if one was had elsewhere (a client
    /// that drops the response's headers has none), for
    /// [`honor_retry_after_with`](crate::RetryBuilder::honor_retry_after_with).
    pub const fn signal(self, retry_after: Option<Duration>) -> Signal {
        if self.is_permanent() {
            Signal::PERMANENT
        } else if self.is_overload() {
            Signal::overload(retry_after)
        } else {
            Signal::NONE
        }
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ApiErrorKind::*;

    fn kind(
        status: Option<u16>,
        error_type: Option<&str>,
        code: Option<&str>,
        message: &str,
    ) -> ApiErrorKind {
        ApiErrorKind::classify(status, error_type, code, message)
    }

    #[test]
    fn openai_errors_sort_as_their_docs_say() {
        let rate = "Rate limit reached for gpt-4o on requests per min (RPM): Limit 3, Used 3, Requested 1.";
        assert_eq!(
            kind(
                Some(429),
                Some("requests"),
                Some("rate_limit_exceeded"),
                rate
            ),
            RateLimited
        );
        assert_eq!(
            kind(Some(429), Some("tokens"), Some("rate_limit_exceeded"), rate),
            RateLimited
        );
        // Regression (langchainjs#1929): a spent quota came as a 429 and was retried.
        let quota = "You exceeded your current quota, please check your plan and billing details.";
        assert_eq!(
            kind(
                Some(429),
                Some("insufficient_quota"),
                Some("insufficient_quota"),
                quota
            ),
            QuotaExhausted
        );
        assert_eq!(
            kind(Some(429), None, Some("insufficient_quota"), quota),
            QuotaExhausted
        );
        let too_large = "Request too large for gpt-4 in organization org-x on tokens per min (TPM): Limit 10000, Requested 20000.";
        assert_eq!(
            kind(
                Some(429),
                Some("tokens"),
                Some("rate_limit_exceeded"),
                too_large
            ),
            TooLarge
        );
        assert_eq!(
            kind(
                Some(400),
                Some("invalid_request_error"),
                Some("context_length_exceeded"),
                "This model's maximum context length is 8192 tokens."
            ),
            TooLarge
        );
        assert_eq!(
            kind(Some(400), Some("invalid_request_error"), None, "bad"),
            Other
        );
        assert_eq!(
            kind(
                Some(401),
                Some("invalid_request_error"),
                Some("invalid_api_key"),
                ""
            ),
            Other
        );
        assert_eq!(kind(Some(500), Some("server_error"), None, ""), Other);
        assert_eq!(kind(Some(503), None, None, ""), Overloaded);
    }

    #[test]
    fn anthropic_errors_sort_as_their_docs_say() {
        assert_eq!(
            kind(
                Some(429),
                Some("rate_limit_error"),
                None,
                "Number of request tokens has exceeded your per-minute rate limit"
            ),
            RateLimited
        );
        assert_eq!(
            kind(Some(529), Some("overloaded_error"), None, "Overloaded"),
            Overloaded
        );
        assert_eq!(kind(None, Some("overloaded_error"), None, ""), Overloaded);
        assert_eq!(
            kind(
                Some(413),
                Some("request_too_large"),
                None,
                "Request exceeds the maximum allowed number of bytes."
            ),
            TooLarge
        );
        assert_eq!(
            kind(Some(402), Some("billing_error"), None, ""),
            QuotaExhausted
        );
        assert_eq!(
            kind(
                Some(400),
                Some("invalid_request_error"),
                None,
                "prompt is too long"
            ),
            Other
        );
        assert_eq!(kind(Some(404), Some("not_found_error"), None, ""), Other);
    }

    #[test]
    fn names_match_exactly_and_the_prefix_ignores_case() {
        assert_eq!(kind(None, Some("INSUFFICIENT_QUOTA"), None, ""), Other);
        assert_eq!(kind(None, Some("rate_limit_exceeded "), None, ""), Other);
        assert_eq!(
            kind(None, None, None, "REQUEST TOO LARGE for model"),
            TooLarge
        );
        assert_eq!(kind(None, None, None, "Request too"), Other);
        assert_eq!(kind(None, None, None, "é"), Other);
        assert_eq!(kind(None, None, None, ""), Other);
        assert!(!Other.is_overload() && !Other.is_permanent());
        assert!(Overloaded.is_overload() && TooLarge.is_permanent());
        let second = Some(Duration::from_secs(1));
        assert_eq!(RateLimited.signal(second), Signal::overload(second));
        assert_eq!(QuotaExhausted.signal(second), Signal::PERMANENT);
        assert_eq!(Other.signal(second), Signal::NONE);
    }
}
