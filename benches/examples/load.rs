//! A bounded load generator for `overload_server`, in the manner of `hey -c WORKERS -q RATE`:
//! each of `WORKERS` workers sends at most `RATE` requests a second, one at a time, all
//! starting together (so arrivals come in bursts), for `SECONDS`; `WORKERS 0 0` sends one
//! burst of `WORKERS` requests at once instead. It prints goodput (answers `200` a second),
//! refusals, and the served latency's p50 and p99.
//!
//! Run with: cargo run --release -p benches --example load -- PORT WORKERS RATE SECONDS
//! It connects to 127.0.0.1 only.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;

/// What one worker saw: latencies of served requests, and how many were refused.
#[derive(Debug, Default)]
struct Seen {
    served: Vec<Duration>,
    refused: u64,
    failed: u64,
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: PORT WORKERS RATE SECONDS"))
        .collect();
    let [port, workers, rate, seconds] = args[..] else {
        panic!("usage: load PORT WORKERS RATE SECONDS");
    };
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (client, uri) = (client.clone(), uri.clone());
        set.spawn(async move {
            let mut seen = Seen::default();
            let mut tick = (rate > 0).then(|| {
                tokio::time::interval(Duration::from_secs(1) / u32::try_from(rate).unwrap())
            });
            loop {
                if let Some(tick) = &mut tick {
                    tick.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let sent = Instant::now();
                let request = Request::get(uri.clone()).body(Empty::new()).unwrap();
                match client.request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let ok = response.into_body().collect().await.is_ok();
                        match status {
                            StatusCode::OK if ok => seen.served.push(sent.elapsed()),
                            StatusCode::SERVICE_UNAVAILABLE => seen.refused += 1,
                            _ => seen.failed += 1,
                        }
                    }
                    Err(_) => seen.failed += 1,
                }
                if tick.is_none() {
                    break;
                }
            }
            seen
        });
    }
    let mut all = Seen::default();
    for seen in set.join_all().await {
        all.served.extend(seen.served);
        all.refused += seen.refused;
        all.failed += seen.failed;
    }
    let elapsed = start.elapsed();
    all.served.sort();
    let quantile = |q: f64| {
        all.served
            .get(((all.served.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    // Over the whole run, the tail of answers after the last send included.
    let secs = elapsed.as_secs_f64();
    println!(
        "served {} refused {} failed {} in {:.2}s: goodput {:.0}/s, p50 {:.0} ms, p99 {:.0} ms",
        all.served.len(),
        all.refused,
        all.failed,
        elapsed.as_secs_f64(),
        all.served.len() as f64 / secs,
        quantile(0.5).as_secs_f64() * 1e3,
        quantile(0.99).as_secs_f64() * 1e3,
    );
}
