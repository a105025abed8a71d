//! When to come back: `Retry-After`, `retry-after-ms` and `grpc-retry-pushback-ms`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, RETRY_AFTER};

use super::date::parse_http_date;
use super::number::{ceil_decimal, digits};

/// OpenAI's `retry-after-ms` header: how long to wait, in milliseconds.
pub const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// gRPC's `grpc-retry-pushback-ms` trailer: how long to wait before retrying, in
/// milliseconds (gRFC A6).
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// How long an HTTP response asks its client to stay away, reading HTTP-dates against the
/// system clock: `retry-after-ms` if it is valid, else `Retry-After`.
///
/// See [`retry_after_at`] for a given `now`, and the [module docs](super) for the forms
/// read and the treatment of hostile values.
///
/// ```
/// use std::time::Duration;
/// use gate_core::hint;
/// use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
///
/// let mut headers = HeaderMap::new();
/// assert_eq!(hint::retry_after(&headers), None);
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("1.5"));
/// assert_eq!(hint::retry_after(&headers), Some(Duration::from_secs(2)));
/// ```
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// Like [`retry_after`], reading an HTTP-date in `Retry-After` against `now`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use gate_core::hint;
/// use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
///
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_770); // Sun, 06 Nov 1994 08:49:30 GMT
/// let mut headers = HeaderMap::new();
/// headers.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
/// assert_eq!(hint::retry_after_at(&headers, now), Some(Duration::from_secs(7)));
/// ```
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    headers
        .get(RETRY_AFTER_MS)
        .and_then(|value| parse_retry_after_ms(value.as_bytes()))
        .or_else(|| {
            headers
                .get(RETRY_AFTER)
                .and_then(|value| parse_retry_after(value.as_bytes(), now))
        })
}

/// Reads one `Retry-After` value: delta-seconds (a fraction rounds up to the next second),
/// or an IMF-fixdate measured against `now` (a date already past is zero).
///
/// Numbers too big for a `u64`, and dates too far ahead to count, saturate rather than give
/// no hint, so that a larger value never means a shorter wait.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use gate_core::hint::parse_retry_after;
///
/// assert_eq!(parse_retry_after(b"120", UNIX_EPOCH), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after(b"-1", UNIX_EPOCH), None);
/// assert_eq!(parse_retry_after(b"99999999999999999999", UNIX_EPOCH), Some(Duration::from_secs(u64::MAX)));
/// ```
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let value = value.trim_ascii();
    if let Some(seconds) = ceil_decimal(value) {
        return Some(Duration::from_secs(seconds));
    }
    let date = parse_http_date(value)?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Some(Duration::from_secs(date).saturating_sub(now))
}

/// Reads one `retry-after-ms` value: milliseconds, a fraction rounding up to the next
/// millisecond, saturating.
///
/// ```
/// use std::time::Duration;
/// use gate_core::hint::parse_retry_after_ms;
///
/// assert_eq!(parse_retry_after_ms(b"150"), Some(Duration::from_millis(150)));
/// assert_eq!(parse_retry_after_ms(b"0.2"), Some(Duration::from_millis(1)));
/// assert_eq!(parse_retry_after_ms(b"NaN"), None);
/// ```
pub fn parse_retry_after_ms(value: &[u8]) -> Option<Duration> {
    ceil_decimal(value.trim_ascii()).map(Duration::from_millis)
}

/// How long gRPC trailers (or the headers of a trailers-only response) ask the client to
/// wait before retrying: `grpc-retry-pushback-ms`.
///
/// ```
/// use std::time::Duration;
/// use gate_core::hint;
/// use http::{HeaderMap, HeaderValue};
///
/// let mut trailers = HeaderMap::new();
/// trailers.insert(hint::GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("1500"));
/// assert_eq!(hint::grpc_retry_pushback(&trailers), Some(Duration::from_millis(1500)));
/// ```
pub fn grpc_retry_pushback(trailers: &HeaderMap) -> Option<Duration> {
    trailers
        .get(GRPC_RETRY_PUSHBACK_MS)
        .and_then(|value| parse_grpc_retry_pushback(value.as_bytes()))
}

