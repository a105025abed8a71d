//! [`Rate`]: how many admissions per period, and how many may come at once.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A rate limit's quota: `count` admissions per `period`, of which up to `burst` may come
/// back to back.
///
/// The guarantee of a [`RateLimit`](super::RateLimit) built from it: in every window of time
/// of length `T`, at most `burst + count × T / period` callers are admitted (rounded down).
/// With the default burst of 1, cells are spread evenly, one every `period / count`.
///
/// Parse one from text (`"500/min"`, `"10/s"`, `"3/h"`, `"100/10s"`, `"10/s (burst 5)"`) or
/// build it in code. Its [`Display`](fmt::Display) is exact and parses back to the same rate:
///
/// ```
/// use std::time::Duration;
/// use gate_core::rate::Rate;
///
/// let rate: Rate = "500/min".parse().unwrap();
/// assert_eq!(rate, Rate::per_minute(500));
/// assert_eq!(rate.interval(), Duration::from_millis(120));
///
/// let bursty = Rate::per_second(10).burst(5);
/// assert_eq!(bursty.burst_size(), 5);
/// assert_eq!(bursty.to_string(), "10/s (burst 5)");
/// assert_eq!("10/s (burst 5)".parse(), Ok(bursty));
/// ```
///
/// # Limits
///
/// The limiter counts time in `u64` nanoseconds, so a rate is refused, with a
/// [`RateError`], where that count would overflow: a period of 146 years or more, more
/// than one admission per nanosecond, or a burst that spans 146 years or more (`burst ×
/// interval`; for one admission a day, a burst of at most 53,375). No arithmetic on an
/// accepted rate overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u32,
    period: Duration,
    burst: u32,
}

impl Rate {
    /// `count` admissions per second.
    ///
    /// # Panics
    ///
    /// If `count` is zero.
    #[track_caller]
    pub const fn per_second(count: u32) -> Self {
        Self::checked(count, Duration::from_secs(1))
    }

    /// `count` admissions per minute.
    ///
    /// # Panics
    ///
    /// If `count` is zero.
    #[track_caller]
    pub const fn per_minute(count: u32) -> Self {
        Self::checked(count, Duration::from_secs(60))
    }

    /// `count` admissions per hour.
    ///
    /// # Panics
    ///
    /// If `count` is zero.
    #[track_caller]
    pub const fn per_hour(count: u32) -> Self {
        Self::checked(count, Duration::from_secs(3600))
    }

    /// `count` admissions per `period`, or an error if either is zero or the period is
    /// shorter than one nanosecond per admission.
    pub const fn new(count: u32, period: Duration) -> Result<Self, RateError> {
        if count == 0 {
            return Err(RateError::ZeroCount);
        }
        if period.as_nanos() < count as u128 {
            return Err(RateError::TooFast);
        }
        if period.as_nanos() > MAX_SPAN_NANOS as u128 {
            return Err(RateError::PeriodTooLong);
        }
        Ok(Self {
            count,
            period,
            burst: 1,
        })
    }

    #[track_caller]
    const fn checked(count: u32, period: Duration) -> Self {
        match Self::new(count, period) {
            Ok(rate) => rate,
            Err(_) => panic!("a rate needs a count of at least 1"),
        }
    }

    /// Lets up to `burst` admissions come back to back (at least 1; 0 is taken as 1).
    ///
    /// The rate over a long time does not change: a burst is paid back by a quiet spell.
    ///
    /// # Panics
    ///
    /// If the burst spans 146 years or more (`burst × interval`, see [Limits](Self#limits));
    /// [`try_burst`](Self::try_burst) returns the error instead.
    #[track_caller]
    pub const fn burst(self, burst: u32) -> Self {
        match self.try_burst(burst) {
            Ok(rate) => rate,
            Err(_) => panic!("a rate's burst must span less than 146 years"),
        }
    }

    /// Like [`burst`](Self::burst), or [`RateError::BurstTooLong`] if the burst spans 146
    /// years or more, which the limiter's nanosecond clock cannot count.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::rate::{Rate, RateError};
    ///
    /// let daily = Rate::new(1, Duration::from_secs(86_400)).unwrap();
    /// assert_eq!(daily.try_burst(50_000).unwrap().burst_size(), 50_000);
    /// assert_eq!(daily.try_burst(250_000), Err(RateError::BurstTooLong));
    /// ```
    pub const fn try_burst(mut self, burst: u32) -> Result<Self, RateError> {
        let burst = if burst == 0 { 1 } else { burst };
        if self.interval_nanos() as u128 * burst as u128 > MAX_SPAN_NANOS as u128 {
            return Err(RateError::BurstTooLong);
        }
        self.burst = burst;
        Ok(self)
    }

