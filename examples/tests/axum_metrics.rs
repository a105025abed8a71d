//! The axum example's `/metrics` over 127.0.0.1: scraped while 40 requests load the gate,
//! it shows the gate full with callers queued; scraped after, its counters add up to the
//! requests sent.

#[allow(dead_code)]
#[path = "../examples/axum_server.rs"]
mod axum_server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum_server::InFlight;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn scrape(addr: SocketAddr) -> String {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let uri = format!("http://{addr}/metrics").parse().unwrap();
    let response = client.get(uri).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of the series `name{labels}` in Prometheus text: the line that starts with it.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_gate_under_load() {
    let in_flight = Arc::new(InFlight::default());
    let app = axum_server::app(
        axum_server::layer(),
        Arc::clone(&in_flight),
        axum_server::install_metrics(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let load = tokio::spawn(axum_server::burst(addr, "/slow", 40));
    // Scrape once the gate is full: 4 handlers run (each for 200 ms).
    tokio::time::timeout(Duration::from_secs(10), async {
        while in_flight.now.load(Ordering::SeqCst) < 4 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the load reaches the handlers");
    let during = scrape(addr).await;
    assert_eq!(value(&during, r#"gate_limit{gate_name="axum"}"#), 4.0);
    let held = value(&during, r#"gate_in_flight{gate_name="axum"}"#);
    assert!((1.0..=4.0).contains(&held), "{during}");
    let waiting = value(&during, r#"gate_waiting{gate_name="axum"}"#);
    assert!((0.0..=8.0).contains(&waiting), "{during}");
    assert!(during.contains("# TYPE gate_wait_duration"), "{during}");

    let (ok, refused) = load.await.unwrap();
    assert_eq!(ok + refused, 40);
    let after = scrape(addr).await;
    let admissions = |outcome: &str| {
        value(
            &after,
            &format!(r#"gate_admissions{{gate_name="axum",outcome="{outcome}"}}"#),
        )
    };
    assert_eq!(admissions("admitted"), ok as f64, "{after}");
    assert_eq!(
        admissions("rejected") + admissions("timed_out"),
        refused as f64,
        "{after}"
    );
    assert_eq!(value(&after, r#"gate_in_flight{gate_name="axum"}"#), 0.0);
    // Those who queued waited for a handler (200 ms) to finish, within `max_wait` (1 s).
    let waited = value(&after, r#"gate_wait_duration_count{gate_name="axum"}"#);
    assert!(waited >= 1.0 && waited <= admissions("admitted"), "{after}");
    let mean = value(&after, r#"gate_wait_duration_sum{gate_name="axum"}"#) / waited;
    assert!((0.05..=1.0).contains(&mean), "{after}");
}
