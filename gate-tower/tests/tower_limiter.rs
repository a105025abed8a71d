//! `GateLayer` over a `Limiter`: rate limits, adaptive limits, and the outcome of every call
//! reported back, so that an overload answer pauses everyone sharing the limiter.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gate_core::adaptive::{Aimd, LimitAlgorithm, Sample};
use gate_core::rate::Rate;
use gate_core::{Limiter, Outcome};
use gate_tower::GateLayer;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_test::task;
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

mod poll;
use poll::{Id, spawn_call};

/// A limit algorithm that keeps a fixed limit and records every outcome it is told.
#[derive(Debug, Clone)]
struct Recorder {
    limit: usize,
    seen: Arc<Mutex<Vec<Outcome>>>,
}

impl Recorder {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Outcome> {
        self.seen.lock().unwrap().clone()
    }
}

impl LimitAlgorithm for Recorder {
    fn initial_limit(&self) -> usize {
        self.limit
    }

    fn wants_latency(&self) -> bool {
        false
    }

    fn update(&mut self, sample: &Sample) -> usize {
        self.seen.lock().unwrap().push(sample.outcome);
        self.limit
    }
}

/// A limiter of `limit` permits that records what it learns, and a layer drawing from it.
fn recording(limit: usize) -> (Recorder, Arc<Limiter>, GateLayer) {
    let recorder = Recorder::new(limit);
    let limiter = Arc::new(
        Limiter::builder()
            .adaptive(recorder.clone())
            .build()
            .unwrap(),
    );
    let layer = GateLayer::with_limiter(Arc::clone(&limiter));
    (recorder, limiter, layer)
}

