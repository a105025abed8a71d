//! A client-side `GateLayer` in front of a real HTTP client, over TCP on 127.0.0.1: the
//! upstream's 429 pauses the limiter for its `retry-after-ms` and shrinks its adaptive
//! limit in every mode, the default `Respond` (holding the permit to the body's end or
//! only to the head) and `Reject` (`refuse_with_error`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use gate_core::Limiter;
use gate_core::adaptive::Aimd;
use gate_tower::GateLayer;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

const INITIAL: usize = 10;

/// An upstream that rate-limits `/limited` with OpenAI's `retry-after-ms` and answers `/ok`.
async fn upstream() -> SocketAddr {
    let app = Router::new()
        .route(
            "/limited",
            get(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after-ms", "30000"), ("retry-after", "30")],
                    "Rate limit reached",
                )
            }),
        )
        .route("/ok", get(|| async { "fine" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn limiter() -> Arc<Limiter> {
    let aimd = Aimd::builder().initial(INITIAL).max(100).build().unwrap();
    Arc::new(Limiter::builder().adaptive(aimd).build().unwrap())
}

fn request(addr: SocketAddr, path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap()
}

/// What the limiter learned from one call to `path`: whether it is paused, and for about
/// how long, and its limit.
fn learned(limiter: &Limiter, before: Instant) -> (Option<Duration>, Option<usize>) {
    let paused = limiter.paused_until().map(|until| {
        let until: Instant = until.into_std();
        until.saturating_duration_since(before)
    });
    (paused, limiter.limit())
}

fn assert_pushed_back(mode: &str, (paused, limit): (Option<Duration>, Option<usize>)) {
    let paused = paused.unwrap_or_else(|| panic!("{mode}: the 429 did not pause the limiter"));
    assert!(
        paused > Duration::from_secs(25) && paused <= Duration::from_secs(31),
        "{mode}: paused for {paused:?}, the server asked for 30 s"
    );
    assert!(
        limit.unwrap() < INITIAL,
        "{mode}: the adaptive limit did not shrink: {limit:?}"
    );
}

#[tokio::test]
async fn respond_mode_learns_from_the_upstreams_429_holding_to_the_body_end() {
    let addr = upstream().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let limiter = limiter();
    let layer = GateLayer::with_limiter(Arc::clone(&limiter));
    let before = Instant::now();
    let response = layer
        .layer(client)
        .oneshot(request(addr, "/limited"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    response.into_body().collect().await.unwrap();
    assert_pushed_back("respond, body", learned(&limiter, before));
}

#[tokio::test]
async fn respond_mode_learns_from_the_upstreams_429_holding_to_the_head() {
    let addr = upstream().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let limiter = limiter();
    let layer = GateLayer::with_limiter(Arc::clone(&limiter)).hold_until_body_end(false);
    let before = Instant::now();
    let response = layer
        .layer(client)
        .oneshot(request(addr, "/limited"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_pushed_back("respond, head", learned(&limiter, before));
}

#[tokio::test]
async fn reject_mode_learns_from_the_upstreams_429() {
    // Regression: in `refuse_with_error` mode every `Ok` counted as a success, so a 429
    // neither paused the limiter nor shrank its limit.
    let addr = upstream().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let limiter = limiter();
    let layer = GateLayer::with_limiter(Arc::clone(&limiter)).refuse_with_error();
    let service = layer.layer(client);

    // A success teaches no pause, and does not shrink the limit.
    let response = service.clone().oneshot(request(addr, "/ok")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(learned(&limiter, Instant::now()), (None, Some(INITIAL)));

    let before = Instant::now();
    let response = service.oneshot(request(addr, "/limited")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_pushed_back("reject", learned(&limiter, before));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), b"Rate limit reached");
}
