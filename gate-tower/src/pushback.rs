//! [`Pushback`]: an upstream's "I am overloaded, come back later", read from an HTTP or gRPC
//! response.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use gate_core::{Backpressure, Outcome, hint};
use http::header::HeaderMap;
use http::{Response, StatusCode};

/// The gRPC status code `RESOURCE_EXHAUSTED`.
const RESOURCE_EXHAUSTED: u8 = 8;

/// The gRPC status code `UNAVAILABLE`.
const UNAVAILABLE: u8 = 14;

/// An upstream's pushback: the server that answered a request said it is overloaded, with
/// an HTTP `429 Too Many Requests` or `503 Service Unavailable`, or a gRPC status
/// `RESOURCE_EXHAUSTED` (8) or `UNAVAILABLE` (14), and maybe how long callers should stay
/// away.
///
/// A `Pushback` is what a service *behind* a [`GateLayer`](crate::GateLayer) answered; the
/// layer's own refusals are [`Overloaded`](crate::Overloaded) errors or 503 responses.
///
/// - **HTTP.** The hint is OpenAI's `retry-after-ms` if it is valid, else `Retry-After`, in
///   delta-seconds (`Retry-After: 2`, or `1.5`, which rounds up) or as an HTTP-date
///   (`Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`, read against the system clock; a date in
///   the past means "now"). A malformed value (a sign, a non-UTF-8 byte, a day the month
///   does not have, another date format) gives no hint. [`gate_core::hint`] reads them, and
///   documents the forms.
/// - **gRPC.** The status is read from the headers of a trailers-only response (what tonic
///   sends when a handler returns an error) or from trailers
///   ([`from_trailers`](Self::from_trailers)). The hint is `grpc-retry-pushback-ms`, in
///   milliseconds; a negative pushback ("do not retry") gives no hint.
/// - **Hostile values.** Reading never panics, and of two valid hints the later one never
///   gives the shorter wait: a number too big for a `u64`, or a date in the year 10¹², gives
///   a saturated, very long [`retry_after`](Self::retry_after) rather than none. The
///   limiter caps how long it honours a pause; code that sleeps on `retry_after` itself
///   should cap it too.
///
/// A [`GateLayer`](crate::GateLayer) drawing from a [`Limiter`](gate_core::Limiter) reads
/// every response this way and reports it as [`Outcome::Overload`]; the same reading is
/// public so that client code can turn a response into an error that gate-core's
/// [`Retry`](gate_core::Retry) understands: `Pushback` implements [`Backpressure`] and
/// [`Error`].
///
/// # Examples
///
/// Turning an upstream's 429 into an error a retry policy waits out:
///
/// ```
/// use std::time::Duration;
/// use gate_core::Backpressure;
/// use gate_tower::Pushback;
/// use http::{Response, StatusCode, header::RETRY_AFTER};
///
/// let response = Response::builder()
///     .status(StatusCode::TOO_MANY_REQUESTS)
///     .header(RETRY_AFTER, "2")
///     .body(())
///     .unwrap();
/// let pushback = Pushback::from_response(&response).unwrap();
/// assert!(pushback.is_overload());
/// assert_eq!(Backpressure::retry_after(&pushback), Some(Duration::from_secs(2)));
/// assert_eq!(pushback.status(), Some(StatusCode::TOO_MANY_REQUESTS));
/// assert_eq!(pushback.to_string(), "server overloaded: HTTP 429 Too Many Requests, retry after 2s");
///
/// assert!(Pushback::from_response(&Response::new(())).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushback {
    signal: Signal,
    retry_after: Option<Duration>,
}

/// What said "overloaded".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Http(StatusCode),
    Grpc(u8),
}

impl Pushback {
    /// Reads the overload signal of `response`'s head, if it carries one: its status, or the
    /// `grpc-status` of a trailers-only gRPC response.
    pub fn from_response<B>(response: &Response<B>) -> Option<Self> {
        Self::from_head(response.status(), response.headers())
    }

