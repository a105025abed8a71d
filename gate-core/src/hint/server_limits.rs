//! [`ServerLimits`]: what a server's rate-limit headers say is left of its quota.

use std::time::{Duration, SystemTime};

use http::header::HeaderMap;

use super::number::digits;
use super::reset::{parse_go_duration, parse_rfc3339_from};
use super::retry_after::{parse_retry_after, parse_retry_after_ms};

/// What a response's rate-limit headers say about the server's quota: for requests and for
/// tokens, the window's limit, what remains of it, and when it is full again; and how long
/// the server asked the client to stay away.
///
/// Read from the headers OpenAI and Anthropic send on every response, 429s included:
///
/// | header | field | form |
/// |---|---|---|
/// | `x-ratelimit-limit-requests`, `x-ratelimit-limit-tokens` | [`requests`](Self::requests), [`tokens`](Self::tokens) `.limit` | a count |
/// | `x-ratelimit-remaining-requests`, `x-ratelimit-remaining-tokens` | `.remaining` | a count |
/// | `x-ratelimit-reset-requests`, `x-ratelimit-reset-tokens` | `.reset` | a Go duration: `20ms`, `1.5s`, `6m0s`, `1h2m3.5s` |
/// | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-limit` | [`requests`](Self::requests), [`tokens`](Self::tokens), [`input_tokens`](Self::input_tokens), [`output_tokens`](Self::output_tokens) `.limit` | a count |
/// | `anthropic-ratelimit-…-remaining` | `.remaining` | a count |
/// | `anthropic-ratelimit-…-reset` | `.reset` | an RFC 3339 time (`2026-10-21T07:28:00Z`), read as the time from `now` until then |
/// | `retry-after-ms`, else `Retry-After` | [`retry_after`](Self::retry_after) | as [`retry_after_at`](super::retry_after_at) reads them |
///
/// Every field is `None` when its header is missing or malformed, so any client can feed
/// any response and use what is there. A [`Limiter`](crate::Limiter) corrects its own
/// budgets from it with [`Limiter::observe`](crate::Limiter::observe): the server's view wins when it says fewer remain.
///
/// # Hostile values
///
/// The [module docs](super#hostile-values) give the rules: reading never panics or
/// overflows; a count too big for a `u64` saturates at `u64::MAX`; a duration or time too
/// far ahead saturates at [`Duration::MAX`] (a year of 10¹² included), a time already past
/// is zero; a sign, a non-UTF-8 byte, an unknown unit or any other form is ignored (the
/// field stays `None`). Of several values of one header, the first valid one counts; an
/// OpenAI header counts before the Anthropic one for the same field. Nothing here is
/// capped: the code that waits on a `reset` or a `retry_after` must cap it, as the
/// limiter does with its `max_pause`.
///
/// # Examples
///
/// Reading an OpenAI response's headers, from any client that has an [`http::HeaderMap`]
/// (hyper, reqwest, axum):
///
/// ```
/// use std::time::Duration;
/// use gate_core::hint::{ServerLimits, Window};
/// use http::{HeaderMap, HeaderValue};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-limit-requests", HeaderValue::from_static("500"));
/// headers.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("499"));
/// headers.insert("x-ratelimit-reset-requests", HeaderValue::from_static("120ms"));
/// headers.insert("x-ratelimit-remaining-tokens", HeaderValue::from_static("149984"));
/// headers.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("6m0s"));
/// let limits = ServerLimits::from_headers(&headers);
/// assert_eq!(
///     limits.requests,
///     Window { limit: Some(500), remaining: Some(499), reset: Some(Duration::from_millis(120)) },
/// );
/// assert_eq!(limits.tokens.remaining, Some(149_984));
/// assert_eq!(limits.tokens.reset, Some(Duration::from_secs(360)));
/// assert_eq!(limits.tokens.limit, None);
/// assert_eq!(limits.retry_after, None);
/// assert!(ServerLimits::from_headers(&HeaderMap::new()).is_empty());
/// ```
///
/// From a client whose header types are its own, by name and value bytes; an Anthropic
/// reset time is read against `now`:
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use gate_core::hint::ServerLimits;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_792_567_650); // 2026-10-21T07:27:30Z
/// let headers = [
///     ("anthropic-ratelimit-input-tokens-remaining", &b"39000"[..]),
///     ("anthropic-ratelimit-input-tokens-reset", b"2026-10-21T07:28:00Z"),
///     ("Retry-After", b"30"),
/// ];
/// let limits = ServerLimits::from_pairs_at(headers, now);
/// assert_eq!(limits.input_tokens.remaining, Some(39_000));
/// assert_eq!(limits.input_tokens.reset, Some(Duration::from_secs(30)));
/// assert_eq!(limits.retry_after, Some(Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerLimits {
    /// The request window: OpenAI's `x-ratelimit-*-requests`, Anthropic's
    /// `anthropic-ratelimit-requests-*`.
    pub requests: Window,
    /// The token window: OpenAI's `x-ratelimit-*-tokens`, Anthropic's combined
    /// `anthropic-ratelimit-tokens-*`.
    pub tokens: Window,
    /// Anthropic's input-token window, `anthropic-ratelimit-input-tokens-*`.
    pub input_tokens: Window,
    /// Anthropic's output-token window, `anthropic-ratelimit-output-tokens-*`.
    pub output_tokens: Window,
    /// How long the server asked the client to stay away: `retry-after-ms` if it is valid,
    /// else `Retry-After`.
    pub retry_after: Option<Duration>,
}

