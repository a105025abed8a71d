use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures_util::stream;
use tokio::time::sleep;

use super::*;
use crate::retry::Failure;
use crate::{Gate, Retry, Unlimited};

/// Counts values alive now and the most ever alive at once.
#[derive(Debug, Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    fn enter(self: &Arc<Self>) -> Live {
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        Live(Arc::clone(self))
    }

    fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }
}

/// One unit counted by a [`Gauge`] until dropped.
#[derive(Debug)]
struct Live(Arc<Gauge>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn results_come_back_in_input_order_whatever_the_finishing_order() {
    let gate = Gate::new(4);
    // Later items finish first.
    let report = Batch::new(&gate)
        .run(0..20u64, |i| async move {
            sleep(Duration::from_millis(100 * (20 - i))).await;
            Ok::<_, ()>(i * i)
        })
        .await;
    let values: Vec<u64> = report
        .results
        .iter()
        .map(|r| *r.as_ref().unwrap())
        .collect();
    assert_eq!(values, (0..20).map(|i| i * i).collect::<Vec<_>>());
    assert_eq!(report.summary.total, 20);
}

#[tokio::test(start_paused = true)]
async fn one_failure_never_loses_the_others() {
    let gate = Gate::new(3);
    let report = Batch::new(&gate)
        .run(0..10u32, |i| async move {
            sleep(Duration::from_millis(10)).await;
            if i % 4 == 1 {
                Err(format!("bad {i}"))
            } else {
                Ok(i)
            }
        })
        .await;
    for (i, result) in report.results.iter().enumerate() {
        match result {
            Ok(v) => assert_eq!(*v as usize, i),
            Err(e) => {
                assert_eq!(i % 4, 1);
                assert_eq!(e.attempts(), 1);
                assert_eq!(e.failure(), &Failure::Error(format!("bad {i}")));
            }
        }
    }
    let failed: Vec<usize> = report.failures().map(|(i, _)| i).collect();
    assert_eq!(failed, [1, 5, 9]);
    let s = &report.summary;
    assert_eq!(
        (s.succeeded, s.failed, s.attempts, s.retries),
        (7, 3, 10, 0)
    );
    assert!(!report.all_succeeded());
}

#[tokio::test(start_paused = true)]
async fn retries_are_counted_per_attempt_and_each_attempt_gets_the_item() {
    let gate = Gate::new(2);
    let calls = Arc::new(std::sync::Mutex::new(vec![0u32; 6]));
    let policy = Retry::fixed(3, Duration::from_secs(1));
    let report = Batch::new(&gate)
        .retry(policy)
        .run(0..6usize, |i| {
            let calls = Arc::clone(&calls);
            async move {
                let n = {
                    let mut calls = calls.lock().unwrap();
                    calls[i] += 1;
                    calls[i]
                };
                // Item i fails its first i attempts; items 4 and 5 run out of retries.
                if n as usize <= i { Err(i) } else { Ok(n) }
            }
        })
        .await;
    assert_eq!(report.results[0], Ok(1));
    assert_eq!(report.results[3], Ok(4));
    assert_eq!(report.results[4].as_ref().unwrap_err().attempts(), 4);
    assert_eq!(report.results[5].as_ref().unwrap_err().attempts(), 4);
    let s = &report.summary;
    // Retries: 0 + 1 + 2 + 3 + 3 + 3.
    assert_eq!((s.succeeded, s.failed, s.retries), (4, 2, 12));
    assert_eq!(s.attempts, s.total as u64 + s.retries);
    assert_eq!(*calls.lock().unwrap(), [1, 2, 3, 4, 4, 4]);
}

#[tokio::test(start_paused = true)]
async fn never_more_than_the_gate_limit_run_at_once() {
    let gate = Gate::new(5);
    let gauge = Arc::new(Gauge::default());
    let report = Batch::new(&gate)
        .run(0..100, |i| {
            let gauge = Arc::clone(&gauge);
            async move {
                let _inside = gauge.enter();
                sleep(Duration::from_secs(1)).await;
                Ok::<_, ()>(i)
            }
        })
        .await;
    assert_eq!(gauge.peak(), 5);
    // 100 calls of 1s through 5 permits: 20 rounds, as in the seed's 20-calls example.
    assert_eq!(report.summary.elapsed, Duration::from_secs(20));
    let stats = report.summary.gate.as_ref().expect("a gate keeps stats");
    assert_eq!(stats.admitted, 100);
    assert_eq!(stats.in_flight, 0);
    // Lazy pulling keeps only the window (16) queued behind the 5 permits, so nobody waits
    // more than about 16 / 5 rounds; pulling all 100 at once would make the last wait 19s.
    // (Quantiles are histogram estimates, within 25%.)
    assert!(stats.wait.max >= Duration::from_secs(3), "{:?}", stats.wait);
    assert!(stats.wait.max <= Duration::from_secs(5), "{:?}", stats.wait);
}

/// A million items with zero-latency work: the batch never holds more than the gate's limit
/// plus its window of them, and still returns every result in order.
#[tokio::test]
async fn a_million_items_keep_live_items_bounded_by_limit_plus_window() {
    const N: usize = 1_000_000;
    let gate = Gate::new(8);
    let gauge = Arc::new(Gauge::default());
    let pulled = Arc::new(AtomicUsize::new(0));
    let items = {
        let (gauge, pulled) = (Arc::clone(&gauge), Arc::clone(&pulled));
        // Each item owns a counted token until its future is dropped.
        (0..N).map(move |i| {
            pulled.fetch_add(1, SeqCst);
            (i, Arc::new(gauge.enter()))
        })
    };
    let report = Batch::new(&gate)
        .window(4)
        .run(items, |(i, _token)| async move {
            tokio::task::yield_now().await;
            Ok::<_, ()>(i)
        })
        .await;
    assert_eq!(pulled.load(SeqCst), N);
    assert_eq!(report.results.len(), N);
    assert!(report.results.iter().enumerate().all(|(i, r)| *r == Ok(i)));
    assert_eq!(gauge.now.load(SeqCst), 0, "every item was dropped");
    let peak = gauge.peak();
    assert!(peak <= 8 + 4, "{peak} items alive at once");
    assert!(peak >= 8, "the gate was kept busy: peak {peak}");
}

#[tokio::test]
async fn items_are_pulled_only_when_there_is_room() {
    let gate = Gate::new(2);
    let pulled = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&pulled);
    let (release, wait) = tokio::sync::watch::channel(false);
    let batch = Batch::new(&gate).window(1).run(
        (0..100).inspect(move |_| {
            seen.fetch_add(1, SeqCst);
        }),
        move |i| {
            let mut wait = wait.clone();
            async move {
                wait.wait_for(|go| *go).await.map_err(drop)?;
                Ok::<_, ()>(i)
            }
        },
    );
    let mut batch = std::pin::pin!(batch);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(batch.as_mut().poll(cx))).await;
    assert!(first.is_pending());
    assert_eq!(pulled.load(SeqCst), 3, "limit 2 + window 1");
    release.send(true).unwrap();
    let report = batch.await;
    assert_eq!(report.summary.succeeded, 100);
}

