//! Properties of every retry policy `build()` accepts: its backoff is a duration for every
//! retry number (never a panic, never above its cap), and a call on permanent failure makes
//! exactly `retries + 1` attempts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gate_core::{Backoff, Retry, RetryBuilder};
use proptest::prelude::*;

/// Durations from zero to `Duration::MAX`, the edges often.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        (0..10_000_000_000u64).prop_map(Duration::from_nanos),
        (0..=u64::MAX, 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// Growth factors from 1 to `f64::MAX`, and some `build()` rejects.
fn factor() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(1.0),
        Just(2.0),
        Just(1.0 + f64::EPSILON),
        Just(1e300),
        Just(f64::MAX),
        Just(f64::INFINITY),
        Just(f64::NAN),
        Just(0.5),
        1.0..16.0f64,
    ]
}

/// A builder as a user might configure one: fixed, fixed then `factor`, or exponential.
fn builder(retries: u32) -> impl Strategy<Value = RetryBuilder<()>> {
    (0..3u8, duration(), duration(), factor(), any::<bool>()).prop_map(
        move |(shape, a, b, factor, jitter)| {
            let builder = Retry::builder(retries).jitter(jitter);
            match shape {
                0 => builder.fixed(a),
                1 => builder.fixed(a).factor(factor),
                _ => builder.exponential(a.min(b), a.max(b)).factor(factor),
            }
        },
    )
}

fn retry_number() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(1025),
        Just(u32::MAX),
        any::<u32>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn every_accepted_backoff_is_total_and_capped(
        builder in builder(3),
        retries in proptest::collection::vec(retry_number(), 1..8),
    ) {
        // Regression: a zero base grown by a huge factor reached `0 × inf = NaN`, and
        // `Duration::from_secs_f64` panicked (`factor(1e300)`, or retry 1025 of a zero
        // fixed delay with `factor(2.0)`).
        let Ok(policy) = builder.build() else {
            return Ok(());
        };
        for retry in retries {
            let delay = policy.backoff().delay(retry);
            match policy.backoff() {
                Backoff::Fixed(wait) => prop_assert_eq!(delay, wait),
                Backoff::Exponential { base, max, .. } => {
                    prop_assert!(delay <= max, "{delay:?} > {max:?}");
                    if retry <= 1 {
                        prop_assert_eq!(delay, base);
                    } else {
                        prop_assert!(delay >= base, "{delay:?} < {base:?}");
                    }
                }
            }
        }
    }
}

/// Runs `policy` on an operation that always fails, on paused time; returns the calls made
/// and the attempts the error reports.
fn attempts_on_permanent_failure(policy: Retry<()>) -> (u32, u32) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let err = runtime
        .block_on(policy.run(|| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err::<(), ()>(()))
        }))
        .unwrap_err();
    (calls.load(Ordering::SeqCst), err.attempts())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_policy_with_n_retries_makes_exactly_n_plus_1_attempts(
        (retries, builder) in (0..=12u32).prop_flat_map(|n| (Just(n), builder(n))),
    ) {
        let Ok(policy) = builder.build() else {
            return Ok(());
        };
        prop_assert_eq!(policy.max_attempts(), retries + 1);
        prop_assert_eq!(attempts_on_permanent_failure(policy), (retries + 1, retries + 1));
    }
}
