//! `GateLayer` in axum, end to end over real TCP on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use gate_tower::GateLayer;
use http::header::RETRY_AFTER;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tower_http::catch_panic::CatchPanicLayer;

mod bodies;
mod support;
use bodies::ChannelBody;
use support::InFlight;

const LIMIT: usize = 5;
const REQUESTS: usize = 100;

/// A handler that stays in flight for a few milliseconds, so requests overlap.
async fn busy(State(tracker): State<Arc<InFlight>>) -> &'static str {
    tracker.enter();
    tokio::time::sleep(Duration::from_millis(5)).await;
    tracker.leave();
    "done"
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one GET and reads the whole response: status, `Retry-After`, body.
async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> (StatusCode, Option<String>, Bytes) {
    let request = Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry_after, body)
}

/// Sends `n` GETs at once and returns their results.
async fn fetch_all(
    addr: SocketAddr,
    path: &'static str,
    n: usize,
) -> Vec<(StatusCode, Option<String>, Bytes)> {
    let client = client();
    let mut set = JoinSet::new();
    for _ in 0..n {
        let client = client.clone();
        set.spawn(async move { fetch(&client, addr, path).await });
    }
    set.join_all().await
}

/// Waits (up to five seconds) for the gate to have nothing in flight: a server may drop a
/// response body just after the client has read it.
async fn until_idle(layer: &GateLayer) {
    for _ in 0..500 {
        if layer.stats().in_flight == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("permits still held: {:?}", layer.stats());
}

async fn assert_capped(app: Router, layer: &GateLayer, tracker: &InFlight) {
    let addr = serve(app).await;
    let results = fetch_all(addr, "/", REQUESTS).await;
    for (status, _, body) in &results {
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(body.as_ref(), b"done");
    }
    let max = tracker.peak();
    assert!(
        max <= LIMIT,
        "{max} handlers ran at once; the limit is {LIMIT}"
    );
    assert_eq!(tracker.completed(), REQUESTS);
    until_idle(layer).await;
    let stats = layer.stats();
    assert_eq!(stats.admitted, REQUESTS as u64);
    assert_eq!((stats.rejected, stats.timed_out), (0, 0));
}

fn patient_layer() -> GateLayer {
    GateLayer::new(LIMIT)
        .max_wait(Duration::from_secs(30))
        .max_waiters(REQUESTS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn router_layer_caps_concurrency() {
    let tracker = Arc::new(InFlight::new());
    let layer = patient_layer();
    let app = Router::new()
        .route("/", get(busy))
        .with_state(Arc::clone(&tracker))
        .layer(layer.clone());
    assert_capped(app, &layer, &tracker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn router_route_layer_caps_concurrency() {
    let tracker = Arc::new(InFlight::new());
    let layer = patient_layer();
    let app = Router::new()
        .route("/", get(busy))
        .route_layer(layer.clone())
        .with_state(Arc::clone(&tracker));
    assert_capped(app, &layer, &tracker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn method_router_layer_caps_concurrency() {
    // With tower's ConcurrencyLimitLayer this way of attaching enforces nothing (axum #2582).
    let tracker = Arc::new(InFlight::new());
    let layer = patient_layer();
    let app = Router::new()
        .route("/", get(busy).layer(layer.clone()))
        .with_state(Arc::clone(&tracker));
    assert_capped(app, &layer, &tracker).await;
}

// Regression: the default queue bound (twice the limit) refused 112 of 160 requests arriving
// together at `GateLayer::new(16)` with a 20 ms handler, though all 160 drain in about 200 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_the_server_drains_within_max_wait_is_served_by_default() {
    const BURST: usize = 160;
    async fn twenty_ms() -> &'static str {
        tokio::time::sleep(Duration::from_millis(20)).await;
        "done"
    }
    let layer = GateLayer::new(16);
    let app = Router::new()
        .route("/", get(twenty_ms))
        .layer(layer.clone());
    let addr = serve(app).await;
    let started = tokio::time::Instant::now();
    let results = tokio::time::timeout(Duration::from_secs(20), fetch_all(addr, "/", BURST))
        .await
        .expect("the burst is answered within 20 s");
    let served = results
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::OK)
        .count();
    assert!(
        served * 100 >= BURST * 95,
        "{served} of {BURST} served in {:?}; {:?}",
        started.elapsed(),
        layer.stats()
    );
    for (status, retry_after, _) in &results {
        assert!(*status == StatusCode::OK || retry_after.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_max_wait_answers_200_or_503_with_retry_after() {
    // The first LIMIT requests hold the handler until every other one has been answered, so
    // the split is exact: LIMIT admitted, the rest refused at once.
    let (release, released) = watch::channel(false);
    let tracker = Arc::new(InFlight::new());
    let layer = GateLayer::new(LIMIT).max_wait(Duration::ZERO);
    let handler = {
        let tracker = Arc::clone(&tracker);
        move || {
            let tracker = Arc::clone(&tracker);
            let mut released = released.clone();
            async move {
                tracker.enter();
                released.wait_for(|go| *go).await.unwrap();
                tracker.leave();
                "done"
            }
        }
    };
    let app = Router::new().route("/", get(handler)).layer(layer.clone());
    let addr = serve(app).await;

    let client = client();
    let mut set = JoinSet::new();
    for _ in 0..REQUESTS {
        let client = client.clone();
        set.spawn(async move { fetch(&client, addr, "/").await });
    }
    let mut results = Vec::new();
    while results.len() < REQUESTS - LIMIT {
        results.push(set.join_next().await.unwrap().unwrap());
    }
    release.send(true).unwrap();
    results.extend(set.join_all().await);

    let ok = results
        .iter()
        .filter(|(status, ..)| *status == StatusCode::OK)
        .count();
    for (status, retry_after, _) in &results {
        match *status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => assert_eq!(retry_after.as_deref(), Some("1")),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, tracker.completed());
    assert_eq!(ok, LIMIT);
    assert_eq!(layer.stats().rejected, (REQUESTS - LIMIT) as u64);
    until_idle(&layer).await;
}

/// Serves `/stream`, whose body is fed by the sender each request hands to the test, and
/// `/`, a plain handler; both behind `layer` (limit 1, no waiting).
async fn streaming_app(layer: GateLayer) -> (SocketAddr, mpsc::Receiver<mpsc::Sender<Bytes>>) {
    let (senders_tx, senders_rx) = mpsc::channel(8);
    let stream = move || {
        let senders_tx = senders_tx.clone();
        async move {
            let (tx, rx) = mpsc::channel(8);
            senders_tx.send(tx).await.unwrap();
            Body::new(ChannelBody(rx))
        }
    };
    let app = Router::new()
        .route("/stream", get(stream))
        .route("/", get(|| async { "plain" }))
        .layer(layer);
    (serve(app).await, senders_rx)
}

async fn start_stream(
    addr: SocketAddr,
    senders: &mut mpsc::Receiver<mpsc::Sender<Bytes>>,
) -> (hyper::body::Incoming, mpsc::Sender<Bytes>) {
    let request = Request::get(format!("http://{addr}/stream"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = tokio::spawn(client().request(request));
    let chunks = senders.recv().await.unwrap();
    chunks.send(Bytes::from_static(b"first ")).await.unwrap();
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "first ");
    (body, chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_body_holds_its_permit_until_the_end() {
    let layer = GateLayer::new(1).max_wait(Duration::ZERO);
    let (addr, mut senders) = streaming_app(layer.clone()).await;
    let (mut body, chunks) = start_stream(addr, &mut senders).await;

    // Headers and a first chunk are out, the body is not finished: still in flight.
    assert_eq!(layer.stats().in_flight, 1);
    let (status, retry_after, _) = fetch(&client(), addr, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after.as_deref(), Some("1"));

    chunks.send(Bytes::from_static(b"last")).await.unwrap();
    drop(chunks);
    let rest = (&mut body).collect().await.unwrap().to_bytes();
    assert_eq!(rest, "last");
    until_idle(&layer).await;
    assert_eq!(fetch(&client(), addr, "/").await.0, StatusCode::OK);

    // A client that hangs up mid-stream releases the permit too.
    let (body, chunks) = start_stream(addr, &mut senders).await;
    assert_eq!(layer.stats().in_flight, 1);
    drop(body);
    until_idle(&layer).await;
    drop(chunks);
    assert_eq!(fetch(&client(), addr, "/").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_body_releases_at_the_head_when_asked() {
    let layer = GateLayer::new(1)
        .max_wait(Duration::ZERO)
        .hold_until_body_end(false);
    let (addr, mut senders) = streaming_app(layer.clone()).await;
    let (mut body, chunks) = start_stream(addr, &mut senders).await;

    // The stream goes on, but the permit went back with the response head.
    until_idle(&layer).await;
    assert_eq!(fetch(&client(), addr, "/").await.0, StatusCode::OK);

    chunks.send(Bytes::from_static(b"last")).await.unwrap();
    drop(chunks);
    assert_eq!((&mut body).collect().await.unwrap().to_bytes(), "last");
}

async fn assert_panics_leak_nothing(app: Router, layer: &GateLayer) {
    let addr = serve(app).await;
    let results = fetch_all(addr, "/panic", 3 * LIMIT).await;
    for (status, ..) in &results {
        // Either caught as a 500, or refused while other panicking requests held the gate.
        assert!(
            *status == StatusCode::INTERNAL_SERVER_ERROR
                || *status == StatusCode::SERVICE_UNAVAILABLE,
            "unexpected status {status}"
        );
    }
    assert!(
        results
            .iter()
            .any(|(status, ..)| *status == StatusCode::INTERNAL_SERVER_ERROR)
    );
    until_idle(layer).await;
    assert_eq!(layer.gate().unwrap().available_permits(), LIMIT);
    assert_eq!(fetch(&client(), addr, "/").await.0, StatusCode::OK);
}

async fn panics() -> &'static str {
    panic!("handler bug")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_inside_catch_panic_leaks_no_permit() {
    let layer = GateLayer::new(LIMIT).max_wait(Duration::ZERO);
    let app = Router::new()
        .route("/panic", get(panics))
        .route("/", get(|| async { "fine" }))
        .layer(CatchPanicLayer::new())
        .layer(layer.clone());
    assert_panics_leak_nothing(app, &layer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_unwinding_through_the_gate_leaks_no_permit() {
    // Catch-panic outside the gate: the panic unwinds through the gate's response future.
    let layer = GateLayer::new(LIMIT).max_wait(Duration::ZERO);
    let app = Router::new()
        .route("/panic", get(panics))
        .route("/", get(|| async { "fine" }))
        .layer(layer.clone())
        .layer(CatchPanicLayer::new());
    assert_panics_leak_nothing(app, &layer).await;
}
