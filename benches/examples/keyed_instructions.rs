//! The keyed check of `benches/keyed.rs`, one contender per run, for counting instructions
//! under callgrind: a count does not move with the machine's load as a time does.
//!
//! Run with: cargo build --release -p benches --example keyed_instructions, then
//! `valgrind --tool=callgrind target/release/examples/keyed_instructions NAME` for each NAME
//! of `gate_core`, `gate_core_foldhash`, `gate_core_limiter_quanta`,
//! `gate_core_limiter_quanta_check`, `governor` and `dashmap_semaphores`; the difference
//! between `NAME` and `NAME --warm` (the keys made, nothing checked) is the cost of
//! 1,000,000 checks. (A run on quanta's clock calibrates it for a time that varies by a few
//! million instructions; `callgrind_annotate --inclusive=yes` on the `main::{{closure}}`
//! line, over its 1,001,000 calls, gives the check alone.)

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;

use dashmap::DashMap;
use gate_core::Limiter;
use gate_core::keyed::{KeyedGate, KeyedLimiter};
use gate_core::rate::{QuantaClock, Rate};
use governor::{Quota, RateLimiter};
use tokio::sync::Semaphore;

const HOT_KEYS: u64 = 1_000;
const CHECKS: u64 = 1_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().expect("a contender's name");
    let checks = if args.next().as_deref() == Some("--warm") {
        0
    } else {
        CHECKS
    };
    let check: Box<dyn Fn(u64) -> bool> = match name.as_str() {
        "gate_core" => {
            let gate = KeyedGate::<u64>::new(4);
            Box::new(move |key| gate.try_acquire(&key).is_ok())
        }
        "gate_core_foldhash" => {
            let gate = KeyedGate::builder(4)
                .hasher(foldhash::fast::RandomState::default())
                .build()
                .unwrap();
            Box::new(move |key| gate.try_acquire(&key).is_ok())
        }
        "gate_core_limiter_quanta" => {
            let limits = quanta_limiters();
            Box::new(move |key| limits.try_acquire(&key).is_ok())
        }
        "gate_core_limiter_quanta_check" => {
            let limits = quanta_limiters();
            Box::new(move |key| limits.check(&key).is_ok())
        }
        "governor" => {
            let quota = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap())
                .allow_burst(NonZeroU32::new(1_000).unwrap());
            let limiter = RateLimiter::keyed(quota);
            Box::new(move |key| limiter.check_key(&key).is_ok())
        }
        "dashmap_semaphores" => {
            let map: DashMap<u64, Arc<Semaphore>> = DashMap::new();
            Box::new(move |key| {
                if let Some(semaphore) = map.get(&key) {
                    return semaphore.try_acquire().is_ok();
                }
                let semaphore = map
                    .entry(key)
                    .or_insert_with(|| Arc::new(Semaphore::new(4)));
                semaphore.try_acquire().is_ok()
            })
        }
        other => panic!("unknown contender {other}"),
    };
    for key in 0..HOT_KEYS {
        assert!(check(key));
    }
    let mut admitted = 0;
    for i in 0..checks {
        admitted += u64::from(check(black_box(i % HOT_KEYS)));
    }
    assert_eq!(admitted, checks);
}

/// A `KeyedLimiter` whose keys' rates never bind (10^9 a second, a burst of 1,000), on
/// quanta's clock, as `benches/keyed.rs` builds it.
fn quanta_limiters() -> KeyedLimiter<u64> {
    KeyedLimiter::new(|| {
        Limiter::builder()
            .rate(Rate::per_second(1_000_000_000).burst(1_000))
            .clock(QuantaClock::new())
            .build()
            .unwrap()
    })
}
