//! [`CallError`]: why one attempt failed, and what that means for the next one.

use std::fmt;
use std::time::Duration;

use gate_core::hint::ApiErrorKind;
use gate_core::{Backpressure, Elapsed};
use serde_json::{Value, json};

/// Why an attempt at a line failed.
///
/// A 429 means three different things at OpenAI, told apart by the error's `code`:
/// a rate limit (wait and retry), `insufficient_quota` (billing: no retry will succeed, and
/// the batch stops), and a request too large for the token limit (this line can never
/// pass; the others can).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallError {
    /// 429 over a rate limit: retried, at least the server's `Retry-After` later.
    RateLimited {
        /// `retry-after-ms`, else `Retry-After`.
        retry_after: Option<Duration>,
        /// The server's error body.
        body: Value,
    },
    /// 429 `insufficient_quota`: the account is out of credit. Not retried; stops the batch.
    QuotaExhausted {
        /// The server's error body.
        body: Value,
    },
    /// The request is larger than the token limit allows (a 429 saying "Request too large",
    /// a `request_too_large` code, or 413), or than the local token budget can ever hold.
    /// Not retried.
    TooLarge {
        /// The HTTP status (0 when refused locally).
        status: u16,
        /// The server's error body, or the local reason.
        body: Value,
    },
    /// 503 or 529: the server is overloaded. Retried, at least `Retry-After` later.
    Unavailable {
        /// The status.
        status: u16,
        /// `retry-after-ms`, else `Retry-After`.
        retry_after: Option<Duration>,
        /// The server's error body.
        body: Value,
    },
    /// Another 5xx: retried.
    Server {
        /// The status.
        status: u16,
        /// The server's error body.
        body: Value,
    },
    /// Another 4xx: the request is wrong, and retrying will not help.
    Rejected {
        /// The status.
        status: u16,
        /// The server's error body.
        body: Value,
    },
    /// The connection failed, or the body could not be read: retried.
    Transport(String),
    /// A 200 whose body is not a JSON object: not retried.
    Malformed(String),
    /// The attempt ran past its timeout: retried.
    TimedOut,
}

impl CallError {
    /// Classifies a non-2xx answer from its status and its error object's `type`, `code`
    /// and `message`, by [`ApiErrorKind::classify`]: a 429 is a rate limit unless it says
    /// `insufficient_quota` or "Request too large"; 503 and 529 are overload.
    pub fn from_response(status: u16, retry_after: Option<Duration>, body: Value) -> Self {
        let error = &body["error"];
        let kind = ApiErrorKind::classify(
            Some(status),
            error["type"].as_str(),
            error["code"].as_str(),
            error["message"].as_str().unwrap_or_default(),
        );
        match kind {
            ApiErrorKind::QuotaExhausted => Self::QuotaExhausted { body },
            ApiErrorKind::TooLarge => Self::TooLarge { status, body },
            ApiErrorKind::RateLimited if status == 429 => Self::RateLimited { retry_after, body },
            ApiErrorKind::Overloaded | ApiErrorKind::RateLimited => Self::Unavailable {
                status,
                retry_after,
                body,
            },
            _ if status >= 500 => Self::Server { status, body },
            _ => Self::Rejected { status, body },
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Unavailable { .. }
                | Self::Server { .. }
                | Self::Transport(_)
                | Self::TimedOut
        )
    }

    /// Whether the server refused before doing any work, so it charged no tokens: a 429 of
    /// any kind, or a request refused as too large.
    pub fn is_uncharged(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::QuotaExhausted { .. } | Self::TooLarge { .. }
        )
    }

    /// Whether the answer was a 429.
    pub fn is_429(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::QuotaExhausted { .. } => true,
            Self::TooLarge { status, .. } => *status == 429,
            _ => false,
        }
    }

    /// A short name for the output's `error.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::QuotaExhausted { .. } => "insufficient_quota",
            Self::TooLarge { .. } => "request_too_large",
            Self::Unavailable { .. } => "unavailable",
            Self::Server { .. } => "server_error",
            Self::Rejected { .. } => "rejected",
            Self::Transport(_) => "transport",
            Self::Malformed(_) => "malformed_response",
            Self::TimedOut => "timed_out",
        }
    }

    /// The output's `error` object: `type`, `message`, `status` (if any), the attempts
    /// made, and the server's own error body (if any).
    pub fn to_json(&self, attempts: u32) -> Value {
        let (status, body) = match self {
            Self::RateLimited { body, .. } => (Some(429), Some(body)),
            Self::QuotaExhausted { body } => (Some(429), Some(body)),
            Self::TooLarge { status, body } => ((*status != 0).then_some(*status), Some(body)),
            Self::Unavailable { status, body, .. }
            | Self::Server { status, body }
            | Self::Rejected { status, body } => (Some(*status), Some(body)),
            Self::Transport(_) | Self::Malformed(_) | Self::TimedOut => (None, None),
        };
        json!({
            "type": self.kind(),
            "message": self.to_string(),
            "status": status,
            "attempts": attempts,
            "body": body,
        })
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = |body: &Value| body["error"]["message"].as_str().map(str::to_owned);
        match self {
            Self::RateLimited { body, .. } => match message(body) {
                Some(m) => write!(f, "429 rate limited: {m}"),
                None => f.write_str("429 rate limited"),
            },
            Self::QuotaExhausted { .. } => {
                f.write_str("429 insufficient_quota: the account is out of credit")
            }
            Self::TooLarge { body, .. } => match message(body) {
                Some(m) => write!(f, "request too large: {m}"),
                None => f.write_str("request too large"),
            },
            Self::Unavailable { status, .. } => write!(f, "{status} server overloaded"),
            Self::Server { status, body } | Self::Rejected { status, body } => {
                match message(body) {
                    Some(m) => write!(f, "{status}: {m}"),
                    None => write!(f, "{status}"),
                }
            }
            Self::Transport(e) => write!(f, "transport error: {e}"),
            Self::Malformed(e) => write!(f, "malformed response: {e}"),
            Self::TimedOut => f.write_str("attempt timed out"),
        }
    }
}

