//! How long until a rate-limit window is full again: OpenAI's Go-style durations
//! (`20ms`, `1.5s`, `6m0s`, `1h2m3.5s`) and Anthropic's RFC 3339 timestamps
//! (`2026-10-21T07:28:00Z`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::date::{days_from_civil, days_in_month};
use super::number::digits;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Reads a Go duration, as OpenAI writes `x-ratelimit-reset-*`: one or more `<number><unit>`
/// terms with units `h`, `m`, `s`, `ms`, `us` (or `µs`) and `ns`, each number maybe with a
/// fraction (`1h2m3.5s`), or a bare `0`. A fraction rounds up to the next nanosecond, the
/// total saturates at [`Duration::MAX`]; a sign, an empty term, an unknown unit or a
/// non-UTF-8 byte gives nothing.
pub(crate) fn parse_go_duration(bytes: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(bytes).ok()?.trim_ascii();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text.as_bytes();
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .iter()
            .position(|b| b.is_ascii_digit() || *b == b'.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let unit = match unit {
            b"h" => 3_600 * NANOS_PER_SEC,
            b"m" => 60 * NANOS_PER_SEC,
            b"s" => NANOS_PER_SEC,
            b"ms" => 1_000_000,
            // `µs` as Go writes it (U+00B5), and with the Greek mu (U+03BC).
            b"us" | [0xC2, 0xB5, b's'] | [0xCE, 0xBC, b's'] => 1_000,
            b"ns" => 1,
            _ => return None,
        };
        total = total.saturating_add(term_nanos(number, unit)?);
        rest = after;
    }
    Some(from_nanos(total))
}

/// `number` (digits, maybe a fraction) times `unit` nanoseconds, the fraction rounded up.
fn term_nanos(number: &[u8], unit: u128) -> Option<u128> {
    let (whole, fraction) = match number.iter().position(|&b| b == b'.') {
        Some(dot) => (&number[..dot], &number[dot + 1..]),
        None => (number, &b""[..]),
    };
    let whole = u128::from(digits(whole)?);
    if number.len() > whole_len(number) && fraction.is_empty() {
        return None;
    }
    let fraction = if fraction.is_empty() {
        0
    } else {
        fraction_nanos(fraction, unit)?
    };
    Some(whole.saturating_mul(unit).saturating_add(fraction))
}

/// How many bytes of `number` come before its dot.
fn whole_len(number: &[u8]) -> usize {
    number
        .iter()
        .position(|&b| b == b'.')
        .unwrap_or(number.len())
}

/// The digits after a dot as a fraction of `unit` nanoseconds, rounded up. Only the first
/// 18 digits are weighed exactly; any non-zero digit past them rounds up one more step, so
/// a longer fraction never reads as less.
fn fraction_nanos(fraction: &[u8], unit: u128) -> Option<u128> {
    if !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let (kept, dropped) = fraction.split_at(fraction.len().min(18));
    let mut numerator = u128::from(digits(kept)?);
    if dropped.iter().any(|&b| b != b'0') {
        numerator += 1;
    }
    let denominator = 10u128.pow(u32::try_from(kept.len()).unwrap_or(18));
    // `numerator < 10^18 + 1` and `unit <= 3.6 * 10^12`: the product fits in a `u128`.
    Some((numerator * unit).div_ceil(denominator))
}

/// A count of nanoseconds as a `Duration`, saturating at [`Duration::MAX`].
fn from_nanos(nanos: u128) -> Duration {
    let secs = nanos / NANOS_PER_SEC;
    let subsec = (nanos % NANOS_PER_SEC) as u32;
    match u64::try_from(secs) {
        Ok(secs) => Duration::new(secs, subsec),
        Err(_) => Duration::MAX,
    }
}

/// Reads an RFC 3339 timestamp (`2026-10-21T07:28:00Z`, `2026-10-21T09:28:00.5+02:00`), as
/// Anthropic writes `anthropic-ratelimit-*-reset`, into the time from `now` until then: zero
/// if it is past, saturating at [`Duration::MAX`]. A year of more than four digits is read
/// (and saturates) rather than rejected, so that a later time never waits less; a fraction
/// of a second rounds up to the next nanosecond. A day the month does not have, an hour
/// past 23, a minute past 59, a second past 60, an offset past 23:59, or any other form
/// gives nothing.
pub(crate) fn parse_rfc3339_from(bytes: &[u8], now: SystemTime) -> Option<Duration> {
    let at = parse_rfc3339(bytes.trim_ascii())?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let now = i128::from(now.as_secs()) * NANOS_PER_SEC as i128 + i128::from(now.subsec_nanos());
    let wait = at.saturating_sub(now);
    Some(from_nanos(u128::try_from(wait).unwrap_or(0)))
}

