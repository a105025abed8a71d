//! HTTP-dates: the IMF-fixdate form (`Sun, 06 Nov 1994 08:49:37 GMT`) that RFC 9110 requires
//! senders to use.

use super::number::digits;

/// Parses an IMF-fixdate into seconds since the Unix epoch: saturating at `u64::MAX` for
/// years too far ahead to count, and zero for dates before 1970 (which are past either way).
/// The obsolete RFC 850 and asctime forms are not read, nor days a month does not have. The
/// weekday is not checked against the date.
pub(crate) fn parse_http_date(bytes: &[u8]) -> Option<u64> {
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
pub(super) fn days_in_month(year: u64, month: u64) -> u64 {
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
pub(super) fn days_from_civil(year: u64, month: u64, day: u64) -> u128 {
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
    use super::*;

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

    #[test]
    fn imf_fixdates_read_as_seconds_since_the_epoch() {
        assert_eq!(
            parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date(b"Wed, 31 Dec 1969 23:59:59 GMT"), Some(0));
        // A leap second is a valid second.
        assert_eq!(
            parse_http_date(b"Wed, 31 Dec 2008 23:59:60 GMT"),
            parse_http_date(b"Thu, 01 Jan 2009 00:00:00 GMT")
        );
    }
}
