//! What a refused request gets: an HTTP or gRPC answer, or an [`Overloaded`] error.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use gate_core::Backpressure;
use gate_core::rate::Rate;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::body::ResponseBody;

/// The error type of services built with [`GateLayer::refuse_with_error`](crate::GateLayer::refuse_with_error).
pub type BoxError = Box<dyn Error + Send + Sync>;

/// Refusal mode of a [`GateLayer`](crate::GateLayer) (the default): a refused HTTP request is
/// answered with `503 Service Unavailable` and `Retry-After`, a refused gRPC request with
/// status `RESOURCE_EXHAUSTED`, and the inner service's error type is kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Respond {
    _p: (),
}

/// Refusal mode of a [`GateLayer`](crate::GateLayer) for any tower service: a refused request
/// fails with an [`Overloaded`] error, boxed with the inner service's errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reject {
    _p: (),
}

/// The error a service in [`Reject`] mode fails with when the gate refused the request: the
/// wait for a permit ran past `max_wait`, the queue already held `max_waiters` requests, or
/// the gate was closed.
///
/// Find it in a [`BoxError`] with `downcast_ref`:
///
/// ```
/// # use gate_tower::{BoxError, Overloaded};
/// fn is_overload(err: &BoxError) -> bool {
///     err.downcast_ref::<Overloaded>().is_some()
/// }
/// ```
///
/// It implements gate-core's [`Backpressure`], so a `Retry` policy built with
/// `honor_retry_after` treats it as overload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overloaded {
    _p: (),
}

impl Overloaded {
    pub(crate) const fn new() -> Self {
        Self { _p: () }
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("gate is full")
    }
}

impl Error for Overloaded {}

impl Backpressure for Overloaded {
    fn is_overload(&self) -> bool {
        true
    }
}

/// The gRPC status code `RESOURCE_EXHAUSTED`.
const GRPC_RESOURCE_EXHAUSTED: &str = "8";

/// The `grpc-message` of a refusal.
const GRPC_MESSAGE: &str = "gate is full";

/// The body of a refused plain HTTP request.
const HTTP_MESSAGE: &str = "server overloaded: retry later\n";

/// The longest wait a refusal advertises: `i32::MAX` milliseconds, about 24.8 days. Longer
/// hints are capped to it, so that clients reading `grpc-retry-pushback-ms` or `Retry-After`
/// into a 32-bit integer read a long wait rather than an overflow.
pub(crate) const MAX_ADVERTISED_WAIT: Duration = Duration::from_millis(i32::MAX as u64);

/// How a refused request is answered, from its `content-type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Plain HTTP: `503` with `Retry-After`.
    Http,
    /// gRPC (`application/grpc`, `application/grpc+proto`, ...): a trailers-only response.
    Grpc,
    /// gRPC-Web (`application/grpc-web`, `application/grpc-web+proto`,
    /// `application/grpc-web-text`, ...): answered in the request's content type, with the
    /// status in a trailers frame in the body (base64 for `-text`), where a browser can read it.
    GrpcWeb {
        /// The request's content type, which the answer repeats.
        content_type: HeaderValue,
        /// Whether the body is base64 (`application/grpc-web-text...`).
        text: bool,
    },
}

impl Protocol {
    /// The protocol of a request with these headers.
    #[inline]
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let Some(content_type) = headers.get(CONTENT_TYPE) else {
            return Self::Http;
        };
        let bytes = content_type.as_bytes();
        match bytes.strip_prefix(b"application/grpc") {
            None => Self::Http,
            Some(rest) => match rest.strip_prefix(b"-web") {
                Some(rest) => Self::GrpcWeb {
                    content_type: content_type.clone(),
                    text: rest.starts_with(b"-text"),
                },
                None => Self::Grpc,
            },
        }
    }
}