fn status(status: StatusCode, headers: &[(&'static str, &'static str)]) -> Response<u32> {
    let mut response = Response::new(0);
    *response.status_mut() = status;
    for (name, value) in headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

const OVERLOAD: Outcome = Outcome::Overload { retry_after: None };

fn overload_after(retry_after: Duration) -> Outcome {
    Outcome::Overload {
        retry_after: Some(retry_after),
    }
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_pauses_every_caller_sharing_the_limiter() {
    let limiter = Arc::new(Limiter::new(1));
    // Waiting out the 2 s pause takes a `max_wait` above the default second.
    let layer = GateLayer::with_limiter(Arc::clone(&limiter))
        .max_wait(Duration::from_secs(5))
        .hold_until_body_end(false);
    // Another layer (another router, another client) holding the same limiter.
    let other = GateLayer::with_limiter(Arc::clone(&limiter))
        .max_wait(Duration::from_secs(5))
        .hold_until_body_end(false);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let (mut other_service, mut other_handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(other.clone());

    let mut first = spawn_call(&mut service, Request::new(Id(1)));
    assert_pending!(first.poll());
    let (_, send) = assert_ready!(handle.poll_request()).unwrap();
    // Already queued behind the first when the 429 comes.
    let mut queued = spawn_call(&mut service, Request::new(Id(2)));
    assert_pending!(queued.poll());

    let start = Instant::now();
    send.send_response(status(
        StatusCode::TOO_MANY_REQUESTS,
        &[("retry-after", "2")],
    ));
    let response = assert_ready_ok!(first.poll());
    // The 429 itself reaches the caller unchanged.
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limiter.paused_until(), Some(start + Duration::from_secs(2)));

    // The permit is free, but neither the queued request nor a new one through the other
    // layer gets in during the pause.
    assert_pending!(queued.poll());
    let mut newcomer = spawn_call(&mut other_service, Request::new(Id(3)));
    assert_pending!(newcomer.poll());
    tokio::time::advance(Duration::from_millis(1999)).await;
    assert_pending!(queued.poll());
    assert_pending!(newcomer.poll());
    assert_pending!(handle.poll_request());
    assert_pending!(other_handle.poll_request());

    // At 2 s both go on, one at a time (the limit is 1), neither failed.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(queued.is_woken());
    assert_pending!(queued.poll());
    assert_pending!(newcomer.poll());
    let (request, send) = assert_ready!(handle.poll_request()).unwrap();
    assert_eq!(request.body().0, 2);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    send.send_response(Response::new(2));
    assert_eq!(assert_ready_ok!(queued.poll()).status(), StatusCode::OK);
    assert!(newcomer.is_woken());
    assert_pending!(newcomer.poll());
    let (request, send) = assert_ready!(other_handle.poll_request()).unwrap();
    assert_eq!(request.body().0, 3);
    send.send_response(Response::new(3));
    assert_eq!(assert_ready_ok!(newcomer.poll()).status(), StatusCode::OK);

    let stats = layer.stats();
    assert_eq!(
        (stats.timed_out, stats.rejected, stats.in_flight),
        (0, 0, 0)
    );
}

// Regression: a `Retry-After` too long for the clock (`18446744073709551615`) set no pause
// at all, a shorter wait than `Retry-After: 2` gets; `1000000000000` paused for 292 years.
#[tokio::test(start_paused = true)]
async fn a_retry_after_too_long_for_the_clock_still_pauses() {
    for hint in [
        "18446744073709551615",
        "99999999999999999999999",
        "1000000000000",
        "Thu, 01 Jan 2099 00:00:00 GMT",
    ] {
        let limiter = Arc::new(Limiter::new(1));
        let layer = GateLayer::with_limiter(Arc::clone(&limiter)).hold_until_body_end(false);
        let (mut service, mut handle) =
            mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
        let mut call = spawn_call(&mut service, Request::new(Id(1)));
        assert_pending!(call.poll());
        let (_, send) = assert_ready!(handle.poll_request()).unwrap();
        send.send_response(status(
            StatusCode::TOO_MANY_REQUESTS,
            &[("retry-after", hint)],
        ));
        assert_ready_ok!(call.poll());
        let until = limiter.paused_until().expect("a pause");
        assert!(until > Instant::now() + Duration::from_secs(2), "{hint}");
        // And no longer than the limiter's cap: a hostile hint cannot stop it for years.
        assert!(until <= Instant::now() + limiter.max_pause(), "{hint}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_pause_starts_with_the_head_and_the_sample_waits_for_the_body() {
    let (recorder, limiter, layer) = recording(2);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let mut call = spawn_call(&mut service, Request::new(Id(1)));
    assert_pending!(call.poll());
    let (_, send) = assert_ready!(handle.poll_request()).unwrap();
    let start = Instant::now();
    send.send_response(status(
        StatusCode::SERVICE_UNAVAILABLE,
        &[("retry-after", "3")],
    ));
    let response = assert_ready_ok!(call.poll());

    // The body still holds its permit and nothing is reported yet, but the pause is on.
    assert!(response.body().holds_permit());
    assert_eq!(recorder.seen(), []);
    assert_eq!(limiter.paused_until(), Some(start + Duration::from_secs(3)));
    let mut next = spawn_call(&mut service, Request::new(Id(2)));
    assert_pending!(next.poll());
    assert_pending!(handle.poll_request());

    // Dropped a second later (unread): the head's overload is reported, with what is left
    // of the pause, which it does not extend.
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(response);
    assert_eq!(recorder.seen(), [overload_after(Duration::from_secs(2))]);
    assert_eq!(limiter.paused_until(), Some(start + Duration::from_secs(3)));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_pending!(next.poll());
    assert_eq!(assert_ready!(handle.poll_request()).unwrap().0.body().0, 2);
}

#[tokio::test(start_paused = true)]
async fn rate_admits_no_more_than_burst_plus_rate_times_any_window() {
    const CALLS: usize = 60;
    let starts = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&starts);
    let inner = service_fn(move |_: Request<String>| {
        record.lock().unwrap().push(Instant::now());
        async { Ok::<_, Infallible>(Response::new(String::from("ok"))) }
    });
    let service = GateLayer::with_rate(Rate::per_second(10).burst(3))
        .max_wait(Duration::MAX)
        .max_waiters(CALLS)
        .layer(inner);

    let mut calls = JoinSet::new();
    for _ in 0..CALLS {
        let service = service.clone();
        calls.spawn(service.oneshot(Request::new(String::new())));
    }
    for response in calls.join_all().await {
        assert_eq!(response.unwrap().status(), StatusCode::OK);
    }

    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), CALLS);
    // Every window [starts[i], starts[j]] holds j - i + 1 admissions: at most
    // burst + rate × length.
    for i in 0..CALLS {
        for j in i..CALLS {
            let window = starts[j] - starts[i];
            let allowed = 3 + (window.as_nanos() * 10 / 1_000_000_000) as usize;
            assert!(j - i < allowed, "{} admissions in {window:?}", j - i + 1);
        }
    }
    // And the rate is reached, not undercut: three at once, then one every 100ms.
    assert_eq!(starts[CALLS - 1] - starts[0], Duration::from_millis(5700));
}

#[tokio::test(start_paused = true)]
async fn aimd_shrinks_on_503s_and_grows_back_on_successes() {
    let overloaded = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&overloaded);
    let inner = service_fn(move |_: Request<String>| {
        let overloaded = flag.load(Ordering::Relaxed);
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut response = Response::new(String::new());
            if overloaded {
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            Ok::<_, Infallible>(response)
        }
    });
    let aimd = Aimd::builder().initial(16).build().unwrap();
    let layer = GateLayer::adaptive(aimd)
        .max_wait(Duration::MAX)
        .max_waiters(1000);
    let limiter = Arc::clone(layer.limiter().unwrap());
    let service = layer.layer(inner);

    /// Keeps 32 callers busy for `rounds` calls each; every response is read to its end.
    async fn load<S>(service: &S, rounds: usize) -> Vec<StatusCode>
    where
        S: Service<Request<String>, Response = Response<gate_tower::body::ResponseBody<String>>>
            + Clone
            + Send
            + 'static,
        S::Error: std::fmt::Debug,
        S::Future: Send,
    {
        let mut callers = JoinSet::new();
        for _ in 0..32 {
            let service = service.clone();
            callers.spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..rounds {
                    let response = service
                        .clone()
                        .oneshot(Request::new(String::new()))
                        .await
                        .unwrap();
                    statuses.push(response.status());
                    response.into_body().collect().await.unwrap();
                }
                statuses
            });
        }
        callers.join_all().await.concat()
    }

    assert_eq!(limiter.limit(), Some(16));
    let statuses = load(&service, 10).await;
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE)
    );
    let shrunk = limiter.limit().unwrap();
    assert!(shrunk <= 4, "the limit only shrank to {shrunk}");

    overloaded.store(false, Ordering::Relaxed);
    let statuses = load(&service, 40).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    let grown = limiter.limit().unwrap();
    assert!(
        grown >= shrunk + 4,
        "the limit only grew from {shrunk} to {grown}"
    );
    assert_eq!(limiter.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn grpc_overload_in_a_trailers_only_response_counts_as_overload() {
    let (recorder, limiter, layer) = recording(4);
    let layer = layer.hold_until_body_end(false);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let answers = [
        (
            status(
                StatusCode::OK,
                &[
                    ("content-type", "application/grpc"),
                    ("grpc-status", "8"),
                    ("grpc-message", "quota"),
                    ("grpc-retry-pushback-ms", "1500"),
                ],
            ),
            overload_after(Duration::from_millis(1500)),
        ),
        (status(StatusCode::OK, &[("grpc-status", "14")]), OVERLOAD),
        // Other statuses say nothing about load.
        (
            status(StatusCode::OK, &[("grpc-status", "5")]),
            Outcome::Success,
        ),
        (status(StatusCode::OK, &[]), Outcome::Success),
    ];
    let start = Instant::now();
    let mut expected = Vec::new();
    for (id, (response, outcome)) in answers.into_iter().enumerate() {
        let mut call = spawn_call(&mut service, Request::new(Id(id as u32)));
        assert_pending!(call.poll());
        let (_, send) = assert_ready!(handle.poll_request()).unwrap();
        send.send_response(response);
        assert_ready_ok!(call.poll());
        expected.push(outcome);
        assert_eq!(recorder.seen(), expected);
        if id == 0 {
            // Pause in force: the later calls run only because it is over first.
            assert_eq!(
                limiter.paused_until(),
                Some(start + Duration::from_millis(1500))
            );
            tokio::time::advance(Duration::from_millis(1500)).await;
        }
    }
}

/// A gRPC-like body: one message, then trailers.
#[derive(Debug)]
struct Trailed {
    frames: VecDeque<Frame<Bytes>>,
}

impl Trailed {
    fn new(trailers: &[(&'static str, &'static str)]) -> Self {
        let mut map = HeaderMap::new();
        for (name, value) in trailers {
            map.insert(*name, value.parse().unwrap());
        }
        Self {
            frames: [Frame::data(Bytes::from("message")), Frame::trailers(map)].into(),
        }
    }
}

impl Body for Trailed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.frames.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_overload_in_trailers_counts_when_the_body_ends() {
    let (recorder, limiter, layer) = recording(4);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<Trailed>, _>(layer.clone());
    let bodies = [
        (
            Trailed::new(&[("grpc-status", "8"), ("grpc-retry-pushback-ms", "250")]),
            overload_after(Duration::from_millis(250)),
        ),
        (Trailed::new(&[("grpc-status", "0")]), Outcome::Success),
    ];
    let mut expected = Vec::new();
    for (id, (body, outcome)) in bodies.into_iter().enumerate() {
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut call = spawn_call(&mut service, Request::new(Id(id as u32)));
        assert_pending!(call.poll());
        let (_, send) = assert_ready!(handle.poll_request()).unwrap();
        send.send_response(Response::new(body));
        let response = assert_ready_ok!(call.poll());
        assert_eq!(recorder.seen(), expected);
        let start = Instant::now();
        let collected = response.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_some());
        expected.push(outcome);
        assert_eq!(recorder.seen(), expected);
        if id == 0 {
            assert_eq!(
                limiter.paused_until(),
                Some(start + Duration::from_millis(250))
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_reports_nothing() {
    let (recorder, _limiter, layer) = recording(1);
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());

    // Dropped while the inner service runs.
    let mut running = spawn_call(&mut service, Request::new(Id(1)));
    assert_pending!(running.poll());
    let (_, _send) = assert_ready!(handle.poll_request()).unwrap();
    assert_eq!(layer.stats().in_flight, 1);
    // Dropped while queued behind it.
    let mut queued = spawn_call(&mut service, Request::new(Id(2)));
    assert_pending!(queued.poll());
    drop(queued);
    drop(running);
    assert_eq!(layer.stats().in_flight, 0);
    assert_eq!(recorder.seen(), []);

    // A call that completes is reported, once.
    let mut done = spawn_call(&mut service, Request::new(Id(3)));
    assert_pending!(done.poll());
    let (_, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_response(Response::new(3));
    drop(assert_ready_ok!(done.poll()));
    assert_eq!(recorder.seen(), [Outcome::Success]);
}

/// A body of one chunk that then fails.
#[derive(Debug)]
struct Broken {
    sent: bool,
}

impl Body for Broken {
    type Data = Bytes;
    type Error = &'static str;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        if self.sent {
            return Poll::Ready(Some(Err("stream broke")));
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from("partial")))))
    }
}