    /// Admissions per [`period`](Self::period).
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The period over which [`count`](Self::count) admissions are allowed.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// How many admissions may come back to back.
    pub const fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The rate as a token budget holds it: with the burst given, if above 1, and otherwise
    /// with a burst of the whole period's count (`"180000/min"` is a bucket of 180,000
    /// refilling at 3,000 a second, as LLM providers define tokens per minute). A burst of
    /// one token would admit no real request. Used by every token budget
    /// ([`LimiterBuilder::tokens`](crate::LimiterBuilder::tokens), gate-redis's).
    ///
    /// ```
    /// use gate_core::rate::Rate;
    ///
    /// assert_eq!(Rate::per_minute(180_000).token_bucket().burst_size(), 180_000);
    /// assert_eq!(Rate::per_minute(180_000).burst(500).token_bucket().burst_size(), 500);
    /// ```
    pub const fn token_bucket(self) -> Self {
        match self.burst {
            1 => match self.try_burst(self.count) {
                Ok(rate) => rate,
                Err(_) => self,
            },
            _ => self,
        }
    }

    /// The steady spacing of admissions, `period / count`, rounded up to a whole nanosecond
    /// so that rounding never lets the limit run faster than asked.
    pub const fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos())
    }

    pub(crate) const fn interval_nanos(&self) -> u64 {
        let period = self.period.as_nanos();
        let count = self.count as u128;
        // `new` bounds the period, so this fits.
        period.div_ceil(count) as u64
    }

    /// How far ahead of now a rate limit's theoretical arrival time may run:
    /// `(burst - 1) × interval`, which [`try_burst`](Self::try_burst) bounds.
    pub(crate) const fn tolerance_nanos(&self) -> u64 {
        self.interval_nanos() * (self.burst as u64 - 1)
    }
}

/// The longest period, and the longest burst span (`burst × interval`), a rate may have:
/// a quarter of the `u64` nanoseconds (146 years), so that the rate limit's arithmetic,
/// which adds a span or two to a clock reading, has room to spare.
const MAX_SPAN_NANOS: u64 = u64::MAX / 4;

/// The units [`Rate`]'s `Display` writes, largest first, with their length in nanoseconds.
const DISPLAY_UNITS: [(u128, &str); 7] = [
    (86_400_000_000_000, "d"),
    (3_600_000_000_000, "h"),
    (60_000_000_000, "min"),
    (1_000_000_000, "s"),
    (1_000_000, "ms"),
    (1_000, "us"),
    (1, "ns"),
];

impl fmt::Display for Rate {
    /// `COUNT/PERIOD`, then ` (burst N)` if the burst is above 1: the period in the largest
    /// unit that divides it exactly (`"500/min"`, `"100/10s"`, `"3/1500ms"`), so that
    /// [`Rate::parse`] gives back the same rate.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.period.as_nanos();
        let (unit, name) = DISPLAY_UNITS
            .into_iter()
            .find(|&(unit, _)| nanos.is_multiple_of(unit))
            .unwrap_or(DISPLAY_UNITS[DISPLAY_UNITS.len() - 1]);
        match nanos / unit {
            1 => write!(f, "{}/{name}", self.count)?,
            multiple => write!(f, "{}/{multiple}{name}", self.count)?,
        }
        if self.burst > 1 {
            write!(f, " (burst {})", self.burst)?;
        }
        Ok(())
    }
}