/// Nanoseconds from the Unix epoch to an RFC 3339 timestamp, negative before it, saturating
/// for years too far ahead to count.
fn parse_rfc3339(bytes: &[u8]) -> Option<i128> {
    let dash = bytes.iter().position(|&b| b == b'-')?;
    let (year, rest) = bytes.split_at(dash);
    if year.len() < 4 {
        return None;
    }
    let year = digits(year)?;
    let rest = &rest[1..];
    let (month, rest) = fixed(rest, 2, Some(b'-'))?;
    let (day, rest) = fixed(rest, 2, None)?;
    let (&separator, rest) = rest.split_first()?;
    if !matches!(separator, b'T' | b't' | b' ') {
        return None;
    }
    let (hour, rest) = fixed(rest, 2, Some(b':'))?;
    let (minute, rest) = fixed(rest, 2, Some(b':'))?;
    let (second, mut rest) = fixed(rest, 2, None)?;
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut fraction = 0;
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let end = after_dot
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(after_dot.len());
        if end == 0 {
            return None;
        }
        fraction = fraction_nanos(&after_dot[..end], NANOS_PER_SEC)?;
        rest = &after_dot[end..];
    }
    let offset_secs: i128 = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), offset @ ..] => {
            let (hours, offset) = fixed(offset, 2, Some(b':'))?;
            let (minutes, offset) = fixed(offset, 2, None)?;
            if !offset.is_empty() || hours > 23 || minutes > 59 {
                return None;
            }
            let secs = i128::from(hours * 3_600 + minutes * 60);
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    // `days_from_civil` counts from 1970 on; earlier times are past either way.
    let days = if year < 1970 {
        -1
    } else {
        i128::try_from(days_from_civil(year, month, day)).unwrap_or(i128::MAX)
    };
    let secs = days
        .saturating_mul(86_400)
        .saturating_add(i128::from(hour * 3_600 + minute * 60 + second))
        .saturating_sub(offset_secs);
    Some(
        secs.saturating_mul(NANOS_PER_SEC as i128)
            .saturating_add(fraction as i128),
    )
}

