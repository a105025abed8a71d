//! `GateLayer` under overload, at the poll level with a paused clock: the queue bounded by
//! time, the hints refusals carry, gRPC-Web refusals, and what a waiting request holds.

use std::future::poll_fn;
use std::time::Duration;

use gate_tower::GateLayer;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::buffer::Buffer;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock::{self, Spawn};

mod poll;
use poll::{Id, spawn_call};

type Handle = mock::Handle<Request<Id>, Response<u32>>;
type Gated = Spawn<gate_tower::GateService<mock::Mock<Request<Id>, Response<u32>>>>;
type Call = task::Spawn<
    gate_tower::future::ResponseFuture<mock::Mock<Request<Id>, Response<u32>>, Request<Id>>,
>;

/// One call in flight and `n` more queued behind it, each polled once; they stay where they
/// are while the returned calls live.
fn one_running_and_queued(service: &mut Gated, n: u32) -> Vec<Call> {
    (0..=n)
        .map(|id| {
            let mut call = spawn_call(service, request(id));
            assert_pending!(call.poll());
            call
        })
        .collect()
}

fn request(id: u32) -> Request<Id> {
    Request::new(Id(id))
}

fn with_content_type(id: u32, content_type: &'static str) -> Request<Id> {
    let mut request = Request::new(Id(id));
    request
        .headers_mut()
        .insert(CONTENT_TYPE, content_type.parse().unwrap());
    request
}

/// `n` requests arrive together at a gate of one permit; the inner service answers each
/// `every` after the previous. When it returns, the layer has seen `n - 1` waiters admitted
/// one per `every`, and nothing is in flight.
async fn drain_at(service: &mut Gated, handle: &mut Handle, n: u32, every: Duration) {
    let mut calls: Vec<_> = (0..n).map(|id| spawn_call(service, request(id))).collect();
    for call in &mut calls {
        assert_pending!(call.poll());
    }
    for call in &mut calls {
        assert_pending!(call.poll());
        let (_, send) = assert_ready!(handle.poll_request()).unwrap();
        tokio::time::advance(every).await;
        send.send_response(Response::new(0));
        let response = assert_ready_ok!(call.poll());
        assert_eq!(response.status(), StatusCode::OK);
    }
}