impl Rate {
    /// Parses `COUNT/PERIOD`, where `PERIOD` is an optional whole number and a unit: `ns`,
    /// `us` (or `µs`), `ms`, `s`, `sec`, `second`, `m`, `min`, `minute`, `h`, `hr`, `hour`,
    /// `d`, `day` (plurals too), optionally followed by a burst in parentheses, as
    /// [`Display`](fmt::Display) writes it: `"500/min"`, `"10/s"`, `"3/h"`, `"100/10s"`,
    /// `"10/s (burst 5)"`. Spaces around the parts are allowed.
    ///
    /// `const`, so a rate written as text is checked when the program is compiled:
    ///
    /// ```
    /// use gate_core::rate::Rate;
    ///
    /// const OPENAI: Rate = match Rate::parse("500/min") {
    ///     Ok(rate) => rate,
    ///     Err(_) => panic!("not a rate"),
    /// };
    /// assert_eq!(OPENAI, Rate::per_minute(500));
    /// ```
    pub const fn parse(text: &str) -> Result<Self, ParseRateError> {
        let (bytes, burst) = match split_burst(trim(text.as_bytes())) {
            Ok(split) => split,
            Err(e) => return Err(e),
        };
        let mut slash = 0;
        while slash < bytes.len() && bytes[slash] != b'/' {
            slash += 1;
        }
        if slash == bytes.len() {
            return Err(ParseRateError::MissingSlash);
        }
        let (count, period) = bytes.split_at(slash);
        let count = match digits(trim(count)) {
            Some(count) if count <= u32::MAX as u64 => count as u32,
            _ => return Err(ParseRateError::InvalidCount),
        };
        let (_, period) = period.split_at(1);
        let period = trim(period);
        let mut split = 0;
        while split < period.len() && period[split].is_ascii_digit() {
            split += 1;
        }
        let (multiple, unit) = period.split_at(split);
        let multiple = if multiple.is_empty() {
            1
        } else {
            match digits(multiple) {
                Some(multiple) if multiple > 0 => multiple,
                _ => return Err(ParseRateError::InvalidPeriod),
            }
        };
        let unit_nanos = match unit_nanos(trim(unit)) {
            Some(nanos) => nanos,
            None => return Err(ParseRateError::UnknownUnit),
        };
        let nanos = match unit_nanos.checked_mul(multiple) {
            Some(nanos) => nanos,
            None => return Err(ParseRateError::InvalidPeriod),
        };
        let rate = match Rate::new(count, Duration::from_nanos(nanos)) {
            Ok(rate) => rate,
            Err(e) => return Err(ParseRateError::Rate(e)),
        };
        match rate.try_burst(burst) {
            Ok(rate) => Ok(rate),
            Err(e) => Err(ParseRateError::Rate(e)),
        }
    }
}

/// Splits a trailing `(burst N)` off a rate's text: the rest, trimmed, and the burst (1
/// if there is none).
const fn split_burst(bytes: &[u8]) -> Result<(&[u8], u32), ParseRateError> {
    let [rest @ .., b')'] = bytes else {
        return Ok((bytes, 1));
    };
    let mut open = rest.len();
    while open > 0 && rest[open - 1] != b'(' {
        open -= 1;
    }
    if open == 0 {
        return Err(ParseRateError::InvalidBurst);
    }
    let (rate, inner) = rest.split_at(open);
    let (rate, _) = rate.split_at(open - 1);
    let inner = trim(inner);
    const BURST: &[u8] = b"burst";
    if inner.len() <= BURST.len() {
        return Err(ParseRateError::InvalidBurst);
    }
    let (word, number) = inner.split_at(BURST.len());
    if !eq(word, BURST) || !number[0].is_ascii_whitespace() {
        return Err(ParseRateError::InvalidBurst);
    }
    match digits(trim(number)) {
        Some(burst) if burst >= 1 && burst <= u32::MAX as u64 => Ok((trim(rate), burst as u32)),
        _ => Err(ParseRateError::InvalidBurst),
    }
}

impl FromStr for Rate {
    type Err = ParseRateError;

    /// See [`Rate::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `bytes` without ASCII spaces at either end.
const fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !first.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !last.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// A non-empty run of ASCII digits as a number, if it fits in a `u64`.
const fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !b.is_ascii_digit() {
            return None;
        }
        value = match value.checked_mul(10) {
            Some(v) => match v.checked_add((b - b'0') as u64) {
                Some(v) => v,
                None => return None,
            },
            None => return None,
        };
        i += 1;
    }
    Some(value)
}

const fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Nanoseconds in the unit named `unit`.
const fn unit_nanos(unit: &[u8]) -> Option<u64> {
    const UNITS: [(&[&[u8]], u64); 7] = [
        (&[b"ns", b"nanosecond", b"nanoseconds"], 1),
        (
            &[b"us", "\u{b5}s".as_bytes(), b"microsecond", b"microseconds"],
            1_000,
        ),
        (&[b"ms", b"millisecond", b"milliseconds"], 1_000_000),
        (
            &[b"s", b"sec", b"secs", b"second", b"seconds"],
            1_000_000_000,
        ),
        (
            &[b"m", b"min", b"mins", b"minute", b"minutes"],
            60_000_000_000,
        ),
        (&[b"h", b"hr", b"hrs", b"hour", b"hours"], 3_600_000_000_000),
        (&[b"d", b"day", b"days"], 86_400_000_000_000),
    ];
    let mut i = 0;
    while i < UNITS.len() {
        let (names, nanos) = UNITS[i];
        let mut j = 0;
        while j < names.len() {
            if eq(names[j], unit) {
                return Some(nanos);
            }
            j += 1;
        }
        i += 1;
    }
    None
}

/// A [`Rate`] could not be built from the numbers given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateError {
    /// The count was zero: nothing would ever be admitted.
    ZeroCount,
    /// More than one admission per nanosecond was asked for.
    TooFast,
    /// The period was longer than the limiter's clock can count (about 146 years).
    PeriodTooLong,
    /// The burst spanned longer than the limiter's clock can count: `burst × interval` of
    /// about 146 years or more.
    BurstTooLong,
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroCount => "a rate needs a count of at least 1",
            Self::TooFast => "a rate cannot exceed one admission per nanosecond",
            Self::PeriodTooLong => "a rate's period must be shorter than 146 years",
            Self::BurstTooLong => "a rate's burst must span less than 146 years",
        })
    }
}

impl std::error::Error for RateError {}

/// Text that is not a rate such as `"500/min"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseRateError {
    /// There was no `/` between the count and the period.
    MissingSlash,
    /// The count was not a whole number that fits in a `u32`.
    InvalidCount,
    /// The period's multiple was zero or too large.
    InvalidPeriod,
    /// The period's unit was not one of `ns`, `us`, `ms`, `s`, `min`, `h`, `d`.
    UnknownUnit,
    /// A trailing `(...)` was not `(burst N)` with `N` a whole number from 1 to `u32::MAX`.
    InvalidBurst,
    /// The numbers parsed but do not make a rate.
    Rate(RateError),
}