/// Reads one `grpc-retry-pushback-ms` value: whole milliseconds, saturating. A negative
/// value, which gRFC A6 uses for "do not retry", and anything but digits give no hint.
///
/// ```
/// use std::time::Duration;
/// use gate_core::hint::parse_grpc_retry_pushback;
///
/// assert_eq!(parse_grpc_retry_pushback(b"250"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_retry_pushback(b"-1"), None);
/// ```
pub fn parse_grpc_retry_pushback(value: &[u8]) -> Option<Duration> {
    digits(value).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn at(value: &[u8], now: SystemTime) -> Option<Duration> {
        parse_retry_after(value, now)
    }

    #[test]
    fn retry_after_reads_an_http_date_against_now() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770); // Sun, 06 Nov 1994 08:49:30
        let value = b"Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(at(value, now), Some(Duration::from_secs(7)));
        // A date already past means "now".
        let later = now + Duration::from_secs(60);
        assert_eq!(at(value, later), Some(Duration::ZERO));
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "",
        ] {
            assert_eq!(at(bad.as_bytes(), now), None, "{bad}");
        }
    }

    // Regression: a year of 10^12 overflowed `days * 86_400` (a panic in debug, a wrapped,
    // short pause in release).
    #[test]
    fn absurd_years_saturate_instead_of_overflowing() {
        let now = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let saturated = Some(Duration::from_secs(u64::MAX - 1_790_000_000));
        let far = at(b"Mon, 01 Jan 100000000 00:00:00 GMT", now).unwrap();
        assert!(far > Duration::from_secs(100_000_000 * 365 * 86_400));
        assert!(Some(far) < saturated);
        for year in [
            "1000000000000",
            "18446744073709551615",
            "99999999999999999999999",
        ] {
            let date = format!("Mon, 01 Jan {year} 00:00:00 GMT");
            assert_eq!(at(date.as_bytes(), now), saturated, "{year}");
        }
        // Before the epoch is past, like any past date: "now".
        assert_eq!(
            at(b"Thu, 01 Jan 1000 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    // Regression: `18446744073709551616` (one more than a `u64`) gave no hint at all, a
    // shorter wait than `18446744073709551615`.
    #[test]
    fn delta_seconds_saturate_round_up_and_reject_signs() {
        let now = UNIX_EPOCH;
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(at(b"18446744073709551615", now), secs(u64::MAX));
        assert_eq!(at(b"18446744073709551616", now), secs(u64::MAX));
        assert_eq!(at(b"99999999999999999999999999", now), secs(u64::MAX));
        assert_eq!(at(b"1000000000000", now), secs(1_000_000_000_000));
        assert_eq!(at(b" 7 ", now), secs(7));
        assert_eq!(at(b"1.5", now), secs(2));
        assert_eq!(at(b"2.000", now), secs(2));
        assert_eq!(at(b"0.001", now), secs(1));
        assert_eq!(at(b"18446744073709551615.5", now), secs(u64::MAX));
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
            assert_eq!(at(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_a_month_does_not_have_are_malformed() {
        let now = UNIX_EPOCH;
        assert!(at(b"Sat, 29 Feb 2025 00:00:00 GMT", now).is_none());
        assert!(at(b"Mon, 31 Apr 2026 00:00:00 GMT", now).is_none());
        assert!(at(b"Thu, 29 Feb 2024 00:00:00 GMT", now).is_some());
        assert!(at(b"Tue, 29 Feb 2000 00:00:00 GMT", now).is_some());
        assert!(at(b"Sun, 29 Feb 2100 00:00:00 GMT", now).is_none());
        assert!(at(b"Sun, +6 Nov 1994 08:49:37 GMT", now).is_none());
    }

    #[test]
    fn retry_after_ms_reads_fractions_up_and_saturates() {
        let ms = |m: u64| Some(Duration::from_millis(m));
        assert_eq!(parse_retry_after_ms(b"150"), ms(150));
        assert_eq!(parse_retry_after_ms(b" 20 "), ms(20));
        assert_eq!(parse_retry_after_ms(b"20.5"), ms(21));
        assert_eq!(parse_retry_after_ms(b"0.000"), ms(0));
        assert_eq!(
            parse_retry_after_ms(b"99999999999999999999999"),
            ms(u64::MAX)
        );
        for bad in [&b"NaN"[..], b"inf", b"-5", b"1e3", b"", b"\xff"] {
            assert_eq!(parse_retry_after_ms(bad), None, "{bad:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn retry_after_ms_wins_when_valid() {
        let now = UNIX_EPOCH;
        let read = |pairs| retry_after_at(&headers(pairs), now);
        assert_eq!(read(&[]), None);
        assert_eq!(read(&[("retry-after", "2")]), Some(Duration::from_secs(2)));
        assert_eq!(
            read(&[("retry-after", "2"), ("retry-after-ms", "150")]),
            Some(Duration::from_millis(150))
        );
        assert_eq!(
            read(&[("retry-after-ms", "150")]),
            Some(Duration::from_millis(150))
        );
        // A malformed millisecond hint gives way to the seconds.
        assert_eq!(
            read(&[("retry-after", "2"), ("retry-after-ms", "NaN")]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(read(&[("retry-after", "soon")]), None);
    }

    #[test]
    fn grpc_pushback_reads_whole_milliseconds_only() {
        let read = |pairs| grpc_retry_pushback(&headers(pairs));
        assert_eq!(read(&[]), None);
        assert_eq!(
            read(&[("grpc-retry-pushback-ms", "1500")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            read(&[("grpc-retry-pushback-ms", "99999999999999999999999")]),
            Some(Duration::from_millis(u64::MAX))
        );
        // A negative pushback means "do not retry": no hint.
        for bad in ["-1", "1.5", " 1", ""] {
            let mut map = HeaderMap::new();
            map.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static(bad));
            assert_eq!(grpc_retry_pushback(&map), None, "{bad:?}");
        }
    }

    #[test]
    fn system_clock_convenience_reads_the_same_numbers() {
        let map = headers(&[("retry-after", "3")]);
        assert_eq!(retry_after(&map), Some(Duration::from_secs(3)));
        // A date far in the future is far in the future against the system clock too.
        let map = headers(&[("retry-after", "Fri, 01 Jan 9999 00:00:00 GMT")]);
        assert!(retry_after(&map).unwrap() > Duration::from_secs(7_000 * 365 * 86_400));
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
            let _ = parse_retry_after(&bytes, now);
            let _ = parse_retry_after_ms(&bytes);
            let _ = parse_grpc_retry_pushback(&bytes);
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let mut map = HeaderMap::new();
                map.insert(RETRY_AFTER, value.clone());
                map.insert(RETRY_AFTER_MS, value.clone());
                map.insert(GRPC_RETRY_PUSHBACK_MS, value);
                let _ = retry_after_at(&map, now);
                let _ = grpc_retry_pushback(&map);
            }
        }

        #[test]
        fn a_bigger_delay_never_waits_less(a in any::<u64>(), b in any::<u64>(), frac in 0..1000u32) {
            let (low, high) = (a.min(b), a.max(b));
            let low = at(format!("{low}").as_bytes(), UNIX_EPOCH).unwrap();
            let high_frac = at(format!("{high}.{frac:03}").as_bytes(), UNIX_EPOCH).unwrap();
            let high = at(format!("{high}").as_bytes(), UNIX_EPOCH).unwrap();
            prop_assert!(low <= high && high <= high_frac);
        }

        #[test]
        fn more_milliseconds_never_wait_less(a in any::<u64>(), b in any::<u64>(), frac in 0..1000u32) {
            let (low, high) = (a.min(b), a.max(b));
            let low = parse_retry_after_ms(format!("{low}").as_bytes()).unwrap();
            let high_frac = parse_retry_after_ms(format!("{high}.{frac:03}").as_bytes()).unwrap();
            let high = parse_retry_after_ms(format!("{high}").as_bytes()).unwrap();
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
            let early = at(date(early).as_bytes(), now).unwrap();
            let late = at(date(late).as_bytes(), now).unwrap();
            prop_assert!(early <= late, "{early:?} > {late:?}");
        }
    }
}
