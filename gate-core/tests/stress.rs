//! Many tasks on a multi-thread runtime: the limit holds and every permit comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gate_core::Gate;

#[test]
fn a_thousand_tasks_on_two_workers_never_exceed_the_limit() {
    const LIMIT: usize = 7;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let gate = Arc::new(Gate::new(LIMIT));
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));

    runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..1000u64 {
            let (gate, now, max) = (gate.clone(), now.clone(), max.clone());
            tasks.push(tokio::spawn(async move {
                for round in 0..5u64 {
                    let n = 1 + (i + round) as usize % 2;
                    let permit = match (i + round) % 4 {
                        // Some give up waiting, exercising cancellation under contention.
                        0 => match gate.acquire_timeout(Duration::from_micros(50)).await {
                            Ok(p) => p,
                            Err(_) => continue,
                        },
                        _ => gate.acquire_many(n).await.unwrap(),
                    };
                    let k = permit.num_permits();
                    let inside = now.fetch_add(k, Ordering::SeqCst) + k;
                    max.fetch_max(inside, Ordering::SeqCst);
                    if round % 2 == 0 {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(Duration::from_micros(10)).await;
                    }
                    now.fetch_sub(k, Ordering::SeqCst);
                    drop(permit);
                }
            }));
        }
        // Resize while all of that runs.
        for limit in [3, LIMIT, 1, LIMIT] {
            tokio::time::sleep(Duration::from_millis(1)).await;
            gate.set_limit(limit).unwrap();
        }
        for t in tasks {
            t.await.unwrap();
        }
    });

    assert!(
        max.load(Ordering::SeqCst) <= LIMIT,
        "in flight reached {}",
        max.load(Ordering::SeqCst)
    );
    let stats = gate.stats();
    assert_eq!((stats.in_flight, stats.waiting), (0, 0));
    assert_eq!(gate.available_permits(), LIMIT);
}
