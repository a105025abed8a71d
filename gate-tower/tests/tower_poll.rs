//! `GateLayer` at the poll level, with tower-test's mock service and tokio-test's tasks.

use std::sync::Arc;
use std::time::Duration;

use gate_core::Gate;
use gate_tower::{GateLayer, Overloaded};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok};
use tower::Layer;
use tower_test::mock::{self, Spawn};

mod poll;
use poll::{Id, spawn_call};

/// A request whose body is its id.
fn request(id: u32) -> Request<Id> {
    Request::new(Id(id))
}

fn grpc_request(id: u32) -> Request<Id> {
    let mut request = Request::new(Id(id));
    request
        .headers_mut()
        .insert(CONTENT_TYPE, "application/grpc+proto".parse().unwrap());
    request
}

/// Takes the next request the mock received, asserting it is the one with `id`.
fn expect_request(
    handle: &mut mock::Handle<Request<Id>, Response<u32>>,
) -> (u32, mock::SendResponse<Response<u32>>) {
    let (request, send) = assert_ready!(handle.poll_request()).expect("mock dropped");
    (request.body().0, send)
}

#[tokio::test]
async fn waiters_are_admitted_in_arrival_order() {
    let layer = GateLayer::new(1).max_waiters(3).hold_until_body_end(false);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());

    let mut calls = Vec::new();
    for id in 0..4 {
        let mut call = spawn_call(&mut service, request(id));
        assert_pending!(call.poll());
        calls.push(call);
    }
    // Only the first reached the inner service; the others wait in order.
    let (id, send) = expect_request(&mut handle);
    assert_eq!(id, 0);
    assert_pending!(handle.poll_request());
    assert_eq!((layer.stats().in_flight, layer.stats().waiting), (1, 3));

    let mut send = send;
    for id in 0..4 {
        send.send_response(Response::new(id));
        let response = assert_ready_ok!(calls[id as usize].poll());
        assert_eq!(response.body().get_ref(), Some(&id));
        if id == 3 {
            break;
        }
        // The release woke exactly the next in line, not the ones behind it.
        let next = id as usize + 1;
        assert!(calls[next].is_woken());
        for later in calls.iter().skip(next + 1) {
            assert!(!later.is_woken());
        }
        assert_pending!(calls[next].poll());
        let (got, next_send) = expect_request(&mut handle);
        assert_eq!(got, id + 1);
        send = next_send;
    }
    assert_eq!(layer.stats().in_flight, 0);
    assert_eq!(layer.stats().admitted, 4);
}

#[tokio::test]
async fn dropped_response_future_releases_its_permit() {
    let layer = GateLayer::new(1);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());

    let mut first = spawn_call(&mut service, request(0));
    assert_pending!(first.poll());
    let _in_service = expect_request(&mut handle);

    let mut second = spawn_call(&mut service, request(1));
    assert_pending!(second.poll());
    let mut third = spawn_call(&mut service, request(2));
    assert_pending!(third.poll());
    assert_eq!(layer.stats().waiting, 2);

    // A waiter that gives up leaves the queue and wakes nobody.
    drop(second);
    assert_eq!((layer.stats().in_flight, layer.stats().waiting), (1, 1));
    assert!(!third.is_woken());

    // The admitted one, dropped mid-call, gives its permit to the next waiter.
    drop(first);
    assert!(third.is_woken());
    assert_pending!(third.poll());
    let (id, send) = expect_request(&mut handle);
    assert_eq!(id, 2);
    send.send_response(Response::new(2));
    let response = assert_ready_ok!(third.poll());
    drop(response);
    assert_eq!(layer.stats().in_flight, 0);
    assert_eq!(layer.gate().unwrap().available_permits(), 1);
}

#[tokio::test]
async fn error_response_releases_its_permit() {
    let layer = GateLayer::new(1);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());

    let mut failing = spawn_call(&mut service, request(0));
    assert_pending!(failing.poll());
    let mut waiting = spawn_call(&mut service, request(1));
    assert_pending!(waiting.poll());

    let (_, send) = expect_request(&mut handle);
    send.send_error("backend exploded");
    let error = assert_ready_err!(failing.poll());
    assert_eq!(error.to_string(), "backend exploded");
    assert!(waiting.is_woken());
    assert_pending!(waiting.poll());
    let (id, send) = expect_request(&mut handle);
    assert_eq!(id, 1);
    send.send_response(Response::new(1));
    drop(assert_ready_ok!(waiting.poll()));
    assert_eq!(layer.stats().in_flight, 0);
}

