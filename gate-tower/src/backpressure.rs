//! [`Overload`]: an upstream's "I am overloaded, come back later", read from an HTTP or gRPC
//! response.

use std::error::Error;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gate_core::{Backpressure, Outcome};
use http::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

/// The gRPC status code `RESOURCE_EXHAUSTED`.
const RESOURCE_EXHAUSTED: u8 = 8;

/// The gRPC status code `UNAVAILABLE`.
const UNAVAILABLE: u8 = 14;

/// An overload signal from the server that answered a request: an HTTP `429 Too Many
/// Requests` or `503 Service Unavailable`, or a gRPC status `RESOURCE_EXHAUSTED` (8) or
/// `UNAVAILABLE` (14), with the time the server asked callers to stay away, if it said.
///
/// Not to be confused with [`Overloaded`](crate::Overloaded), which is this crate's own
/// refusal: `Overload` is what a service *behind* a [`GateLayer`](crate::GateLayer)
/// answered.
///
/// - **HTTP.** The hint is the `Retry-After` header, in delta-seconds (`Retry-After: 2`) or
///   as an HTTP-date (`Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`, read against the system
///   clock; a date in the past means "now"). A malformed value gives no hint.
/// - **gRPC.** The status is read from the headers of a trailers-only response (what tonic
///   sends when a handler returns an error) or from trailers
///   ([`from_trailers`](Self::from_trailers)). The hint is `grpc-retry-pushback-ms`, in
///   milliseconds; a negative pushback ("do not retry") gives no hint.
///
/// A [`GateLayer`](crate::GateLayer) drawing from a [`Limiter`](gate_core::Limiter) reads
/// every response this way and reports it as [`Outcome::Overload`]; the same reading is
/// public so that client code can turn a response into an error that gate-core's
/// [`Retry`](gate_core::Retry) understands: `Overload` implements [`Backpressure`] and
/// [`Error`].
///
/// # Examples
///
/// Turning an upstream's 429 into an error a retry policy waits out:
///
/// ```
/// use std::time::Duration;
/// use gate_core::Backpressure;
/// use gate_tower::Overload;
/// use http::{Response, StatusCode, header::RETRY_AFTER};
///
/// let response = Response::builder()
///     .status(StatusCode::TOO_MANY_REQUESTS)
///     .header(RETRY_AFTER, "2")
///     .body(())
///     .unwrap();
/// let overload = Overload::from_response(&response).unwrap();
/// assert!(overload.is_overload());
/// assert_eq!(Backpressure::retry_after(&overload), Some(Duration::from_secs(2)));
/// assert_eq!(overload.status(), Some(StatusCode::TOO_MANY_REQUESTS));
/// assert_eq!(overload.to_string(), "server overloaded: HTTP 429 Too Many Requests, retry after 2s");
///
/// assert!(Overload::from_response(&Response::new(())).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overload {
    signal: Signal,
    retry_after: Option<Duration>,
}

/// What said "overloaded".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Http(StatusCode),
    Grpc(u8),
}

impl Overload {
    /// Reads the overload signal of `response`'s head, if it carries one: its status, or the
    /// `grpc-status` of a trailers-only gRPC response.
    pub fn from_response<B>(response: &Response<B>) -> Option<Self> {
        Self::from_head(response.status(), response.headers())
    }

    /// Like [`from_response`](Self::from_response), from a status and headers.
    pub fn from_head(status: StatusCode, headers: &HeaderMap) -> Option<Self> {
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            let retry_after = headers
                .get(RETRY_AFTER)
                .and_then(|value| parse_retry_after(value, SystemTime::now()));
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
        let retry_after = trailers
            .get("grpc-retry-pushback-ms")
            .and_then(|value| digits(value.as_bytes()))
            .map(Duration::from_millis);
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

impl From<Overload> for Outcome {
    fn from(overload: Overload) -> Self {
        overload.outcome()
    }
}

impl fmt::Display for Overload {
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

impl Error for Overload {}

impl Backpressure for Overload {
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
    match Overload::from_head(status, headers) {
        Some(overload) => overload.outcome(),
        None => Outcome::Success,
    }
}

/// Reads `Retry-After`: delta-seconds, or an IMF-fixdate HTTP-date measured against `now`.
fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let bytes = value.as_bytes();
    if let Some(seconds) = digits(bytes) {
        return Some(Duration::from_secs(seconds));
    }
    let date = parse_http_date(bytes)?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A non-empty run of ASCII digits that fits in a `u64`.
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires
/// senders to use. The obsolete RFC 850 and asctime forms are not read.
fn parse_http_date(bytes: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(bytes).ok()?;
    let rest = text.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u64 = parts.next()?.parse().ok()?;
    let mut time = parts.next()?.split(':');
    let hour: u64 = time.next()?.parse().ok()?;
    let minute: u64 = time.next()?.parse().ok()?;
    let second: u64 = time.next()?.parse().ok()?;
    if parts.next()? != "GMT"
        || parts.next().is_some()
        || time.next().is_some()
        || !(1..=31).contains(&day)
        || year < 1970
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar, for years
/// from 1970 on (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: StatusCode, headers: &[(&'static str, &'static str)]) -> Option<Overload> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        Overload::from_head(status, &map)
    }

    #[test]
    fn http_429_and_503_are_overloads_with_their_retry_after() {
        let overload = head(StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "2")]).unwrap();
        assert_eq!(overload.retry_after(), Some(Duration::from_secs(2)));
        let overload = head(StatusCode::SERVICE_UNAVAILABLE, &[]).unwrap();
        assert_eq!(overload.retry_after(), None);
        assert_eq!(overload.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
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
            assert_eq!(Overload::from_trailers(&map), None, "grpc-status {code}");
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
    fn retry_after_reads_an_http_date_against_now() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770); // Sun, 06 Nov 1994 08:49:30
        let value = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_retry_after(&value, now), Some(Duration::from_secs(7)));
        // A date already past means "now".
        let later = now + Duration::from_secs(60);
        assert_eq!(parse_retry_after(&value, later), Some(Duration::ZERO));
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "",
        ] {
            assert_eq!(
                parse_retry_after(&HeaderValue::from_static(bad), now),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 10, 21), 20_747);
        // Leap day.
        assert_eq!(
            days_from_civil(2024, 2, 29) + 1,
            days_from_civil(2024, 3, 1)
        );
    }
}
