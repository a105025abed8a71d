//! A keyed gate's memory stays bounded under key churn, counted in bytes by
//! `allocation-counter`'s global allocator (this test binary only).

use std::hash::RandomState;

use gate_core::keyed::{DEFAULT_MAX_IDLE, KeyedGate, KeyedPermit};

#[test]
fn a_million_distinct_keys_streamed_through_keep_len_and_bytes_bounded() {
    const KEYS: u64 = 1_000_000;
    let gate = KeyedGate::new(1);
    let mut most = 0;
    let info = allocation_counter::measure(|| {
        for key in 0..KEYS {
            let permit = gate.try_acquire(&key).unwrap();
            most = most.max(gate.len());
            drop(permit);
        }
    });
    assert_eq!(most, DEFAULT_MAX_IDLE + 1);
    assert_eq!((gate.len(), gate.in_flight()), (DEFAULT_MAX_IDLE, 0));
    // 1,025 keys of state, whatever the churn: about 100 KiB, not a million keys' worth.
    assert!(info.bytes_max < 256 * 1024, "{info:?}");
    println!("{KEYS} keys streamed: {info:?}");
}

#[test]
fn a_live_key_costs_under_96_bytes_beside_its_key() {
    const LIVE: u64 = 100_000;
    let gate = KeyedGate::builder(1).max_keys(1 << 20).build().unwrap();
    let mut held = Vec::with_capacity(LIVE as usize);
    let info = allocation_counter::measure(|| {
        for key in 0..LIVE {
            held.push(gate.try_acquire(&key).unwrap());
        }
    });
    assert_eq!(gate.len(), LIVE as usize);
    // Less the permits' own vector, which the caller holds.
    let gate_bytes = info.bytes_current - (held.capacity() * size_of_val(&held[0])) as i64;
    let per_key = gate_bytes as f64 / LIVE as f64;
    println!("{LIVE} live u64 keys: {per_key:.1} bytes per key ({info:?})");
    assert!(per_key < 96.0, "{per_key} bytes per live key");
    drop(held);
    assert_eq!(gate.len(), DEFAULT_MAX_IDLE);
}

#[test]
fn a_drained_queue_gives_its_waiters_memory_back() {
    use tokio_test::task::spawn;
    const WAITERS: usize = 10_000;
    let gate = KeyedGate::new(1);
    let held = gate.try_acquire(&0u8).unwrap();
    let info = allocation_counter::measure(|| {
        let mut waiters: Vec<_> = (0..WAITERS).map(|_| spawn(gate.acquire(&0u8))).collect();
        for waiter in &mut waiters {
            assert!(waiter.poll().is_pending());
        }
        assert_eq!(gate.waiting(), WAITERS);
        drop(waiters);
    });
    drop(held);
    assert_eq!((gate.waiting(), gate.in_flight()), (0, 0));
    assert!(info.bytes_max > (WAITERS * 40) as u64, "{info:?}");
    // Every waiter slot was given back, not kept at the high-water mark.
    assert!(info.bytes_current < 1024, "{info:?}");
}

#[test]
fn beside_governors_keyed_limiter_per_live_key_and_under_churn() {
    use std::num::NonZeroU32;
    const LIVE: u64 = 100_000;
    const CHURN: u64 = 1_000_000;
    let quota = governor::Quota::per_second(NonZeroU32::new(1_000).unwrap());

    // Per live key: governor keeps a rate cell; gate-core a key with its permits out.
    let governor = governor::RateLimiter::keyed(quota);
    let theirs = allocation_counter::measure(|| {
        for key in 0..LIVE {
            assert!(governor.check_key(&key).is_ok());
        }
    });
    let gate = KeyedGate::builder(1).max_keys(1 << 20).build().unwrap();
    let mut held = Vec::with_capacity(LIVE as usize);
    let held_bytes = (held.capacity() * size_of::<KeyedPermit<'_, u64, RandomState>>()) as i64;
    let ours = allocation_counter::measure(|| {
        for key in 0..LIVE {
            held.push(gate.try_acquire(&key).unwrap());
        }
    });
    let ours = (ours.bytes_current - held_bytes) as f64 / LIVE as f64;
    let theirs = theirs.bytes_current as f64 / LIVE as f64;
    println!("bytes per live u64 key: gate-core {ours:.1}, governor {theirs:.1}");
    drop(held);

    // Under churn: governor keeps every key it has seen until `retain_recent` is called;
    // gate-core keeps at most its idle cap.
    let governor = governor::RateLimiter::keyed(quota);
    let theirs = allocation_counter::measure(|| {
        for key in 0..CHURN {
            assert!(governor.check_key(&key).is_ok());
        }
    });
    let gate = KeyedGate::new(1);
    let ours = allocation_counter::measure(|| {
        for key in 0..CHURN {
            drop(gate.try_acquire(&key).unwrap());
        }
    });
    println!(
        "after {CHURN} keys: gate-core {} keys in {} bytes, governor {} keys in {} bytes",
        gate.len(),
        ours.bytes_current,
        governor.len(),
        theirs.bytes_current
    );
    assert_eq!(
        (gate.len(), governor.len()),
        (DEFAULT_MAX_IDLE, CHURN as usize)
    );
    assert!(
        ours.bytes_current * 50 < theirs.bytes_current,
        "{ours:?} vs {theirs:?}"
    );
}

// Idle keys are counted, and evicted beyond `max_idle`, when the gate next looks: a new key
// looks once the keys it has not looked at have doubled since it last did. Nothing else
// here looks (no `len()` in the loop): the new keys alone must keep memory bounded.
#[test]
fn keys_streamed_through_with_nothing_counting_them_keep_bytes_bounded() {
    const KEYS: u64 = 1_000_000;
    let gate = KeyedGate::new(1);
    let info = allocation_counter::measure(|| {
        for key in 0..KEYS {
            drop(gate.try_acquire(&key).unwrap());
        }
    });
    assert!(info.bytes_max < 256 * 1024, "{info:?}");
    assert_eq!((gate.len(), gate.in_flight()), (DEFAULT_MAX_IDLE, 0));
    println!("{KEYS} keys streamed, uncounted: {info:?}");
}

// With more keys busy than idle places, the keys a new key has not looked at grow with
// the busy ones: still bounded, by a small multiple of them.
#[test]
fn keys_streamed_past_many_busy_ones_keep_bytes_bounded_by_the_busy_keys() {
    const BUSY: u64 = 4_096;
    const KEYS: u64 = 200_000;
    let gate = KeyedGate::new(1);
    let held: Vec<_> = (0..BUSY)
        .map(|key| gate.try_acquire(&key).unwrap())
        .collect();
    let info = allocation_counter::measure(|| {
        for key in BUSY..BUSY + KEYS {
            drop(gate.try_acquire(&key).unwrap());
        }
    });
    // About 80 bytes per key in memory: the busy ones, `max_idle` idle ones, and at most
    // twice the busy ones not yet looked at; not 200,000 keys' worth (16 MB).
    let bound = (3 * BUSY as usize + DEFAULT_MAX_IDLE) * 128;
    assert!((info.bytes_max as usize) < bound, "{info:?}");
    assert_eq!(gate.len(), BUSY as usize + DEFAULT_MAX_IDLE);
    drop(held);
    assert_eq!(gate.len(), DEFAULT_MAX_IDLE);
}