    /// Like [`from_response`](Self::from_response), from a status and headers.
    pub fn from_head(status: StatusCode, headers: &HeaderMap) -> Option<Self> {
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            let retry_after = hint::retry_after(headers);
            return Some(Self {
                signal: Signal::Http(status),
                retry_after,
            });
        }
        Self::from_trailers(headers)
    }

    /// Reads the overload signal of gRPC trailers (or of the headers of a trailers-only
    /// response): `grpc-status` 8 or 14.
    pub fn from_trailers(trailers: &HeaderMap) -> Option<Self> {
        let code = match trailers.get("grpc-status")?.as_bytes() {
            b"8" => RESOURCE_EXHAUSTED,
            b"14" => UNAVAILABLE,
            _ => return None,
        };
        let retry_after = hint::grpc_retry_pushback(trailers);
        Some(Self {
            signal: Signal::Grpc(code),
            retry_after,
        })
    }

    /// How long the server asked callers to stay away, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The HTTP status, for an HTTP signal.
    pub fn status(&self) -> Option<StatusCode> {
        match self.signal {
            Signal::Http(status) => Some(status),
            Signal::Grpc(_) => None,
        }
    }

    /// The gRPC status code (8 or 14), for a gRPC signal.
    pub fn grpc_code(&self) -> Option<i32> {
        match self.signal {
            Signal::Http(_) => None,
            Signal::Grpc(code) => Some(i32::from(code)),
        }
    }

    /// The outcome this signal reports to a limiter.
    pub fn outcome(&self) -> Outcome {
        Outcome::Overload {
            retry_after: self.retry_after,
        }
    }
}

impl From<Pushback> for Outcome {
    fn from(pushback: Pushback) -> Self {
        pushback.outcome()
    }
}

impl fmt::Display for Pushback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signal {
            Signal::Http(status) => write!(f, "server overloaded: HTTP {status}")?,
            Signal::Grpc(RESOURCE_EXHAUSTED) => {
                f.write_str("server overloaded: gRPC status RESOURCE_EXHAUSTED")?;
            }
            Signal::Grpc(code) => write!(f, "server overloaded: gRPC status {code}")?,
        }
        if let Some(retry_after) = self.retry_after {
            write!(f, ", retry after {retry_after:?}")?;
        }
        Ok(())
    }
}

impl Error for Pushback {}

