//! Run with: cargo run --example axum_server
//!
//! An axum server behind a `GateLayer`: at most 4 requests in the handlers at once, up to 8
//! more waiting for at most a second, everyone else answered `503` with `Retry-After`.
//!
//! - `GET /`        answers at once;
//! - `GET /slow`    takes 200 ms;
//! - `GET /tokens`  streams five tokens, 100 ms apart, and holds its permit until the last;
//! - `GET /tenant`  five requests a second per API key (the `x-api-key` header; requests
//!   without one share a default key), answered `429` with `Retry-After` beyond that; every
//!   answer carries the IETF `RateLimit` and `RateLimit-Policy` fields (try
//!   `curl -i -H 'x-api-key: a' 127.0.0.1:3000/tenant` a few times);
//! - `GET /stats`   shows the gate's statistics (it is outside the gate);
//! - `GET /metrics` the gate's metrics in Prometheus's text format (outside the gate too, so
//!   a scrape is answered while the gate is full), through gate-core's `metrics` feature and
//!   `metrics-exporter-prometheus` (without its HTTP listener: the route renders them).
//!
//! With `--redis URL` (`redis://127.0.0.1:6379/`), `/tenant`'s limit per key is kept in
//! Redis instead, by gate-redis's `RedisKeyedLimiter`: every server started with the same
//! URL shares each key's five a second, so two replicas (`--port 3001`, `--port 3002`) give
//! a key five a second between them, not five each. Keys go to Redis as their bytes, UTF-8
//! or not (`RedisKeyedLimiter::builder_bytes`): `\xff` and `\xfe` are two tenants. The
//! server pings Redis before it listens, and exits with a message if none answers.
//!
//! It serves on 127.0.0.1:3000 (or `--port N`) until stopped, logging at `INFO`: refusing is normal under
//! overload, so each refusal is a `DEBUG` event and only a summary with their count comes at
//! `WARN`, at most every 10 seconds (`/stats` has the counters). With `--smoke` it serves on
//! a free port, sends 40 concurrent requests to `/slow` and two to `/tokens` with its own
//! client, prints what happened and exits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use futures_util::stream;
use gate_core::Limiter;
use gate_core::keyed::KeyedLimiter;
use gate_core::rate::Rate;
use gate_redis::{RedisKeyedLimiter, RedisLimiter};
use gate_tower::keyed::Header;
use gate_tower::{GateLayer, KeyedGateLayer};
use http::HeaderValue;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinSet;

/// Handlers running right now, and the most ever seen at once.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    pub(crate) now: AtomicUsize,
    pub(crate) max: AtomicUsize,
}

impl InFlight {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn slow(State(in_flight): State<Arc<InFlight>>) -> &'static str {
    in_flight.enter();
    tokio::time::sleep(Duration::from_millis(200)).await;
    in_flight.leave();
    "done\n"
}

/// Five tokens, 100 ms apart, like a language model's answer.
async fn tokens() -> Body {
    Body::from_stream(stream::unfold(0, |i| async move {
        if i == 5 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, Infallible>(format!("token {i}\n")), i + 1))
    }))
}

/// The layer of the example: a gate named `axum` of 4 permits, 8 more waiting for at most a
/// second.
pub(crate) fn layer() -> GateLayer {
    GateLayer::named("axum", 4)
        .max_wait(Duration::from_secs(1))
        .max_waiters(8)
}

/// Installs a Prometheus recorder as the program's `metrics` recorder and describes gate's
/// metrics to it; the handle renders them.
pub(crate) fn install_metrics() -> PrometheusHandle {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only metrics recorder");
    gate_core::metrics::describe();
    handle
}

/// `/tenant`'s layer: five a second per `x-api-key`, a burst of five, refused at once beyond
/// that; kept in this process, or with `redis` in that Redis, shared by every server using it.
pub(crate) fn tenant_layer(redis: Option<redis::Client>) -> KeyedGateLayer<HeaderValue, Header> {
    let rate = Rate::per_second(5).burst(5);
    let by_key = Header::new(http::HeaderName::from_static("x-api-key"));
    let no_key = HeaderValue::from_static("");
    let layer = match redis {
        None => {
            let tenants = KeyedLimiter::new(move || Limiter::with_rate(rate));
            KeyedGateLayer::with_limiter(Arc::new(tenants), by_key, no_key)
        }
        Some(client) => {
            let template = RedisLimiter::builder(client).key("axum-tenants").rate(rate);
            // Each key by its bytes, UTF-8 or not: two different keys are two limits.
            let tenants = RedisKeyedLimiter::builder_bytes(template)
                .build()
                .expect("a valid template");
            KeyedGateLayer::with_admission(Arc::new(tenants), by_key, no_key)
        }
    };
    layer.max_wait(Duration::ZERO)
}

/// The example's routes, `/tenant` limited in this process (what `tests/axum_metrics.rs`
/// serves).
#[allow(dead_code)]
pub(crate) fn app(layer: GateLayer, in_flight: Arc<InFlight>, metrics: PrometheusHandle) -> Router {
    app_with_tenants(layer, in_flight, metrics, tenant_layer(None))
}