/// `len` ASCII digits at the start of `bytes`, then `then` if given: the number and what
/// follows.
fn fixed(bytes: &[u8], len: usize, then: Option<u8>) -> Option<(u64, &[u8])> {
    if bytes.len() < len {
        return None;
    }
    let (number, mut rest) = bytes.split_at(len);
    let number = digits(number)?;
    if let Some(then) = then {
        rest = rest.strip_prefix(&[then])?;
    }
    Some((number, rest))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn go(text: &str) -> Option<Duration> {
        parse_go_duration(text.as_bytes())
    }

    #[test]
    fn go_durations_read_as_openai_writes_them() {
        let ms = Duration::from_millis;
        assert_eq!(go("20ms"), Some(ms(20)));
        assert_eq!(go("1.5s"), Some(ms(1_500)));
        assert_eq!(go("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(go("1h2m3.5s"), Some(ms(3_723_500)));
        assert_eq!(go("0s"), Some(Duration::ZERO));
        assert_eq!(go("0"), Some(Duration::ZERO));
        assert_eq!(go(" 59.817s "), Some(ms(59_817)));
        assert_eq!(go("2m59.56s"), Some(ms(179_560)));
        assert_eq!(go("3us"), Some(Duration::from_micros(3)));
        assert_eq!(go("3µs"), Some(Duration::from_micros(3)));
        assert_eq!(go("7ns"), Some(Duration::from_nanos(7)));
        // Fractions round up to the next nanosecond.
        assert_eq!(go("0.0000000001s"), Some(Duration::from_nanos(1)));
        assert_eq!(go("1.5ns"), Some(Duration::from_nanos(2)));
        for bad in [
            "", "s", "1", "-1s", "+1s", "1.s", ".5s", "1.5.5s", "1d", "1 s", "1sm", "1e3s", "ms",
            "1h-2m", "NaN", "inf",
        ] {
            assert_eq!(go(bad), None, "{bad:?}");
        }
        assert_eq!(parse_go_duration(b"1\xffs"), None);
    }

    // Regression guard: numbers and sums too large for a `Duration` saturate, never wrap.
    #[test]
    fn huge_durations_saturate() {
        assert_eq!(go("99999999999999999999999h"), Some(Duration::MAX));
        assert_eq!(go("18446744073709551615s1s"), Some(Duration::MAX));
        assert_eq!(go("5124095576030432h"), Some(Duration::MAX));
        let big = go("5124095576030431h").unwrap();
        assert!(big < Duration::MAX && big > Duration::from_secs(u64::MAX - 7_200));
        assert_eq!(
            go("0.999999999999999999999999999s"),
            Some(Duration::from_secs(1))
        );
    }

    fn at(text: &str, now_secs: u64) -> Option<Duration> {
        parse_rfc3339_from(text.as_bytes(), UNIX_EPOCH + Duration::from_secs(now_secs))
    }

    // 2026-10-21T07:28:00Z
    const OCT_21: u64 = 1_792_567_680;

    #[test]
    fn rfc3339_times_read_against_now() {
        assert_eq!(
            parse_rfc3339(b"2026-10-21T07:28:00Z"),
            Some(i128::from(OCT_21) * 1_000_000_000)
        );
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(at("2026-10-21T07:28:00Z", OCT_21 - 30), secs(30));
        assert_eq!(at("2026-10-21t07:28:00z", OCT_21 - 30), secs(30));
        assert_eq!(at("2026-10-21 07:28:00Z", OCT_21 - 30), secs(30));
        assert_eq!(at("2026-10-21T09:28:00+02:00", OCT_21 - 30), secs(30));
        assert_eq!(at("2026-10-21T05:28:00-02:00", OCT_21 - 30), secs(30));
        assert_eq!(
            at("2026-10-21T07:28:00.25Z", OCT_21 - 30),
            Some(Duration::from_millis(30_250))
        );
        assert_eq!(
            at("2026-10-21T07:28:00.0000000001Z", OCT_21),
            Some(Duration::from_nanos(1))
        );
        // Past, and before the epoch: zero.
        assert_eq!(at("2026-10-21T07:28:00Z", OCT_21 + 60), secs(0));
        assert_eq!(at("1900-01-01T00:00:00Z", OCT_21), secs(0));
        assert_eq!(at("1970-01-01T00:00:00+01:00", 0), secs(0));
        for bad in [
            "",
            "2026-10-21",
            "2026-10-21T07:28:00",
            "2026-10-21T07:28Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-10-21T24:00:00Z",
            "2026-10-21T07:60:00Z",
            "2026-10-21T07:28:61Z",
            "2026-10-21T07:28:00.Z",
            "2026-10-21T07:28:00+24:00",
            "2026-10-21T07:28:00+02",
            "2026-10-21T07:28:00+0200",
            "26-10-21T07:28:00Z",
            "+2026-10-21T07:28:00Z",
            "2026-1-21T07:28:00Z",
            "2026-10-21X07:28:00Z",
            "Wed, 21 Oct 2026 07:28:00 GMT",
        ] {
            assert_eq!(at(bad, 0), None, "{bad:?}");
        }
        assert_eq!(
            parse_rfc3339_from(b"2026-10-21T07:28:00\xff", UNIX_EPOCH),
            None
        );
    }

    #[test]
    fn absurd_years_saturate() {
        let far = at("100000000-01-01T00:00:00Z", OCT_21).unwrap();
        assert!(far > Duration::from_secs(99_000_000 * 365 * 86_400));
        for year in [
            "1000000000000",
            "18446744073709551615",
            "99999999999999999999999",
        ] {
            let text = format!("{year}-01-01T00:00:00Z");
            assert_eq!(at(&text, OCT_21), Some(Duration::MAX), "{year}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            now in any::<u64>(),
        ) {
            let now = UNIX_EPOCH.checked_add(Duration::from_secs(now)).unwrap_or(UNIX_EPOCH);
            let _ = parse_go_duration(&bytes);
            let _ = parse_rfc3339_from(&bytes, now);
        }

        #[test]
        fn go_durations_add_up_their_terms(h in 0..10_000u64, m in 0..60u64, ms in 0..60_000u64) {
            let text = format!("{h}h{m}m{}.{:03}s", ms / 1_000, ms % 1_000);
            let expected = Duration::from_secs(h * 3_600 + m * 60) + Duration::from_millis(ms);
            prop_assert_eq!(go(&text), Some(expected));
        }

        #[test]
        fn a_later_time_never_waits_less(a in 0..20_000_000_000u64, b in 0..20_000_000_000u64, now in 0..5_000_000_000u64) {
            let (early, late) = (a.min(b), a.max(b));
            let stamp = |secs: u64| {
                let days = secs / 86_400;
                let (y, mo, d) = civil_from_days(days);
                let rem = secs % 86_400;
                format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3_600, rem / 60 % 60, rem % 60)
            };
            let early_wait = at(&stamp(early), now).unwrap();
            let late_wait = at(&stamp(late), now).unwrap();
            prop_assert!(early_wait <= late_wait);
            prop_assert_eq!(late_wait, Duration::from_secs(late.saturating_sub(now)));
        }
    }

    /// The inverse of `days_from_civil` (Howard Hinnant's `civil_from_days`), for the tests.
    fn civil_from_days(days: u64) -> (u64, u64, u64) {
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + u64::from(m <= 2);
        (y, m, d)
    }
}
