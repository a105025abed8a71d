//! What a refused request gets: an HTTP or gRPC answer, or an [`Overloaded`] error.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use gate_core::Backpressure;
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

/// The body of a refused plain HTTP request.
const HTTP_MESSAGE: &str = "server overloaded: retry later\n";

/// Whether a request with these headers is gRPC (`application/grpc`, `application/grpc+proto`,
/// `application/grpc-web`, ...).
#[inline]
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// The answer to a refused request.
///
/// Plain HTTP gets `503 Service Unavailable` with `Retry-After` in whole seconds (rounded up)
/// and a short text body. gRPC gets a trailers-only response: HTTP 200 whose headers carry
/// `grpc-status: 8` (`RESOURCE_EXHAUSTED`), a `grpc-message` and `grpc-retry-pushback-ms`
/// (the hint gRPC's own retry policies read), and no body.
#[cold]
pub(crate) fn refusal<B>(grpc: bool, retry_after: Duration) -> Response<ResponseBody<B>> {
    if grpc {
        let mut response = Response::new(ResponseBody::refused(None));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(
            "grpc-status",
            HeaderValue::from_static(GRPC_RESOURCE_EXHAUSTED),
        );
        headers.insert("grpc-message", HeaderValue::from_static("gate is full"));
        headers.insert(
            "grpc-retry-pushback-ms",
            HeaderValue::from(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)),
        );
        response
    } else {
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

/// `Retry-After` counts whole seconds: round up, so a client never comes back early.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
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
    }

    #[test]
    fn grpc_is_detected_by_content_type() {
        let mut headers = HeaderMap::new();
        assert!(!is_grpc(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&headers));
    }
}