#[tokio::test]
async fn clones_and_separately_layered_services_share_the_gate() {
    let layer = GateLayer::new(2);
    let (mock_a, mut handle_a) = mock::pair::<Request<Id>, Response<u32>>();
    let (mock_b, mut handle_b) = mock::pair::<Request<Id>, Response<u32>>();
    let a = layer.layer(mock_a);
    let mut a1 = Spawn::new(a.clone());
    let mut a2 = Spawn::new(a);
    // `layer` called again, as a framework may do per route: still the same gate.
    let mut b = Spawn::new(layer.clone().layer(mock_b));

    let mut one = spawn_call(&mut a1, request(1));
    assert_pending!(one.poll());
    let mut two = spawn_call(&mut b, request(2));
    assert_pending!(two.poll());
    let mut three = spawn_call(&mut a2, request(3));
    assert_pending!(three.poll());

    assert_eq!((layer.stats().in_flight, layer.stats().waiting), (2, 1));
    let (_, send_one) = expect_request(&mut handle_a);
    let (_, send_two) = expect_request(&mut handle_b);
    assert_pending!(handle_a.poll_request());

    send_two.send_response(Response::new(2));
    drop(assert_ready_ok!(two.poll()));
    assert!(three.is_woken());
    assert_pending!(three.poll());
    let (id, send_three) = expect_request(&mut handle_a);
    assert_eq!(id, 3);
    send_one.send_response(Response::new(1));
    send_three.send_response(Response::new(3));
    drop(assert_ready_ok!(one.poll()));
    drop(assert_ready_ok!(three.poll()));
    assert_eq!(layer.stats().in_flight, 0);
}

#[tokio::test]
async fn idle_ready_clones_hold_no_permit() {
    // An idle keep-alive connection makes hyper poll readiness without sending anything.
    let layer = GateLayer::new(2);
    let (mock, mut handle) = mock::pair::<Request<Id>, Response<u32>>();
    let service = layer.layer(mock);
    let mut idle: Vec<_> = (0..10).map(|_| Spawn::new(service.clone())).collect();
    for clone in &mut idle {
        assert_ready_ok!(clone.poll_ready());
    }
    assert_eq!(layer.stats().in_flight, 0);
    assert_eq!(layer.gate().unwrap().available_permits(), 2);

    // Two more connections still get both permits.
    let mut calls = Vec::new();
    for id in 0..2 {
        let mut active = Spawn::new(service.clone());
        let mut call = spawn_call(&mut active, request(id));
        assert_pending!(call.poll());
        calls.push(call);
    }
    let _first = expect_request(&mut handle);
    let _second = expect_request(&mut handle);
    assert_eq!(layer.stats().in_flight, 2);
}

#[tokio::test]
async fn permit_is_held_until_the_body_is_dropped_by_default() {
    let layer = GateLayer::new(1);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let mut first = spawn_call(&mut service, request(0));
    assert_pending!(first.poll());
    let mut second = spawn_call(&mut service, request(1));
    assert_pending!(second.poll());

    let (_, send) = expect_request(&mut handle);
    send.send_response(Response::new(0));
    let response = assert_ready_ok!(first.poll());
    assert!(response.body().holds_permit());
    assert!(!second.is_woken());
    assert_eq!(layer.stats().in_flight, 1);

    drop(response);
    assert!(second.is_woken());
    assert_pending!(second.poll());
    assert_eq!(expect_request(&mut handle).0, 1);
}

#[tokio::test]
async fn permit_is_released_with_the_head_when_asked() {
    let layer = GateLayer::new(1).hold_until_body_end(false);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let mut first = spawn_call(&mut service, request(0));
    assert_pending!(first.poll());
    let mut second = spawn_call(&mut service, request(1));
    assert_pending!(second.poll());

    let (_, send) = expect_request(&mut handle);
    send.send_response(Response::new(0));
    let response = assert_ready_ok!(first.poll());
    assert!(!response.body().holds_permit());
    assert!(second.is_woken());
    assert_pending!(second.poll());
    assert_eq!(expect_request(&mut handle).0, 1);
    drop(response);
}

