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
///   clock; a date in the past means "now"). A fraction of a second (`1.5`) rounds up. A
///   malformed value (a sign, a non-UTF-8 byte, a day the month does not have, another date
///   format) gives no hint.
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
///
/// Total and monotone: every value gives a hint or none, never a panic, and of two valid
/// values the later one never gives the shorter hint. Numbers too big for a `u64` saturate
/// rather than wrap or fail, so an absurd value means "a very long time" (for the limiter to
/// cap), not "no hint".
fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let bytes = value.as_bytes().trim_ascii();
    if let Some(delay) = delta_seconds(bytes) {
        return Some(delay);
    }
    let date = parse_http_date(bytes)?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Some(Duration::from_secs(date).saturating_sub(now))
}

/// Delta-seconds: digits, read saturating. A fraction (`1.5`, which RFC 9110 does not
/// allow but some servers send) rounds up to the next whole second, so that a client never
/// comes back early; a sign (`-1`, `+1`) or anything else is not a delay.
fn delta_seconds(bytes: &[u8]) -> Option<Duration> {
    let (whole, fraction) = match bytes.iter().position(|&b| b == b'.') {
        Some(dot) => (&bytes[..dot], Some(&bytes[dot + 1..])),
        None => (bytes, None),
    };
    let seconds = digits(whole)?;
    let round_up = match fraction {
        None => false,
        Some(fraction) => {
            digits(fraction)?;
            fraction.iter().any(|&b| b != b'0')
        }
    };
    Some(Duration::from_secs(
        seconds.saturating_add(u64::from(round_up)),
    ))
}