/// The answer to a refused request, asking the client to come back after `retry_after`
/// (capped to [`MAX_ADVERTISED_WAIT`]).
///
/// Plain HTTP gets `503 Service Unavailable` with `Retry-After` in whole seconds (rounded up)
/// and a short text body. gRPC gets a trailers-only response: HTTP 200 whose headers carry
/// `grpc-status: 8` (`RESOURCE_EXHAUSTED`), a `grpc-message` and `grpc-retry-pushback-ms`
/// (the hint gRPC's own retry policies read, in milliseconds, rounded up), and no body.
/// gRPC-Web gets HTTP 200 in the request's content type and the same three fields as a
/// gRPC-Web trailers frame in the body, base64-encoded for `grpc-web-text`.
#[cold]
pub(crate) fn refusal<B>(protocol: &Protocol, retry_after: Duration) -> Response<ResponseBody<B>> {
    let retry_after = retry_after.min(MAX_ADVERTISED_WAIT);
    match protocol {
        Protocol::Grpc => {
            let mut response = Response::new(ResponseBody::refused(None));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert(
                "grpc-status",
                HeaderValue::from_static(GRPC_RESOURCE_EXHAUSTED),
            );
            headers.insert("grpc-message", HeaderValue::from_static(GRPC_MESSAGE));
            headers.insert(
                "grpc-retry-pushback-ms",
                HeaderValue::from(whole_millis(retry_after)),
            );
            response
        }
        Protocol::GrpcWeb { content_type, text } => {
            let frame = grpc_web_trailers(whole_millis(retry_after));
            let body = if *text {
                Bytes::from(base64(&frame))
            } else {
                Bytes::from(frame)
            };
            let mut response = Response::new(ResponseBody::refused(Some(body)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, content_type.clone());
            response
        }
        Protocol::Http => {
            let body = Bytes::from_static(HTTP_MESSAGE.as_bytes());
            let mut response = Response::new(ResponseBody::refused(Some(body)));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            let headers = response.headers_mut();
            headers.insert(RETRY_AFTER, HeaderValue::from(whole_seconds(retry_after)));
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    }
}

/// The body of a plain HTTP request refused by a rate limit.
const RATE_MESSAGE: &str = "rate limit exceeded: retry later\n";

/// The name of the policy the `RateLimit` and `RateLimit-Policy` fields describe.
pub(crate) const RATE_POLICY: &str = "default";

/// The largest integer a structured field carries (RFC 9651: 15 digits).
const MAX_SF_INTEGER: u64 = 999_999_999_999_999;

/// A refusal by a rate limit: how long until the next cell is due, and the rate, as the
/// `RateLimit-Policy` field states it (`quota` requests per `window` seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateLimited {
    wait: Duration,
    quota: u64,
    window: u64,
}

impl RateLimited {
    /// A refusal by `rate`, whose next cell is due in `wait`. The window is the rate's
    /// period in whole seconds (rounded up, at least 1), and the quota the rate's count
    /// over that window (rounded down, at least 1): `10/s` is `q=10;w=1`, `500/min` is
    /// `q=500;w=60`, `5 per 100 ms` is `q=50;w=1`. Both are capped to what a structured
    /// field's integer holds.
    pub(crate) fn new(rate: Rate, wait: Duration) -> Self {
        const SECOND: u128 = 1_000_000_000;
        let period = rate.period().as_nanos().max(1);
        let window = period.div_ceil(SECOND).max(1);
        let quota = (u128::from(rate.count()) * window * SECOND / period).max(1);
        let cap = |n: u128| u64::try_from(n).map_or(MAX_SF_INTEGER, |n| n.min(MAX_SF_INTEGER));
        Self {
            wait,
            quota: cap(quota),
            window: cap(window),
        }
    }

    /// How long until the rate admits again.
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }
}

