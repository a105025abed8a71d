//! `Rate` at the edges of its range: every rate prints as text that parses back to it, and
//! every rate that can be built is enforced without overflow, however extreme.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gate_core::rate::{Clock, Rate, RateError, RateLimit};
use proptest::prelude::*;

/// The longest period and burst span a rate may have: 146 years.
const MAX_SPAN: u64 = u64::MAX / 4;

/// Periods of every shape: whole units, odd nanoseconds, the extremes.
fn period_nanos(count: u32) -> impl Strategy<Value = u64> {
    let least = u64::from(count);
    prop_oneof![
        // A multiple of a unit, as people write them.
        (
            1..=1_000u64,
            prop::sample::select(vec![
                1,
                1_000,
                1_000_000,
                1_000_000_000,
                60_000_000_000,
                3_600_000_000_000,
                86_400_000_000_000,
            ]),
        )
            .prop_map(|(n, unit)| n * unit),
        // Any number of nanoseconds.
        least..=MAX_SPAN,
        Just(least),
        Just(MAX_SPAN),
    ]
    .prop_map(move |nanos| nanos.max(least))
}

/// Any rate `Rate::new` and `Rate::try_burst` accept.
fn rate() -> impl Strategy<Value = Rate> {
    prop_oneof![1..=u32::MAX, 1..=1_000u32, Just(u32::MAX)]
        .prop_flat_map(|count| (Just(count), period_nanos(count)))
        .prop_map(|(count, nanos)| Rate::new(count, Duration::from_nanos(nanos)).unwrap())
        .prop_flat_map(|rate| {
            let most = (MAX_SPAN / rate.interval().as_nanos() as u64).min(u64::from(u32::MAX));
            let most = u32::try_from(most).unwrap();
            (Just(rate), prop_oneof![Just(1), 1..=most, Just(most)])
        })
        .prop_map(|(rate, burst)| rate.try_burst(burst).unwrap())
}

/// A clock that reads what it is told.
struct Manual(AtomicU64);

impl Clock for Manual {
    fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn every_rate_displays_as_text_that_parses_back_to_it(rate in rate()) {
        // Regression: a rate with a burst displayed as `"10/s (burst 4)"`, which failed to
        // parse (`UnknownUnit`), and a period that was not whole milliseconds was rounded.
        let text = rate.to_string();
        prop_assert_eq!(text.parse::<Rate>(), Ok(rate), "{}", text);
    }

    #[test]
    fn every_rate_admits_exactly_its_burst_at_once_anywhere_on_the_clock(
        rate in rate(),
        t in prop_oneof![Just(0u64), Just(u64::MAX / 2), 0..=u64::MAX],
    ) {
        // Regression: the tolerance saturated for long bursts, and `tat + interval`
        // overflowed, for extreme rates or a clock far from its origin.
        let limit = RateLimit::with_clock(rate, Manual(AtomicU64::new(t)));
        let burst = u64::from(rate.burst_size());
        let tries = burst.min(1_000) + 1;
        let admitted = (0..tries).filter(|_| limit.check().is_ok()).count() as u64;
        // Cells that would end past the clock's range are refused: erring slow.
        let room = (u64::MAX - t) / rate.interval().as_nanos() as u64;
        prop_assert_eq!(admitted, burst.min(tries).min(room));
        if admitted < tries {
            let wait = limit.check().unwrap_err().wait_time();
            prop_assert!(wait > Duration::ZERO);
        }
    }
}

#[test]
fn a_burst_that_would_saturate_the_tolerance_is_refused() {
    // Regression: `Rate::new(1, 1 day).burst(250_000)` saturated `(burst - 1) × interval`,
    // and the limit admitted callers until `tat + interval` overflowed.
    let daily = Rate::new(1, Duration::from_secs(86_400)).unwrap();
    assert_eq!(daily.try_burst(250_000), Err(RateError::BurstTooLong));
    let most = daily.try_burst(53_375).unwrap();
    let limit = RateLimit::with_clock(most, Manual(AtomicU64::new(0)));
    let admitted = (0..60_000).filter(|_| limit.check().is_ok()).count();
    assert_eq!(admitted, 53_375);
}