#[tokio::test(start_paused = true)]
async fn max_wait_refuses_exactly_at_the_deadline() {
    let layer = GateLayer::new(1).max_wait(Duration::from_millis(100));
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let mut holder = spawn_call(&mut service, request(0));
    assert_pending!(holder.poll());
    let _held = expect_request(&mut handle);

    let mut http = spawn_call(&mut service, request(1));
    assert_pending!(http.poll());
    let mut grpc = spawn_call(&mut service, grpc_request(2));
    assert_pending!(grpc.poll());

    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(!http.is_woken());
    assert_pending!(http.poll());
    assert_pending!(grpc.poll());

    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(http.is_woken());
    let refused = assert_ready_ok!(http.poll());
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[RETRY_AFTER], "1");
    assert!(refused.body().is_refusal());

    let refused = assert_ready_ok!(grpc.poll());
    assert_eq!(refused.status(), StatusCode::OK);
    assert_eq!(refused.headers()["grpc-status"], "8");
    assert_eq!(refused.headers()[CONTENT_TYPE], "application/grpc");
    assert_eq!(refused.headers()["grpc-retry-pushback-ms"], "1000");

    // Neither reached the inner service; the holder kept its permit throughout.
    assert_pending!(handle.poll_request());
    let stats = layer.stats();
    assert_eq!((stats.in_flight, stats.waiting, stats.timed_out), (1, 0, 2));
}

#[tokio::test(start_paused = true)]
async fn zero_max_wait_refuses_at_once_only_when_full() {
    let layer = GateLayer::new(1)
        .max_wait(Duration::ZERO)
        .retry_after(Duration::from_millis(2500));
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let mut admitted = spawn_call(&mut service, request(0));
    assert_pending!(admitted.poll());
    let (_, send) = expect_request(&mut handle);

    let mut refused = spawn_call(&mut service, request(1));
    let response = assert_ready_ok!(refused.poll());
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "3");

    send.send_response(Response::new(0));
    drop(assert_ready_ok!(admitted.poll()));
    let mut later = spawn_call(&mut service, request(2));
    assert_pending!(later.poll());
    assert_eq!(expect_request(&mut handle).0, 2);
}

#[tokio::test(start_paused = true)]
async fn max_waiters_refuses_the_one_too_many() {
    let layer = GateLayer::new(1)
        .max_wait(Duration::from_secs(60))
        .max_waiters(2);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let mut calls = Vec::new();
    for id in 0..3 {
        let mut call = spawn_call(&mut service, request(id));
        assert_pending!(call.poll());
        calls.push(call);
    }
    assert_eq!(layer.stats().waiting, 2);
    let mut fourth = spawn_call(&mut service, request(3));
    let response = assert_ready_ok!(fourth.poll());
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(layer.stats().rejected, 1);

    // When one waiter leaves, there is room for exactly one more.
    calls.pop();
    let mut fifth = spawn_call(&mut service, request(4));
    assert_pending!(fifth.poll());
    let mut sixth = spawn_call(&mut service, request(5));
    assert_eq!(
        assert_ready_ok!(sixth.poll()).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let _first = expect_request(&mut handle);
    assert_pending!(handle.poll_request());
}

#[tokio::test(start_paused = true)]
async fn layer_bounds_apply_on_a_shared_gate_with_other_bounds() {
    // The gate itself would never queue anyone; the layer's own bounds let requests wait.
    let gate = Arc::new(
        Gate::builder(1)
            .max_wait(Duration::ZERO)
            .max_waiters(0)
            .build()
            .unwrap(),
    );
    let layer = GateLayer::with_gate(Arc::clone(&gate)).max_wait(Duration::from_secs(1));
    assert_eq!(layer.wait_limits().max_waiters, 1024);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());

    let held = gate.try_acquire().unwrap();
    let mut waiting = spawn_call(&mut service, request(0));
    assert_pending!(waiting.poll());
    assert_eq!(gate.stats().waiting, 1);
    drop(held);
    assert!(waiting.is_woken());
    assert_pending!(waiting.poll());
    assert_eq!(expect_request(&mut handle).0, 0);
}