/// The answer to a request refused by a rate limit, asking the client to come back when the
/// next cell is due (capped to [`MAX_ADVERTISED_WAIT`]).
///
/// Plain HTTP gets `429 Too Many Requests` with `Retry-After` in whole seconds (rounded up)
/// and the fields of draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy:
/// "default";q=<quota>;w=<window>` and `RateLimit: "default";r=0;t=<seconds to wait>`.
/// gRPC and gRPC-Web get the same `RESOURCE_EXHAUSTED` answer as a concurrency refusal, with
/// the wait as `grpc-retry-pushback-ms`.
#[cold]
pub(crate) fn rate_limited<B>(
    protocol: &Protocol,
    rate: &RateLimited,
) -> Response<ResponseBody<B>> {
    if *protocol != Protocol::Http {
        return refusal(protocol, rate.wait);
    }
    let seconds = whole_seconds(rate.wait.min(MAX_ADVERTISED_WAIT));
    let body = Bytes::from_static(RATE_MESSAGE.as_bytes());
    let mut response = Response::new(ResponseBody::refused(Some(body)));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    insert_rate_fields(headers, rate, 0);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What a key's rate had left when a request was admitted, for the `RateLimit` fields of its
/// response: the rate (as a refusal states it), the cells left, and the time until the
/// next cell is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateLeft {
    rate: RateLimited,
    remaining: u64,
}

impl RateLeft {
    /// `remaining` cells of `rate` free, the next one free again in `next`.
    pub(crate) fn new(rate: Rate, next: Duration, remaining: u64) -> Self {
        Self {
            rate: RateLimited::new(rate, next),
            remaining,
        }
    }
}

/// Adds the fields of draft-ietf-httpapi-ratelimit-headers to an admitted request's response:
/// `RateLimit-Policy: "default";q=<quota>;w=<window>` and `RateLimit:
/// "default";r=<remaining>;t=<seconds until the next cell>`, the same syntax as a rate
/// refusal's. A response that already has either field (the inner service describes a
/// limit of its own) keeps its fields, and gets neither.
#[cold]
pub(crate) fn advertise_rate(headers: &mut HeaderMap, left: &RateLeft) {
    if headers.contains_key(RATELIMIT) || headers.contains_key(RATELIMIT_POLICY) {
        return;
    }
    insert_rate_fields(headers, &left.rate, left.remaining.min(MAX_SF_INTEGER));
}

/// The `RateLimit` field's name.
const RATELIMIT: &str = "ratelimit";

/// The `RateLimit-Policy` field's name.
const RATELIMIT_POLICY: &str = "ratelimit-policy";

/// Inserts `RateLimit-Policy` for `rate` and `RateLimit` with `remaining` cells and the
/// seconds until `rate.wait` passes (rounded up, capped to [`MAX_ADVERTISED_WAIT`]).
fn insert_rate_fields(headers: &mut HeaderMap, rate: &RateLimited, remaining: u64) {
    let seconds = whole_seconds(rate.wait.min(MAX_ADVERTISED_WAIT));
    let policy = format!("\"{RATE_POLICY}\";q={};w={}", rate.quota, rate.window);
    let state = format!("\"{RATE_POLICY}\";r={remaining};t={seconds}");
    for (name, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
        let value = HeaderValue::try_from(value).expect("digits and a quoted token");
        headers.insert(name, value);
    }
}

/// A gRPC-Web trailers frame: the flag byte `0x80`, the length (four bytes, big-endian), and
/// the trailers as an HTTP/1 header block.
fn grpc_web_trailers(pushback_ms: u64) -> Vec<u8> {
    let block = format!(
        "grpc-status:{GRPC_RESOURCE_EXHAUSTED}\r\ngrpc-message:{GRPC_MESSAGE}\r\n\
         grpc-retry-pushback-ms:{pushback_ms}\r\n"
    );
    let len = u32::try_from(block.len()).expect("a short header block");
    let mut frame = Vec::with_capacity(5 + block.len());
    frame.push(0x80);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(block.as_bytes());
    frame
}