// Regression: the default queue bound was twice the limit, so a burst the server drains in
// a fraction of `max_wait` was mostly refused (of 160 at a gate of 16, 112).
#[tokio::test(start_paused = true)]
async fn a_burst_that_drains_within_max_wait_is_served_whole() {
    let layer = GateLayer::new(1).hold_until_body_end(false);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    // 40 requests at 20 ms each drain in 800 ms, within the default second.
    drain_at(&mut service, &mut handle, 40, Duration::from_millis(20)).await;
    let stats = layer.stats();
    assert_eq!(
        (stats.admitted, stats.rejected, stats.timed_out),
        (40, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_queue_that_would_not_drain_within_max_wait_refuses_at_once() {
    let layer = GateLayer::new(1)
        .max_wait(Duration::from_millis(140))
        .hold_until_body_end(false);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    drain_at(&mut service, &mut handle, 5, Duration::from_millis(20)).await;

    // One in flight; at 20 ms a waiter, five get through within 105 ms, the 3/4 of
    // `max_wait` the queue aims at.
    let _calls = one_running_and_queued(&mut service, 5);
    // The sixth would wait 120 ms: refused now, not after waiting in vain.
    let mut sixth = spawn_call(&mut service, request(6));
    let refused = assert_ready_ok!(sixth.poll());
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let stats = layer.stats();
    assert_eq!((stats.waiting, stats.rejected), (5, 1));
}

// Regression: `Retry-After` and `grpc-retry-pushback-ms` were a fixed second even when the
// queue drained in milliseconds.
#[tokio::test(start_paused = true)]
async fn refusals_advise_the_time_the_queue_takes_to_drain() {
    let layer = GateLayer::new(1).max_waiters(4).hold_until_body_end(false);
    let (mut service, handle) = mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    // Before any waiter got through, there is no drain time: the default second.
    let calls = one_running_and_queued(&mut service, 4);
    let mut refused = spawn_call(&mut service, with_content_type(5, "application/grpc"));
    let response = assert_ready_ok!(refused.poll());
    assert_eq!(response.headers()["grpc-retry-pushback-ms"], "1000");
    drop((calls, handle));

    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    drain_at(&mut service, &mut handle, 5, Duration::from_millis(20)).await;
    let _calls = one_running_and_queued(&mut service, 4);
    // Four waiting at 20 ms each, and this one: back in 100 ms.
    let mut grpc = spawn_call(&mut service, with_content_type(5, "application/grpc"));
    let response = assert_ready_ok!(grpc.poll());
    assert_eq!(response.headers()["grpc-status"], "8");
    assert_eq!(response.headers()["grpc-retry-pushback-ms"], "100");
    // `Retry-After` counts whole seconds: at least one.
    let mut http = spawn_call(&mut service, request(6));
    let response = assert_ready_ok!(http.poll());
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
}

// Regression: `retry_after(Duration::MAX)` overflowed rounding up to whole seconds: a panic
// in debug on every refusal, `Retry-After: 0` in release.
#[tokio::test]
async fn the_longest_fixed_retry_after_is_capped() {
    let layer = GateLayer::new(1)
        .max_wait(Duration::ZERO)
        .retry_after(Duration::MAX);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let mut holder = spawn_call(&mut service, request(0));
    assert_pending!(holder.poll());
    let _held = assert_ready!(handle.poll_request());

    let mut http = spawn_call(&mut service, request(1));
    let response = assert_ready_ok!(http.poll());
    assert_eq!(response.headers()[RETRY_AFTER], "2147484");
    let mut grpc = spawn_call(&mut service, with_content_type(2, "application/grpc"));
    let response = assert_ready_ok!(grpc.poll());
    assert_eq!(response.headers()["grpc-retry-pushback-ms"], "2147483647");
}

/// The refusal a browser gets for a gRPC-Web request with `content_type`: its head, and its
/// body's bytes.
async fn refused_grpc_web(content_type: &'static str) -> (http::response::Parts, bytes::Bytes) {
    let layer = GateLayer::new(1)
        .max_wait(Duration::ZERO)
        .retry_after(Duration::from_millis(250));
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<String>, _>(layer.clone());
    let mut holder = spawn_call(&mut service, request(0));
    assert_pending!(holder.poll());
    let _held = assert_ready!(handle.poll_request());
    let mut refused = spawn_call(&mut service, with_content_type(1, content_type));
    let (head, body) = assert_ready_ok!(refused.poll()).into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (head, body)
}

const GRPC_WEB_TRAILERS: &[u8] =
    b"grpc-status:8\r\ngrpc-message:gate is full\r\ngrpc-retry-pushback-ms:250\r\n";

// Regression: a refused gRPC-Web request was answered `content-type: application/grpc`,
// with the status in headers only, and browser clients reported `Internal`.
#[tokio::test]
async fn a_refused_grpc_web_request_gets_a_grpc_web_trailers_frame() {
    let (head, body) = refused_grpc_web("application/grpc-web+proto").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers[CONTENT_TYPE], "application/grpc-web+proto");
    // The status is where a browser can read it: in a trailers frame (flag 0x80, then the
    // length, big-endian), not in headers it may not be allowed to see.
    assert!(!head.headers.contains_key("grpc-status"));
    assert_eq!(body[0], 0x80);
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    assert_eq!(len, GRPC_WEB_TRAILERS.len());
    assert_eq!(&body[5..], GRPC_WEB_TRAILERS);
}

#[tokio::test]
async fn a_refused_grpc_web_text_request_gets_its_trailers_frame_in_base64() {
    let (head, body) = refused_grpc_web("application/grpc-web-text").await;
    assert_eq!(head.headers[CONTENT_TYPE], "application/grpc-web-text");
    // 0x80, the length 70 (0x46), then the trailers, in base64.
    assert_eq!(
        &body[..],
        b"gAAAAEZncnBjLXN0YXR1czo4DQpncnBjLW1lc3NhZ2U6Z2F0ZSBpcyBmdWxsDQpncnBjLXJldHJ5LXB1c2hi\
          YWNrLW1zOjI1MA0K"
    );
    assert_eq!(GRPC_WEB_TRAILERS.len(), 0x46);
}

// Regression: a request waiting at the gate kept the ready inner service it was handed, and
// with it the only slot of a `Buffer(1)` below, so a third caller's `poll_ready` stayed
// pending until the waiter got in.
#[tokio::test]
async fn a_waiting_request_reserves_nothing_in_the_inner_service() {
    let (mock, mut handle) = mock::pair::<Request<Id>, Response<u32>>();
    let layer = GateLayer::new(1).hold_until_body_end(false);
    let service = layer.layer(Buffer::new(mock, 1));

    // The first is admitted and reaches the mock through the buffer.
    let mut first = task::spawn(service.clone().oneshot(request(0)));
    assert_pending!(first.poll());
    let (_, send_first) = handle
        .next_request()
        .await
        .expect("the first reaches the mock");
    // The second waits at the gate, its caller's service dropped after the call, as axum
    // and hyper do.
    let mut second = task::spawn(service.clone().oneshot(request(1)));
    assert_pending!(second.poll());
    assert_eq!(layer.stats().waiting, 1);

    // A third caller can still make its service ready: the buffer's slot is free.
    let mut third = service.clone();
    assert_ready_ok!(task::spawn(poll_fn(|cx| third.poll_ready(cx))).poll());
    // ... and while it holds that slot, the admitted second waits for the buffer instead.
    send_first.send_response(Response::new(0));
    assert_ready_ok!(first.poll());
    assert!(second.is_woken());
    assert_pending!(second.poll());
    assert_eq!(layer.stats().in_flight, 1);
    drop(third);
    assert!(second.is_woken());
    assert_pending!(second.poll());
    let (request, send) = handle
        .next_request()
        .await
        .expect("the second reaches the mock");
    assert_eq!(request.body().0, 1);
    send.send_response(Response::new(1));
    let response = assert_ready_ok!(second.poll());
    assert_eq!(response.body().get_ref(), Some(&1));
}

#[tokio::test]
async fn an_inner_service_failing_readiness_after_admission_fails_the_call_and_frees_the_permit() {
    let layer = GateLayer::new(1).hold_until_body_end(false);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let mut holder = spawn_call(&mut service, request(0));
    assert_pending!(holder.poll());
    let (_, send) = assert_ready!(handle.poll_request()).unwrap();
    let mut waiting = spawn_call(&mut service, request(1));
    assert_pending!(waiting.poll());

    // Admitted, the waiter drives its clone of the inner service ready: it fails.
    handle.send_error("not ready");
    send.send_response(Response::new(0));
    assert_ready_ok!(holder.poll());
    assert!(waiting.is_woken());
    let error = tokio_test::assert_ready_err!(waiting.poll());
    assert_eq!(error.to_string(), "not ready");
    assert_eq!(layer.stats().in_flight, 0);
    assert_pending!(handle.poll_request());
}