impl std::error::Error for CallError {}

impl From<Elapsed> for CallError {
    fn from(_: Elapsed) -> Self {
        Self::TimedOut
    }
}

impl Backpressure for CallError {
    fn is_overload(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable { .. })
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    fn is_permanent(&self) -> bool {
        matches!(self, Self::QuotaExhausted { .. } | Self::TooLarge { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str, kind: &str, message: &str) -> Value {
        json!({"error": {"code": code, "type": kind, "message": message}})
    }

    #[test]
    fn a_429_is_a_rate_limit_a_billing_stop_or_a_request_too_large() {
        let wait = Some(Duration::from_millis(150));
        let limited = CallError::from_response(
            429,
            wait,
            error("rate_limit_exceeded", "tokens", "Rate limit reached"),
        );
        assert!(limited.is_retryable() && limited.is_overload() && limited.is_uncharged());
        assert_eq!(limited.retry_after(), wait);

        let quota = CallError::from_response(
            429,
            wait,
            error(
                "insufficient_quota",
                "insufficient_quota",
                "You exceeded your quota",
            ),
        );
        assert!(matches!(quota, CallError::QuotaExhausted { .. }));
        assert!(!quota.is_retryable() && !quota.is_overload() && quota.is_429());

        let large = CallError::from_response(
            429,
            None,
            error(
                "rate_limit_exceeded",
                "tokens",
                "Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 50000.",
            ),
        );
        assert!(matches!(large, CallError::TooLarge { status: 429, .. }));
        assert!(!large.is_retryable() && large.is_uncharged());
        let large = CallError::from_response(429, None, error("request_too_large", "", ""));
        assert_eq!(large.kind(), "request_too_large");
        assert_eq!(
            CallError::from_response(413, None, Value::Null).kind(),
            "request_too_large"
        );
        let context = CallError::from_response(400, None, error("context_length_exceeded", "", ""));
        assert!(context.is_permanent() && context.kind() == "request_too_large");
        assert!(quota.is_permanent() && !limited.is_permanent());
    }

    #[test]
    fn other_statuses_by_class() {
        let of = |status| CallError::from_response(status, None, Value::Null);
        assert!(of(503).is_overload() && of(529).is_overload());
        // An overload error type on another status (Anthropic's) is overload too.
        let busy = CallError::from_response(500, None, error("", "overloaded_error", ""));
        assert!(busy.is_overload() && busy.is_retryable());
        assert!(of(500).is_retryable() && !of(500).is_overload() && !of(500).is_uncharged());
        assert!(!of(400).is_retryable() && !of(404).is_429());
        assert!(CallError::Transport("reset".into()).is_retryable());
        assert!(CallError::from(Elapsed::default()).is_retryable());
        assert!(!CallError::Malformed("x".into()).is_retryable());
    }

    #[test]
    fn the_output_error_names_the_kind_the_status_and_the_attempts() {
        let e = CallError::from_response(400, None, error("bad", "invalid_request_error", "no"));
        assert_eq!(
            e.to_json(1),
            json!({
                "type": "rejected",
                "message": "400: no",
                "status": 400,
                "attempts": 1,
                "body": error("bad", "invalid_request_error", "no"),
            })
        );
        let t = CallError::TimedOut.to_json(6);
        assert_eq!(
            (t["status"].clone(), t["attempts"].clone()),
            (Value::Null, json!(6))
        );
    }
}
