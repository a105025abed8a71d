//! Under a binding global limit, a keyed gate serves the keys with callers waiting in turn:
//! one flooding tenant cannot hold up another by more than about one turn, and weights
//! share the permits out (paused clock).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gate_core::keyed::{KeyedGate, Priority};
use tokio::time::{Instant, sleep};

/// How long each admitted request holds its permit.
const SERVICE: Duration = Duration::from_millis(10);

/// Lets every spawned task run until the gate has `in_flight` out and `waiting` queued.
async fn settle<S: std::hash::BuildHasher>(
    gate: &KeyedGate<char, S>,
    in_flight: usize,
    waiting: usize,
) {
    while (gate.in_flight(), gate.waiting()) != (in_flight, waiting) {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_flooding_tenant_delays_a_one_at_a_time_tenant_by_about_one_turn() {
    const FLOOD: usize = 10_000;
    const GLOBAL: usize = 10;
    let gate = Arc::new(KeyedGate::builder(FLOOD).global(GLOBAL).build().unwrap());
    // Service times spread over 5..15 ms, so releases do not all fall on one instant.
    let flood: Vec<_> = (0..FLOOD as u64)
        .map(|i| {
            let gate = Arc::clone(&gate);
            let service = SERVICE / 2 + Duration::from_micros(i * 7_919 % 10_000);
            tokio::spawn(async move {
                let _permit = gate.acquire(&'a').await.unwrap();
                sleep(service).await;
            })
        })
        .collect();
    settle(&gate, GLOBAL, FLOOD - GLOBAL).await;

    let mut waits = Vec::new();
    for _ in 0..200 {
        let asked = Instant::now();
        let permit = gate.acquire(&'b').await.unwrap();
        waits.push(asked.elapsed());
        sleep(SERVICE).await;
        drop(permit);
    }
    waits.sort();
    let p99 = waits[waits.len() * 99 / 100];
    // In one global queue, "b" would wait behind the whole flood: 1,000 service times;
    // served in turn, it waits for the next release, a fraction of one.
    println!("'b' waits: p50 {:?}, p99 {p99:?}", waits[waits.len() / 2]);
    assert!(p99 <= 2 * SERVICE, "p99 wait {p99:?}, waits {waits:?}");
    // The flood is still being served meanwhile.
    assert!(gate.waiting() > 0);
    assert_eq!(gate.in_flight(), GLOBAL);
    flood.iter().for_each(tokio::task::JoinHandle::abort);
}

#[tokio::test(start_paused = true)]
async fn weights_1_to_3_share_the_permits_25_to_75() {
    const EACH: usize = 2_000;
    const GLOBAL: usize = 4;
    let gate = Arc::new(
        KeyedGate::builder(EACH)
            .global(GLOBAL)
            .weight(|key: &char| if *key == 'b' { 3 } else { 1 })
            .build()
            .unwrap(),
    );
    let served = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..EACH)
        .flat_map(|_| ['a', 'b'])
        .map(|key| {
            let (gate, served) = (Arc::clone(&gate), Arc::clone(&served));
            tokio::spawn(async move {
                let _permit = gate.acquire(&key).await.unwrap();
                served.lock().unwrap().push(key);
                sleep(SERVICE).await;
            })
        })
        .collect();
    settle(&gate, GLOBAL, 2 * EACH - GLOBAL).await;
    // 1,000 grants while both keys have callers queued.
    while served.lock().unwrap().len() < 1_100 {
        sleep(SERVICE).await;
    }
    let served = served.lock().unwrap();
    let window = &served[100..1_100];
    let a = window.iter().filter(|&&key| key == 'a').count();
    let share = a as f64 / window.len() as f64;
    println!("'a' (weight 1) got {share:.3} of 1,000 permits, 'b' (weight 3) the rest");
    assert!(
        (0.20..=0.30).contains(&share),
        "'a' got {share:.3} of the permits"
    );
    drop(served);
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
}

#[tokio::test(start_paused = true)]
async fn with_equal_weights_two_flooding_tenants_alternate() {
    let gate = Arc::new(KeyedGate::builder(100).global(1).build().unwrap());
    let held = gate.try_acquire(&'x').unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    for key in ['a'; 50].into_iter().chain(['b'; 50]) {
        let (gate, served) = (Arc::clone(&gate), Arc::clone(&served));
        tokio::spawn(async move {
            let _permit = gate.acquire(&key).await.unwrap();
            served.lock().unwrap().push(key);
            sleep(SERVICE).await;
        });
    }
    settle(&gate, 1, 100).await;
    drop(held);
    sleep(SERVICE * 101).await;
    let served = served.lock().unwrap();
    assert_eq!(served.len(), 100);
    // All of "a" queued first, yet "b" gets every other permit.
    assert!(
        served.chunks(2).all(|pair| pair == ['a', 'b']),
        "{served:?}"
    );
}

/// Queues `count` callers of each key, in order, behind a permit held by `x`; each records
/// its key when admitted and holds its permit for one service time.
async fn flood_behind_a_held_permit(
    gate: &Arc<KeyedGate<char>>,
    keys: &[(char, usize)],
) -> Arc<Mutex<Vec<char>>> {
    let held = gate.try_acquire(&'x').unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut queued = 0;
    for &(key, count) in keys {
        for _ in 0..count {
            let (gate, served) = (Arc::clone(gate), Arc::clone(&served));
            tokio::spawn(async move {
                let _permit = gate.acquire(&key).await.unwrap();
                served.lock().unwrap().push(key);
                sleep(SERVICE).await;
            });
        }
        queued += count;
    }
    settle(gate, 1, queued).await;
    drop(held);
    served
}

#[tokio::test(start_paused = true)]
async fn an_interactive_caller_is_served_before_a_batch_flood_queued_earlier() {
    let gate = Arc::new(
        KeyedGate::builder(100)
            .global(1)
            .priority(|key: &char| {
                if *key == 'b' {
                    Priority::Batch
                } else {
                    Priority::Interactive
                }
            })
            .build()
            .unwrap(),
    );
    let served = flood_behind_a_held_permit(&gate, &[('b', 50), ('i', 1)]).await;
    sleep(SERVICE / 2).await;
    assert_eq!(served.lock().unwrap().first(), Some(&'i'));
}

#[tokio::test(start_paused = true)]
async fn while_both_classes_wait_one_permit_in_batch_every_goes_to_batch() {
    let gate = Arc::new(
        KeyedGate::builder(100)
            .global(1)
            .priority(|key: &char| {
                if *key == 'b' {
                    Priority::Batch
                } else {
                    Priority::Interactive
                }
            })
            .batch_every(4)
            .build()
            .unwrap(),
    );
    let served = flood_behind_a_held_permit(&gate, &[('b', 60), ('i', 60)]).await;
    sleep(SERVICE * 40).await;
    let served = served.lock().unwrap();
    let first_40 = &served[..40];
    let batch = first_40.iter().filter(|&&key| key == 'b').count();
    // Not starved, and not more than its guarded share while interactive callers wait.
    assert_eq!(batch, 10, "{first_40:?}");
    assert!(
        first_40.chunks(4).all(|four| four == ['i', 'i', 'i', 'b']),
        "{first_40:?}"
    );
}