#[tokio::test(start_paused = true)]
async fn the_bound_follows_a_gate_resized_mid_batch() {
    let gate = Arc::new(Gate::new(2));
    let gauge = Arc::new(Gauge::default());
    let resizer = {
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            sleep(Duration::from_millis(2_500)).await;
            gate.set_limit(6).unwrap();
        })
    };
    let report = Batch::new(Arc::clone(&gate))
        .window(1)
        .run(0..60, |i| {
            let gauge = Arc::clone(&gauge);
            async move {
                let _inside = gauge.enter();
                sleep(Duration::from_secs(1)).await;
                Ok::<_, ()>(i)
            }
        })
        .await;
    resizer.await.unwrap();
    assert_eq!(report.summary.succeeded, 60);
    assert_eq!(gauge.peak(), 6, "the batch grew with the gate");
    // 3s at 2 wide (6 items), then 54 items 6 wide (9s).
    assert_eq!(report.summary.elapsed, Duration::from_secs(12));
}

#[tokio::test(start_paused = true)]
async fn streams_are_pulled_lazily_and_slow_producers_overlap_with_work() {
    let gate = Gate::new(4);
    // A producer that takes 100ms per item, and work that takes 1s: they overlap.
    let items = stream::unfold(0u32, |n| async move {
        if n == 8 {
            return None;
        }
        sleep(Duration::from_millis(100)).await;
        Some((n, n + 1))
    });
    let report = Batch::new(&gate)
        .run_stream(items, |n| async move {
            sleep(Duration::from_secs(1)).await;
            Ok::<_, ()>(n)
        })
        .await;
    let values: Vec<u32> = report.successes().copied().collect();
    assert_eq!(values, (0..8).collect::<Vec<_>>());
    // Items 0..4 start as they are produced (0.1s..0.4s) and items 4..8 take their permits
    // as they come back (1.1s..1.4s), so the batch ends at 2.4s. Collecting the stream
    // before starting would end at 0.8s + 2s.
    assert_eq!(report.summary.elapsed, Duration::from_millis(2_400));
}