/// Standard base64 with padding, as `grpc-web-text` bodies are encoded.
fn base64(bytes: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i)) as usize & 63]
            } else {
                b'='
            });
        }
    }
    out
}

/// `Retry-After` counts whole seconds: round up, so a client never comes back early.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// `grpc-retry-pushback-ms` counts whole milliseconds: round up, saturating.
fn whole_millis(d: Duration) -> u64 {
    let millis = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
        assert_eq!(whole_millis(Duration::from_micros(20_001)), 21);
        assert_eq!(whole_millis(Duration::from_millis(20)), 20);
    }

    // Regression: `whole_seconds(Duration::MAX)` added one to `u64::MAX` (a panic in debug on
    // every refusal, `Retry-After: 0` in release).
    #[test]
    fn the_longest_retry_after_is_capped_not_wrapped() {
        assert_eq!(whole_seconds(Duration::MAX), u64::MAX);
        let response = refusal::<()>(&Protocol::Http, Duration::MAX);
        assert_eq!(response.headers()[RETRY_AFTER], "2147484");
        let response = refusal::<()>(&Protocol::Grpc, Duration::MAX);
        assert_eq!(response.headers()["grpc-retry-pushback-ms"], "2147483647");
    }

    #[test]
    fn a_rate_refusal_states_the_policy_in_whole_seconds() {
        let cases = [
            (Rate::per_second(10), 10, 1),
            (Rate::per_minute(500), 500, 60),
            (Rate::new(5, Duration::from_millis(100)).unwrap(), 50, 1),
            (Rate::new(3, Duration::from_millis(1500)).unwrap(), 4, 2),
        ];
        for (rate, quota, window) in cases {
            let refused = RateLimited::new(rate, Duration::from_millis(1));
            assert_eq!((refused.quota, refused.window), (quota, window), "{rate:?}");
        }
        let refused = RateLimited::new(Rate::per_minute(500), Duration::from_millis(2500));
        let response = rate_limited::<()>(&Protocol::Http, &refused);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"default\";q=500;w=60"
        );
        assert_eq!(response.headers()["ratelimit"], "\"default\";r=0;t=3");
        let response = rate_limited::<()>(&Protocol::Grpc, &refused);
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(response.headers()["grpc-retry-pushback-ms"], "2500");
    }

    // A wait past the advertised cap (a rate of one a century) is capped, not overflowed.
    #[test]
    fn a_rate_refusal_caps_its_wait() {
        let refused = RateLimited::new(Rate::per_second(1), Duration::MAX);
        let response = rate_limited::<()>(&Protocol::Http, &refused);
        assert_eq!(response.headers()[RETRY_AFTER], "2147484");
        assert_eq!(response.headers()["ratelimit"], "\"default\";r=0;t=2147484");
    }

    /// The `RateLimit` and `RateLimit-Policy` fields of a refusal after `wait` and of an
    /// admission with `remaining` cells left, by `rate`.
    fn fields(rate: Rate, wait: Duration, remaining: u64) -> [String; 4] {
        let refused = rate_limited::<()>(&Protocol::Http, &RateLimited::new(rate, wait));
        let mut admitted = HeaderMap::new();
        advertise_rate(&mut admitted, &RateLeft::new(rate, wait, remaining));
        let field = |headers: &HeaderMap, name| headers[name].to_str().unwrap().to_owned();
        let headers = refused.headers();
        assert_eq!(
            field(headers, RATELIMIT_POLICY),
            field(&admitted, RATELIMIT_POLICY)
        );
        [
            field(headers, RETRY_AFTER.as_str()),
            field(headers, RATELIMIT_POLICY),
            field(headers, RATELIMIT),
            field(&admitted, RATELIMIT),
        ]
    }

    // The extremes a rate takes (one a day with the longest burst it allows, a burst of 10^9,
    // a billion a nanosecond's worth) make fields whose integers a structured field holds
    // (at most 15 digits), a quota and window of at least 1, and no wrap.
    #[test]
    fn extreme_rates_make_fields_in_range() {
        let day = Duration::from_secs(86_400);
        let daily = Rate::new(1, day).unwrap();
        // A burst of 10^9 at one a day spans 2.7 million years: refused, not wrapped.
        assert!(daily.try_burst(1_000_000_000).is_err());
        assert_eq!(
            fields(daily.burst(53_000), day, 53_000),
            [
                "86400",
                "\"default\";q=1;w=86400",
                "\"default\";r=0;t=86400",
                // The bucket holds the burst: more than one period's quota can be left.
                "\"default\";r=53000;t=86400",
            ]
        );
        let billion = Rate::per_second(1_000_000_000).burst(1_000_000_000);
        assert_eq!(
            fields(billion, Duration::from_nanos(1), 1_000_000_000),
            [
                "1",
                "\"default\";q=1000000000;w=1",
                "\"default\";r=0;t=1",
                "\"default\";r=1000000000;t=1",
            ]
        );
        let fastest = Rate::new(u32::MAX, Duration::from_nanos(u64::from(u32::MAX))).unwrap();
        let [_, policy, ..] = fields(fastest.burst(u32::MAX), Duration::ZERO, 0);
        assert_eq!(policy, "\"default\";q=5000000000;w=5");
        let slowest = Rate::new(1, Duration::from_secs(145 * 365 * 86_400)).unwrap();
        let [retry_after, policy, refused, admitted] = fields(slowest, Duration::MAX, u64::MAX);
        assert_eq!(retry_after, "2147484");
        assert_eq!(policy, "\"default\";q=1;w=4572720000");
        assert_eq!(refused, "\"default\";r=0;t=2147484");
        assert_eq!(admitted, "\"default\";r=999999999999999;t=2147484");
    }

    #[test]
    fn grpc_is_detected_by_content_type() {
        let mut headers = HeaderMap::new();
        assert_eq!(Protocol::of(&headers), Protocol::Http);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(Protocol::of(&headers), Protocol::Http);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert_eq!(Protocol::of(&headers), Protocol::Grpc);
        for (content_type, text) in [
            ("application/grpc-web", false),
            ("application/grpc-web+proto", false),
            ("application/grpc-web-text", true),
            ("application/grpc-web-text+proto", true),
        ] {
            let value = HeaderValue::from_static(content_type);
            headers.insert(CONTENT_TYPE, value.clone());
            assert_eq!(
                Protocol::of(&headers),
                Protocol::GrpcWeb {
                    content_type: value,
                    text
                }
            );
        }
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded.as_bytes(), "{plain}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x80]), b"//6A");
    }

    #[test]
    fn an_admitted_responses_fields_are_capped_and_never_set_over_the_inner_services() {
        // A bucket of `u64::MAX` cells and a wait of `Duration::MAX` still make integers a
        // structured field holds.
        let left = RateLeft::new(Rate::per_second(1), Duration::MAX, u64::MAX);
        let mut headers = HeaderMap::new();
        advertise_rate(&mut headers, &left);
        let capped = whole_seconds(MAX_ADVERTISED_WAIT);
        let state = format!("\"default\";r={MAX_SF_INTEGER};t={capped}");
        assert_eq!(headers["ratelimit"], state.as_str());
        assert_eq!(headers["ratelimit-policy"], "\"default\";q=1;w=1");

        let left = RateLeft::new(Rate::per_minute(6), Duration::from_secs(10), 2);
        for theirs in ["ratelimit", "ratelimit-policy"] {
            let mut headers = HeaderMap::new();
            headers.insert(theirs, HeaderValue::from_static("\"upstream\";r=9"));
            advertise_rate(&mut headers, &left);
            assert_eq!(headers.len(), 1, "{theirs}: {headers:?}");
            assert_eq!(headers[theirs], "\"upstream\";r=9");
        }
    }
}