/// A non-empty run of ASCII digits, read saturating at `u64::MAX`.
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0u64, |n, &b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires
/// senders to use, into seconds since the Unix epoch: saturating at `u64::MAX` for years
/// too far ahead to count, and zero for dates before 1970 (which are past either way). The
/// obsolete RFC 850 and asctime forms are not read, nor days a month does not have.
fn parse_http_date(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let rest = text.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day = number(parts.next()?)?;
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
    let year = number(parts.next()?)?;
    let mut time = parts.next()?.split(':');
    let hour = number(time.next()?)?;
    let minute = number(time.next()?)?;
    let second = number(time.next()?)?;
    if parts.next()? != "GMT"
        || parts.next().is_some()
        || time.next().is_some()
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    if year < 1970 {
        return Some(0);
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + u128::from(hour * 3600 + minute * 60 + second);
    Some(u64::try_from(seconds).unwrap_or(u64::MAX))
}

/// A date's field: ASCII digits only (`str::parse` would take a sign), saturating.
fn number(text: &str) -> Option<u64> {
    digits(text.as_bytes())
}

/// How many days `month` (1 to 12) of `year` has in the proleptic Gregorian calendar.
fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar, for years
/// from 1970 on (Howard Hinnant's `days_from_civil`), in `u128` so that no `u64` year
/// overflows it.
fn days_from_civil(year: u64, month: u64, day: u64) -> u128 {
    let year = u128::from(if month <= 2 { year - 1 } else { year });
    let (month, day) = (u128::from(month), u128::from(day));
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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

    fn retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
        parse_retry_after(&HeaderValue::from_bytes(value).unwrap(), now)
    }

    // Regression: a year of 10^12 overflowed `days * 86_400` (a panic in debug, a wrapped,
    // short pause in release).
    #[test]
    fn absurd_years_saturate_instead_of_overflowing() {
        let now = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let saturated = Some(Duration::from_secs(u64::MAX - 1_790_000_000));
        let far = retry_after(b"Mon, 01 Jan 100000000 00:00:00 GMT", now).unwrap();
        assert!(far > Duration::from_secs(100_000_000 * 365 * 86_400));
        assert!(Some(far) < saturated);
        for year in [
            "1000000000000",
            "18446744073709551615",
            "99999999999999999999999",
        ] {
            let date = format!("Mon, 01 Jan {year} 00:00:00 GMT");
            assert_eq!(retry_after(date.as_bytes(), now), saturated, "{year}");
        }
        // Before the epoch is past, like any past date: "now".
        assert_eq!(
            retry_after(b"Thu, 01 Jan 1000 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    // Regression: `18446744073709551616` (one more than a `u64`) gave no hint at all, a
    // shorter wait than `18446744073709551615`.
    #[test]
    fn delta_seconds_saturate_round_up_and_reject_signs() {
        let now = UNIX_EPOCH;
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(retry_after(b"18446744073709551615", now), secs(u64::MAX));
        assert_eq!(retry_after(b"18446744073709551616", now), secs(u64::MAX));
        assert_eq!(
            retry_after(b"99999999999999999999999999", now),
            secs(u64::MAX)
        );
        assert_eq!(retry_after(b"1000000000000", now), secs(1_000_000_000_000));
        assert_eq!(retry_after(b" 7 ", now), secs(7));
        assert_eq!(retry_after(b"1.5", now), secs(2));
        assert_eq!(retry_after(b"2.000", now), secs(2));
        assert_eq!(retry_after(b"0.001", now), secs(1));
        assert_eq!(retry_after(b"18446744073709551615.5", now), secs(u64::MAX));
        for bad in [
            &b"-1"[..],
            b"+1",
            b"1.",
            b".5",
            b"1.-5",
            b"1e3",
            b"0x10",
            b"\xff\xfe",
            b"1 2",
        ] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_a_month_does_not_have_are_malformed() {
        let now = UNIX_EPOCH;
        assert!(retry_after(b"Sat, 29 Feb 2025 00:00:00 GMT", now).is_none());
        assert!(retry_after(b"Mon, 31 Apr 2026 00:00:00 GMT", now).is_none());
        assert!(retry_after(b"Thu, 29 Feb 2024 00:00:00 GMT", now).is_some());
        assert!(retry_after(b"Tue, 29 Feb 2000 00:00:00 GMT", now).is_some());
        assert!(retry_after(b"Sun, 29 Feb 2100 00:00:00 GMT", now).is_none());
        assert!(retry_after(b"Sun, +6 Nov 1994 08:49:37 GMT", now).is_none());
    }

    #[test]
    fn pushback_saturates() {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", HeaderValue::from_static("8"));
        map.insert(
            "grpc-retry-pushback-ms",
            HeaderValue::from_static("99999999999999999999999"),
        );
        let overload = Overload::from_trailers(&map).unwrap();
        assert_eq!(
            overload.retry_after(),
            Some(Duration::from_millis(u64::MAX))
        );
    }

    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];

    /// An IMF-fixdate for the fields, with a weekday the parser does not check.
    fn date((year, month, day, hour, minute, second): (u64, usize, u64, u64, u64, u64)) -> String {
        let month_name = MONTHS[month - 1];
        format!("Mon, {day:02} {month_name} {year} {hour:02}:{minute:02}:{second:02} GMT")
    }

    fn date_fields() -> impl Strategy<Value = (u64, usize, u64, u64, u64, u64)> {
        let year = prop_oneof![1960..2200u64, any::<u64>()];
        (year, 1..=12usize, 1..=28u64, 0..24u64, 0..60u64, 0..60u64)
    }

    proptest! {
        #[test]
        fn any_header_bytes_parse_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..48),
            now in any::<u64>(),
        ) {
            let now = UNIX_EPOCH.checked_add(Duration::from_secs(now)).unwrap_or(UNIX_EPOCH);
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let _ = parse_retry_after(&value, now);
                let mut map = HeaderMap::new();
                map.insert(RETRY_AFTER, value.clone());
                map.insert("grpc-status", HeaderValue::from_static("8"));
                map.insert("grpc-retry-pushback-ms", value);
                let _ = Overload::from_head(StatusCode::TOO_MANY_REQUESTS, &map);
                let _ = Overload::from_trailers(&map);
            }
        }

        #[test]
        fn a_bigger_delay_never_waits_less(a in any::<u64>(), b in any::<u64>(), frac in 0..1000u32) {
            let (low, high) = (a.min(b), a.max(b));
            let low = retry_after(format!("{low}").as_bytes(), UNIX_EPOCH).unwrap();
            let high_frac = retry_after(format!("{high}.{frac:03}").as_bytes(), UNIX_EPOCH).unwrap();
            let high = retry_after(format!("{high}").as_bytes(), UNIX_EPOCH).unwrap();
            prop_assert!(low <= high && high <= high_frac);
        }

        #[test]
        fn a_later_date_never_waits_less(
            a in date_fields(),
            b in date_fields(),
            now in 0..10_000_000_000u64,
        ) {
            let now = UNIX_EPOCH + Duration::from_secs(now);
            let (early, late) = if a <= b { (a, b) } else { (b, a) };
            let early = retry_after(date(early).as_bytes(), now).unwrap();
            let late = retry_after(date(late).as_bytes(), now).unwrap();
            prop_assert!(early <= late, "{early:?} > {late:?}");
        }
    }
}
