//! The axum hello world that `benches/wrk.sh` loads with `wrk`: with no layer, with
//! `GateLayer`, or with tower's `ConcurrencyLimitLayer`, all at a limit the load never
//! reaches, so that what is measured is the cost of the layer, not of waiting.
//!
//! Run with: cargo run --release -p benches --example hello_server -- MODE PORT
//! where MODE is `none`, `gate` or `climit`. It binds 127.0.0.1 only.

use std::time::Duration;

use axum::{Router, routing::get};
use gate_tower::GateLayer;

const LIMIT: usize = 1024;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "none".into());
    let port: u16 = args
        .next()
        .map_or(3999, |p| p.parse().expect("PORT is a number"));
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    let app = match mode.as_str() {
        "none" => app,
        "gate" => app.layer(
            GateLayer::new(LIMIT)
                .max_wait(Duration::from_secs(5))
                .max_waiters(4 * LIMIT),
        ),
        "climit" => app.layer(tower::limit::ConcurrencyLimitLayer::new(LIMIT)),
        other => panic!("MODE is none, gate or climit, not {other:?}"),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind 127.0.0.1");
    axum::serve(listener, app).await.expect("serve");
}