/// One rate-limit window as a server reports it; see [`ServerLimits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// How many the window allows.
    pub limit: Option<u64>,
    /// How many are left of it.
    pub remaining: Option<u64>,
    /// The time from now until the window is full again.
    pub reset: Option<Duration>,
}

impl Window {
    /// Whether the server said nothing about this window.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Each field of `self`, or of `other` where `self` has none.
    fn or(self, other: Self) -> Self {
        Self {
            limit: self.limit.or(other.limit),
            remaining: self.remaining.or(other.remaining),
            reset: self.reset.or(other.reset),
        }
    }
}

impl ServerLimits {
    /// Reads `headers`, measuring an RFC 3339 reset time or an HTTP-date `Retry-After`
    /// against the system clock.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_headers_at(headers, SystemTime::now())
    }

    /// Reads `headers`, measuring an RFC 3339 reset time or an HTTP-date `Retry-After`
    /// against `now`.
    pub fn from_headers_at(headers: &HeaderMap, now: SystemTime) -> Self {
        Self::from_pairs_at(
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
            now,
        )
    }

    /// Reads headers given as `(name, value)` pairs of bytes, for a client whose header
    /// types are not [`http`]'s; names match case-insensitively. Times are measured against
    /// the system clock.
    pub fn from_pairs<I, N, V>(headers: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        Self::from_pairs_at(headers, SystemTime::now())
    }

    /// Like [`from_pairs`](Self::from_pairs), measuring times against `now`.
    pub fn from_pairs_at<I, N, V>(headers: I, now: SystemTime) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut reading = Reading::default();
        for (name, value) in headers {
            reading.read(name.as_ref(), value.as_ref(), now);
        }
        reading.finish()
    }

    /// Whether the headers said nothing this type reads.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What has been read so far, by source, so that an OpenAI header wins over an Anthropic
/// one and `retry-after-ms` over `Retry-After` whatever their order.
#[derive(Default)]
struct Reading {
    openai: ServerLimits,
    anthropic: ServerLimits,
    retry_after_ms: Option<Duration>,
    retry_after: Option<Duration>,
}

/// Which field of a [`Window`] a header names.
#[derive(Clone, Copy)]
enum Field {
    Limit,
    Remaining,
    Reset,
}