#[tokio::test]
async fn failures_are_reported_as_failed_and_successes_at_the_body_end() {
    let (recorder, _limiter, layer) = recording(2);

    // The inner service fails.
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<u32>, _>(layer.clone());
    let mut call = spawn_call(&mut service, Request::new(Id(1)));
    assert_pending!(call.poll());
    let (_, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_error("connection reset");
    assert_ready_err!(call.poll());
    assert_eq!(recorder.seen(), [Outcome::Failed]);

    // The body fails after a success head.
    let (mut service, mut handle) =
        mock::spawn_layer::<Request<Id>, Response<Broken>, _>(layer.clone());
    let mut call = spawn_call(&mut service, Request::new(Id(2)));
    assert_pending!(call.poll());
    let (_, send) = assert_ready!(handle.poll_request()).unwrap();
    send.send_response(Response::new(Broken { sent: false }));
    let mut body = assert_ready_ok!(call.poll()).into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(recorder.seen(), [Outcome::Failed]);
    assert!(body.frame().await.unwrap().is_err());
    assert_eq!(recorder.seen(), [Outcome::Failed, Outcome::Failed]);

    // Reject mode: `Ok` is a success, `Err` a failure.
    let reject = layer.clone().refuse_with_error();
    let ok = reject.layer(service_fn(
        |x: u32| async move { Ok::<_, std::io::Error>(x) },
    ));
    assert_eq!(ok.oneshot(7).await.unwrap(), 7);
    let err = reject.layer(service_fn(|_: u32| async move {
        Err::<u32, _>(std::io::Error::other("no"))
    }));
    assert!(err.oneshot(7).await.is_err());
    assert_eq!(
        recorder.seen(),
        [
            Outcome::Failed,
            Outcome::Failed,
            Outcome::Success,
            Outcome::Failed
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_layer_bounds_bound_the_whole_admission() {
    let limiter = Arc::new(Limiter::with_rate(Rate::per_second(1)));
    let layer = GateLayer::with_limiter(Arc::clone(&limiter))
        .max_wait(Duration::from_secs(1))
        .max_waiters(1);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let service = layer.layer(service_fn(move |_: Request<String>| {
        counter.fetch_add(1, Ordering::Relaxed);
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    }));

    // Nothing to wait for: admitted even though the pause below will refuse others.
    let response = service
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    limiter.pause_for(Duration::from_secs(10));
    let start = Instant::now();
    let mut waiting = task::spawn(service.clone().oneshot(Request::new(String::new())));
    assert_pending!(waiting.poll());
    // One waits already: the next is refused at once.
    let mut grpc = Request::new(String::new());
    grpc.headers_mut()
        .insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
    let refused = service.clone().oneshot(grpc).await.unwrap();
    assert_eq!(refused.headers()["grpc-status"], "8");
    assert_eq!(start.elapsed(), Duration::ZERO);

    // The first gives up after `max_wait`, though the pause lasts ten seconds.
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_pending!(waiting.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    let refused = assert_ready_ok!(waiting.poll());
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[RETRY_AFTER], "1");

    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let stats = layer.stats();
    assert_eq!((stats.rejected, stats.timed_out), (1, 1));
}

// Regression: over a limiter, a zero `max_wait` refusal was counted as `timed_out`, though
// it never waited; a gate counts it as `rejected`.
#[tokio::test(start_paused = true)]
async fn a_zero_wait_refusal_over_a_limiter_counts_as_rejected() {
    let limiter = Arc::new(Limiter::new(1));
    let layer = GateLayer::with_limiter(Arc::clone(&limiter)).max_wait(Duration::ZERO);
    let service = layer.layer(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    limiter.pause_for(Duration::from_secs(1));
    let refused = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let stats = layer.stats();
    assert_eq!((stats.rejected, stats.timed_out), (1, 0));
}

#[tokio::test]
async fn a_client_side_layer_backs_off_for_everyone_on_one_429_over_tcp() {
    use axum::Router;
    use axum::routing::get;
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    // The upstream refuses the first request it sees with `Retry-After: 1`, then serves.
    let hits = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&hits);
    let app = Router::new().route(
        "/",
        get(move || {
            let first = {
                let mut hits = seen.lock().unwrap();
                hits.push(std::time::Instant::now());
                hits.len() == 1
            };
            async move {
                if first {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(RETRY_AFTER, "1")],
                        "slow down",
                    )
                } else {
                    (StatusCode::OK, [(RETRY_AFTER, "0")], "ok")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Eight callers at once through one client-side layer, one call at a time, all allowed
    // to wait.
    let limiter = Arc::new(Limiter::new(1));
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let client = GateLayer::with_limiter(Arc::clone(&limiter))
        .max_wait(Duration::from_secs(5))
        .max_waiters(8)
        .layer(client);
    let mut calls = JoinSet::new();
    for _ in 0..8 {
        let client = client.clone();
        let request = Request::get(format!("http://{addr}/"))
            .body(Empty::new())
            .unwrap();
        calls.spawn(async move {
            let response = client.oneshot(request).await.unwrap();
            let status = response.status();
            response.into_body().collect().await.unwrap();
            status
        });
    }
    let mut statuses = calls.join_all().await;
    statuses.sort();
    let mut expected = vec![StatusCode::OK; 7];
    expected.push(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(statuses, expected);

    // Nobody reached the upstream until the second it asked for had passed.
    let hits = hits.lock().unwrap();
    assert_eq!(hits.len(), 8);
    for hit in &hits[1..] {
        let after = *hit - hits[0];
        assert!(
            after >= Duration::from_secs(1),
            "a call came {after:?} after the 429"
        );
    }
}