#[tokio::test]
async fn unlimited_runs_a_window_at_a_time_unless_told_otherwise() {
    let gauge = Arc::new(Gauge::default());
    let run = |batch: Batch<Unlimited, ()>| {
        let gauge = Arc::clone(&gauge);
        gauge.peak.store(0, SeqCst);
        batch.run(0..200, move |i| {
            let gauge = Arc::clone(&gauge);
            async move {
                let _inside = gauge.enter();
                tokio::task::yield_now().await;
                Ok(i)
            }
        })
    };
    run(Batch::new(Unlimited).window(5)).await;
    assert_eq!(gauge.peak(), 5);
    let report = run(Batch::new(Unlimited).max_in_flight(usize::MAX)).await;
    assert_eq!(gauge.peak(), 200, "everything at once, as asyncio.gather");
    assert_eq!(report.summary.gate, None);
}

#[tokio::test]
async fn a_closed_gate_fails_every_item_without_an_attempt() {
    let gate = Gate::new(2);
    gate.close();
    let report = Batch::new(&gate)
        .retry(Retry::new(3))
        .run(0..5, |i| async move { Ok::<_, ()>(i) })
        .await;
    assert_eq!(report.summary.failed, 5);
    assert_eq!(report.summary.attempts, 0);
    for r in &report.results {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.attempts(), 0);
        assert_eq!(e.failure(), &Failure::Gate(crate::AcquireError::Closed));
    }
}

#[tokio::test]
async fn an_empty_batch_reports_nothing_done() {
    let gate = Gate::new(2);
    let report = Batch::new(&gate)
        .label("empty")
        .run(Vec::<u8>::new(), |i| async move { Ok::<_, ()>(i) })
        .await;
    assert!(report.results.is_empty());
    assert!(report.all_succeeded());
    assert!(report.summary.to_string().starts_with("empty: 0 items in "));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_batch_releases_every_permit_and_pulls_no_more() {
    let gate = Gate::new(3);
    let pulled = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&pulled);
    let batch = Batch::new(&gate).window(2).run(
        (0..1_000).inspect(move |_| {
            seen.fetch_add(1, SeqCst);
        }),
        |i| async move {
            sleep(Duration::from_secs(10)).await;
            Ok::<_, ()>(i)
        },
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(15), batch)
            .await
            .is_err()
    );
    assert_eq!(gate.available_permits(), 3);
    // 5 started, 3 finished at 10s and were replaced: 8 pulled.
    assert_eq!(pulled.load(SeqCst), 8);
}

#[cfg(feature = "progress")]
mod progress {
    use std::io::IsTerminal;
    use std::process::{Command, Stdio};

    use super::*;

    const CHILD: &str = "GATE_BATCH_PROGRESS_CHILD";

    /// Runs a batch with a progress bar in a child process whose stderr is a pipe: the bar
    /// hides itself and the pipe receives nothing from it.
    #[test]
    fn progress_bar_is_silent_when_stderr_is_a_pipe() {
        if std::env::var_os(CHILD).is_some() {
            assert!(!std::io::stderr().is_terminal());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let gate = Gate::new(2);
            let report = rt.block_on(Batch::new(&gate).progress(true).label("child").run(
                0..50,
                |i| async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok::<_, ()>(i)
                },
            ));
            assert_eq!(report.summary.succeeded, 50);
            println!("child batch done");
            return;
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "batch::tests::progress::progress_bar_is_silent_when_stderr_is_a_pipe",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("child batch done"), "{stdout}");
        assert!(
            !stderr.contains("child"),
            "the bar drew on a pipe: {stderr:?}"
        );
        assert!(
            !stderr.contains('\u{1b}'),
            "escape codes on a pipe: {stderr:?}"
        );
    }
}