/// The example's routes, `/tenant` behind `tenants`.
pub(crate) fn app_with_tenants(
    layer: GateLayer,
    in_flight: Arc<InFlight>,
    metrics: PrometheusHandle,
    tenants: KeyedGateLayer<HeaderValue, Header>,
) -> Router {
    let stats_layer = layer.clone();
    let metrics_layer = layer.clone();
    let gated = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/slow", get(slow))
        .route("/tokens", get(tokens))
        .with_state(in_flight)
        .layer(layer);
    let tenant = Router::new()
        .route("/tenant", get(|| async { "hello, tenant\n" }))
        .layer(tenants);
    Router::new()
        .route(
            "/stats",
            get(move || async move { format!("{:#?}\n", stats_layer.stats()) }),
        )
        .route(
            "/metrics",
            get(move || async move {
                // The gate writes its state to the recorder now, on scrape: nothing is
                // recorded per request.
                if let Some(gate) = metrics_layer.gate() {
                    gate.publish_metrics();
                }
                metrics.render()
            }),
        )
        .merge(tenant)
        .merge(gated)
}

/// The command line: `[--smoke] [--port N] [--redis URL]`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Args {
    pub(crate) smoke: bool,
    pub(crate) port: Option<u16>,
    pub(crate) redis: Option<String>,
}

impl Args {
    /// The arguments after the program's name, or what is wrong with them.
    pub(crate) fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut parsed = Self::default();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--smoke" => parsed.smoke = true,
                "--port" => {
                    let port = value()?;
                    let port = port.parse().map_err(|_| {
                        format!("--port takes a port number from 0 to 65535, not {port:?}")
                    })?;
                    parsed.port = Some(port);
                }
                "--redis" => parsed.redis = Some(value()?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(parsed)
    }
}

/// Ends the program with `message` and how to call it.
fn usage(message: &str) -> ! {
    eprintln!(
        "axum_server: {message}\n\
         usage: cargo run --release --example axum_server -- [--smoke] [--port N] [--redis URL]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args = Args::parse(std::env::args().skip(1)).unwrap_or_else(|message| usage(&message));
    let smoke = args.smoke;
    let port = args.port.unwrap_or(3000);
    let redis = match &args.redis {
        Some(url) => Some(
            examples::redis_server::reach(url)
                .await
                .unwrap_or_else(|message| {
                    eprintln!("axum_server: {message}");
                    std::process::exit(1)
                }),
        ),
        None => None,
    };
    let layer = layer();
    let in_flight = Arc::new(InFlight::default());
    let tenants = tenant_layer(redis);
    let app = app_with_tenants(
        layer.clone(),
        Arc::clone(&in_flight),
        install_metrics(),
        tenants,
    );

    if !smoke {
        // `DEBUG` would show every refusal: under a load test, one line per request.
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .init();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|error| {
                eprintln!("axum_server: cannot listen on 127.0.0.1:{port}: {error}");
                std::process::exit(1)
            });
        let port = listener.local_addr().map_or(port, |addr| addr.port());
        let shared = args.redis.map_or(String::new(), |url| {
            format!("; /tenant shared through {url}")
        });
        println!(
            "listening on http://127.0.0.1:{port} (try /slow, /tokens, /tenant, /stats, \
             /metrics){shared}"
        );
        axum::serve(listener, app).await.unwrap();
        return;
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    println!("smoke run against http://{addr}");

    let (ok, refused) = burst(addr, "/slow", 40).await;
    println!(
        "/slow x40: {ok} answered 200, {refused} answered 503 with Retry-After; \
         at most {} handlers ran at once (limit 4)",
        in_flight.max.load(Ordering::SeqCst)
    );
    let (ok, refused) = burst(addr, "/tokens", 2).await;
    println!("/tokens x2: {ok} streamed to the end, {refused} refused");

    let answers = tenant(addr, "a", 7).await;
    let other = tenant(addr, "b", 1).await;
    println!("/tenant x7 for key a, then x1 for key b: {answers:?}, {other:?}");
    let served = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    assert_eq!(served, 5, "a burst of five per key");
    assert_eq!(other[0].0, StatusCode::OK, "key b has its own bucket");
    assert!(
        answers
            .iter()
            .chain(&other)
            .all(|(_, field)| field.is_some()),
        "every answer says what is left"
    );

    let stats = layer.stats();
    println!(
        "gate: admitted {}, refused {} (queue full) + {} (waited too long), in flight {}",
        stats.admitted, stats.rejected, stats.timed_out, stats.in_flight
    );
    assert!(in_flight.max.load(Ordering::SeqCst) <= 4);
    assert_eq!(ok, 2);
}

/// Sends `n` GETs to `/tenant` one after the other as API key `key`; returns each answer's
/// status and `RateLimit` field.
async fn tenant(addr: SocketAddr, key: &str, n: usize) -> Vec<(StatusCode, Option<HeaderValue>)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut answers = Vec::new();
    for _ in 0..n {
        let request = Request::get(format!("http://{addr}/tenant"))
            .header("x-api-key", key)
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        let field = response.headers().get("ratelimit").cloned();
        answers.push((response.status(), field));
    }
    answers
}

/// Sends `n` GETs to `path` at once; returns how many got 200 and how many 503.
pub(crate) async fn burst(addr: SocketAddr, path: &str, n: usize) -> (usize, usize) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut requests = JoinSet::new();
    for _ in 0..n {
        let request = Request::get(format!("http://{addr}{path}"))
            .body(Empty::new())
            .unwrap();
        let client = client.clone();
        requests.spawn(async move {
            let response = client.request(request).await.unwrap();
            let status = response.status();
            let retry_after = response.headers().contains_key(http::header::RETRY_AFTER);
            response.into_body().collect().await.unwrap();
            (status, retry_after)
        });
    }
    let (mut ok, mut refused) = (0, 0);
    for (status, retry_after) in requests.join_all().await {
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE if retry_after => refused += 1,
            other => panic!("unexpected answer: {other}"),
        }
    }
    (ok, refused)
}
