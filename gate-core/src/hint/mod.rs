//! What a server's response says about when to come back and what is left of its quota:
//! `Retry-After`, OpenAI's `retry-after-ms`, gRPC's `grpc-retry-pushback-ms`, and the
//! rate-limit headers of OpenAI and Anthropic ([`ServerLimits`]), read from [`http`] headers;
//! and whether an LLM provider's error is worth retrying at all ([`ApiErrorKind`]).
//!
//! Available with the `http` feature, off by default (it adds the `http` crate and nothing
//! else):
//!
//! ```toml
//! [dependencies]
//! gate-core = { version = "0.1", features = ["http"] }
//! ```
//!
//! The functions take an [`http::HeaderMap`] (what hyper, reqwest and axum hand you) or a
//! single header value as bytes, and read HTTP-dates against a `now` you pass or against the
//! system clock. gate-tower's `Pushback` reads upstream responses with them; a client turns
//! a response into an error that [`Retry`](crate::Retry) and [`Limiter`](crate::Limiter)
//! understand by implementing [`Backpressure`](crate::Backpressure) with them.
//!
//! # How values are read
//!
//! | header | form | read as |
//! |---|---|---|
//! | `retry-after-ms` | milliseconds, maybe fractional (`150`, `20.5`) | wins over `Retry-After` when valid |
//! | `Retry-After` | delta-seconds (`2`), maybe fractional (`1.5`) | that many seconds |
//! | `Retry-After` | IMF-fixdate (`Wed, 21 Oct 2026 07:28:00 GMT`) | the time until then; a past date is zero |
//! | `grpc-retry-pushback-ms` | milliseconds | that many; a negative value ("do not retry") is no hint |
//! | `x-ratelimit-{limit,remaining}-{requests,tokens}`, `anthropic-ratelimit-*-{limit,remaining}` | a count (`149984`) | that count, saturating at `u64::MAX`; a sign, a fraction or an exponent is ignored |
//! | `x-ratelimit-reset-{requests,tokens}` | a Go duration (`20ms`, `1.5s`, `6m0s`, `1h2m3.5s`, `0s`; units `h`, `m`, `s`, `ms`, `us`, `µs`, `ns`) | the sum of its terms, a fraction rounded up to the nanosecond, saturating at `Duration::MAX`; a bare number other than `0`, a sign or an unknown unit is ignored |
//! | `anthropic-ratelimit-*-reset` | RFC 3339 (`2026-10-21T07:28:00Z`, `…T09:28:00.5+02:00`) | the time until then; a past time is zero; a year of more than four digits saturates |
//!
//! - A fraction rounds up to the next whole unit (second, or millisecond), so that a client
//!   never comes back early.
//! - Of several values of one rate-limit header, the first valid one counts; OpenAI's header
//!   counts before Anthropic's for the same window ([`ServerLimits`]).
//! - Leading and trailing spaces are ignored; a sign, an exponent, a non-UTF-8 byte, a day
//!   the month does not have, or the obsolete RFC 850 and asctime date forms give no hint.
//!   A malformed `retry-after-ms` gives way to `Retry-After`.
//!
//! # Hostile values
//!
//! Every header is whatever the server, a proxy or an attacker in between sent. Reading is
//! total and monotone: it never panics or overflows, and of two valid values the larger one
//! (or the later date) never gives the shorter wait. A number too big for a `u64`, or a date
//! in the year 10¹², saturates to a very long [`Duration`](std::time::Duration) rather than
//! giving none. The [`Limiter`](crate::Limiter) and [`Retry`](crate::Retry) cap the hints
//! they honour ([hints are untrusted](crate::Backpressure#hints-are-untrusted)); code that
//! sleeps on a hint itself must cap it too.
//!
//! # Examples
//!
//! A client that reads a 429's hint:
//!
//! ```
//! use std::time::Duration;
//! use gate_core::hint;
//! use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
//! assert_eq!(hint::retry_after(&headers), Some(Duration::from_secs(2)));
//!
//! // OpenAI's precise hint wins.
//! headers.insert(hint::RETRY_AFTER_MS, HeaderValue::from_static("150"));
//! assert_eq!(hint::retry_after(&headers), Some(Duration::from_millis(150)));
//!
//! // Capped before sleeping on it.
//! let wait = hint::retry_after(&headers).unwrap_or(Duration::from_secs(1));
//! let wait = wait.min(Duration::from_secs(30));
//! # let _ = wait;
//! ```

mod api_error;
mod date;
mod number;
mod reset;
mod retry_after;
mod server_limits;

pub use api_error::ApiErrorKind;
pub use retry_after::{
    GRPC_RETRY_PUSHBACK_MS, RETRY_AFTER_MS, grpc_retry_pushback, parse_grpc_retry_pushback,
    parse_retry_after, parse_retry_after_ms, retry_after, retry_after_at,
};
pub use server_limits::{ServerLimits, Window};