impl fmt::Display for ParseRateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingSlash => f.write_str("expected a rate like `500/min`"),
            Self::InvalidCount => f.write_str("the count before `/` must be a whole number"),
            Self::InvalidPeriod => f.write_str("the period's multiple must be at least 1"),
            Self::UnknownUnit => {
                f.write_str("unknown unit; expected one of `ns`, `us`, `ms`, `s`, `min`, `h`, `d`")
            }
            Self::InvalidBurst => {
                f.write_str("expected a burst like `(burst 5)` after the period, at least 1")
            }
            Self::Rate(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for ParseRateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Rate(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_forms() {
        let cases = [
            ("500/min", Rate::per_minute(500)),
            ("10/s", Rate::per_second(10)),
            ("3/h", Rate::per_hour(3)),
            (" 7 / second ", Rate::per_second(7)),
            ("100/10s", Rate::new(100, Duration::from_secs(10)).unwrap()),
            ("5/250ms", Rate::new(5, Duration::from_millis(250)).unwrap()),
            (
                "1000/day",
                Rate::new(1000, Duration::from_secs(86_400)).unwrap(),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Rate>(), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_malformed_text_with_a_typed_error() {
        let cases = [
            ("500", ParseRateError::MissingSlash),
            ("/min", ParseRateError::InvalidCount),
            ("-1/min", ParseRateError::InvalidCount),
            ("1.5/s", ParseRateError::InvalidCount),
            ("99999999999/s", ParseRateError::InvalidCount),
            ("5/fortnight", ParseRateError::UnknownUnit),
            ("5/", ParseRateError::UnknownUnit),
            ("5/0s", ParseRateError::InvalidPeriod),
            ("5/99999999999999999999s", ParseRateError::InvalidPeriod),
            ("0/min", ParseRateError::Rate(RateError::ZeroCount)),
            ("2000000/ms", ParseRateError::Rate(RateError::TooFast)),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Rate>(), Err(want), "{text}");
        }
    }

    #[test]
    fn interval_rounds_up_so_the_rate_never_runs_fast() {
        assert_eq!(Rate::per_minute(500).interval(), Duration::from_millis(120));
        // 1s / 7 = 142_857_142.86ns: rounded up, not down.
        assert_eq!(
            Rate::per_second(7).interval(),
            Duration::from_nanos(142_857_143)
        );
    }

    #[test]
    fn display_round_trips() {
        for text in ["500/min", "10/s", "3/h", "100/10s", "5/250ms"] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.to_string(), text);
            assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate), "{text}");
        }
        assert_eq!(Rate::per_second(10).burst(4).to_string(), "10/s (burst 4)");
    }

    #[test]
    fn a_rate_with_a_burst_parses_back() {
        // Regression: `"10/s (burst 4)"`, as `Display` writes it, failed with `UnknownUnit`.
        let bursty = Rate::per_second(10).burst(4);
        assert_eq!("10/s (burst 4)".parse(), Ok(bursty));
        assert_eq!(" 10 / s ( burst  4 ) ".parse(), Ok(bursty));
        assert_eq!("10/s (burst 1)".parse(), Ok(Rate::per_second(10)));
        for bad in [
            "10/s (burst 0)",
            "10/s (burst)",
            "10/s (burst -1)",
            "10/s (bursts 4)",
            "10/s (burst4)",
            "10/s burst 4)",
            "10/s (burst 4294967296)",
        ] {
            assert_eq!(
                bad.parse::<Rate>(),
                Err(ParseRateError::InvalidBurst),
                "{bad}"
            );
        }
    }

    #[test]
    fn display_is_exact_for_periods_that_are_not_whole_milliseconds() {
        // Regression: the period was written in whole milliseconds, so `3/1500us` displayed
        // as "3/1ms" and `1/1ns` as "1/0ms", which does not parse.
        let cases = [
            (
                Rate::new(3, Duration::from_micros(1500)).unwrap(),
                "3/1500us",
            ),
            (Rate::new(1, Duration::from_nanos(1)).unwrap(), "1/ns"),
            (Rate::new(7, Duration::from_secs(7200)).unwrap(), "7/2h"),
            (Rate::new(1, Duration::from_secs(90)).unwrap(), "1/90s"),
        ];
        for (rate, text) in cases {
            assert_eq!(rate.to_string(), text);
            assert_eq!(text.parse(), Ok(rate));
        }
        assert_eq!("3/1500\u{b5}s".parse(), Ok(cases[0].0));
    }

    #[test]
    fn a_burst_too_long_to_count_is_refused() {
        // Regression: `Rate::new(1, 1 day).burst(250_000)` saturated the tolerance, so the
        // limit admitted until `tat + interval` overflowed.
        let daily = Rate::new(1, Duration::from_secs(86_400)).unwrap();
        assert_eq!(daily.try_burst(250_000), Err(RateError::BurstTooLong));
        assert_eq!(daily.try_burst(53_375).map(|r| r.burst_size()), Ok(53_375));
        assert_eq!(daily.try_burst(53_376), Err(RateError::BurstTooLong));
        assert_eq!(
            "1/d (burst 250000)".parse::<Rate>(),
            Err(ParseRateError::Rate(RateError::BurstTooLong))
        );
        // One a nanosecond takes any burst.
        let fastest = Rate::new(u32::MAX, Duration::from_nanos(u64::from(u32::MAX))).unwrap();
        assert_eq!(
            fastest.try_burst(u32::MAX).map(|r| r.burst_size()),
            Ok(u32::MAX)
        );
        // The longest period takes a burst of 1 only.
        let longest = Rate::new(1, Duration::from_nanos(MAX_SPAN_NANOS)).unwrap();
        assert_eq!(longest.try_burst(1), Ok(longest));
        assert_eq!(longest.try_burst(2), Err(RateError::BurstTooLong));
        assert_eq!(
            Rate::new(1, Duration::from_nanos(MAX_SPAN_NANOS + 1)),
            Err(RateError::PeriodTooLong)
        );
    }

    #[test]
    #[should_panic(expected = "a rate's burst must span less than 146 years")]
    fn burst_panics_where_try_burst_fails() {
        let _ = Rate::new(1, Duration::from_secs(86_400))
            .unwrap()
            .burst(250_000);
    }
}