impl Backpressure for Pushback {
    fn is_overload(&self) -> bool {
        true
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// The outcome a limiter learns from a response head: an overload signal, or a success.
#[inline]
pub(crate) fn outcome_of_head(status: StatusCode, headers: &HeaderMap) -> Outcome {
    match Pushback::from_head(status, headers) {
        Some(pushback) => pushback.outcome(),
        None => Outcome::Success,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http::header::RETRY_AFTER;
    use proptest::prelude::*;

    use super::*;

    fn head(status: StatusCode, headers: &[(&'static str, &'static str)]) -> Option<Pushback> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        Pushback::from_head(status, &map)
    }

    #[test]
    fn http_429_and_503_are_overloads_with_their_retry_after() {
        let pushback = head(StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "2")]).unwrap();
        assert_eq!(pushback.retry_after(), Some(Duration::from_secs(2)));
        let pushback = head(StatusCode::SERVICE_UNAVAILABLE, &[]).unwrap();
        assert_eq!(pushback.retry_after(), None);
        assert_eq!(pushback.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        let garbled = head(StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "soon")]).unwrap();
        assert_eq!(garbled.retry_after(), None);
        for status in [
            StatusCode::OK,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
        ] {
            assert_eq!(head(status, &[("retry-after", "2")]), None);
        }
    }

    #[test]
    fn grpc_resource_exhausted_and_unavailable_are_overloads() {
        let exhausted = head(
            StatusCode::OK,
            &[("grpc-status", "8"), ("grpc-retry-pushback-ms", "1500")],
        )
        .unwrap();
        assert_eq!(exhausted.grpc_code(), Some(8));
        assert_eq!(exhausted.retry_after(), Some(Duration::from_millis(1500)));
        let unavailable = head(StatusCode::OK, &[("grpc-status", "14")]).unwrap();
        assert_eq!(unavailable.grpc_code(), Some(14));
        assert_eq!(unavailable.retry_after(), None);
        // A negative pushback means "do not retry": no hint, still an overload.
        let negative = head(
            StatusCode::OK,
            &[("grpc-status", "8"), ("grpc-retry-pushback-ms", "-1")],
        )
        .unwrap();
        assert_eq!(negative.retry_after(), None);
        for code in ["0", "2", "4", "13", "80"] {
            let mut map = HeaderMap::new();
            map.insert("grpc-status", HeaderValue::from_static(code));
            assert_eq!(Pushback::from_trailers(&map), None, "grpc-status {code}");
        }
    }

    #[test]
    fn outcome_of_head_is_success_unless_overloaded() {
        let map = HeaderMap::new();
        assert_eq!(outcome_of_head(StatusCode::OK, &map), Outcome::Success);
        assert_eq!(
            outcome_of_head(StatusCode::NOT_FOUND, &map),
            Outcome::Success
        );
        assert_eq!(
            outcome_of_head(StatusCode::SERVICE_UNAVAILABLE, &map),
            Outcome::Overload { retry_after: None }
        );
    }

    #[test]
    fn pushback_saturates() {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", HeaderValue::from_static("8"));
        map.insert(
            "grpc-retry-pushback-ms",
            HeaderValue::from_static("99999999999999999999999"),
        );
        let pushback = Pushback::from_trailers(&map).unwrap();
        assert_eq!(
            pushback.retry_after(),
            Some(Duration::from_millis(u64::MAX))
        );
    }

    // `retry-after-ms` and fractional seconds are read through gate-core's `hint`: the
    // millisecond hint wins when valid, and a fraction of a second rounds up.
    #[test]
    fn http_hints_read_retry_after_ms_and_fractions() {
        let precise = head(
            StatusCode::TOO_MANY_REQUESTS,
            &[("retry-after", "2"), ("retry-after-ms", "150")],
        )
        .unwrap();
        assert_eq!(precise.retry_after(), Some(Duration::from_millis(150)));
        let only_ms = head(
            StatusCode::SERVICE_UNAVAILABLE,
            &[("retry-after-ms", "20.5")],
        )
        .unwrap();
        assert_eq!(only_ms.retry_after(), Some(Duration::from_millis(21)));
        let garbled_ms = head(
            StatusCode::TOO_MANY_REQUESTS,
            &[("retry-after", "2"), ("retry-after-ms", "NaN")],
        )
        .unwrap();
        assert_eq!(garbled_ms.retry_after(), Some(Duration::from_secs(2)));
        let fraction = head(StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "1.5")]).unwrap();
        assert_eq!(fraction.retry_after(), Some(Duration::from_secs(2)));
        let huge = head(
            StatusCode::TOO_MANY_REQUESTS,
            &[("retry-after", "99999999999999999999")],
        )
        .unwrap();
        assert_eq!(huge.retry_after(), Some(Duration::from_secs(u64::MAX)));
        // gRPC reads its own pushback, not the HTTP headers.
        let grpc = head(
            StatusCode::OK,
            &[("grpc-status", "8"), ("retry-after-ms", "150")],
        )
        .unwrap();
        assert_eq!(grpc.retry_after(), None);
    }

    proptest! {
        #[test]
        fn any_header_bytes_read_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let mut map = HeaderMap::new();
                map.insert(RETRY_AFTER, value.clone());
                map.insert(hint::RETRY_AFTER_MS, value.clone());
                map.insert("grpc-status", HeaderValue::from_static("8"));
                map.insert(hint::GRPC_RETRY_PUSHBACK_MS, value);
                let _ = Pushback::from_head(StatusCode::TOO_MANY_REQUESTS, &map);
                let _ = Pushback::from_trailers(&map);
            }
        }
    }
}
