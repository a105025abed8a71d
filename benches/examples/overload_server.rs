//! An axum server whose handler takes 20 ms, behind `GateLayer::new(16)` with its defaults or
//! behind tower's `ConcurrencyLimitLayer::new(16)`: about 800 requests a second of capacity,
//! for `load` to push past it.
//!
//! Run with: cargo run --release -p benches --example overload_server -- MODE PORT
//! where MODE is `gate` or `climit`. It binds 127.0.0.1 only. `GET /stats` (outside the
//! layer) answers the gate's wait p50 and p99 in microseconds and its refusal counters.

use std::time::Duration;

use axum::{Router, routing::get};
use gate_tower::GateLayer;
use tower::Layer;
use tower::limit::ConcurrencyLimitLayer;

const LIMIT: usize = 16;

async fn work() -> &'static str {
    tokio::time::sleep(Duration::from_millis(20)).await;
    "done"
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "gate".into());
    let port: u16 = args
        .next()
        .map_or(3998, |p| p.parse().expect("PORT is a number"));
    let layer = GateLayer::new(LIMIT);
    let stats = layer.clone();
    let work = Router::new().route("/", get(work));
    // Both layers wrap the whole router once: axum calls `Layer::layer` again for each
    // request on a route whose handler it has not yet bound to its state, and
    // `ConcurrencyLimitLayer` makes a new semaphore on each call (a `GateLayer`'s clones
    // share one gate however often it is called).
    let app = match mode.as_str() {
        "gate" => Router::new().fallback_service(layer.layer(work)),
        "climit" => Router::new().fallback_service(ConcurrencyLimitLayer::new(LIMIT).layer(work)),
        other => panic!("MODE is gate or climit, not {other:?}"),
    };
    let app = app.route(
        "/stats",
        get(move || async move {
            let stats = stats.stats();
            format!(
                "wait_p50_us {} wait_p99_us {} admitted {} rejected {} timed_out {}\n",
                stats.wait.p50.as_micros(),
                stats.wait.p99.as_micros(),
                stats.admitted,
                stats.rejected,
                stats.timed_out
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind 127.0.0.1");
    axum::serve(listener, app).await.expect("serve");
}