impl Reading {
    fn read(&mut self, name: &[u8], value: &[u8], now: SystemTime) {
        if name.eq_ignore_ascii_case(b"retry-after-ms") {
            first(&mut self.retry_after_ms, || parse_retry_after_ms(value));
        } else if name.eq_ignore_ascii_case(b"retry-after") {
            first(&mut self.retry_after, || parse_retry_after(value, now));
        } else if let Some(rest) = strip_prefix_ignore_case(name, b"x-ratelimit-") {
            let Some((field, rest)) = split_field_first(rest) else {
                return;
            };
            let window = if rest.eq_ignore_ascii_case(b"requests") {
                &mut self.openai.requests
            } else if rest.eq_ignore_ascii_case(b"tokens") {
                &mut self.openai.tokens
            } else {
                return;
            };
            set(window, field, value, parse_go_duration);
        } else if let Some(rest) = strip_prefix_ignore_case(name, b"anthropic-ratelimit-") {
            let Some((rest, field)) = split_field_last(rest) else {
                return;
            };
            let window = if rest.eq_ignore_ascii_case(b"requests") {
                &mut self.anthropic.requests
            } else if rest.eq_ignore_ascii_case(b"tokens") {
                &mut self.anthropic.tokens
            } else if rest.eq_ignore_ascii_case(b"input-tokens") {
                &mut self.anthropic.input_tokens
            } else if rest.eq_ignore_ascii_case(b"output-tokens") {
                &mut self.anthropic.output_tokens
            } else {
                return;
            };
            set(window, field, value, |value| parse_rfc3339_from(value, now));
        }
    }

    fn finish(self) -> ServerLimits {
        let Self {
            openai,
            anthropic,
            retry_after_ms,
            retry_after,
        } = self;
        ServerLimits {
            requests: openai.requests.or(anthropic.requests),
            tokens: openai.tokens.or(anthropic.tokens),
            input_tokens: anthropic.input_tokens,
            output_tokens: anthropic.output_tokens,
            retry_after: retry_after_ms.or(retry_after),
        }
    }
}

/// Sets `window`'s `field` from `value` unless an earlier valid value did; a reset is read
/// by `reset`.
fn set(
    window: &mut Window,
    field: Field,
    value: &[u8],
    reset: impl FnOnce(&[u8]) -> Option<Duration>,
) {
    match field {
        Field::Limit => first(&mut window.limit, || digits(value.trim_ascii())),
        Field::Remaining => first(&mut window.remaining, || digits(value.trim_ascii())),
        Field::Reset => first(&mut window.reset, || reset(value)),
    }
}

/// Fills `slot` from `read` if it is still empty.
fn first<T>(slot: &mut Option<T>, read: impl FnOnce() -> Option<T>) {
    if slot.is_none() {
        *slot = read();
    }
}

fn strip_prefix_ignore_case<'a>(name: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = name.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// OpenAI's `{limit,remaining,reset}-{window}`.
fn split_field_first(rest: &[u8]) -> Option<(Field, &[u8])> {
    [
        (&b"limit-"[..], Field::Limit),
        (b"remaining-", Field::Remaining),
        (b"reset-", Field::Reset),
    ]
    .into_iter()
    .find_map(|(prefix, field)| Some((field, strip_prefix_ignore_case(rest, prefix)?)))
}