#[tokio::test]
async fn a_static_gate_is_shared_with_its_other_users() {
    static GATE: Gate = Gate::new(1);
    let layer = GateLayer::with_static_gate(&GATE).max_wait(Duration::ZERO);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());

    let elsewhere = GATE.try_acquire().unwrap();
    let mut refused = spawn_call(&mut service, request(0));
    assert_eq!(
        assert_ready_ok!(refused.poll()).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    drop(elsewhere);

    let mut admitted = spawn_call(&mut service, request(1));
    assert_pending!(admitted.poll());
    assert_eq!(GATE.stats().in_flight, 1);
    let (_, send) = expect_request(&mut handle);
    send.send_response(Response::new(1));
    drop(assert_ready_ok!(admitted.poll()));
    assert_eq!(GATE.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn reject_mode_fails_with_a_downcastable_overloaded() {
    let layer = GateLayer::new(1)
        .max_wait(Duration::from_millis(10))
        .refuse_with_error();
    let (mut service, mut handle) = mock::spawn_layer::<u32, u32, _>(layer.clone());
    let mut admitted = spawn_call(&mut service, 0);
    assert_pending!(admitted.poll());
    let mut refused = spawn_call(&mut service, 1);
    assert_pending!(refused.poll());

    tokio::time::advance(Duration::from_millis(10)).await;
    let error = assert_ready_err!(refused.poll());
    let overloaded = error.downcast_ref::<Overloaded>().expect("an Overloaded");
    assert_eq!(overloaded.to_string(), "gate is full");

    // The inner service's own errors pass through, boxed, and release the permit.
    let (request, send) = assert_ready!(handle.poll_request()).unwrap();
    assert_eq!(request, 0);
    send.send_error("inner failure");
    let error = assert_ready_err!(admitted.poll());
    assert!(error.downcast_ref::<Overloaded>().is_none());
    assert_eq!(error.to_string(), "inner failure");
    assert_eq!(layer.stats().in_flight, 0);
}

/// One event with target `gate_tower`: its level, and its `reason` or `refused` field.
#[derive(Debug, Clone, PartialEq)]
enum Logged {
    Debug(String),
    Warn(u64),
}

/// Records every `DEBUG` and `WARN` event with target `gate_tower`.
#[derive(Clone, Default)]
struct Refusals(Arc<std::sync::Mutex<Vec<Logged>>>);

impl Refusals {
    fn take(&self) -> Vec<Logged> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl tracing::Subscriber for Refusals {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        #[derive(Default)]
        struct Fields {
            reason: Option<String>,
            refused: Option<u64>,
        }
        impl tracing::field::Visit for Fields {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "refused" {
                    self.refused = Some(value);
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "reason" {
                    self.reason = Some(format!("{value:?}"));
                }
            }
        }
        let metadata = event.metadata();
        if metadata.target() != "gate_tower" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let logged = match *metadata.level() {
            tracing::Level::DEBUG => Logged::Debug(fields.reason.expect("a reason field")),
            tracing::Level::WARN => Logged::Warn(fields.refused.expect("a refused field")),
            _ => return,
        };
        self.0.lock().unwrap().push(logged);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn refusals_emit_a_debug_event_and_a_warn_summary() {
    let refusals = Refusals::default();
    tracing::subscriber::with_default(refusals.clone(), || {
        let layer = GateLayer::new(1).max_wait(Duration::ZERO);
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
        let mut admitted = spawn_call(&mut service, request(0));
        assert_pending!(admitted.poll());
        let _held = expect_request(&mut handle);
        // An admitted request emits nothing.
        assert!(refusals.0.lock().unwrap().is_empty());

        let mut refused = spawn_call(&mut service, request(1));
        drop(assert_ready_ok!(refused.poll()));
        layer.gate().unwrap().close();
        let mut closed = spawn_call(&mut service, request(2));
        drop(assert_ready_ok!(closed.poll()));
    });
    assert_eq!(
        refusals.take(),
        [
            Logged::Debug("timed out waiting for a permit".into()),
            Logged::Warn(1),
            Logged::Debug("gate closed".into()),
        ]
    );
}

// Regression: every refusal was a WARN event, so a refusal storm under wrk wrote 289,482
// WARN lines in 5 s.
#[tokio::test(start_paused = true)]
async fn a_refusal_storm_logs_one_warn_summary_per_period() {
    let refusals = Refusals::default();
    let _default = tracing::subscriber::set_default(refusals.clone());
    let layer = GateLayer::new(1).max_wait(Duration::ZERO);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let mut admitted = spawn_call(&mut service, request(0));
    assert_pending!(admitted.poll());
    let _held = expect_request(&mut handle);

    let mut refuse = |n| {
        for id in 0..n {
            let mut refused = spawn_call(&mut service, request(id));
            let response = assert_ready_ok!(refused.poll());
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    refuse(1000);
    let logged = refusals.take();
    let warns: Vec<_> = logged
        .iter()
        .filter(|logged| matches!(logged, Logged::Warn(_)))
        .collect();
    assert_eq!(warns, [&Logged::Warn(1)]);
    assert_eq!(logged.len(), 1001);

    // Ten seconds on, the next refusal sums up the 999 since the first and itself.
    tokio::time::advance(Duration::from_secs(10)).await;
    refuse(1);
    assert_eq!(refusals.take()[1..], [Logged::Warn(1000)]);
    assert_eq!(layer.stats().rejected, 1001);
}

/// A body of ready chunks, then an optional error; ends when both are used up.
#[derive(Debug)]
struct Chunks {
    chunks: std::collections::VecDeque<bytes::Bytes>,
    error: Option<&'static str>,
}

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = &'static str;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, &'static str>>> {
        std::task::Poll::Ready(match self.chunks.pop_front() {
            Some(chunk) => Some(Ok(http_body::Frame::data(chunk))),
            None => self.error.take().map(Err),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.error.is_none()
    }
}

/// Runs one request through a limit-1 layer and returns the response with its body.
async fn respond_with(
    body: Chunks,
) -> (GateLayer, Response<gate_tower::body::ResponseBody<Chunks>>) {
    let layer = GateLayer::new(1);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<Chunks>, _>(layer.clone());
    let mut call = spawn_call(&mut service, request(0));
    assert_pending!(call.poll());
    let (_, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_response(Response::new(body));
    let response = assert_ready_ok!(call.poll());
    (layer, response)
}

#[tokio::test]
async fn body_releases_its_permit_with_its_last_frame() {
    use http_body_util::BodyExt;

    let chunks = ["one", "two"].map(bytes::Bytes::from).into();
    let (layer, response) = respond_with(Chunks {
        chunks,
        error: None,
    })
    .await;
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "one");
    assert!(body.holds_permit());
    assert_eq!(layer.stats().in_flight, 1);

    // The last frame says the body is over: released without waiting for a final poll or drop.
    let last = body.frame().await.unwrap().unwrap();
    assert_eq!(last.into_data().unwrap(), "two");
    assert!(!body.holds_permit());
    assert_eq!(layer.stats().in_flight, 0);
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn body_releases_its_permit_when_it_fails() {
    use http_body_util::BodyExt;

    let chunks = ["partial"].map(bytes::Bytes::from).into();
    let (layer, response) = respond_with(Chunks {
        chunks,
        error: Some("stream broke"),
    })
    .await;
    let mut body = response.into_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "partial"
    );
    assert!(body.holds_permit());
    assert_eq!(body.frame().await.unwrap().unwrap_err(), "stream broke");
    assert!(!body.holds_permit());
    assert_eq!(layer.stats().in_flight, 0);
}

/// A service that counts how often it is cloned.
#[derive(Debug)]
struct CountClones(Arc<std::sync::atomic::AtomicUsize>);

impl Clone for CountClones {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(self.0.clone())
    }
}

impl tower::Service<u32> for CountClones {
    type Response = u32;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<u32, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u32) -> Self::Future {
        std::future::ready(Ok(request))
    }
}

#[tokio::test]
async fn a_free_permit_calls_the_inner_service_without_cloning_it() {
    use tower::{Service, ServiceExt};
    let clones = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let layer = GateLayer::new(1).refuse_with_error();
    let mut service = layer.layer(CountClones(clones.clone()));
    let clones_now = || clones.load(std::sync::atomic::Ordering::SeqCst);

    // Uncontended: admitted inside `call`, the inner service called in place.
    let answer = service.ready().await.unwrap().call(7).await.unwrap();
    assert_eq!((answer, clones_now()), (7, 0));

    // Contended: the request waits, so the future takes the ready service and leaves a clone.
    let held = layer.gate().unwrap().try_acquire().unwrap();
    let waiting = service.ready().await.unwrap().call(8);
    assert_eq!(clones_now(), 1);
    drop(held);
    assert_eq!(waiting.await.unwrap(), 8);
}
