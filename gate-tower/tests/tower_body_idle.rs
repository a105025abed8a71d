//! A response body that holds its permit gives it back when its reader stops reading, and
//! only then: at the poll level, on tokio's paused clock.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gate_core::Limiter;
use gate_tower::GateLayer;
use gate_tower::body::ResponseBody;
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};
use tower::{Layer, ServiceExt, service_fn};

mod bodies;
use bodies::{ChannelBody, Endless};

const IDLE: Duration = GateLayer::DEFAULT_BODY_IDLE_TIMEOUT;
const MS: Duration = Duration::from_millis(1);

/// Runs one request through `layer` to a service answering with `body`, and returns the
/// response's body.
async fn respond<B>(layer: &GateLayer, body: B) -> ResponseBody<B> {
    let body = Arc::new(Mutex::new(Some(body)));
    let service = layer.layer(service_fn(move |_: Request<String>| {
        let body = body.lock().unwrap().take().expect("called once");
        async move { Ok::<_, Infallible>(Response::new(body)) }
    }));
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    response.into_body()
}

// A client that stopped reading held its permit for ever, and a few locked everyone out.
#[tokio::test(start_paused = true)]
async fn a_reader_that_stops_reading_gives_the_permit_back_after_the_idle_time() {
    let layer = GateLayer::new(1).max_wait(Duration::ZERO);
    let mut body = respond(&layer, Endless(&[0; 1024])).await;
    for _ in 0..3 {
        body.frame().await.unwrap().unwrap();
    }
    assert!(body.holds_permit());

    // The reader takes nothing more. Just short of the idle time, the permit is still held.
    sleep(IDLE - MS).await;
    assert!(body.holds_permit());
    assert_eq!(layer.stats().in_flight, 1);
    // Then it comes back without the body being polled, and someone else can have it.
    sleep(2 * MS).await;
    assert!(!body.holds_permit());
    assert_eq!(layer.stats().in_flight, 0);
    let other = respond(&layer, Endless(&[0; 1024])).await;
    assert!(other.holds_permit());

    // The stalled body still streams, without the permit.
    let chunk = body.frame().await.unwrap().unwrap();
    assert_eq!(chunk.into_data().unwrap().len(), 1024);
    assert!(!body.holds_permit());
    assert_eq!(layer.stats().in_flight, 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_producer_read_as_it_comes_keeps_the_permit_to_the_end() {
    const CHUNKS: usize = 30;
    const EVERY: Duration = Duration::from_secs(2);
    let layer = GateLayer::new(1).body_idle_timeout(Duration::from_secs(1));
    let (chunks, rx) = mpsc::channel(1);
    let mut body = respond(&layer, ChannelBody(rx)).await;
    // One chunk every 2 s for 60 s: the producer is slower than the idle time, the reader
    // is not.
    tokio::spawn(async move {
        for i in 0..CHUNKS {
            sleep(EVERY).await;
            chunks.send(Bytes::from(i.to_string())).await.unwrap();
        }
    });

    let start = Instant::now();
    for i in 0..CHUNKS {
        let chunk = body.frame().await.unwrap().unwrap();
        assert_eq!(chunk.into_data().unwrap(), i.to_string());
        assert!(body.holds_permit(), "released after chunk {i}");
        assert_eq!(layer.stats().in_flight, 1);
    }
    assert_eq!(start.elapsed(), EVERY * CHUNKS as u32);
    assert!(body.frame().await.is_none());
    assert!(!body.holds_permit());
    assert_eq!(layer.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn each_read_restarts_the_idle_time() {
    let layer = GateLayer::new(1).body_idle_timeout(Duration::from_secs(1));
    let mut body = respond(&layer, Endless(&[0; 1024])).await;
    // A reader taking a chunk every 900 ms, for a minute: never silent for a whole second.
    for _ in 0..66 {
        body.frame().await.unwrap().unwrap();
        sleep(Duration::from_millis(900)).await;
        assert!(body.holds_permit());
    }
    // A gap of a whole second, once, is enough.
    sleep(Duration::from_millis(101)).await;
    assert!(!body.holds_permit());
}

#[tokio::test(start_paused = true)]
async fn a_duration_too_long_for_the_timer_never_releases_early() {
    let layer = GateLayer::new(1).body_idle_timeout(Duration::MAX);
    let mut body = respond(&layer, Endless(&[0; 1024])).await;
    body.frame().await.unwrap().unwrap();
    sleep(Duration::from_secs(60 * 60 * 24)).await;
    assert!(body.holds_permit());
    drop(body);
    assert_eq!(layer.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_zero_idle_time_releases_once_a_frame_is_handed_out() {
    let layer = GateLayer::new(1).body_idle_timeout(Duration::ZERO);
    let mut body = respond(&layer, Endless(&[0; 1024])).await;
    assert!(body.holds_permit());
    body.frame().await.unwrap().unwrap();
    assert!(!body.holds_permit());
    assert_eq!(layer.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_reader_releases_a_limiters_permit_too() {
    let limiter = Arc::new(Limiter::new(1));
    let layer = GateLayer::with_limiter(Arc::clone(&limiter));
    let mut body = respond(&layer, Endless(&[0; 1024])).await;
    body.frame().await.unwrap().unwrap();
    assert_eq!(limiter.gate().stats().in_flight, 1);
    sleep(IDLE + MS).await;
    assert_eq!(limiter.gate().stats().in_flight, 0);
    assert!(!body.holds_permit());
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_while_its_reader_stalls_releases_once() {
    let layer = GateLayer::new(2);
    let mut body = respond(&layer, Endless(&[0; 1024])).await;
    body.frame().await.unwrap().unwrap();
    let other = respond(&layer, Endless(&[0; 1024])).await;
    assert_eq!(layer.stats().in_flight, 2);
    drop(body);
    assert_eq!(layer.stats().in_flight, 1);
    // Its timer, gone with it, releases nothing more.
    sleep(IDLE * 2).await;
    assert_eq!(layer.stats().in_flight, 1);
    assert!(other.holds_permit());
}

#[tokio::test(start_paused = true)]
async fn a_stall_after_a_slow_producer_is_still_caught() {
    let layer = GateLayer::new(1).body_idle_timeout(Duration::from_secs(1));
    let (chunks, rx) = mpsc::channel(1);
    let mut body = respond(&layer, ChannelBody(rx)).await;
    chunks.send(Bytes::from_static(b"first")).await.unwrap();
    body.frame().await.unwrap().unwrap();
    // The producer takes 3 s for the next chunk while the reader waits for it: the timer
    // set after the first chunk goes off meanwhile, and releases nothing.
    let next = tokio::spawn(async move {
        sleep(Duration::from_secs(3)).await;
        chunks.send(Bytes::from_static(b"second")).await.unwrap();
        chunks
    });
    body.frame().await.unwrap().unwrap();
    assert!(body.holds_permit());
    let _chunks = next.await.unwrap();
    // Now the reader stops: the timer, set again, catches it.
    sleep(Duration::from_millis(999)).await;
    assert!(body.holds_permit());
    sleep(Duration::from_millis(2)).await;
    assert!(!body.holds_permit());
    assert_eq!(layer.stats().in_flight, 0);
}