/// Anthropic's `{window}-{limit,remaining,reset}`.
fn split_field_last(rest: &[u8]) -> Option<(&[u8], Field)> {
    [
        (&b"-limit"[..], Field::Limit),
        (b"-remaining", Field::Remaining),
        (b"-reset", Field::Reset),
    ]
    .into_iter()
    .find_map(|(suffix, field)| {
        let (window, tail) = rest.split_at_checked(rest.len().checked_sub(suffix.len())?)?;
        tail.eq_ignore_ascii_case(suffix).then_some((window, field))
    })
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use http::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    // 2026-10-21T07:28:00Z
    const OCT_21: u64 = 1_792_567_680;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(OCT_21 - 30)
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn read(pairs: &[(&'static str, &'static str)]) -> ServerLimits {
        ServerLimits::from_headers_at(&map(pairs), now())
    }

    #[test]
    fn openai_headers_fill_the_request_and_token_windows() {
        let limits = read(&[
            ("x-ratelimit-limit-requests", "10000"),
            ("x-ratelimit-limit-tokens", "2000000"),
            ("x-ratelimit-remaining-requests", "9999"),
            ("x-ratelimit-remaining-tokens", "1999850"),
            ("x-ratelimit-reset-requests", "6ms"),
            ("x-ratelimit-reset-tokens", "1h2m3.5s"),
            ("retry-after-ms", "20.5"),
            ("retry-after", "1"),
            ("x-request-id", "req_123"),
        ]);
        assert_eq!(
            limits,
            ServerLimits {
                requests: Window {
                    limit: Some(10_000),
                    remaining: Some(9_999),
                    reset: Some(Duration::from_millis(6)),
                },
                tokens: Window {
                    limit: Some(2_000_000),
                    remaining: Some(1_999_850),
                    reset: Some(Duration::from_millis(3_723_500)),
                },
                input_tokens: Window::default(),
                output_tokens: Window::default(),
                retry_after: Some(Duration::from_millis(21)),
            }
        );
        assert!(!limits.is_empty());
    }

    #[test]
    fn anthropic_headers_fill_four_windows_with_resets_from_now() {
        let limits = read(&[
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-requests-reset", "2026-10-21T07:28:00Z"),
            ("anthropic-ratelimit-tokens-remaining", "70000"),
            ("anthropic-ratelimit-input-tokens-limit", "40000"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2026-10-21T07:27:00Z",
            ),
            ("anthropic-ratelimit-output-tokens-remaining", "8000"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2026-10-21T09:28:00.5+02:00",
            ),
            ("retry-after", "12"),
        ]);
        assert_eq!(
            limits.requests,
            Window {
                limit: Some(50),
                remaining: Some(49),
                reset: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(limits.tokens.remaining, Some(70_000));
        assert_eq!(limits.input_tokens.limit, Some(40_000));
        // Already past: the window is full now.
        assert_eq!(limits.input_tokens.reset, Some(Duration::ZERO));
        assert_eq!(limits.output_tokens.remaining, Some(8_000));
        assert_eq!(
            limits.output_tokens.reset,
            Some(Duration::from_millis(30_500))
        );
        assert_eq!(limits.retry_after, Some(Duration::from_secs(12)));
    }

    #[test]
    fn malformed_values_are_ignored_and_the_first_valid_one_counts() {
        let limits = read(&[
            ("x-ratelimit-remaining-requests", "-1"),
            ("x-ratelimit-remaining-requests", "7"),
            ("x-ratelimit-remaining-requests", "3"),
            ("x-ratelimit-limit-requests", "1e3"),
            ("x-ratelimit-reset-requests", "soon"),
            ("x-ratelimit-remaining-tokens", "12.5"),
            ("x-ratelimit-reset-tokens", "2026-10-21T07:28:00Z"),
            ("anthropic-ratelimit-requests-reset", "6m0s"),
            ("anthropic-ratelimit-tokens-remaining", " 42 "),
            ("retry-after-ms", "NaN"),
            ("retry-after", "2"),
            ("x-ratelimit-remaining-images", "5"),
            ("anthropic-ratelimit-images-remaining", "5"),
        ]);
        assert_eq!(
            limits.requests,
            Window {
                limit: None,
                remaining: Some(7),
                reset: None
            }
        );
        assert_eq!(
            limits.tokens,
            Window {
                limit: None,
                remaining: Some(42),
                reset: None
            }
        );
        assert_eq!(limits.retry_after, Some(Duration::from_secs(2)));
        assert!(read(&[("x-ratelimit-remaining-requests", "many")]).is_empty());
    }

    #[test]
    fn openai_wins_over_anthropic_and_ms_over_seconds_in_any_order() {
        let limits = read(&[
            ("anthropic-ratelimit-requests-remaining", "1"),
            ("retry-after", "9"),
            ("x-ratelimit-remaining-requests", "5"),
            ("retry-after-ms", "150"),
            ("anthropic-ratelimit-requests-limit", "60"),
        ]);
        assert_eq!(limits.requests.remaining, Some(5));
        assert_eq!(limits.requests.limit, Some(60));
        assert_eq!(limits.retry_after, Some(Duration::from_millis(150)));
    }

    #[test]
    fn huge_and_far_values_saturate() {
        let limits = read(&[
            ("x-ratelimit-limit-requests", "99999999999999999999999999"),
            ("x-ratelimit-reset-requests", "99999999999999999999h"),
            (
                "anthropic-ratelimit-tokens-reset",
                "1000000000000-01-01T00:00:00Z",
            ),
            ("retry-after", "Mon, 01 Jan 1000000000000 00:00:00 GMT"),
        ]);
        assert_eq!(limits.requests.limit, Some(u64::MAX));
        assert_eq!(limits.requests.reset, Some(Duration::MAX));
        assert_eq!(limits.tokens.reset, Some(Duration::MAX));
        assert!(limits.retry_after.unwrap() > Duration::from_secs(u64::MAX / 2));
    }

    #[test]
    fn pairs_match_names_in_any_case_and_take_any_bytes() {
        let limits = ServerLimits::from_pairs_at(
            [
                (&b"X-RateLimit-Remaining-Tokens"[..], &b"100"[..]),
                (b"ANTHROPIC-RATELIMIT-INPUT-TOKENS-LIMIT", b"400"),
                (b"x-ratelimit-\xff", b"1"),
                (b"\xff\xfe", b"\xff"),
                (b"x-ratelimit-reset-tokens", b"\xff"),
                (b"", b""),
                (b"x-ratelimit-", b"1"),
                (b"anthropic-ratelimit--limit", b"1"),
            ],
            now(),
        );
        assert_eq!(limits.tokens.remaining, Some(100));
        assert_eq!(limits.input_tokens.limit, Some(400));
        assert_eq!(limits.tokens.reset, None);
        assert_eq!(limits.requests, Window::default());
        // Owned strings, as clients with their own header types hand them out.
        let owned = vec![(
            String::from("x-ratelimit-remaining-requests"),
            Vec::from(&b"3"[..]),
        )];
        assert_eq!(ServerLimits::from_pairs(owned).requests.remaining, Some(3));
    }

    #[test]
    fn the_system_clock_reads_a_far_reset_as_far() {
        let limits = ServerLimits::from_headers(&map(&[(
            "anthropic-ratelimit-requests-reset",
            "9999-01-01T00:00:00Z",
        )]));
        assert!(limits.requests.reset.unwrap() > Duration::from_secs(7_000 * 365 * 86_400));
    }

    const NAMES: [&str; 24] = [
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
        "anthropic-ratelimit-requests-limit",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-tokens-limit",
        "anthropic-ratelimit-tokens-remaining",
        "anthropic-ratelimit-tokens-reset",
        "anthropic-ratelimit-input-tokens-limit",
        "anthropic-ratelimit-input-tokens-remaining",
        "anthropic-ratelimit-input-tokens-reset",
        "anthropic-ratelimit-output-tokens-limit",
        "anthropic-ratelimit-output-tokens-remaining",
        "anthropic-ratelimit-output-tokens-reset",
        "retry-after-ms",
        "retry-after",
        "x-ratelimit-",
        "anthropic-ratelimit-",
        "anthropic-ratelimit-tokens-",
        "x-ratelimit-reset-",
    ];

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            headers in proptest::collection::vec(
                (0..NAMES.len() + 1, proptest::collection::vec(any::<u8>(), 0..24), proptest::collection::vec(any::<u8>(), 0..40)),
                0..12,
            ),
            now in any::<u64>(),
        ) {
            let now = UNIX_EPOCH.checked_add(Duration::from_secs(now)).unwrap_or(UNIX_EPOCH);
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = headers
                .iter()
                .map(|(name, random_name, value)| match NAMES.get(*name) {
                    Some(name) => (name.as_bytes().to_vec(), value.clone()),
                    None => (random_name.clone(), value.clone()),
                })
                .collect();
            let from_pairs = ServerLimits::from_pairs_at(pairs.iter().map(|(n, v)| (n, v)), now);
            // The same headers through a `HeaderMap` read the same, where `http` takes them.
            let mut map = HeaderMap::new();
            let mut all_taken = true;
            for (name, value) in &pairs {
                match (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                    (Ok(name), Ok(value)) => { map.append(name, value); }
                    _ => all_taken = false,
                }
            }
            let from_map = ServerLimits::from_headers_at(&map, now);
            if all_taken {
                prop_assert_eq!(from_pairs, from_map);
            }
        }

        #[test]
        fn fewer_remaining_reads_as_fewer(a in any::<u64>(), b in any::<u64>()) {
            let read = |n: u64| {
                let value = n.to_string();
                ServerLimits::from_pairs_at([("x-ratelimit-remaining-tokens", value.as_bytes())], UNIX_EPOCH)
                    .tokens
                    .remaining
            };
            prop_assert_eq!(read(a.min(b)) <= read(a.max(b)), true);
            prop_assert_eq!(read(a), Some(a));
        }
    }
}
